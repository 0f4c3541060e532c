//! The `plan`, `apply`, `export` and `rollback` commands: load the config, open the target,
//! run one library call (`plan` and `apply` through [`super::run_pass`]), print. `main.rs` fills the option structs and maps the exit code.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use crate::apply::{self, ApplyError, ApplyOptions, ApplyReport, TargetContext};
use crate::config::Config;

/// `dli-gitops plan`.
#[derive(Debug, Clone)]
pub struct PlanCommand {
    pub config: PathBuf,
    pub target: String,
    pub json: bool,
    /// Exit 0 for no changes, 2 for changes (errors are 1 either way).
    pub detailed_exitcode: bool,
    /// Only the jobs whose names match one of these globs (`--select`).
    pub select: Vec<String>,
}

/// `dli-gitops apply`.
#[derive(Debug, Clone)]
pub struct ApplyCommand {
    pub config: PathBuf,
    pub target: String,
    pub auto_approve: bool,
    /// Only the jobs whose names match one of these globs (`--select`).
    pub select: Vec<String>,
}

/// `dli-gitops export`.
#[derive(Debug, Clone)]
pub struct ExportCommand {
    pub config: PathBuf,
    pub target: String,
    pub out: PathBuf,
}

/// `dli-gitops rollback`.
#[derive(Debug, Clone)]
pub struct RollbackCommand {
    pub config: PathBuf,
    pub target: String,
    pub to: Option<u64>,
    /// Roll back without asking (required when stdin is not a terminal).
    pub auto_approve: bool,
    /// Only list what can be rolled back to.
    pub list: bool,
}

/// Where an interactive command asks its question.
pub struct Prompt<'a> {
    pub input: &'a mut dyn BufRead,
    /// stdin is a terminal (a person can answer).
    pub is_terminal: bool,
}

fn runtime() -> Result<tokio::runtime::Runtime, ApplyError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| ApplyError::Failed {
            doing: "starting the async runtime",
            source: Box::new(error),
        })
}

fn load(path: &std::path::Path) -> Result<Config, ApplyError> {
    Config::load(path).map_err(|source| ApplyError::Config {
        path: path.to_path_buf(),
        source,
    })
}

/// Asks `question` on a terminal and accepts only `yes`; without a terminal nobody can answer,
/// so the command is refused (`what` says what needs approving and how to skip the question).
fn ask_yes(
    out: &mut dyn Write,
    prompt: Prompt<'_>,
    question: &str,
    what: &str,
) -> Result<(), ApplyError> {
    if !prompt.is_terminal {
        return Err(ApplyError::NotApproved {
            reason: format!("stdin is not a terminal, so nobody can {what}"),
        });
    }
    write_out(
        out,
        &format!("\n{question} Only 'yes' will be accepted.\n  Enter a value: "),
    )?;
    let mut answer = String::new();
    prompt
        .input
        .read_line(&mut answer)
        .map_err(|error| ApplyError::Failed {
            doing: "reading the answer",
            source: Box::new(error),
        })?;
    if answer.trim() != "yes" {
        return Err(ApplyError::NotApproved {
            reason: "the answer was not `yes`; nothing was changed".to_string(),
        });
    }
    Ok(())
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), ApplyError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|error| ApplyError::Failed {
            doing: "writing the output",
            source: Box::new(error),
        })
}

/// Runs `plan`; returns the exit code (0, or 2 for changes with `detailed_exitcode`).
pub fn plan_command(command: &PlanCommand, out: &mut dyn Write) -> Result<u8, ApplyError> {
    let config = load(&command.config)?;
    runtime()?.block_on(async {
        // Read-only: a private copy of the journal, so a running daemon keeps its lock and
        // nothing in the state directory is written (an unknown target creates nothing).
        let (journal, copy) =
            crate::journal::Journal::open_copy(&config.state_dir).map_err(|source| {
                ApplyError::Journal {
                    target: command.target.clone(),
                    what: "copying it for a read-only plan",
                    source: Box::new(source),
                }
            })?;
        if let (true, Some(target)) = (copy.held, config.target(&command.target))
            && [
                crate::config::Service::Dli,
                crate::config::Service::Dlf,
                crate::config::Service::Obs,
                crate::config::Service::Iam,
            ]
                .iter()
                .any(|service| target.endpoint(*service).is_embedded())
        {
            return Err(ApplyError::Runtime {
                problem: format!(
                    "{} is locked by another dli-gitops process ({}, a running daemon), which owns the target's embedded emulator; a second process must not open it. Read the daemon's last plan with `dli-gitops status --target {}` (or GET /api/v1/targets/{}), or stop the daemon first",
                    config.state_dir.display(),
                    copy.holder_pid
                        .map_or_else(|| "pid unknown".to_string(), |pid| format!("pid {pid}")),
                    command.target,
                    command.target
                ),
            });
        }
        let mut context = TargetContext::with_journal(&config, &command.target, journal).await?;
        context.options.select = command.select.clone();
        let result = async {
            let _copy = &copy;
            let (desired, revision) = super::desired_for(&context, None).await?;
            super::run_pass(super::Pass {
                context: &context,
                ledger: &context.ledger,
                desired: &desired,
                policy: &context.policy,
                options: ApplyOptions {
                    dry_run: true,
                    revision: Some(revision),
                    ..context.options.clone()
                },
                carry: None,
                look_again: false,
            })
            .await
        }
        .await;
        context.shutdown().await;
        let report = result?.report;
        let text = if command.json {
            format!("{}\n", report.plan.render_json())
        } else {
            report.plan.render_text()
        };
        write_out(out, &text)?;
        Ok(if command.detailed_exitcode && !report.plan.is_empty() {
            2
        } else {
            0
        })
    })
}

/// Runs `apply`: shows the plan, asks for `yes` on a terminal unless `auto_approve`, applies
/// exactly that plan. Returns 0 when every action succeeded, 1 otherwise.
pub fn apply_command(
    command: &ApplyCommand,
    out: &mut dyn Write,
    prompt: Prompt<'_>,
) -> Result<u8, ApplyError> {
    let config = load(&command.config)?;
    runtime()?.block_on(async {
        let mut context = TargetContext::open(&config, &command.target).await?;
        context.options.select = command.select.clone();
        let result = apply_in(&config, &context, command, out, prompt).await;
        context.shutdown().await;
        result
    })
}

async fn apply_in(
    config: &Config,
    context: &TargetContext,
    command: &ApplyCommand,
    out: &mut dyn Write,
    prompt: Prompt<'_>,
) -> Result<u8, ApplyError> {
    let (desired, revision) = super::desired_for(context, None).await?;
    super::warn_about_unknown_targets(config, &context.ledger.journal.state());
    // No history of this target in the journal but jobs of it live: a restore that may have
    // run before is recorded as done (before the plan is shown), never replayed.
    if !context.ledger.journal.state().knows_jobs_of(&context.name) {
        let (observed, _) = apply::observe(context).await?;
        super::adopt_without_history(
            &context.ledger.journal,
            &context.name,
            &context.policy.instance,
            &desired,
            &observed,
        )
        .await
        .map_err(|error| ApplyError::Failed {
            doing: "journaling the adoption of live jobs",
            source: Box::new(error),
        })?;
    }
    // Promotion: state another target's jobs hand over, copied into this account
    // before the plan is shown: the carry may journal a restore as done (`on_missing_savepoint:
    // stateless`), which changes the plan, and the plan executed must be the plan shown.
    let carried_savepoints =
        super::carry_for_target(config, &context.ledger.journal, context, &desired)
            .await
            .map_err(|error| ApplyError::Carry {
                source: Box::new(error),
            })?;
    let preview = super::run_pass(super::Pass {
        context,
        ledger: &context.ledger,
        desired: &desired,
        policy: &context.policy,
        options: ApplyOptions {
            dry_run: true,
            revision: Some(revision.clone()),
            ..context.options.clone()
        },
        carry: None,
        look_again: false,
    })
    .await?
    .report;
    write_out(out, &preview.plan.render_text())?;
    if preview.plan.is_empty() {
        return Ok(0);
    }
    if !command.auto_approve {
        ask_yes(
            out,
            prompt,
            "Do you want to apply this plan?",
            "approve the plan; pass --auto-approve to apply without asking",
        )?;
    }
    // From here on, the first Ctrl-C finishes the actions in flight and starts no other (an
    // upgrade cut between its stop and its start would leave the job down); a second aborts.
    let stop = super::Stop::new();
    let interrupt = super::finish_then_abort_on_interrupt(stop.clone()).map_err(|error| {
        ApplyError::Failed {
            doing: "listening for Ctrl-C",
            source: Box::new(error),
        }
    })?;
    let result = execute_approved(
        context,
        &desired,
        revision,
        carried_savepoints,
        &preview,
        &stop,
    )
    .await;
    interrupt.abort();
    let report = result?;
    write_out(out, &format!("\n{}", report.render_text()))?;
    Ok(if report.converged() { 0 } else { 1 })
}

/// The approved part of `apply`: execute the plan that was shown, through a ledger that starts
/// no new action once `stop` is triggered.
async fn execute_approved(
    context: &TargetContext,
    desired: &crate::model::DesiredJobs,
    revision: String,
    carried_savepoints: std::collections::BTreeMap<String, String>,
    preview: &ApplyReport,
    stop: &super::Stop,
) -> Result<ApplyReport, ApplyError> {
    let options = ApplyOptions {
        dry_run: false,
        revision: Some(revision),
        expected_plan_id: Some(preview.plan.id.clone()),
        carried_savepoints,
        ..context.options.clone()
    };
    let ledger = super::StoppingLedger::new(&context.ledger, stop);
    let result = super::run_pass(super::Pass {
        context,
        ledger: &ledger,
        desired,
        policy: &context.policy,
        options,
        // Carried before the plan was shown.
        carry: None,
        look_again: false,
    })
    .await
    .map(|run| run.report);
    if ledger.refused_any() {
        return Err(ApplyError::Runtime {
            problem: "interrupted: the actions in flight ran to their end and were journaled, \
                      the others were not started; run apply again to finish"
                .to_string(),
        });
    }
    result
}

/// Runs `export`.
pub fn export_command(command: &ExportCommand, out: &mut dyn Write) -> Result<u8, ApplyError> {
    let config = load(&command.config)?;
    runtime()?.block_on(async {
        let context = TargetContext::open(&config, &command.target).await?;
        let result = apply::export(&context, &command.out).await;
        context.shutdown().await;
        let report = result?;
        write_out(out, &report.render_text())?;
        Ok(0)
    })
}

/// Runs `rollback`; 0 when every job was rolled back, 1 otherwise.
pub fn rollback_command(
    command: &RollbackCommand,
    out: &mut dyn Write,
    prompt: Prompt<'_>,
) -> Result<u8, ApplyError> {
    let config = load(&command.config)?;
    runtime()?.block_on(async {
        let context = TargetContext::open(&config, &command.target).await?;
        let result = rollback_approved(&context, command, out, prompt).await;
        context.shutdown().await;
        result
    })
}

/// Shows what a rollback would re-import, asks like `apply` does, then rolls back.
async fn rollback_approved(
    context: &TargetContext,
    command: &RollbackCommand,
    out: &mut dyn Write,
    prompt: Prompt<'_>,
) -> Result<u8, ApplyError> {
    use apply::Ledger;
    if command.list {
        let sets = context.ledger.backup_sets();
        write_out(out, &apply::render_backup_sets(&command.target, &sets))?;
        return Ok(0);
    }
    let set = apply::backup_set_for(&context.ledger, command.to)?;
    let mut preview = apply::rollback_heading(
        &command.target,
        set.plan_id.as_deref(),
        set.first_seq,
        set.last_seq,
    );
    for (job, zips) in &set.jobs {
        preview.push_str(&format!("  {job} <- {}\n", zips.join(", ")));
    }
    preview.push_str(
        "Each running Flink job is stopped with a savepoint, the backup is imported over it, and it resumes from that savepoint; git is not changed.\n",
    );
    write_out(out, &crate::terminal::escape(&preview))?;
    if !command.auto_approve {
        ask_yes(
            out,
            prompt,
            "Do you want to roll back?",
            "approve the rollback; pass --auto-approve to roll back without asking",
        )?;
    }
    let report = apply::rollback(context, Some(set.first_seq)).await?;
    write_out(out, &format!("\n{}", report.render_text()))?;
    Ok(if report.jobs.iter().all(|job| job.error.is_none()) {
        0
    } else {
        1
    })
}

/// The state directory a read-only command reads: `--state-dir`, else the config's
/// `state_dir`.
pub fn state_dir_of(
    config: Option<PathBuf>,
    state_dir: Option<PathBuf>,
) -> Result<PathBuf, ApplyError> {
    match (state_dir, config) {
        (Some(state_dir), _) => Ok(state_dir),
        (None, Some(config)) => Ok(load(&config)?.state_dir),
        (None, None) => Err(ApplyError::Runtime {
            problem: "give --config (the daemon's config file) or --state-dir".to_string(),
        }),
    }
}
