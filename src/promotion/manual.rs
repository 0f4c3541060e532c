//! Manual promotions: `dli-gitops promote` and the body of `POST /api/v1/targets/{t}/promote`.
//!
//! One design, two doors. The journal is the only place a promotion lives, and only one
//! process may write it (the state directory lock). So `promote` first tries to open the
//! journal: when it gets the lock, no daemon runs, and it checks and journals the promotion
//! itself (the daemon follows it when it starts); when the lock is held, a daemon runs, and
//! `promote` asks it over its HTTP API, which runs the same check and append
//! ([`record_manual_promotion`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::gate::{
    ManualRefusal, ManualRequest, PolicyError, PromotionHistory, PromotionPolicy, check_manual,
};
use crate::config::{Config, ConfigError};
use crate::journal::{Journal, JournalError, JournalOptions, Promotion, RecordBody};

/// What `dli-gitops promote` was asked to do.
#[derive(Debug, Clone)]
pub struct PromoteOptions {
    pub config_path: PathBuf,
    pub target: String,
    /// Default: the revision the upstream last converged on.
    pub revision: Option<String>,
    /// Who promotes, recorded as `cli:<by>`; default `cli:$USER`.
    pub by: Option<String>,
}

/// A promotion that was journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteReport {
    pub target: String,
    pub from: String,
    pub revision: String,
    pub by: String,
    pub rule: String,
    /// The journal record's seq.
    pub seq: u64,
    /// `journal` (no daemon ran) or `daemon` (sent to its API).
    pub via: String,
}

impl std::fmt::Display for PromoteReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "promoted {} from `{}` to `{}` ({}; by {}; journal seq {}",
            self.revision, self.from, self.target, self.rule, self.by, self.seq
        )?;
        if self.via == VIA_JOURNAL {
            write!(
                f,
                "; no daemon runs, it follows this revision when it starts)"
            )
        } else {
            write!(f, "; the daemon follows it now)")
        }
    }
}

const VIA_JOURNAL: &str = "journal";
const VIA_DAEMON: &str = "daemon";

/// Everything that can stop a manual promotion.
#[derive(Debug, thiserror::Error)]
pub enum PromotionError {
    #[error("loading the config for a promotion")]
    Config(#[source] ConfigError),
    #[error("starting the async runtime for `promote`")]
    Runtime(#[source] std::io::Error),
    #[error("target `{target}` is not in the config (targets: {known}); check the name")]
    UnknownTarget { target: String, known: String },
    #[error(
        "target `{target}` has no `promote_from`; only targets of a pipeline are promoted (it follows its source's branch)"
    )]
    NotAPipeline { target: String },
    #[error("reading the promotion settings")]
    Policy(#[source] PolicyError),
    #[error("promotion to `{target}` refused: {refusal}")]
    Refused {
        target: String,
        refusal: ManualRefusal,
    },
    /// The revision is missing from the target's source, does not validate for its
    /// environment, or the source could not be read to tell; nothing was journaled.
    #[error("promotion to `{target}` refused: {reason}")]
    Unpromotable {
        target: String,
        reason: super::revision::RevisionCheckError,
    },
    #[error("{action} in state directory {state_dir}")]
    Journal {
        action: &'static str,
        state_dir: PathBuf,
        #[source]
        source: JournalError,
    },
    #[error(
        "a daemon holds the state directory, but no API token is configured (`api_token_env` or `api_token_file`) to ask it; configure one and restart the daemon"
    )]
    NoApiToken,
    #[error("reading the API token to ask the daemon")]
    ApiToken(#[source] ConfigError),
    #[error("asking the daemon at {url} to promote")]
    DaemonUnreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the daemon at {url} answered {status}: {message}")]
    DaemonRefused {
        url: String,
        status: u16,
        message: String,
    },
}

/// [`promote_command`] on a runtime of its own, for the CLI.
pub fn promote_blocking(options: &PromoteOptions) -> Result<PromoteReport, PromotionError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PromotionError::Runtime)?
        .block_on(promote_command(options))
}

/// Runs `dli-gitops promote`: journals the promotion, or asks the running daemon to.
pub async fn promote_command(options: &PromoteOptions) -> Result<PromoteReport, PromotionError> {
    let config = Config::load(&options.config_path).map_err(PromotionError::Config)?;
    // Check the target before touching anything, so a typo never reaches the daemon.
    pipeline_target(&config, &options.target)?;
    let request = ManualRequest {
        revision: options.revision.clone(),
        by: options
            .by
            .as_deref()
            .map(|name| format!("cli:{}", sanitize_name(name)))
            .unwrap_or_else(default_by),
    };
    match Journal::open(&config.state_dir, JournalOptions::default()) {
        Ok((journal, _report)) => {
            check_requested_revision(&journal, &config, &options.target, &request)?;
            record_manual_promotion(&journal, &config, &options.target, &request, Utc::now())
        }
        Err(JournalError::Locked { .. }) => ask_daemon(&config, &options.target, &request).await,
        Err(source) => Err(PromotionError::Journal {
            action: "opening the journal",
            state_dir: config.state_dir.clone(),
            source,
        }),
    }
}

/// Checks that the revision a manual promotion asks for (or, without one, the revision the
/// upstream converged on) is in `target`'s source and validates for its environment, before
/// anything is journaled. A malformed or missing revision is left to
/// [`record_manual_promotion`], which refuses it with its own message. Blocking (git).
pub fn check_requested_revision(
    journal: &Journal,
    config: &Config,
    target: &str,
    request: &ManualRequest,
) -> Result<(), PromotionError> {
    let (upstream, _) = pipeline_target(config, target)?;
    let revision = match &request.revision {
        Some(revision) => revision.trim().to_string(),
        None => match journal
            .state()
            .targets
            .get(&upstream)
            .and_then(|t| t.applied_revision.as_ref())
        {
            Some(applied) => applied.revision.clone(),
            None => return Ok(()),
        },
    };
    if !super::gate::looks_like_revision(&revision) {
        return Ok(());
    }
    let Some(target_config) = config.target(target) else {
        return Ok(());
    };
    super::revision::check_promotable(config, target_config, &revision).map_err(|reason| {
        tracing::warn!(target = target, by = %request.by, %reason, "Refused a manual promotion.");
        PromotionError::Unpromotable {
            target: target.to_string(),
            reason,
        }
    })
}

/// Checks a manual promotion into `target` against the journal and the target's policy, and
/// journals it. A refusal for a failed revision or a closed window is journaled too (`ok:
/// false`), so `journal show` tells who tried what; malformed requests are not.
pub fn record_manual_promotion(
    journal: &Journal,
    config: &Config,
    target: &str,
    request: &ManualRequest,
    now: DateTime<Utc>,
) -> Result<PromoteReport, PromotionError> {
    let (upstream, policy) = pipeline_target(config, target)?;
    let state = journal.state();
    let history = PromotionHistory::from_entries(
        state
            .targets
            .get(target)
            .map(|t| t.promotions.as_slice())
            .unwrap_or_default(),
    );
    let upstream_applied = state
        .targets
        .get(&upstream)
        .and_then(|t| t.applied_revision.as_ref())
        .map(|applied| applied.revision.clone());
    let checked = check_manual(
        &upstream,
        request,
        upstream_applied.as_deref(),
        &policy,
        &history,
        now,
    );
    let journal_error = |source| PromotionError::Journal {
        action: "journaling a promotion",
        state_dir: journal.state_dir().to_path_buf(),
        source,
    };
    match checked {
        Ok(accepted) => {
            let seq = journal
                .append(
                    target,
                    promotion_record(
                        &upstream,
                        target,
                        &accepted.revision,
                        &request.by,
                        &accepted.rule,
                        None,
                    ),
                )
                .map_err(journal_error)?;
            tracing::info!(
                target = target,
                from = %upstream,
                revision = %accepted.revision,
                by = %request.by,
                seq,
                "Recorded a manual promotion."
            );
            Ok(PromoteReport {
                target: target.to_string(),
                from: upstream,
                revision: accepted.revision,
                by: request.by.clone(),
                rule: accepted.rule,
                seq,
                via: VIA_JOURNAL.to_string(),
            })
        }
        Err(refusal) => {
            let revision = match &refusal {
                ManualRefusal::FailedUpstream { revision, .. } => Some(revision.clone()),
                ManualRefusal::Window { .. } => request.revision.clone().or(upstream_applied),
                ManualRefusal::NoRevision { .. } | ManualRefusal::BadRevision { .. } => None,
            };
            if let Some(revision) = revision {
                let mut record = promotion_record(
                    &upstream,
                    target,
                    &revision,
                    &request.by,
                    super::gate::RULE_MANUAL,
                    Some(refusal.to_string()),
                );
                if let RecordBody::Promotion(promotion) = &mut record {
                    promotion.ok = false;
                }
                journal.append(target, record).map_err(journal_error)?;
            }
            tracing::warn!(target = target, by = %request.by, reason = %refusal, "Refused a manual promotion.");
            Err(PromotionError::Refused {
                target: target.to_string(),
                refusal,
            })
        }
    }
}

/// The journal record of a promotion (`ok: true` unless the caller flips it).
pub fn promotion_record(
    from: &str,
    to: &str,
    revision: &str,
    by: &str,
    rule: &str,
    message: Option<String>,
) -> RecordBody {
    RecordBody::Promotion(Promotion {
        from: from.to_string(),
        to: to.to_string(),
        revision: revision.to_string(),
        by: by.to_string(),
        rule: rule.to_string(),
        ok: message.is_none(),
        message,
        extra: Default::default(),
    })
}

/// The target's upstream and parsed promotion policy, or why it is not a pipeline target.
pub fn pipeline_target(
    config: &Config,
    target: &str,
) -> Result<(String, PromotionPolicy), PromotionError> {
    let Some(target_config) = config.target(target) else {
        return Err(PromotionError::UnknownTarget {
            target: target.to_string(),
            known: config
                .targets
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let Some(upstream) = &target_config.promote_from else {
        return Err(PromotionError::NotAPipeline {
            target: target.to_string(),
        });
    };
    let policy = PromotionPolicy::from_config(target, &target_config.promotion())
        .map_err(PromotionError::Policy)?;
    Ok((upstream.clone(), policy))
}

/// The API body of `POST /api/v1/targets/{t}/promote`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    #[serde(default)]
    pub revision: Option<String>,
    /// Who asks; recorded as `api:<by>` (`api` when absent).
    #[serde(default)]
    pub by: Option<String>,
}

impl PromoteBody {
    /// The request the server checks. The caller's name is prefixed so a request over the API
    /// can never pose as the gate (`auto`).
    pub fn into_request(self) -> ManualRequest {
        let by = match self.by.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => format!("api:{}", sanitize_name(name)),
            _ => "api".to_string(),
        };
        ManualRequest {
            revision: self.revision,
            by,
        }
    }
}

async fn ask_daemon(
    config: &Config,
    target: &str,
    request: &ManualRequest,
) -> Result<PromoteReport, PromotionError> {
    let token_ref = config.api_token().ok_or(PromotionError::NoApiToken)?;
    let token = Config::resolve_secret(&token_ref).map_err(PromotionError::ApiToken)?;
    let url = format!(
        "http://{}/api/v1/targets/{target}/promote",
        reachable(config.listen)
    );
    let body = PromoteBody {
        revision: request.revision.clone(),
        by: Some(request.by.clone()),
    };
    let unreachable = |source| PromotionError::DaemonUnreachable {
        url: url.clone(),
        source,
    };
    let (status, text) = post_to_daemon(&url, token.trim(), &body)
        .await
        .map_err(unreachable)?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|value| {
                value
                    .get("error")
                    .or_else(|| value.get("message"))
                    .and_then(|m| m.as_str().map(str::to_string))
            })
            .unwrap_or_else(|| text.chars().take(500).collect());
        return Err(PromotionError::DaemonRefused {
            url,
            status: status.as_u16(),
            message,
        });
    }
    let mut report: PromoteReport =
        serde_json::from_str(&text).map_err(|error| PromotionError::DaemonRefused {
            url: url.clone(),
            status: status.as_u16(),
            message: format!("an answer that is not a promotion report ({error})"),
        })?;
    report.via = VIA_DAEMON.to_string();
    Ok(report)
}

/// POSTs `body` as JSON to the daemon's API at `url` with the bearer `token` (30 s timeout):
/// the answer's status and text. The CLI's `promote` and its control commands use it.
pub async fn post_to_daemon(
    url: &str,
    token: &str,
    body: &impl Serialize,
) -> Result<(reqwest::StatusCode, String), reqwest::Error> {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(body)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await?;
    let status = response.status();
    Ok((status, response.text().await?))
}

/// A wildcard listen address is reached on loopback.
pub fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

fn default_by() -> String {
    default_by_from(
        |name| std::env::var(name).ok(),
        current_user_name(),
        host_name(),
    )
}

/// Who runs the command: `$USER`, else `$LOGNAME` (cron, some containers), else `$USERNAME`,
/// else the name of the process's uid in `/etc/passwd`, else `cli@<hostname>`.
fn default_by_from(
    env: impl Fn(&str) -> Option<String>,
    uid_name: Option<String>,
    host: Option<String>,
) -> String {
    let named = ["USER", "LOGNAME", "USERNAME"]
        .into_iter()
        .filter_map(env)
        .chain(uid_name)
        .map(|name| sanitize_name(name.trim()))
        .find(|name| !name.is_empty());
    match named {
        Some(name) => format!("cli:{name}"),
        None => match host.map(|host| sanitize_name(host.trim())) {
            Some(host) if !host.is_empty() => format!("cli@{host}"),
            _ => "cli".to_string(),
        },
    }
}

/// The name of this process's real uid, from `/proc/self/status` and `/etc/passwd`.
fn current_user_name() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 2 && fields[2] == uid)
        .map(|fields| fields[0].to_string())
}

fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// Names go into the journal and the status page: keep them short and printable.
fn sanitize_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':'))
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_by_falls_back_from_user_to_logname_to_the_uid_to_the_host() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            }
        };
        let host = || Some("build-7".to_string());
        let uid = || Some("deploy".to_string());
        assert_eq!(
            default_by_from(env(&[("USER", "alice"), ("LOGNAME", "bob")]), uid(), host()),
            "cli:alice"
        );
        assert_eq!(
            default_by_from(env(&[("USER", " "), ("LOGNAME", "bob")]), uid(), host()),
            "cli:bob"
        );
        assert_eq!(default_by_from(env(&[]), uid(), host()), "cli:deploy");
        assert_eq!(default_by_from(env(&[]), None, host()), "cli@build-7");
        assert_eq!(default_by_from(env(&[]), None, None), "cli");
    }

    const R1: &str = "1111111111111111111111111111111111111111";

    fn config(state_dir: &std::path::Path, windows: &str) -> Config {
        crate::promotion::pipeline::tests::config_with_targets(
            state_dir,
            &format!(
                r#"  - name: prod
    source: jobs
    promote_from: dev
    endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}
    promotion: {{auto: false, after: 10m{windows}}}
"#
            ),
        )
    }

    fn request(revision: Option<&str>) -> ManualRequest {
        ManualRequest {
            revision: revision.map(str::to_string),
            by: "cli:alice".into(),
        }
    }

    #[test]
    fn a_manual_promotion_is_journaled_and_followed() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), "");
        let (journal, _) = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        // Nothing converged upstream and no revision given: refused, nothing journaled.
        let error = record_manual_promotion(&journal, &config, "prod", &request(None), Utc::now())
            .unwrap_err();
        assert!(matches!(
            error,
            PromotionError::Refused {
                refusal: ManualRefusal::NoRevision { .. },
                ..
            }
        ));
        assert_eq!(journal.state().last_seq, 0);
        crate::promotion::pipeline::tests::record_applied(&journal, "dev", R1);
        let report =
            record_manual_promotion(&journal, &config, "prod", &request(None), Utc::now()).unwrap();
        assert_eq!(report.revision, R1);
        assert_eq!(report.from, "dev");
        assert_eq!(report.seq, 2);
        let state = journal.state();
        let history = PromotionHistory::from_entries(&state.targets["prod"].promotions);
        assert_eq!(history.followed.as_deref(), Some(R1));
        assert_eq!(state.targets["prod"].promotions[0].by, "cli:alice");
    }

    #[test]
    fn refusals_in_a_window_are_journaled_as_failed_promotions() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(
            dir.path(),
            ", windows: [{kind: deny, schedule: '* * * * *', duration: 1m}]",
        );
        let (journal, _) = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        let error =
            record_manual_promotion(&journal, &config, "prod", &request(Some(R1)), Utc::now())
                .unwrap_err();
        assert!(error.to_string().starts_with(
            "promotion to `prod` refused: promotions are blocked: deny window `* * * * *`"
        ));
        let entries = &journal.state().targets["prod"].promotions;
        assert_eq!(entries.len(), 1);
        assert!(!entries[0].ok);
        assert_eq!(PromotionHistory::from_entries(entries).followed, None);
    }

    #[test]
    fn only_pipeline_targets_are_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), "");
        assert!(matches!(
            pipeline_target(&config, "dev"),
            Err(PromotionError::NotAPipeline { .. })
        ));
        let unknown = pipeline_target(&config, "stage").unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "target `stage` is not in the config (targets: dev, prod); check the name"
        );
    }

    #[test]
    fn api_callers_cannot_pose_as_the_gate() {
        let body = PromoteBody {
            revision: None,
            by: Some("auto\n<script>".into()),
        };
        assert_eq!(body.into_request().by, "api:autoscript");
        assert_eq!(PromoteBody::default().into_request().by, "api");
    }

    #[test]
    fn wildcard_listen_addresses_are_reached_on_loopback() {
        assert_eq!(
            reachable("0.0.0.0:9464".parse().unwrap()),
            "127.0.0.1:9464".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            reachable("[::]:1".parse().unwrap()),
            "[::1]:1".parse::<SocketAddr>().unwrap()
        );
    }
}
