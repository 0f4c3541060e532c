//! `export`: adopt the jobs that already run in a target into a job repository — YAML and SQL
//! files that `validate` accepts and that plan to no change — and mark them managed (the
//! managed-by tag on Flink jobs, the journal for both kinds).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use super::ApplyError;
use super::execute::{action_id, new_pass_id};
use super::ledger::{ActionEffects, IntentEntry, Ledger, OutcomeEntry, journal_key};
use super::live::{ExportedDlfJob, LiveService};
use super::observe::{ObserveScope, observe_with};
use crate::model::{
    DesiredDlfJob, DesiredJobs, DlfImportSettings, JobKind, Lifecycle, MANAGED_TAG_KEY,
    MANAGED_TAG_VALUE, ObservedJobs, RunState, SourceLocation,
};
use crate::plan::JournalView;

/// What an export wrote and adopted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportReport {
    pub out_dir: PathBuf,
    /// Paths written, relative to `out_dir`.
    pub files: Vec<String>,
    pub flink_jobs: Vec<String>,
    pub dlf_jobs: Vec<String>,
    /// Jobs that were not managed before and now are.
    pub adopted: Vec<String>,
    pub warnings: Vec<String>,
}

impl ExportReport {
    pub fn render_text(&self) -> String {
        // Data from git or the service is escaped for the terminal (control, bidi).
        crate::terminal::escape(&self.render_text_unescaped()).into_owned()
    }

    fn render_text_unescaped(&self) -> String {
        let mut text = format!(
            "Exported {} Flink job(s) and {} DLF job(s) to {} ({} file(s)); adopted {}.\n",
            self.flink_jobs.len(),
            self.dlf_jobs.len(),
            self.out_dir.display(),
            self.files.len(),
            if self.adopted.is_empty() {
                "none (all were managed already)".to_string()
            } else {
                self.adopted.join(", ")
            }
        );
        for warning in &self.warnings {
            text.push_str(&format!("warning: {warning}\n"));
        }
        text
    }
}

/// The repository files for `observed` (relative path → content), with an environment file
/// for `environment` so that the target resolves it as is. Pure.
pub fn render_export(observed: &ObservedJobs, environment: &str) -> Vec<(String, String)> {
    render_export_with(
        observed,
        &BTreeMap::new(),
        &JournalView::default(),
        environment,
    )
}

/// [`render_export`] with what DataArts exported for each DLF job (definition and scripts) and
/// the journal's view (a protected job is written with `prune: false`).
fn render_export_with(
    observed: &ObservedJobs,
    dlf_exports: &BTreeMap<String, ExportedDlfJob>,
    view: &JournalView,
    environment: &str,
) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut names = BTreeMap::new();
    for job in &observed.flink {
        *names.entry(job.name.as_str()).or_insert(0) += 1;
    }
    for job in &observed.flink {
        if names.get(job.name.as_str()) != Some(&1) {
            continue;
        }
        let lifecycle = Lifecycle {
            desired_state: if job.status.is_running()
                || matches!(
                    job.status,
                    crate::model::FlinkJobStatus::Finish | crate::model::FlinkJobStatus::Submitting
                ) {
                RunState::Running
            } else {
                RunState::Stopped
            },
            ..Lifecycle::default()
        };
        files.extend(crate::desired::render::render_flink_job(
            &job.name,
            &job.config,
            &lifecycle,
        ));
    }
    for job in &observed.dlf {
        let exported = dlf_exports.get(&job.name).cloned().unwrap_or_default();
        let protected = view.dlf.get(&job.name).is_some_and(|entry| entry.protected);
        files.extend(crate::desired::render::render_dlf_job(&dlf_as_desired(
            job, &exported, protected,
        )));
    }
    files.push((
        format!("{}/{environment}.yaml", crate::desired::ENVIRONMENTS_DIR),
        "# Written by `dli-gitops export`: the values this target's jobs were exported with.\nvariables: {}\n"
            .to_string(),
    ));
    files
}

/// The desired job `export` writes for a live DLF job: the definition DataArts exported (the
/// CreateJob body; the observed detail when the export said nothing) without the fields the
/// service sets ([`crate::plan::DLF_SERVER_FIELDS`]), the scripts of the export, and
/// `prune: false` when the journal protects the job. The schedule is left as found.
fn dlf_as_desired(
    job: &crate::model::ObservedDlfJob,
    exported: &ExportedDlfJob,
    protected: bool,
) -> DesiredDlfJob {
    let definition = if exported.definition.is_object() {
        &exported.definition
    } else {
        &job.definition
    };
    DesiredDlfJob {
        name: job.name.clone(),
        definition: crate::plan::without_server_fields(definition),
        scripts: exported.scripts.clone(),
        import: DlfImportSettings::default(),
        prune: !protected,
        desired_state: None,
        source: SourceLocation::default(),
        digest: String::new(),
        policy: Default::default(),
    }
}

/// The error of exporting into `out_dir`.
fn export_error(out_dir: &Path) -> impl Fn(String) -> ApplyError + '_ {
    move |problem: String| ApplyError::Export {
        path: out_dir.to_path_buf(),
        problem,
    }
}

/// Exporting into `out_dir` failed while `doing` because of `source`.
fn files_error(
    out_dir: &Path,
    doing: String,
    source: impl std::error::Error + Send + Sync + 'static,
) -> ApplyError {
    ApplyError::ExportFiles {
        path: out_dir.to_path_buf(),
        doing,
        source: Box::new(source),
    }
}

pub(crate) async fn export_with<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    out_dir: &Path,
    environment: &str,
) -> Result<ExportReport, ApplyError> {
    check_empty(out_dir)?;
    let mut warnings = Vec::new();
    let observed = observe_for_export(live, ledger, &mut warnings).await?;
    let dlf_exports = read_dlf_exports(live, &observed, &mut warnings).await;
    let files = render_export_with(&observed, &dlf_exports, &ledger.view(), environment);
    let desired = write_and_read_back(out_dir, &files, environment)?;

    let mut adopted = Vec::new();
    let pass_id = new_pass_id();
    let mut index = 0;
    let mut next_action_id = || {
        index += 1;
        action_id("export", &pass_id, index)
    };
    adopt_flink_jobs(
        live,
        ledger,
        &desired,
        &observed,
        &mut next_action_id,
        &mut warnings,
        &mut adopted,
    )
    .await?;
    adopt_dlf_jobs(
        ledger,
        &desired,
        &observed,
        &mut next_action_id,
        &mut adopted,
    )
    .await?;
    Ok(ExportReport {
        out_dir: out_dir.to_path_buf(),
        files: files.iter().map(|(path, _)| path.clone()).collect(),
        flink_jobs: desired.flink.iter().map(|job| job.name.clone()).collect(),
        dlf_jobs: desired.dlf.iter().map(|job| job.name.clone()).collect(),
        adopted,
        warnings,
    })
}

/// Observes every job; when DLF cannot be observed, the Flink jobs alone (with a warning).
async fn observe_for_export<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    warnings: &mut Vec<String>,
) -> Result<ObservedJobs, ApplyError> {
    let scope = ObserveScope {
        dlf: true,
        ..ObserveScope::default()
    };
    let (observed, _) = match observe_with(live, ledger, &scope).await {
        Ok(found) => found,
        Err(ApplyError::Observe { what, source, .. }) if what.contains("DLF") => {
            warnings.push(format!("DLF jobs were not exported: {what}: {source}"));
            observe_with(live, ledger, &ObserveScope::default()).await?
        }
        Err(error) => return Err(error),
    };
    Ok(observed)
}

/// The definitions and scripts as DataArts exports them (the live detail has no scripts); a
/// job whose export fails is written from its detail (with a warning).
async fn read_dlf_exports<L: LiveService>(
    live: &L,
    observed: &ObservedJobs,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, ExportedDlfJob> {
    let mut dlf_exports = BTreeMap::new();
    for job in &observed.dlf {
        match live.export_dlf_job(&job.name).await {
            Ok(exported) => {
                dlf_exports.insert(job.name.clone(), exported);
            }
            Err(failure) => warnings.push(format!(
                "DLF job `{}`: its export failed ({failure}); written from its detail, without scripts",
                job.name
            )),
        }
    }
    dlf_exports
}

/// Writes the rendered files into `out_dir` and reads them back as a repository: the jobs it
/// declares for `environment`, or an error when it does not validate.
fn write_and_read_back(
    out_dir: &Path,
    files: &[(String, String)],
    environment: &str,
) -> Result<DesiredJobs, ApplyError> {
    let export_error = export_error(out_dir);
    for (relative, content) in files {
        let path = out_dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| {
                files_error(out_dir, format!("creating {}", parent.display()), error)
            })?;
        }
        std::fs::write(&path, content)
            .map_err(|error| files_error(out_dir, format!("writing {}", path.display()), error))?;
    }
    let snapshot = crate::desired::read_directory(out_dir)
        .map_err(|error| files_error(out_dir, "reading the export back".to_string(), error))?;
    crate::desired::resolve(&snapshot, Some(environment)).map_err(|diagnostics| {
        export_error(format!(
            "the exported repository does not validate ({} problem(s)); the files are left for inspection:\n{diagnostics}",
            diagnostics.len()
        ))
    })
}

/// Adopts the exported Flink jobs not managed yet: the managed-by tag is set on the live job
/// and the journal records it as applied from the exported definition. A job whose tag
/// cannot be set is exported but not adopted (with a warning).
async fn adopt_flink_jobs<L: LiveService, J: Ledger>(
    live: &L,
    ledger: &J,
    desired: &DesiredJobs,
    observed: &ObservedJobs,
    next_action_id: &mut impl FnMut() -> String,
    warnings: &mut Vec<String>,
    adopted: &mut Vec<String>,
) -> Result<(), ApplyError> {
    for desired_job in &desired.flink {
        let Some(live_job) = observed
            .flink
            .iter()
            .find(|job| job.name == desired_job.name)
        else {
            continue;
        };
        let journal_managed = ledger
            .view()
            .flink
            .get(&desired_job.name)
            .is_some_and(|entry| entry.managed);
        if live_job.is_managed() && journal_managed {
            continue;
        }
        let action_id = next_action_id();
        let key = journal_key(desired_job.kind(), &desired_job.name);
        adoption_intent(
            ledger,
            &action_id,
            &key,
            json!({"live_id": live_job.id, "tag": {MANAGED_TAG_KEY: MANAGED_TAG_VALUE}}),
        )
        .await?;
        let result = if live_job.is_managed() {
            Ok(())
        } else {
            let set =
                BTreeMap::from([(MANAGED_TAG_KEY.to_string(), MANAGED_TAG_VALUE.to_string())]);
            live.update_flink_tags(live_job.id, &set, &[]).await
        };
        let ok = result.is_ok();
        if let Err(failure) = &result {
            warnings.push(format!(
                "Flink job `{}` was exported but not adopted: {failure}",
                desired_job.name
            ));
        }
        ledger
            .outcome(OutcomeEntry {
                action_id,
                job: key,
                ok,
                error: result.err().map(|failure| super::RecordedFailure {
                    code: failure.code,
                    message: failure.message,
                    request_id: failure.request_id,
                }),
                effects: ActionEffects {
                    live_id: Some(live_job.id),
                    spec_digest: ok.then(|| desired_job.digest.clone()),
                    managed: ok.then_some(true),
                    protected: ok.then_some(false),
                    ..ActionEffects::default()
                },
                plan_id: None,
            })
            .await?;
        if ok {
            adopted.push(desired_job.name.clone());
        }
    }
    Ok(())
}

/// Adopts the exported DLF jobs not managed yet: the journal records the live definition as
/// imported from the exported one, and measures drift from it. A managed job's exported
/// digest is recorded as describing the same live job.
async fn adopt_dlf_jobs<J: Ledger>(
    ledger: &J,
    desired: &DesiredJobs,
    observed: &ObservedJobs,
    next_action_id: &mut impl FnMut() -> String,
    adopted: &mut Vec<String>,
) -> Result<(), ApplyError> {
    for desired_job in &desired.dlf {
        let key = journal_key(JobKind::Dlf, &desired_job.name);
        let journal = ledger.view().dlf.get(&desired_job.name).cloned();
        if let Some(entry) = journal.as_ref().filter(|entry| entry.managed) {
            // Managed already: the repository it was imported from stays in sync (its digest
            // is untouched); the exported one is recorded as describing the same live job.
            if entry.imported_digest.as_deref() != Some(desired_job.digest.as_str()) {
                remember_dlf_export(ledger, &key, Some(&desired_job.digest), None).await?;
            }
            continue;
        }
        let action_id = next_action_id();
        adoption_intent(
            ledger,
            &action_id,
            &key,
            json!({"digest": desired_job.digest}),
        )
        .await?;
        // The live definition is the exported one: the journal records it as imported.
        ledger
            .outcome(OutcomeEntry {
                action_id,
                job: key.clone(),
                ok: true,
                error: None,
                effects: ActionEffects {
                    spec_digest: Some(desired_job.digest.clone()),
                    managed: Some(true),
                    protected: Some(!desired_job.prune),
                    ..ActionEffects::default()
                },
                plan_id: None,
            })
            .await?;
        // Drift is measured from here on, against the definition as it is live now.
        if let Some(live_job) = observed.dlf.iter().find(|job| job.name == desired_job.name) {
            let live_digest = crate::plan::dlf_definition_digest(&live_job.definition);
            remember_dlf_export(ledger, &key, None, Some(live_digest)).await?;
        }
        adopted.push(format!("dlf:{}", desired_job.name));
    }
    Ok(())
}

/// Journals the intent to adopt the job `key` (`detail`: what the adoption writes).
async fn adoption_intent<J: Ledger>(
    ledger: &J,
    action_id: &str,
    key: &str,
    detail: serde_json::Value,
) -> Result<(), ApplyError> {
    ledger
        .intent(IntentEntry {
            action_id: action_id.to_string(),
            job: key.to_string(),
            action: "adopt".to_string(),
            plan_id: None,
            detail,
        })
        .await?;
    Ok(())
}

/// Updates the journal's cached observation of a DLF job: adds an equivalent digest (a
/// repository `export` wrote for a managed job) or sets the drift baseline (at adoption).
async fn remember_dlf_export<J: Ledger>(
    ledger: &J,
    key: &str,
    equivalent_digest: Option<&str>,
    live_digest: Option<String>,
) -> Result<(), ApplyError> {
    super::observe::update_dlf_cache(ledger, key, |entry| {
        if let Some(digest) = equivalent_digest
            && !entry.equivalent_digests.iter().any(|known| known == digest)
        {
            entry.equivalent_digests.push(digest.to_string());
        }
        if live_digest.is_some() {
            entry.live_digest = live_digest;
        }
        true
    })
    .await
}

/// Refuses to write into a directory that has files, so an export never overwrites a repository.
fn check_empty(out_dir: &Path) -> Result<(), ApplyError> {
    match std::fs::read_dir(out_dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(export_error(out_dir)(
                "the directory is not empty; export into a new or empty directory so no file is overwritten"
                    .to_string(),
            )),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(files_error(out_dir, "reading the directory".to_string(), error)),
    }
}
