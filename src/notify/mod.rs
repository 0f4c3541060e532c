//! Notifications: sinks from the config's `notifications:` and the events each wants, sent once
//! per transition, across restarts.
//!
//! The daemon reports what it saw after every pass ([`PassSignals`]); the notifier folds it
//! into per-target states (sync failing or not, health Degraded or not, automatic sync off since
//! when) and a change of state is an event. Before anything is sent, the change is journaled
//! (`kind: notification`, with the new state, the event, its id and the sinks that want it:
//! what is due); each delivery is journaled after it ends (`kind: notification_sent`, ok or
//! dropped). At start the latest state per target and family is read back, so a failure that
//! lasts across a restart is not announced again, and every due delivery without its
//! `notification_sent` record is sent then, so none is dropped. A crash between a delivery
//! and its record sends that one again: receivers can drop repeats by the message's `id`.
//!
//! Delivery runs on its own tasks: a failure is retried with backoff (1 s doubling, 5
//! attempts), then dropped with a log. A pass never waits for a sink. Messages are built from
//! status text the daemon already shows (no secret is ever in them); the webhook's HMAC key,
//! the Slack url and the SMN credentials stay out of every message, log and record.
//!
//! # Design and invariants
//!
//! | file | what it holds |
//! |---|---|
//! | `notify/mod.rs` | `Notifier`: `after_pass(target, PassSignals, now)` (sync, health, crash resolution, automatic sync / self-heal off), `journal_events` (drift marks and `auto_rollback` outcomes in the journal's state), `emit` (one-off events: promotions, and any other part of the daemon), `promotion_event`, recovery at start, delivery tasks |
//! | `notify/sinks.rs` | `ResolvedSink` (secrets read once at start), webhook (`X-DLI-GitOps-Signature: sha256=<hex HMAC-SHA256 of the body>`, `X-DLI-GitOps-Event`, `X-DLI-GitOps-Delivery: <id>`), Slack (`{"text"}`), SMN (`PublishMessage` through `cloud::ServiceClient`, signed like every other call) |
//!
//! Notifications, once per transition across restarts. Families per target: `sync` (`failed` on a
//! pass with a failed action or an error, `ok` on `synced`/`applied`), `health` (`degraded` /
//! `ok` for Healthy), `drift:<job>` (the journal's drift mark present / cleared), `auto_sync` and
//! `self_heal` (`on` / `off` since T / `notified`, the event once the off time passes the
//! smallest `policy_off_after` of the sinks that want it; suspended counts as off), and
//! `once:<id>` for one-off events (promotion seq, automatic rollback outcome seq, a digest of the
//! resolved intents for `started_after_crash`). The initial state is `ok`/`on`, so nothing is
//! announced on a healthy start. Every state change is journaled (`kind: notification`: `family`,
//! `state`, `since`, and when sinks want its event `id`, `event`, `summary`, `details`, `sinks`)
//! before any delivery; each delivery's end is journaled (`kind: notification_sent`: `id`, `sink`,
//! `ok`, `error`). At start the latest state per (target, family) is read back (a failure that
//! spans a restart is not announced again) and every (`id`, sink) due without a `notification_sent`
//! is sent (none dropped). Receivers dedupe by `id`: a crash between an answered delivery and its
//! record repeats that one. Delivery runs on spawned tasks: 5 attempts, 1 s doubling, 10 s per
//! request; then dropped with an error log and `ok: false`. A pass only waits for the journal
//! append. Messages carry status text the daemon already shows; secrets (HMAC key, Slack url, AK/SK)
//! are read once into `ResolvedSink` and appear in no message, log, error or record (urls in
//! errors are `scheme://host:port/…`). The `control`, `notification` and `notification_sent`
//! records are kinds the journal's reducer does not fold (read with `Journal::records`).
//!
//! SMN: what we send and what the emulator checks, with the SDK model it follows, is in
//! docs/service-fidelity.md ("SMN"). Tests: see the `status::control` module docs.

mod sinks;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::config::{Config, NotificationSink};
use crate::journal::{Journal, RecordBody, RecordFilter};

pub use sinks::{ResolvedSink, SinkError, sign_body};

/// Journal kind of a state change (what is due).
pub const DUE_KIND: &str = "notification";
/// Journal kind of one delivery's end.
pub const SENT_KIND: &str = "notification_sent";
/// Header of the webhook's signature: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-DLI-GitOps-Signature";

/// How deliveries are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
    /// Per request.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What a pass showed, for the transitions.
#[derive(Debug, Clone, Default)]
pub struct PassSignals {
    /// `Some(message)` when the pass failed, `None` when it succeeded; not set (`sync_known`
    /// false) when it neither failed nor converged.
    pub sync_failed: Option<String>,
    pub sync_known: bool,
    /// `Some(message)` when the target is Degraded, `None` when Healthy; ignored unless
    /// `health_known`.
    pub degraded: Option<String>,
    pub health_known: bool,
    /// Actions an earlier run left open that this pass resolved (a crash or a cut shutdown).
    pub resolved: Vec<String>,
    /// Automatic sync is off (policy or suspend).
    pub auto_sync_off: bool,
    /// Self-heal is off.
    pub self_heal_off: bool,
    /// The revision the target is on, for the message.
    pub revision: Option<String>,
}

/// Why the notifier could not be built.
#[derive(Debug, thiserror::Error)]
#[error("notification sink `{sink}`: {problem}")]
pub struct NotifyError {
    pub sink: String,
    pub problem: String,
}

/// One message as it is sent (the webhook's body).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub event: String,
    pub target: String,
    pub time: DateTime<Utc>,
    pub summary: String,
    pub details: Value,
}

impl Message {
    pub fn to_json(&self, instance: &str) -> Value {
        json!({
            "id": self.id,
            "event": self.event,
            "target": self.target,
            "instance": instance,
            "time": self.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            "summary": self.summary,
            "details": self.details,
        })
    }
}

#[derive(Debug, Clone, Default)]
struct FamilyState {
    state: String,
    since: Option<DateTime<Utc>>,
}

/// The notifier: sinks, the journal, the states.
pub struct Notifier {
    sinks: Vec<Arc<ResolvedSink>>,
    journal: Option<Journal>,
    instance: String,
    retry: RetryPolicy,
    http: reqwest::Client,
    /// (target, family) → state.
    states: Mutex<BTreeMap<(String, String), FamilyState>>,
    /// Deliveries due from before this start, sent by [`Notifier::resume_pending`].
    pending: Mutex<Vec<(Message, String)>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field(
                "sinks",
                &self
                    .sinks
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// The notifier of `config`, or `None` when it has no sinks. Secrets are read here; a sink
    /// whose secret cannot be read is an error (the daemon does not start without it).
    pub fn from_config(
        config: &Config,
        journal: Option<Journal>,
        retry: RetryPolicy,
    ) -> Result<Option<Arc<Notifier>>, NotifyError> {
        if config.notifications.is_empty() {
            return Ok(None);
        }
        let sinks = config
            .notifications
            .iter()
            .map(|sink| ResolvedSink::resolve(sink, config).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Arc::new(Notifier::new(
            sinks,
            journal,
            &config.instance,
            retry,
        ))))
    }

    /// A notifier over resolved sinks; reads the states and due deliveries from the journal.
    pub fn new(
        sinks: Vec<Arc<ResolvedSink>>,
        journal: Option<Journal>,
        instance: &str,
        retry: RetryPolicy,
    ) -> Notifier {
        let notifier = Notifier {
            sinks,
            journal,
            instance: instance.to_string(),
            retry,
            http: reqwest::Client::builder()
                .timeout(retry.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            states: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(Vec::new()),
        };
        notifier.recover();
        notifier
    }

    fn recover(&self) {
        let Some(journal) = &self.journal else {
            return;
        };
        let records = match journal.records(&RecordFilter {
            kinds: vec![DUE_KIND.to_string(), SENT_KIND.to_string()],
            ..RecordFilter::default()
        }) {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "Reading the journaled notifications failed; states start fresh and no due delivery is resent.");
                return;
            }
        };
        let mut states = self.lock_states();
        let mut due: BTreeMap<(String, String), Message> = BTreeMap::new();
        let mut done: BTreeSet<(String, String)> = BTreeSet::new();
        for record in records {
            let RecordBody::Unknown(fields) = &record.body else {
                continue;
            };
            let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_string);
            match fields.get("kind").and_then(Value::as_str) {
                Some(DUE_KIND) => {
                    if let (Some(family), Some(state)) = (text("family"), text("state")) {
                        states.insert(
                            (record.target.clone(), family),
                            FamilyState {
                                state,
                                since: text("since").and_then(|s| {
                                    DateTime::parse_from_rfc3339(&s)
                                        .ok()
                                        .map(|t| t.with_timezone(&Utc))
                                }),
                            },
                        );
                    }
                    if let (Some(id), Some(event)) = (text("id"), text("event")) {
                        let sinks: Vec<String> = fields
                            .get("sinks")
                            .and_then(Value::as_array)
                            .map(|list| {
                                list.iter()
                                    .filter_map(|s| s.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default();
                        let message = Message {
                            id: id.clone(),
                            event,
                            target: record.target.clone(),
                            time: record.time,
                            summary: text("summary").unwrap_or_default(),
                            details: fields.get("details").cloned().unwrap_or(Value::Null),
                        };
                        for sink in sinks {
                            due.insert((id.clone(), sink), message.clone());
                        }
                    }
                }
                Some(SENT_KIND) => {
                    if let (Some(id), Some(sink)) = (text("id"), text("sink")) {
                        done.insert((id, sink));
                    }
                }
                _ => {}
            }
        }
        drop(states);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, message) in due {
            if !done.contains(&key) {
                pending.push((message, key.1));
            }
        }
    }

    fn lock_states(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), FamilyState>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the deliveries a previous run journaled as due and did not finish.
    pub fn resume_pending(self: &Arc<Self>) {
        let pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        for (message, sink_name) in pending {
            if let Some(sink) = self.sinks.iter().find(|sink| sink.name == sink_name) {
                tracing::info!(id = %message.id, sink = %sink_name, event = %message.event, "Sending a notification a previous run left due.");
                self.spawn_delivery(message, sink.clone());
            } else {
                tracing::warn!(id = %message.id, sink = %sink_name, "A notification was due to a sink the config no longer has; dropped.");
            }
        }
    }

    /// The sinks that want `event` from `target`.
    fn sinks_for(&self, event: &str, target: &str) -> Vec<Arc<ResolvedSink>> {
        self.sinks
            .iter()
            .filter(|sink| sink.wants(event, target))
            .cloned()
            .collect()
    }

    /// Emits `event` for `target` now (no state): automatic rollback, promotions, and other
    /// one-off events. `id` makes it unique (a journal seq, a revision); an id already journaled
    /// is not sent again.
    pub async fn emit(
        self: &Arc<Self>,
        target: &str,
        event: &str,
        id: &str,
        summary: String,
        details: Value,
    ) {
        if self.sinks_for(event, target).is_empty() {
            return;
        }
        let family = format!("once:{id}");
        if self
            .lock_states()
            .contains_key(&(target.to_string(), family.clone()))
        {
            return;
        }
        self.transition(
            target,
            &family,
            "sent".to_string(),
            None,
            Some((event, summary, details)),
        )
        .await;
    }

    /// Folds one pass in; a change of state is journaled and its event sent.
    pub async fn after_pass(
        self: &Arc<Self>,
        target: &str,
        signals: PassSignals,
        now: DateTime<Utc>,
    ) {
        let revision = signals.revision.clone();
        let details = |extra: Value| {
            let mut map = Map::new();
            if let Some(revision) = &revision {
                map.insert("revision".into(), json!(revision));
            }
            if let Value::Object(extra) = extra {
                map.extend(extra);
            }
            Value::Object(map)
        };
        if signals.sync_known {
            let (state, event) = match &signals.sync_failed {
                Some(message) => (
                    "failed",
                    Some((
                        "sync_failed",
                        format!("{target}: sync failed: {message}"),
                        details(json!({ "error": message })),
                    )),
                ),
                None => (
                    "ok",
                    Some((
                        "sync_recovered",
                        format!("{target}: sync recovered"),
                        details(json!({})),
                    )),
                ),
            };
            self.change(target, "sync", state, event, "ok").await;
        }
        if signals.health_known {
            let (state, event) = match &signals.degraded {
                Some(message) => (
                    "degraded",
                    Some((
                        "health_degraded",
                        format!("{target}: health Degraded: {message}"),
                        details(json!({ "health": "Degraded", "message": message })),
                    )),
                ),
                None => (
                    "ok",
                    Some((
                        "health_recovered",
                        format!("{target}: health recovered (Healthy)"),
                        details(json!({ "health": "Healthy" })),
                    )),
                ),
            };
            self.change(target, "health", state, event, "ok").await;
        }
        if !signals.resolved.is_empty() {
            let id = resolved_id(target, &signals.resolved);
            self.emit(
                target,
                "started_after_crash",
                &id,
                format!(
                    "{target}: the daemon started after a crash or a cut shutdown and resolved {} open action(s): {}",
                    signals.resolved.len(),
                    signals.resolved.join("; ")
                ),
                details(json!({ "resolved": signals.resolved })),
            )
            .await;
        }
        self.journal_events(target, now).await;
        for (family, off, event, what) in [
            (
                "auto_sync",
                signals.auto_sync_off,
                "auto_sync_off",
                "automatic sync",
            ),
            (
                "self_heal",
                signals.self_heal_off,
                "self_heal_off",
                "self-heal",
            ),
        ] {
            self.policy_off(target, family, off, event, what, now).await;
        }
    }

    /// Drift and automatic rollback, read from the journal's state of `target`: a job's
    /// `drift_detected` mark appearing is `drift_detected`, its clearing (the job's next
    /// successful action) `drift_corrected`; an `auto_rollback` action's outcome is
    /// `auto_rollback` (once per outcome, and only a recent one).
    async fn journal_events(self: &Arc<Self>, target: &str, now: DateTime<Utc>) {
        let Some(journal) = &self.journal else {
            return;
        };
        let mut drifted: BTreeMap<String, (Vec<String>, String)> = BTreeMap::new();
        let mut rollbacks = Vec::new();
        {
            let state = journal.state_guard();
            if let Some(target_state) = state.targets.get(target) {
                for (job, entry) in &target_state.jobs {
                    if let Some(drift) = &entry.drift {
                        drifted.insert(job.clone(), (drift.fields.clone(), drift.mode.clone()));
                    }
                    if let Some(outcome) = &entry.last_outcome
                        && outcome.action.as_deref() == Some("auto_rollback")
                        && now - outcome.time < chrono::Duration::hours(1)
                    {
                        rollbacks.push((
                            job.clone(),
                            outcome.seq,
                            outcome.ok,
                            outcome.error.as_ref().map(|error| error.message.clone()),
                        ));
                    }
                }
            }
        }
        let known: Vec<String> = self
            .lock_states()
            .iter()
            .filter(|((t, family), state)| {
                t == target && family.starts_with("drift:") && state.state == "detected"
            })
            .map(|((_, family), _)| family["drift:".len()..].to_string())
            .collect();
        for (job, (fields, mode)) in &drifted {
            self.change(
                target,
                &format!("drift:{job}"),
                "detected",
                Some((
                    "drift_detected",
                    format!(
                        "{target}: drift on {job}: {} ({})",
                        fields.join(", "),
                        if mode == "revert" {
                            "reverted"
                        } else {
                            "reported"
                        }
                    ),
                    json!({ "job": job, "fields": fields, "mode": mode }),
                )),
                "ok",
            )
            .await;
        }
        for job in known.iter().filter(|job| !drifted.contains_key(*job)) {
            self.change(
                target,
                &format!("drift:{job}"),
                "ok",
                Some((
                    "drift_corrected",
                    format!("{target}: {job} matches git again"),
                    json!({ "job": job }),
                )),
                "ok",
            )
            .await;
        }
        for (job, seq, ok, error) in rollbacks {
            let summary = if ok {
                format!("{target}: {job} was rolled back automatically to its previous definition")
            } else {
                format!(
                    "{target}: automatic rollback of {job} failed: {}",
                    error.clone().unwrap_or_default()
                )
            };
            self.emit(
                target,
                "auto_rollback",
                &format!("{target}:auto_rollback:{seq}"),
                summary,
                json!({ "job": job, "ok": ok, "error": error, "journal_seq": seq }),
            )
            .await;
        }
    }

    async fn policy_off(
        self: &Arc<Self>,
        target: &str,
        family: &str,
        off: bool,
        event: &str,
        what: &str,
        now: DateTime<Utc>,
    ) {
        let sinks = self.sinks_for(event, target);
        if sinks.is_empty() {
            return;
        }
        let current = self
            .lock_states()
            .get(&(target.to_string(), family.to_string()))
            .cloned()
            .unwrap_or_else(|| FamilyState {
                state: "on".into(),
                since: None,
            });
        match (off, current.state.as_str()) {
            (false, "on") => {}
            (false, _) => {
                self.transition(target, family, "on".into(), None, None)
                    .await
            }
            (true, "on") => {
                self.transition(target, family, "off".into(), Some(now), None)
                    .await
            }
            (true, "off") => {
                let since = current.since.unwrap_or(now);
                let after = sinks
                    .iter()
                    .map(|sink| sink.policy_off_after)
                    .min()
                    .unwrap_or(Duration::from_secs(86400));
                if now - since >= chrono::Duration::from_std(after).unwrap_or_default() {
                    self.transition(
                        target,
                        family,
                        "notified".into(),
                        Some(since),
                        Some((
                            event,
                            format!(
                                "{target}: {what} has been off since {}",
                                since.to_rfc3339_opts(SecondsFormat::Secs, true)
                            ),
                            json!({ "off_since": since.to_rfc3339_opts(SecondsFormat::Secs, true) }),
                        )),
                    )
                    .await;
                }
            }
            _ => {}
        }
    }

    /// A state change of `family`: the event goes out only when the state moves (the initial
    /// state is `initial`, so a first success announces nothing).
    async fn change(
        self: &Arc<Self>,
        target: &str,
        family: &str,
        state: &str,
        event: Option<(&str, String, Value)>,
        initial: &str,
    ) {
        let current = self
            .lock_states()
            .get(&(target.to_string(), family.to_string()))
            .map(|state| state.state.clone())
            .unwrap_or_else(|| initial.to_string());
        if current == state {
            return;
        }
        self.transition(target, family, state.to_string(), None, event)
            .await;
    }

    /// Journals the new state (with the event and its sinks, when any), then sends.
    async fn transition(
        self: &Arc<Self>,
        target: &str,
        family: &str,
        state: String,
        since: Option<DateTime<Utc>>,
        event: Option<(&str, String, Value)>,
    ) {
        let now = Utc::now();
        let mut fields = Map::new();
        fields.insert("kind".into(), json!(DUE_KIND));
        fields.insert("family".into(), json!(family));
        fields.insert("state".into(), json!(state));
        if let Some(since) = since {
            fields.insert(
                "since".into(),
                json!(since.to_rfc3339_opts(SecondsFormat::Millis, true)),
            );
        }
        let mut message = None;
        let mut sinks = Vec::new();
        if let Some((event, summary, details)) = event {
            sinks = self.sinks_for(event, target);
            if !sinks.is_empty() {
                let id = format!("{target}:{event}:{}", now.format("%Y%m%dT%H%M%S%.3fZ"));
                fields.insert("id".into(), json!(id));
                fields.insert("event".into(), json!(event));
                fields.insert("summary".into(), json!(summary));
                fields.insert("details".into(), details.clone());
                fields.insert(
                    "sinks".into(),
                    json!(sinks.iter().map(|s| s.name.clone()).collect::<Vec<_>>()),
                );
                message = Some(Message {
                    id,
                    event: event.to_string(),
                    target: target.to_string(),
                    time: now,
                    summary,
                    details,
                });
            }
        }
        if let Some(journal) = &self.journal
            && let Err(error) = journal
                .append_async(target, RecordBody::Unknown(fields))
                .await
        {
            // Unjournaled, a send could be repeated or lost across a restart: do not send.
            tracing::error!(target_name = %target, %family, %error, "Journaling a notification state failed; nothing is sent for this change.");
            return;
        }
        self.lock_states().insert(
            (target.to_string(), family.to_string()),
            FamilyState { state, since },
        );
        if let Some(message) = message {
            for sink in sinks {
                self.spawn_delivery(message.clone(), sink);
            }
        }
    }

    fn spawn_delivery(self: &Arc<Self>, message: Message, sink: Arc<ResolvedSink>) {
        let notifier = self.clone();
        tokio::spawn(async move {
            let body = message.to_json(&notifier.instance);
            let mut delay = notifier.retry.first_delay;
            let mut last_error = String::new();
            let mut ok = false;
            for attempt in 1..=notifier.retry.attempts.max(1) {
                match sink.deliver(&notifier.http, &message, &body).await {
                    Ok(()) => {
                        ok = true;
                        tracing::info!(sink = %sink.name, event = %message.event, target_name = %message.target, id = %message.id, attempt, "Notification sent.");
                        break;
                    }
                    Err(error) => {
                        last_error = error.to_string();
                        tracing::warn!(sink = %sink.name, event = %message.event, id = %message.id, attempt, error = %last_error, "Notification delivery failed.");
                        if attempt < notifier.retry.attempts {
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(300));
                        }
                    }
                }
            }
            if !ok {
                tracing::error!(sink = %sink.name, event = %message.event, id = %message.id, attempts = notifier.retry.attempts, error = %last_error, "Notification dropped after its retries.");
            }
            if let Some(journal) = &notifier.journal {
                let mut fields = Map::new();
                fields.insert("kind".into(), json!(SENT_KIND));
                fields.insert("id".into(), json!(message.id));
                fields.insert("sink".into(), json!(sink.name));
                fields.insert("event".into(), json!(message.event));
                fields.insert("ok".into(), json!(ok));
                if !ok {
                    fields.insert("error".into(), json!(last_error));
                }
                if let Err(error) = journal
                    .append_async(&message.target, RecordBody::Unknown(fields))
                    .await
                {
                    tracing::error!(%error, id = %message.id, "Journaling a notification delivery failed; it may be sent again after a restart.");
                }
            }
        });
    }

    /// A promotion event (from the pipeline's listener, which may run outside the runtime):
    /// done, held (a ready candidate held by a change window or waiting for a person, once per
    /// candidate and cause; a revision marked failed upstream, never promoted), refused.
    pub fn promotion_event(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        event: &crate::promotion::PromotionEvent,
    ) {
        use crate::promotion::PromotionEvent;
        let (target, name, id, summary, details) = match event {
            PromotionEvent::Promoted {
                to,
                from,
                revision,
                by,
                rule,
                seq,
            } => (
                to.clone(),
                "promotion_done",
                format!("{to}:promotion:{seq}"),
                format!("{to}: promoted {revision} from `{from}` (by {by}; {rule})"),
                json!({ "from": from, "revision": revision, "by": by, "rule": rule, "journal_seq": seq }),
            ),
            PromotionEvent::MarkedFailed {
                to,
                from,
                revision,
                reason,
                seq,
            } => (
                to.clone(),
                "promotion_held",
                format!("{to}:held:{seq}"),
                format!("{to}: revision {revision} of `{from}` is held, never promoted: {reason}"),
                json!({ "from": from, "revision": revision, "reason": reason, "journal_seq": seq }),
            ),
            PromotionEvent::Held {
                to,
                from,
                revision,
                kind,
                reason,
            } => (
                to.clone(),
                "promotion_held",
                format!("{to}:held:{revision}:{kind}"),
                format!("{to}: revision {revision} of `{from}` is ready but held: {reason}"),
                json!({ "from": from, "revision": revision, "held_by": kind, "reason": reason }),
            ),
            PromotionEvent::Refused { to, reason } => (
                to.clone(),
                "promotion_refused",
                format!("{to}:refused:{}", Utc::now().format("%Y%m%dT%H%M%S%.3fZ")),
                format!("{to}: a promotion was refused: {reason}"),
                json!({ "reason": reason }),
            ),
        };
        let notifier = self.clone();
        runtime.spawn(async move {
            notifier.emit(&target, name, &id, summary, details).await;
        });
    }

    /// Names of the configured sinks.
    pub fn sink_names(&self) -> Vec<String> {
        self.sinks.iter().map(|sink| sink.name.clone()).collect()
    }
}

fn resolved_id(target: &str, resolved: &[String]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(resolved.join("\n").as_bytes());
    format!(
        "{target}:started_after_crash:{}",
        &hex::encode(digest)[..16]
    )
}

/// For sinks built in tests: the events and targets a sink wants.
pub fn sink_from(config: &NotificationSink, parent: &Config) -> Result<ResolvedSink, NotifyError> {
    ResolvedSink::resolve(config, parent)
}
