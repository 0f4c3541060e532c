//! dli-gitops itself in the test bed: a daemon config pointing at the counting proxies, and one
//! reconcile pass through the library path the daemon and `apply` share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dli_gitops::apply::{self, ApplyOptions, ApplyReport, TargetContext};
use dli_gitops::config::Config;
use dli_gitops::emulator::{DEV_ACCESS_KEY, DEV_PROJECT_ID, DEV_SECRET_KEY};

use super::env::TestBed;
use super::workload;

/// The target's name in the generated config.
pub const TARGET: &str = "bench";

/// Writes `dli-gitops.yaml` (and the key files it names) into `directory` for a target whose
/// source is `repo` (or `source`, the lines under `sources.jobs:`) and whose endpoints are the
/// test bed's proxies. Retries and timeouts stay at the product's defaults, as a user would run
/// it; `target_extra` adds target fields (the rate limit). Returns the config path.
pub fn write_config(
    directory: &Path,
    repo: &Path,
    bed: &TestBed,
    extra_top_level: &str,
    source: &str,
    target_extra: &str,
) -> Result<PathBuf, String> {
    let write = |name: &str, text: &str| {
        std::fs::write(directory.join(name), text)
            .map_err(|error| format!("writing {}: {error}", directory.join(name).display()))
    };
    write("ak", DEV_ACCESS_KEY)?;
    write("sk", DEV_SECRET_KEY)?;
    let api = bed.api_proxy.url();
    let s3 = bed.s3_proxy.url();
    let source = if source.is_empty() {
        format!("    path: {}\n", repo.display())
    } else {
        source.to_string()
    };
    let config = format!(
        r#"state_dir: state
{extra_top_level}sources:
  jobs:
{source}targets:
  - name: {TARGET}
    source: jobs
    environment: {environment}
    region: cn-north-4
    project_id: {DEV_PROJECT_ID}
    endpoints: {{dli: "{api}", dlf: "{api}", iam: "{api}", obs: "{s3}"}}
    credentials: {{access_key_file: ak, secret_key_file: sk}}
    staging: obs://dli-gitops-staging/{TARGET}/
    backups: obs://dli-gitops-backups/{TARGET}/
    policy: {{auto_sync: true, self_heal: true, prune: false}}
    {target_extra}
"#,
        environment = workload::ENVIRONMENT,
    );
    let path = directory.join("dli-gitops.yaml");
    write("dli-gitops.yaml", &config)?;
    Ok(path)
}

/// The target, opened through the config file as `apply` opens it.
pub async fn open_target(config_path: &Path) -> Result<TargetContext, String> {
    let config =
        Config::load(config_path).map_err(|error| format!("loading the config: {error}"))?;
    let mut context = TargetContext::open(&config, TARGET)
        .await
        .map_err(|error| format!("opening target {TARGET}: {error}"))?;
    // The baselines look at moving jobs every 500 ms; so does dli-gitops here.
    context.options.poll_interval = Duration::from_millis(500);
    Ok(context)
}

/// One pass: read git, observe, plan, apply. Fails unless every action succeeded.
pub async fn pass(context: &TargetContext) -> Result<ApplyReport, String> {
    let (desired, revision) = dli_gitops::pass::desired_for(context, None)
        .await
        .map_err(|error| format!("reading the repository: {error}"))?;
    let options = ApplyOptions {
        revision: Some(revision),
        ..context.options.clone()
    };
    let report = apply::reconcile_once(context, &desired, &options)
        .await
        .map_err(|error| format!("reconciling: {error}"))?;
    if !report.converged() {
        return Err(format!(
            "the pass did not converge:\n{}",
            report.render_text()
        ));
    }
    Ok(report)
}

/// The look after a pass that acted, as the daemon takes it: only the jobs the pass acted on
/// are read again (`apply::confirm_with`), not every list page.
pub async fn confirm(
    context: &TargetContext,
    applied: &ApplyReport,
) -> Result<ApplyReport, String> {
    let (desired, _) = dli_gitops::pass::desired_for(context, None)
        .await
        .map_err(|error| format!("reading the repository: {error}"))?;
    apply::confirm_with(
        &context.live,
        &context.ledger,
        &desired,
        &context.policy,
        &context.options,
        applied.observed.clone(),
        &applied.results,
    )
    .await
    .map_err(|error| format!("confirming: {error}"))
}
