//! The `dli-gitops` command line: argument parsing and dispatch only. Every command is a thin
//! wrapper over a library function; no logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "dli-gitops",
    version,
    about = "GitOps for Huawei Cloud DLI Flink and DataArts Factory jobs"
)]
struct Cli {
    /// Log format on stderr (default: text; for `run`, the config's `logging.format`).
    /// Filter with RUST_LOG (default: warnings only, `-v` info, `-vv` debug; for `run`, the
    /// config's `logging.level`).
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormat>,
    /// More log lines on stderr from one-shot commands: -v info, -vv debug (RUST_LOG wins).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl From<LogFormat> for dli_gitops::config::LogFormat {
    fn from(format: LogFormat) -> Self {
        match format {
            LogFormat::Text => dli_gitops::config::LogFormat::Text,
            LogFormat::Json => dli_gitops::config::LogFormat::Json,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the reconciliation daemon.
    Run(RunArgs),
    /// Check a job repository offline and report every problem at once.
    Validate(ValidateArgs),
    /// Print the JSON Schema of job files (for editors).
    Schema(SchemaArgs),
    /// Show what apply would change in a target.
    Plan(PlanArgs),
    /// Apply the plan for a target once.
    Apply(ApplyArgs),
    /// Show sync and health per target and job, from a running daemon.
    Status(StatusArgs),
    /// Adopt the jobs that run in a target into a job repository.
    Export(ExportArgs),
    /// Promote a revision to a target of a pipeline.
    Promote(PromoteArgs),
    /// Ask the running daemon to sync a target now (`--override-window` passes a closed
    /// change window once, journaled with who and why).
    Sync(SyncArgs),
    /// Suspend a target in the running daemon (observe and report only), until resumed or
    /// `--until`.
    Suspend(SuspendArgs),
    /// Lift a run-time suspend of a target in the running daemon.
    Resume(ResumeArgs),
    /// Re-import the backups taken before an apply.
    Rollback(RollbackArgs),
    /// Delete what retention lets go of: old savepoint copies and backups (journaled).
    Gc(GcArgs),
    /// Check that a target's account is ready: credentials, project, endpoints, buckets,
    /// queues, workspace, permissions (read-only unless --probe).
    Doctor(DoctorArgs),
    /// Inspect the state journal.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// The savepoint catalog: the savepoint copies dli-gitops keeps.
    Savepoints {
        #[command(subcommand)]
        command: SavepointsCommand,
    },
    /// Run the local DLI/DLF/OBS service emulator.
    Emulator(EmulatorArgs),
}

#[derive(Args)]
struct RunArgs {
    #[arg(long, default_value = "config.example.yaml")]
    config: PathBuf,
}

#[derive(Args)]
struct ValidateArgs {
    /// The job repository directory.
    #[arg(long)]
    repo: PathBuf,
    /// Validate this environment only (default: every environment under environments/).
    #[arg(long)]
    env: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    format: OutputFormat,
}

#[derive(Args)]
struct SchemaArgs {
    /// Print the schema of environment files (environments/<env>.yaml) instead.
    #[arg(long)]
    environment: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Args)]
struct PlanArgs {
    /// The daemon's config file.
    #[arg(long)]
    config: PathBuf,
    /// The target (environment) to plan for.
    #[arg(long)]
    target: String,
    /// Print the plan as JSON, with the exact configuration each action writes.
    #[arg(long)]
    json: bool,
    /// Exit 0 for no changes, 1 for an error, 2 for changes.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Only the jobs whose names match this glob (`*`, `?`); repeatable.
    #[arg(long = "select", value_name = "JOB")]
    select: Vec<String>,
}

#[derive(Args)]
struct ApplyArgs {
    /// The daemon's config file.
    #[arg(long)]
    config: PathBuf,
    /// The target (environment) to apply to.
    #[arg(long)]
    target: String,
    /// Apply without asking (required when stdin is not a terminal).
    #[arg(long)]
    auto_approve: bool,
    /// Only the jobs whose names match this glob (`*`, `?`); repeatable.
    #[arg(long = "select", value_name = "JOB")]
    select: Vec<String>,
}

#[derive(Args)]
struct StatusArgs {
    /// The daemon's address (its `listen:`).
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    server: String,
    /// Only this target.
    #[arg(long)]
    target: Option<String>,
    /// Print the status documents as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ExportArgs {
    /// The daemon's config file.
    #[arg(long)]
    config: PathBuf,
    /// The target whose live jobs are adopted.
    #[arg(long)]
    target: String,
    /// A new or empty directory for the job repository.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct SyncArgs {
    /// The daemon's config file (for its address and API token).
    #[arg(long)]
    config: PathBuf,
    target: String,
    /// Break-glass: pass a closed change window once. Needs --reason.
    #[arg(long)]
    override_window: bool,
    /// Why (journaled with who asked).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Args)]
struct SuspendArgs {
    /// The daemon's config file (for its address and API token).
    #[arg(long)]
    config: PathBuf,
    target: String,
    /// RFC 3339 time the suspend ends on its own (default: until resumed).
    #[arg(long)]
    until: Option<String>,
    /// Why (journaled).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Args)]
struct ResumeArgs {
    /// The daemon's config file (for its address and API token).
    #[arg(long)]
    config: PathBuf,
    target: String,
    /// Why (journaled).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Args)]
struct PromoteArgs {
    #[arg(long)]
    config: PathBuf,
    /// The target to promote into (it must have `promote_from`).
    target: String,
    /// Full commit id (or `sha256:` digest) to promote; default: the upstream's converged revision.
    #[arg(long)]
    revision: Option<String>,
    /// Who promotes, recorded as `cli:<by>`; default `cli:$USER`.
    #[arg(long)]
    by: Option<String>,
    /// Print the promotion as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RollbackArgs {
    /// The daemon's config file.
    #[arg(long)]
    config: PathBuf,
    /// The target to roll back.
    #[arg(long)]
    target: String,
    /// The apply whose backups to re-import, by a journal seq of its backups (default: the
    /// latest); a seq no apply's backups span is refused with the list of those there are.
    #[arg(long)]
    to: Option<u64>,
    /// Roll back without asking (required when stdin is not a terminal).
    #[arg(long)]
    auto_approve: bool,
    /// List the applies that can be rolled back to, and change nothing.
    #[arg(long)]
    list: bool,
}

#[derive(Args)]
struct GcArgs {
    /// The daemon's config file.
    #[arg(long)]
    config: PathBuf,
    /// Only this target (default: every target).
    #[arg(long)]
    target: Option<String>,
    /// Say what would be deleted, and delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DoctorArgs {
    /// The daemon's config file.
    #[arg(long)]
    config: PathBuf,
    /// The target to check (default: the only one).
    #[arg(long)]
    target: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also exercise every endpoint on a scratch job of its own (dli-gitops-doctor-*), then
    /// remove it. Writes to the account; never the default.
    #[arg(long)]
    probe: bool,
    /// The queue the probe's scratch job runs on (default: the first queue the jobs use).
    #[arg(long, requires = "probe")]
    queue: Option<String>,
    /// Write every request and answer of the probe to this new directory, redacted.
    #[arg(long, requires = "probe")]
    record: Option<PathBuf>,
}

#[derive(Subcommand)]
enum JournalCommand {
    /// A readable history of intents and outcomes (read-only; works beside a running daemon).
    Show {
        #[arg(long)]
        state_dir: PathBuf,
        /// Only records of this target.
        #[arg(long)]
        target: Option<String>,
        /// Only records with this seq or later.
        #[arg(long)]
        since: Option<u64>,
        /// One JSON record per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check every checksum and sequence number; exit 0 when sound, 1 when not.
    Verify {
        #[arg(long)]
        state_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum SavepointsCommand {
    /// List the catalog, oldest first (read-only; works beside a running daemon).
    List {
        /// The daemon's config file (its `state_dir`); or give --state-dir.
        #[arg(long, conflicts_with = "state_dir")]
        config: Option<PathBuf>,
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Only savepoints of this target.
        #[arg(long)]
        target: Option<String>,
        /// Only savepoints of this job.
        #[arg(long)]
        job: Option<String>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct EmulatorArgs {
    /// Address for the DLI, DLF and IAM APIs (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8480")]
    listen: String,
    /// Address for the S3-compatible OBS endpoint.
    #[arg(long, default_value = "127.0.0.1:8481")]
    s3_listen: String,
    /// Directory for persisted state and OBS objects.
    #[arg(long, default_value = "emulator-data")]
    data: PathBuf,
    /// YAML file with accounts, delays and faults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Fraction of cloud API calls answered with HTTP 500 (0.0-1.0).
    #[arg(long)]
    fault_error_rate: Option<f64>,
    /// Fraction of cloud API calls whose connection is dropped (0.0-1.0).
    #[arg(long)]
    fault_drop_rate: Option<f64>,
    /// Fraction of cloud API calls throttled with HTTP 429 and Retry-After (0.0-1.0).
    #[arg(long)]
    fault_throttle_rate: Option<f64>,
    /// Milliseconds added to every cloud API call.
    #[arg(long)]
    fault_latency_ms: Option<u64>,
    /// Seed of the fault RNG (same seed, same faults).
    #[arg(long)]
    fault_seed: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format.map(Into::into);
    // `run` sets logging up itself, once it has read the config's `logging:` block.
    if !matches!(cli.command, Command::Run(_)) {
        dli_gitops::daemon::logging::install_for_cli(log_format, cli.verbose);
    }
    match dispatch(cli.command, log_format) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
/// `sync`, `suspend`, `resume`: one request to the running daemon; prints its answer.
fn control(
    config: &std::path::Path,
    target: &str,
    request: dli_gitops::server::controls::ControlRequest,
) -> anyhow::Result<ExitCode> {
    let answer = dli_gitops::server::controls::control_blocking(config, target, &request)?;
    write_stdout(&format!("{}\n", serde_json::to_string_pretty(&answer)?))?;
    Ok(ExitCode::SUCCESS)
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let snapshot = dli_gitops::desired::read_directory(&args.repo)?;
    let report = dli_gitops::desired::validate(&snapshot, args.env.as_deref());
    let output = match args.format {
        OutputFormat::Text => report.render_text(),
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&report.to_json())?),
    };
    write_stdout(&output)?;
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn dispatch(
    command: Command,
    log_format: Option<dli_gitops::config::LogFormat>,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => {
            dli_gitops::daemon::run_blocking(&dli_gitops::daemon::RunOptions {
                config: args.config,
                log_format,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(args) => validate(args),
        Command::Schema(args) => schema(args),
        Command::Plan(args) => plan(args),
        Command::Apply(args) => apply(args),
        Command::Status(args) => status(args),
        Command::Export(args) => export(args),
        Command::Sync(args) => control(
            &args.config,
            &args.target,
            dli_gitops::server::controls::ControlRequest::Sync {
                override_window: args.override_window,
                reason: args.reason,
            },
        ),
        Command::Suspend(args) => control(
            &args.config,
            &args.target,
            dli_gitops::server::controls::ControlRequest::Suspend {
                until: args.until,
                reason: args.reason,
            },
        ),
        Command::Resume(args) => control(
            &args.config,
            &args.target,
            dli_gitops::server::controls::ControlRequest::Resume {
                reason: args.reason,
            },
        ),
        Command::Promote(args) => promote(args),
        Command::Rollback(args) => rollback(args),
        Command::Gc(args) => gc(args),
        Command::Doctor(args) => doctor(args),
        Command::Journal { command } => journal(command),
        Command::Savepoints { command } => savepoints(command),
        Command::Emulator(args) => emulator(args),
    }
}

/// Runs a command that writes to stdout and may ask for confirmation on stdin; its code is the
/// exit code.
fn with_prompt<E>(
    run: impl FnOnce(&mut dyn std::io::Write, dli_gitops::pass::Prompt<'_>) -> Result<u8, E>,
) -> anyhow::Result<ExitCode>
where
    E: std::error::Error + Send + Sync + 'static,
{
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    let prompt = dli_gitops::pass::Prompt {
        is_terminal: stdin.is_terminal(),
        input: &mut stdin.lock(),
    };
    let code = run(&mut std::io::stdout().lock(), prompt)?;
    Ok(ExitCode::from(code))
}

/// `schema`: the JSON schema of a job file, or of an environment file.
fn schema(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let schema = if args.environment {
        dli_gitops::desired::environment_schema()
    } else {
        dli_gitops::desired::schema()
    };
    write_stdout(&format!("{}\n", serde_json::to_string_pretty(&schema)?))?;
    Ok(ExitCode::SUCCESS)
}

/// `plan`: what a pass would do.
fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let command = dli_gitops::pass::PlanCommand {
        config: args.config,
        target: args.target,
        json: args.json,
        detailed_exitcode: args.detailed_exitcode,
        select: args.select,
    };
    let code = dli_gitops::pass::plan_command(&command, &mut std::io::stdout().lock())?;
    Ok(ExitCode::from(code))
}

/// `apply`: one pass, after confirmation.
fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let command = dli_gitops::pass::ApplyCommand {
        config: args.config,
        target: args.target,
        auto_approve: args.auto_approve,
        select: args.select,
    };
    with_prompt(|out, prompt| dli_gitops::pass::apply_command(&command, out, prompt))
}

/// `status`: a running daemon's status.
fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let options = dli_gitops::server::StatusOptions {
        server: args.server,
        target: args.target,
        json: args.json,
        timeout: std::time::Duration::from_secs(10),
    };
    dli_gitops::server::status_blocking(&options, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

/// `export`: the live jobs as job files.
fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let command = dli_gitops::pass::ExportCommand {
        config: args.config,
        target: args.target,
        out: args.out,
    };
    let code = dli_gitops::pass::export_command(&command, &mut std::io::stdout().lock())?;
    Ok(ExitCode::from(code))
}

/// `promote`: promotes a revision to a target.
fn promote(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let report = dli_gitops::promotion::promote_blocking(&dli_gitops::promotion::PromoteOptions {
        config_path: args.config,
        target: args.target,
        revision: args.revision,
        by: args.by,
    })?;
    if args.json {
        write_stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        write_stdout(&format!("{report}\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `rollback`: back to an earlier revision, after confirmation.
fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let command = dli_gitops::pass::RollbackCommand {
        config: args.config,
        target: args.target,
        to: args.to,
        auto_approve: args.auto_approve,
        list: args.list,
    };
    with_prompt(|out, prompt| dli_gitops::pass::rollback_command(&command, out, prompt))
}

/// `gc`: garbage collection of savepoints and staged objects.
fn gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let command = dli_gitops::gc::GcCommand {
        config: args.config,
        target: args.target,
        dry_run: args.dry_run,
        json: args.json,
    };
    let code = dli_gitops::gc::gc_command(&command, &mut std::io::stdout().lock())?;
    Ok(ExitCode::from(code))
}

/// `doctor`: checks (and with `--probe`, exercises) a target's account.
fn doctor(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let command = dli_gitops::doctor::DoctorCommand {
        config: args.config,
        target: args.target,
        json: args.json,
        probe: args.probe,
        queue: args.queue,
        record: args.record,
    };
    let code = dli_gitops::doctor::doctor_command(&command, &mut std::io::stdout().lock())?;
    Ok(ExitCode::from(code))
}

/// `journal show` and `journal verify`.
fn journal(command: JournalCommand) -> anyhow::Result<ExitCode> {
    match command {
        JournalCommand::Show {
            state_dir,
            target,
            since,
            json,
        } => {
            let options = dli_gitops::journal::ShowOptions {
                state_dir,
                target,
                since,
                json,
            };
            dli_gitops::journal::show(&options, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        JournalCommand::Verify { state_dir } => {
            let sound =
                dli_gitops::journal::verify_command(&state_dir, &mut std::io::stdout().lock())?;
            Ok(if sound {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// `savepoints list`.
fn savepoints(command: SavepointsCommand) -> anyhow::Result<ExitCode> {
    let SavepointsCommand::List {
        config,
        state_dir,
        target,
        job,
        json,
    } = command;
    let state_dir = dli_gitops::pass::state_dir_of(config, state_dir)?;
    let options = dli_gitops::savepoints::command::ListOptions {
        state_dir,
        target,
        job,
        json,
    };
    dli_gitops::savepoints::command::list_command(&options, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

/// `emulator`: runs the cloud emulator in the foreground.
fn emulator(args: EmulatorArgs) -> anyhow::Result<ExitCode> {
    dli_gitops::emulator::run_from_cli(&dli_gitops::emulator::EmulatorCliOptions {
        listen: args.listen,
        s3_listen: args.s3_listen,
        data_dir: args.data,
        config_file: args.config,
        fault_error_rate: args.fault_error_rate,
        fault_drop_rate: args.fault_drop_rate,
        fault_throttle_rate: args.fault_throttle_rate,
        fault_latency_ms: args.fault_latency_ms,
        fault_seed: args.fault_seed,
    })?;
    Ok(ExitCode::SUCCESS)
}
