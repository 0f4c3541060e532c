//! From a snapshot to the desired jobs of one environment: find the job files, parse every
//! document, fill variables, apply the environment's overrides, check every field, and build
//! the canonical jobs. All-or-nothing: one problem anywhere and nothing is returned but the
//! complete list of problems.

use std::collections::BTreeMap;

use super::convert;
use super::diagnostics::{Diagnostic, Diagnostics, did_you_mean};
use super::environment::{ENVIRONMENTS_DIR, Environment, Override, parse_environment};
use super::fields::{self, FieldType, FieldValue, Kinds, Problem};
use super::files::{self, read_text};
use super::snapshot::RepoSnapshot;
use super::yaml::{Mark, Node, NodeValue, Scalar, parse_documents};
use crate::model::{DesiredJobs, JobKind};

/// Resolves every job of the repository for `environment` (`None`: the base files alone, with
/// no variables). Returns every problem found when there is any.
pub fn resolve(
    snapshot: &RepoSnapshot,
    environment: Option<&str>,
) -> Result<DesiredJobs, Diagnostics> {
    let mut context = Context {
        snapshot,
        environment_name: environment,
        environment_file: None,
        environment: Environment::default(),
        diagnostics: Vec::new(),
    };
    if let Some(name) = environment {
        context.load_environment(name);
    }
    // One file at a time: each document gets its overrides, is checked for a duplicate name
    // and built, and then its positioned node tree is dropped. Only the few fields checked
    // across documents (`POLICY_KEYS`) are kept until every job is built, so the trees of all
    // documents are never in memory at once.
    let mut overrides = PendingOverrides::new(&mut context);
    let mut declared = BTreeMap::new();
    let mut policy_documents = Vec::new();
    let mut desired = DesiredJobs::default();
    for path in snapshot.files.keys() {
        if !is_job_file(path) {
            continue;
        }
        let mut documents = Vec::new();
        context.load_job_file(path, &mut documents);
        for mut document in documents {
            context.check_duplicate(&mut declared, &document);
            overrides.apply(&mut context, &mut document);
            match document.kind {
                JobKind::FlinkSql | JobKind::FlinkJar => {
                    if let Some(job) = super::flink::build(&mut context, &document) {
                        desired.flink.push(job);
                    }
                }
                JobKind::Dlf => {
                    if let Some(job) = super::dlf::build(&mut context, &document) {
                        desired.dlf.push(job);
                    }
                }
            }
            document
                .entries
                .retain(|entry| super::dependencies::POLICY_KEYS.contains(&entry.key.as_str()));
            document.entries.shrink_to_fit();
            policy_documents.push(document);
        }
    }
    overrides.report_unknown_jobs(&mut context, &declared);
    drop(declared);

    // `depends_on`, `drift`, `ignore_differences`: checked across documents, no part of digests.
    let mut policies = super::dependencies::policies(&mut context, &policy_documents);
    drop(policy_documents);
    if !context.diagnostics.is_empty() {
        return Err(Diagnostics(context.diagnostics).finish());
    }
    // Held until the next revision: no spare capacity (a job is about a kilobyte inline).
    desired.flink.shrink_to_fit();
    desired.dlf.shrink_to_fit();
    for job in &mut desired.flink {
        job.policy = policies.remove(&job.name).unwrap_or_default();
    }
    for job in &mut desired.dlf {
        let key = super::dependencies::job_key(JobKind::Dlf, &job.name);
        job.policy = policies.remove(&key).unwrap_or_default();
    }
    desired
        .flink
        .sort_by(|left, right| left.name.cmp(&right.name));
    desired
        .dlf
        .sort_by(|left, right| left.name.cmp(&right.name));
    tracing::debug!(
        revision = %snapshot.revision,
        environment = environment.unwrap_or("-"),
        flink_jobs = desired.flink.len(),
        dlf_jobs = desired.dlf.len(),
        "Resolved the job repository."
    );
    Ok(desired)
}

/// The environments a repository defines (`environments/<name>.yaml` or `.yml`), sorted.
pub fn environments(snapshot: &RepoSnapshot) -> Vec<String> {
    let prefix = format!("{ENVIRONMENTS_DIR}/");
    let mut names: Vec<String> = snapshot
        .files
        .keys()
        .filter_map(|path| path.strip_prefix(&prefix))
        .filter(|rest| !rest.contains('/'))
        .filter_map(|rest| {
            rest.strip_suffix(".yaml")
                .or_else(|| rest.strip_suffix(".yml"))
        })
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Job files: `*.yaml` / `*.yml` outside `environments/` and outside hidden directories
/// (`.github/` workflows are not jobs).
pub fn is_job_file(path: &str) -> bool {
    (path.ends_with(".yaml") || path.ends_with(".yml"))
        && !path.starts_with(&format!("{ENVIRONMENTS_DIR}/"))
        && !path.split('/').any(|part| part.starts_with('.'))
}

/// One job document with its entries (after variables; overrides merged in later).
#[derive(Debug, Clone)]
pub(crate) struct JobDocument {
    pub kind: JobKind,
    pub name: String,
    pub file: String,
    pub mark: Mark,
    pub name_mark: Mark,
    pub entries: Vec<Entry>,
}

/// A field as written, with the file it came from (the job file, or the environment file for
/// an override).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_mark: Mark,
    pub value: Node,
    pub file: String,
}

/// A type-checked field value with where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub value: FieldValue,
    pub file: String,
    pub mark: Mark,
}

pub(crate) struct Context<'a> {
    pub snapshot: &'a RepoSnapshot,
    pub environment_name: Option<&'a str>,
    pub environment_file: Option<String>,
    pub environment: Environment,
    pub diagnostics: Vec<Diagnostic>,
}

impl Context<'_> {
    pub fn report(&mut self, file: &str, problem: Problem) {
        self.diagnostics.push(Diagnostic {
            file: file.to_string(),
            line: problem.mark.line.max(1),
            column: problem.mark.column.max(1),
            message: problem.message,
            hint: problem.hint,
        });
    }

    pub fn report_at(&mut self, file: &str, mark: Mark, message: String, hint: Option<String>) {
        self.report(file, Problem::new(mark, message, hint));
    }

    fn load_environment(&mut self, name: &str) {
        let candidates = [
            format!("{ENVIRONMENTS_DIR}/{name}.yaml"),
            format!("{ENVIRONMENTS_DIR}/{name}.yml"),
        ];
        let Some(path) = candidates
            .iter()
            .find(|path| self.snapshot.files.contains_key(*path))
            .cloned()
        else {
            let known = environments(self.snapshot);
            let hint = did_you_mean(name, known.iter().map(String::as_str)).or_else(|| {
                Some(if known.is_empty() {
                    format!("the repository has no {ENVIRONMENTS_DIR}/ directory")
                } else {
                    format!("environments in this repository: {}", known.join(", "))
                })
            });
            self.report_at(
                &candidates[0],
                Mark::default(),
                format!("environment `{name}` not found"),
                hint,
            );
            return;
        };
        // `environment_file` is set only once the file parses: until then its variables are
        // unknown, and reporting every `${name}` as missing would bury the one real problem.
        let text = match read_text(self.snapshot, &path) {
            Ok((_, text)) => text,
            Err(problem) => {
                let (message, hint) = problem.describe(&path);
                self.report_at(&path, Mark::default(), message, hint);
                return;
            }
        };
        let documents = match parse_documents(text) {
            Ok(documents) => documents,
            Err(error) => {
                self.report_at(&path, error.mark, error.message, error.hint);
                return;
            }
        };
        let mut documents = documents
            .into_iter()
            .filter(|document| !document.is_empty_document());
        let Some(document) = documents.next() else {
            // An empty environment file is a valid environment with nothing in it.
            self.environment_file = Some(path);
            return;
        };
        if let Some(extra) = documents.next() {
            self.report_at(
                &path,
                extra.mark,
                "an environment file holds one document".into(),
                Some("merge the documents into one".into()),
            );
        }
        self.environment_file = Some(path.clone());
        let mut problems = Vec::new();
        self.environment = parse_environment(&document, &mut problems);
        for problem in problems {
            self.report(&path, problem);
        }
    }

    fn load_job_file(&mut self, path: &str, documents: &mut Vec<JobDocument>) {
        let text = match read_text(self.snapshot, path) {
            Ok((_, text)) => text,
            Err(problem) => {
                let (message, hint) = problem.describe(path);
                self.report_at(path, Mark::default(), message, hint);
                return;
            }
        };
        let parsed = match parse_documents(text) {
            Ok(parsed) => parsed,
            Err(error) => {
                let hint = error.hint.or_else(|| syntax_hint(text, error.mark));
                self.report_at(path, error.mark, error.message, hint);
                return;
            }
        };
        for document in parsed {
            if document.is_empty_document() {
                continue;
            }
            if let Some(job) = self.job_document(path, document) {
                documents.push(job);
            }
        }
    }

    fn job_document(&mut self, path: &str, document: Node) -> Option<JobDocument> {
        let mark = document.mark;
        let NodeValue::Mapping(entries) = document.value else {
            self.report_at(
                path,
                mark,
                format!(
                    "a job document must be a mapping, found {}",
                    document.type_name()
                ),
                Some("start it with `kind:` and `name:`".into()),
            );
            return None;
        };
        let kind_names = [JobKind::FlinkSql, JobKind::FlinkJar, JobKind::Dlf].map(JobKind::as_str);
        let kind = match entries.iter().find(|(key, _)| key.key_text() == "kind") {
            None => {
                self.report_at(
                    path,
                    mark,
                    "missing `kind`".into(),
                    Some(format!("add `kind:` with one of {}", kind_names.join(", "))),
                );
                return None;
            }
            Some((_, value)) => {
                let text = value
                    .as_scalar()
                    .map(|scalar| scalar.text.as_str())
                    .unwrap_or("");
                match text {
                    "FlinkSqlJob" => JobKind::FlinkSql,
                    "FlinkJarJob" => JobKind::FlinkJar,
                    "DlfJob" => JobKind::Dlf,
                    other => {
                        self.report_at(
                            path,
                            value.mark,
                            format!("unknown kind `{other}`"),
                            did_you_mean(other, kind_names)
                                .or_else(|| Some(format!("use one of {}", kind_names.join(", ")))),
                        );
                        return None;
                    }
                }
            }
        };
        let Some((_, name_value)) = entries.iter().find(|(key, _)| key.key_text() == "name") else {
            self.report_at(
                path,
                mark,
                format!("{kind} without `name`"),
                Some("add `name:`, the job's name on the live side".into()),
            );
            return None;
        };
        let name = self.check_name(path, kind, name_value)?;
        let name_mark = name_value.mark;
        let mut job_entries = Vec::with_capacity(entries.len());
        for (key, mut value) in entries {
            let key_text = key.key_text().to_string();
            if key_text == "kind" || key_text == "name" {
                continue;
            }
            self.fill_variables(path, &mut value);
            job_entries.push(Entry {
                key: key_text,
                key_mark: key.mark,
                value,
                file: path.to_string(),
            });
        }
        Some(JobDocument {
            kind,
            name,
            file: path.to_string(),
            mark,
            name_mark,
            entries: job_entries,
        })
    }

    fn check_name(&mut self, path: &str, kind: JobKind, value: &Node) -> Option<String> {
        let spec = fields::find("name")?;
        match convert::convert(spec, value) {
            Ok(FieldValue::Text(name)) => {
                let limit = if kind == JobKind::Dlf { 128 } else { 57 };
                if name.chars().count() > limit {
                    self.report_at(
                        path,
                        value.mark,
                        format!(
                            "`name` is {} characters long, more than the {limit} {kind} allows",
                            name.chars().count()
                        ),
                        None,
                    );
                    return None;
                }
                if kind != JobKind::Dlf && name.contains('.') {
                    self.report_at(
                        path,
                        value.mark,
                        format!("`{name}` is not a valid job name"),
                        Some("Flink job names use letters, digits, `-` and `_`".into()),
                    );
                    return None;
                }
                Some(name)
            }
            Ok(_) => None,
            Err(problems) => {
                for problem in problems {
                    self.report(path, problem);
                }
                None
            }
        }
    }

    /// Fills `${variables}` in every scalar value below `node` (keys are left as written).
    pub fn fill_variables(&mut self, file: &str, node: &mut Node) {
        match &mut node.value {
            NodeValue::Scalar(scalar) => self.fill_scalar(file, node.mark, scalar),
            NodeValue::Sequence(items) => {
                for item in items {
                    self.fill_variables(file, item);
                }
            }
            NodeValue::Mapping(entries) => {
                for (_, value) in entries {
                    self.fill_variables(file, value);
                }
            }
        }
    }

    fn fill_scalar(&mut self, file: &str, mark: Mark, scalar: &mut Scalar) {
        if !scalar.text.contains('$') {
            return;
        }
        let (text, unknown) =
            files::substitute(&scalar.text, &self.environment.variables, &|_| false);
        for variable in unknown {
            let position = match scalar.inline_offset {
                Some(offset) => Mark {
                    line: mark.line,
                    column: mark.column
                        + offset
                        + scalar.text[..variable.offset].chars().count() as u32,
                },
                None => mark,
            };
            self.unknown_variable(file, position, &variable.name);
        }
        scalar.text = text;
    }

    pub fn unknown_variable(&mut self, file: &str, mark: Mark, name: &str) {
        if self.environment_name.is_some() && self.environment_file.is_none() {
            // The environment itself is missing: that one problem explains every variable.
            return;
        }
        // The hint names no environment file, so that the same problem in several
        // environments reads the same and is reported once.
        let hint = match (self.environment_name, &self.environment_file) {
            (Some(_), Some(_)) => {
                did_you_mean(name, self.environment.variables.keys().map(String::as_str))
                    .or_else(|| Some("define it under `variables:` in the environment file".into()))
            }
            (Some(_), None) => None,
            (None, _) => Some(
                "no environment selected: validate with --env <name>, or write $${…} for a literal"
                    .into(),
            ),
        };
        let message = format!("unknown variable `${{{name}}}`");
        // One wrong variable is one problem: its first use is reported, the others are listed
        // in that problem's hint (a few of them).
        if let Some(first) = self
            .diagnostics
            .iter_mut()
            .find(|diagnostic| diagnostic.message == message)
        {
            let place = format!("{file}:{}:{}", mark.line.max(1), mark.column.max(1));
            let hint = first.hint.get_or_insert_with(String::new);
            match hint.find("; also used at ") {
                None => hint.push_str(&format!("; also used at {place}")),
                Some(at) if hint[at..].matches(", ").count() < 3 => {
                    hint.push_str(&format!(", {place}"))
                }
                Some(_) if !hint.ends_with(" and more") => hint.push_str(" and more"),
                Some(_) => {}
            }
            return;
        }
        self.report_at(file, mark, message, hint);
    }

    /// Reports `document` when its name was declared before (DLI Flink SQL and Jar jobs share
    /// one name space in a project; DLF jobs have their own), else remembers where it was.
    fn check_duplicate(&mut self, declared: &mut Declared, document: &JobDocument) {
        let key = (document.kind == JobKind::Dlf, document.name.clone());
        match declared.get(&key) {
            Some(first) => {
                let hint = Some(format!(
                    "first declared as {} at {}:{}",
                    first.0, first.1, first.2.line
                ));
                self.report_at(
                    &document.file,
                    document.name_mark,
                    format!("duplicate job name `{}`", document.name),
                    hint,
                );
            }
            None => {
                declared.insert(
                    key,
                    (document.kind, document.file.clone(), document.name_mark),
                );
            }
        }
    }

    /// Type-checks every entry of a document against the fields of its kind. Returns the
    /// fields that passed, and whether all did: callers keep checking what they can (files,
    /// required fields) so that one pass finds every problem.
    pub fn check_fields(
        &mut self,
        document: &JobDocument,
    ) -> (BTreeMap<&'static str, Checked>, bool) {
        let kinds = match document.kind {
            JobKind::FlinkSql => Kinds::SQL,
            JobKind::FlinkJar => Kinds::JAR,
            JobKind::Dlf => Kinds::DLF,
        };
        let mut checked = BTreeMap::new();
        let mut clean = true;
        for entry in &document.entries {
            let spec = match fields::find(&entry.key) {
                Some(spec) if spec.kinds.contains(kinds) => spec,
                Some(spec) if kinds != Kinds::DLF && spec.kinds.0 & Kinds::FLINK.0 != 0 => {
                    // A Flink field of the other Flink job type: the API of this type has none.
                    clean = false;
                    self.report_at(
                        &entry.file,
                        entry.key_mark,
                        format!(
                            "`{}` cannot be set on a {}: only {} carries it (the DLI {} job API has no such field)",
                            entry.key,
                            document.kind,
                            owners(spec.kinds).join(" and "),
                            if kinds == Kinds::JAR { "Jar" } else { "SQL" },
                        ),
                        Some(format!("remove `{}`", entry.key)),
                    );
                    continue;
                }
                None if fields::READ_ONLY_FIELDS
                    .iter()
                    .any(|(name, _)| *name == entry.key) =>
                {
                    clean = false;
                    let reason = fields::READ_ONLY_FIELDS
                        .iter()
                        .find(|(name, _)| *name == entry.key)
                        .map_or("", |(_, reason)| reason);
                    self.report_at(
                        &entry.file,
                        entry.key_mark,
                        format!("`{}` cannot be set in a job file: {reason}", entry.key),
                        Some(format!("remove `{}`", entry.key)),
                    );
                    continue;
                }
                other => {
                    clean = false;
                    let hint = match other {
                        Some(spec) => Some(format!(
                            "`{}` belongs to {}",
                            entry.key,
                            owners(spec.kinds).join(" and ")
                        )),
                        None => {
                            did_you_mean(&entry.key, fields::fields_of(kinds).map(|spec| spec.name))
                                .or_else(|| {
                                    Some(format!(
                                        "`dli-gitops schema` lists the fields of {}",
                                        document.kind
                                    ))
                                })
                        }
                    };
                    self.report_at(
                        &entry.file,
                        entry.key_mark,
                        format!("unknown field `{}` for {}", entry.key, document.kind),
                        hint,
                    );
                    continue;
                }
            };
            match convert::convert(spec, &entry.value) {
                Ok(FieldValue::Map(overrides)) if checked.contains_key(spec.name) => {
                    if let Some(Checked {
                        value: FieldValue::Map(base),
                        ..
                    }) = checked.get_mut(spec.name)
                    {
                        base.extend(overrides);
                    }
                }
                Ok(value) => {
                    checked.insert(
                        spec.name,
                        Checked {
                            value,
                            file: entry.file.clone(),
                            mark: entry.value.mark,
                        },
                    );
                }
                Err(problems) => {
                    clean = false;
                    for problem in problems {
                        self.report(&entry.file, problem);
                    }
                }
            }
        }
        (checked, clean)
    }
}

/// `{a: ${x}}` is the most common syntax error in job files: inside `{...}` or `[...]` the
/// braces of a variable end the flow collection.
fn syntax_hint(text: &str, mark: Mark) -> Option<String> {
    let around = (mark.line.saturating_sub(1)..=mark.line)
        .filter_map(|line| text.lines().nth((line as usize).checked_sub(1)?))
        .any(|line| line.contains("${") && line.replace("${", "").contains(['{', '[']));
    around.then(|| "inside `{...}` or `[...]`, quote values that use variables: \"${name}\"".into())
}

fn owners(kinds: Kinds) -> Vec<&'static str> {
    [
        (Kinds::SQL, "FlinkSqlJob"),
        (Kinds::JAR, "FlinkJarJob"),
        (Kinds::DLF, "DlfJob"),
    ]
    .into_iter()
    .filter(|(kind, _)| kinds.contains(*kind))
    .map(|(_, name)| name)
    .collect()
}

/// Where each job name was first declared: (is DLF, name) → (kind, file, name position).
type Declared = BTreeMap<(bool, String), (JobKind, String, Mark)>;

/// The environment's overrides, applied to each job document as it is read. An override's
/// entries are checked and their variables filled once, when a document it names first
/// appears; overrides that named no job are reported at the end.
struct PendingOverrides {
    environment_file: Option<String>,
    overrides: Vec<Override>,
    /// Per override: its entries ready to merge, once a document it names appeared.
    ready: Vec<Option<Vec<Entry>>>,
    /// Job name → the overrides naming it, in the environment file's order.
    by_job: BTreeMap<String, Vec<usize>>,
}

impl PendingOverrides {
    fn new(context: &mut Context<'_>) -> PendingOverrides {
        let overrides = match context.environment_file {
            Some(_) => std::mem::take(&mut context.environment.overrides),
            None => Vec::new(),
        };
        let mut by_job: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, job_override) in overrides.iter().enumerate() {
            by_job
                .entry(job_override.job.clone())
                .or_default()
                .push(index);
        }
        PendingOverrides {
            environment_file: context.environment_file.clone(),
            ready: vec![None; overrides.len()],
            overrides,
            by_job,
        }
    }

    /// Merges every override naming `document`'s job into it, in the environment's order.
    fn apply(&mut self, context: &mut Context<'_>, document: &mut JobDocument) {
        let (Some(environment_file), Some(indices)) = (
            self.environment_file.as_deref(),
            self.by_job.get(&document.name),
        ) else {
            return;
        };
        for &index in indices {
            let entries = self.ready[index].get_or_insert_with(|| {
                override_entries(context, environment_file, &self.overrides[index])
            });
            for entry in entries.iter() {
                merge_entry(document, entry.clone());
            }
        }
    }

    /// Reports every override that named no job of the repository.
    fn report_unknown_jobs(&self, context: &mut Context<'_>, declared: &Declared) {
        let Some(environment_file) = self.environment_file.as_deref() else {
            return;
        };
        // A job file that did not parse may hold the job an override names: its syntax error
        // is the one problem, not a cascade of "unknown job" after it.
        let a_job_file_failed = context.diagnostics.iter().any(|diagnostic| {
            diagnostic.file != environment_file
                && (diagnostic.message.starts_with("YAML syntax error")
                    || diagnostic.message.starts_with("unclosed `"))
        });
        if a_job_file_failed {
            return;
        }
        for (job_override, ready) in self.overrides.iter().zip(&self.ready) {
            if ready.is_some() {
                continue;
            }
            let hint = did_you_mean(
                &job_override.job,
                declared.keys().map(|(_, name)| name.as_str()),
            )
            .or_else(|| Some("overrides are keyed by job name".into()));
            context.report_at(
                environment_file,
                job_override.mark,
                format!("override for unknown job `{}`", job_override.job),
                hint,
            );
        }
    }
}

/// An override's entries as merged into a job: `kind` and `name` refused, variables filled.
fn override_entries(
    context: &mut Context<'_>,
    environment_file: &str,
    job_override: &Override,
) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (key, value) in &job_override.entries {
        let key_text = key.key_text();
        if key_text == "kind" || key_text == "name" {
            context.report_at(
                environment_file,
                key.mark,
                format!("`{key_text}` cannot be overridden"),
                Some("a job's kind and name are its identity in every environment".into()),
            );
            continue;
        }
        let mut value = value.clone();
        context.fill_variables(environment_file, &mut value);
        entries.push(Entry {
            key: key_text.to_string(),
            key_mark: key.mark,
            value,
            file: environment_file.to_string(),
        });
    }
    entries
}

/// Merges an override into a document. Map fields (`runtime_config`, `tags`, `params`) merge
/// key by key: the override is kept as a second entry so that problems in either point at their
/// own file, and [`Context::check_fields`] merges them in order. Other fields are replaced.
fn merge_entry(document: &mut JobDocument, entry: Entry) {
    let is_map = fields::find(&entry.key)
        .is_some_and(|spec| matches!(spec.field_type, FieldType::TextMap { .. }));
    if is_map {
        document.entries.push(entry);
        return;
    }
    match document
        .entries
        .iter_mut()
        .find(|existing| existing.key == entry.key)
    {
        Some(existing) => *existing = entry,
        None => document.entries.push(entry),
    }
}
