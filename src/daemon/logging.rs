//! Logging set-up for the CLI and the daemon: which format and which filter win. The
//! precedence is: an explicit `--log-format` flag over the config's `logging.format`; a
//! non-empty, valid `RUST_LOG` over the config's `logging.level`; built-in defaults (text,
//! `info`) last. `run` calls this after reading its config; every other command calls it with
//! no config.

use crate::config::log_filter::parse_filter;
use crate::config::{LogFormat, LoggingConfig};

/// The filter used when neither `RUST_LOG` nor a config says otherwise.
pub const DEFAULT_FILTER: &str = "info";

/// Where a setting came from, for the start-up log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingSource {
    Flag,
    Environment,
    Config,
    Default,
}

impl SettingSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SettingSource::Flag => "--log-format",
            SettingSource::Environment => "RUST_LOG",
            SettingSource::Config => "config",
            SettingSource::Default => "default",
        }
    }
}

/// The logging the process uses, decided by [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub format_from: SettingSource,
    /// An `EnvFilter` directive string that parses.
    pub filter: String,
    pub filter_from: SettingSource,
    /// Problems to log once the subscriber is installed (they cannot be logged before).
    pub warnings: Vec<String>,
}

/// Decides format and filter. `rust_log` is the `RUST_LOG` variable's value, if set; an empty
/// value counts as unset (as `EnvFilter` treats it), and an invalid one is reported and
/// ignored rather than silently replaced.
pub fn decide(
    cli_format: Option<LogFormat>,
    config: Option<&LoggingConfig>,
    rust_log: Option<&str>,
) -> LogSettings {
    let (format, format_from) = match (cli_format, config) {
        (Some(format), _) => (format, SettingSource::Flag),
        (None, Some(config)) => (config.format, SettingSource::Config),
        (None, None) => (LogFormat::Text, SettingSource::Default),
    };
    let mut warnings = Vec::new();
    let fallback = || match config {
        Some(config) => (config.level.clone(), SettingSource::Config),
        None => (DEFAULT_FILTER.to_string(), SettingSource::Default),
    };
    let (mut filter, mut filter_from) = match rust_log.map(str::trim) {
        Some(value) if !value.is_empty() => match parse_filter(value) {
            Ok(()) => (value.to_string(), SettingSource::Environment),
            Err(problem) => {
                let (filter, from) = fallback();
                warnings.push(format!(
                    "RUST_LOG={value:?} is not a valid log filter ({problem}); using {filter:?} from the {} instead",
                    from.as_str()
                ));
                (filter, from)
            }
        },
        _ => fallback(),
    };
    // `Config::load` validates `logging.level`; this guards configs built in code.
    if let Err(problem) = parse_filter(&filter) {
        warnings.push(format!(
            "the log filter {filter:?} is not valid ({problem}); using {DEFAULT_FILTER:?}"
        ));
        filter = DEFAULT_FILTER.to_string();
        filter_from = SettingSource::Default;
    }
    LogSettings {
        format,
        format_from,
        filter,
        filter_from,
        warnings,
    }
}

/// Installs the process-wide subscriber on stderr (colour only on a terminal) and logs the
/// warnings `decide` collected. A second call (tests) leaves the first subscriber in place.
pub fn install(settings: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&settings.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if installed.is_err() {
        return;
    }
    for warning in &settings.warnings {
        tracing::warn!(problem = %warning, "Log settings adjusted.");
    }
}

/// What every command but `run` does: the flag, `RUST_LOG`, else [`one_shot_filter`], so no
/// info line interleaves with a command's output or its prompt.
pub fn install_for_cli(cli_format: Option<LogFormat>, verbose: u8) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let mut settings = decide(cli_format, None, rust_log.as_deref());
    if settings.filter_from == SettingSource::Default {
        settings.filter = one_shot_filter(verbose).to_string();
    }
    install(&settings);
}

/// A one-shot command's default filter: warnings, `-v` info, `-vv` and more debug.
pub fn one_shot_filter(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_commands_log_warnings_unless_asked_for_more() {
        assert_eq!(one_shot_filter(0), "warn");
        assert_eq!(one_shot_filter(1), "info");
        assert_eq!(one_shot_filter(3), "debug");
    }

    fn config(format: LogFormat, level: &str) -> LoggingConfig {
        LoggingConfig {
            format,
            level: level.to_string(),
        }
    }

    #[test]
    fn the_config_applies_when_nothing_else_is_given() {
        let settings = decide(None, Some(&config(LogFormat::Json, "warn")), None);
        assert_eq!(settings.format, LogFormat::Json);
        assert_eq!(settings.format_from, SettingSource::Config);
        assert_eq!(settings.filter, "warn");
        assert_eq!(settings.filter_from, SettingSource::Config);
        assert!(settings.warnings.is_empty());
    }

    #[test]
    fn an_explicit_flag_and_rust_log_win_over_the_config() {
        let settings = decide(
            Some(LogFormat::Text),
            Some(&config(LogFormat::Json, "warn")),
            Some("info,dli_gitops=debug"),
        );
        assert_eq!(settings.format, LogFormat::Text);
        assert_eq!(settings.format_from, SettingSource::Flag);
        assert_eq!(settings.filter, "info,dli_gitops=debug");
        assert_eq!(settings.filter_from, SettingSource::Environment);
    }

    #[test]
    fn an_empty_rust_log_counts_as_unset_and_an_invalid_one_is_reported() {
        let logging = config(LogFormat::Text, "debug");
        let settings = decide(None, Some(&logging), Some("  "));
        assert_eq!(settings.filter, "debug");
        assert!(settings.warnings.is_empty());

        let settings = decide(None, Some(&logging), Some("dli_gitops=loud"));
        assert_eq!(settings.filter, "debug");
        assert_eq!(settings.filter_from, SettingSource::Config);
        assert_eq!(settings.warnings.len(), 1);
        assert!(settings.warnings[0].contains("RUST_LOG"), "{settings:?}");
    }

    #[test]
    fn without_a_config_the_defaults_apply() {
        let settings = decide(None, None, None);
        assert_eq!(settings.format, LogFormat::Text);
        assert_eq!(settings.filter, DEFAULT_FILTER);
        assert_eq!(settings.filter_from, SettingSource::Default);
        let settings = decide(Some(LogFormat::Json), None, Some("warn"));
        assert_eq!(settings.format, LogFormat::Json);
        assert_eq!(settings.filter, "warn");
    }

    #[test]
    fn a_config_with_an_invalid_level_is_refused_at_load() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("  level: info "),
            "the example's logging block moved"
        );
        let broken = text.replacen("  level: info ", "  level: \"dli_gitops=loud\" ", 1);
        let mut config = crate::config::Config::from_yaml_str(&broken, &path).unwrap();
        let problems = config
            .validate()
            .expect_err("an invalid filter is a config problem");
        assert!(
            problems
                .iter()
                .any(|problem| problem.yaml_path == "logging.level"
                    && problem.message.contains("dli_gitops=loud")),
            "{problems:?}"
        );
        config.logging.level = "info,dli_gitops=debug".into();
        config.validate().expect("a valid filter passes");
    }

    #[test]
    fn an_invalid_configured_filter_falls_back_with_a_warning() {
        let settings = decide(None, Some(&config(LogFormat::Text, "x=nope")), None);
        assert_eq!(settings.filter, DEFAULT_FILTER);
        assert_eq!(settings.warnings.len(), 1);
    }
}
