//! What the daemon plugs in to run a pipeline: the promoted snapshot a stage converges to,
//! the upstream observations after every pass, the timer that lets time-based gates open, and
//! the notice that wakes a target when something was promoted to it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::Utc;

use super::endpoint::PromotionEndpoint;
use super::gate::{PolicyError, UpstreamSample};
use super::manual::PromoteBody;
use super::pipeline::{Pipeline, PromotionEvent, followed_revision};
use super::revision::{PromotedRevisionError, snapshot_at};
use crate::config::Config;
use crate::desired::snapshot::RepoSnapshot;
use crate::journal::Journal;
use crate::source::{Source, SourceError};

/// How often the daemon re-runs the gates (an `after` can end between passes).
pub const DEFAULT_TICK: Duration = Duration::from_secs(5);

/// Called for every promotion event (the daemon wakes the target and counts it).
pub type PromotionListener = Box<dyn Fn(&PromotionEvent) + Send + Sync>;

/// Why the pipeline could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("reading the promotion settings")]
    Policy(#[source] PolicyError),
    #[error("opening source `{source_name}` for promoted revisions")]
    Source {
        source_name: String,
        #[source]
        source: SourceError,
    },
}

/// The daemon's handle on promotion (built when a target has `promote_from` or a
/// `restore.from_target` default). Cheap to share behind an `Arc`.
pub struct PromotionHook {
    endpoint: PromotionEndpoint,
    /// The sources the stages read, by source name (their own instances; a git mirror is
    /// shared on disk and locked per mirror).
    sources: BTreeMap<String, Arc<Source>>,
    /// Stage name → source name.
    stage_sources: BTreeMap<String, String>,
    listener: RwLock<Option<PromotionListener>>,
}

impl std::fmt::Debug for PromotionHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromotionHook")
            .field("stages", &self.stage_sources.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PromotionHook {
    /// The pipeline of `config`; `None` when no target has `promote_from`.
    pub fn new(config: Arc<Config>, journal: Journal) -> Result<Option<Arc<Self>>, HookError> {
        let pipeline = Pipeline::from_config(&config).map_err(HookError::Policy)?;
        let restores = config
            .targets
            .iter()
            .any(|target| target.restore.from_target.is_some());
        if pipeline.stages().is_empty() && !restores {
            return Ok(None);
        }
        let mut sources = BTreeMap::new();
        let mut stage_sources = BTreeMap::new();
        for stage in pipeline.stages() {
            let Some(target) = config.target(&stage.target) else {
                continue;
            };
            stage_sources.insert(stage.target.clone(), target.source.clone());
            if sources.contains_key(&target.source) {
                continue;
            }
            if let Some(source_config) = config.source_of(target) {
                let source =
                    Source::from_config(source_config, &config.state_dir).map_err(|source| {
                        HookError::Source {
                            source_name: target.source.clone(),
                            source,
                        }
                    })?;
                sources.insert(target.source.clone(), Arc::new(source));
            }
        }
        Ok(Some(Arc::new(PromotionHook {
            endpoint: PromotionEndpoint {
                config,
                journal,
                pipeline: Arc::new(Mutex::new(pipeline)),
            },
            sources,
            stage_sources,
            listener: RwLock::new(None),
        })))
    }

    /// Where promotion events go (the daemon fires the target's trigger and counts them).
    pub fn set_listener(&self, listener: PromotionListener) {
        *self
            .listener
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    /// The endpoint bodies for the HTTP server.
    pub fn endpoint(&self) -> &PromotionEndpoint {
        &self.endpoint
    }

    /// `target` follows promotions rather than its branch.
    pub fn is_stage(&self, target: &str) -> bool {
        self.stage_sources.contains_key(target)
    }

    /// The revision a stage follows now (`None`: nothing promoted yet).
    pub fn promoted_revision(&self, target: &str) -> Option<String> {
        // The read guard, not a copy of the state: this runs before every pass of a stage.
        followed_revision(&self.endpoint.journal.state_guard(), target)
    }

    /// The snapshot a stage should converge to: `head` when the promoted revision is the
    /// source's newest, else the source read at the promoted revision; `None` when nothing
    /// was promoted yet (the stage observes only).
    pub async fn promoted_snapshot(
        &self,
        target: &str,
        head: Option<Arc<RepoSnapshot>>,
    ) -> Result<Option<Arc<RepoSnapshot>>, PromotedRevisionError> {
        let Some(revision) = self.promoted_revision(target) else {
            return Ok(None);
        };
        if let Some(head) = head
            && head.revision == revision
        {
            return Ok(Some(head));
        }
        let Some(source) = self
            .stage_sources
            .get(target)
            .and_then(|name| self.sources.get(name))
            .cloned()
        else {
            return Ok(None);
        };
        let read_revision = revision.clone();
        let snapshot = tokio::task::spawn_blocking(move || snapshot_at(&source, &read_revision))
            .await
            .map_err(|join_error| PromotedRevisionError::Source {
                revision: revision.clone(),
                source: SourceError::Io {
                    action: "reading the promoted revision",
                    path: std::path::PathBuf::new(),
                    source: std::io::Error::other(join_error),
                },
            })??;
        Ok(Some(Arc::new(snapshot)))
    }

    /// After every pass of every target: fold in how it looked, run the gates, announce
    /// promotions. Journal failures are logged (the next pass or tick tries again).
    pub fn after_pass(&self, target: &str, sample: &UpstreamSample) -> Vec<PromotionEvent> {
        let mut pipeline = self
            .endpoint
            .pipeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut events = match pipeline.observe(&self.endpoint.journal, target, sample) {
            Ok(events) => events,
            Err(error) => {
                tracing::error!(target = target, error = %super::error_text(&error), "Journaling a failed revision failed.");
                Vec::new()
            }
        };
        events.extend(self.evaluate_locked(&mut pipeline));
        drop(pipeline);
        self.announce(&events);
        events
    }

    /// Runs the gates (time may have opened one) and announces promotions.
    pub fn tick(&self) -> Vec<PromotionEvent> {
        let events = {
            let mut pipeline = self
                .endpoint
                .pipeline
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.evaluate_locked(&mut pipeline)
        };
        self.announce(&events);
        events
    }

    /// Ticks every `interval` until `stop` resolves.
    pub async fn run_timer(
        self: Arc<Self>,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(interval) => {
                    let hook = self.clone();
                    // Journal appends fsync: off the async workers.
                    let _ = tokio::task::spawn_blocking(move || hook.tick()).await;
                }
            }
        }
    }

    fn evaluate_locked(&self, pipeline: &mut Pipeline) -> Vec<PromotionEvent> {
        match pipeline.evaluate(&self.endpoint.journal, Utc::now()) {
            Ok(events) => events,
            Err(error) => {
                tracing::error!(error = %super::error_text(&error), "Journaling an automatic promotion failed.");
                Vec::new()
            }
        }
    }

    /// Hands every event to the listener.
    fn announce(&self, events: &[PromotionEvent]) {
        if let Some(listener) = self
            .listener
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            events.iter().for_each(listener);
        }
    }

    /// A manual promotion through the API: checked, journaled, announced. Blocking (journal
    /// fsync): call it from `spawn_blocking`. Returns the HTTP status and JSON body.
    pub fn promote_manually(&self, target: &str, body: PromoteBody) -> (u16, serde_json::Value) {
        let (status, json) = self.endpoint.promote(target, body, Utc::now());
        let event = if status == 200 {
            Some(PromotionEvent::Promoted {
                to: target.to_string(),
                from: json["from"].as_str().unwrap_or_default().to_string(),
                revision: json["revision"].as_str().unwrap_or_default().to_string(),
                by: json["by"].as_str().unwrap_or_default().to_string(),
                rule: json["rule"].as_str().unwrap_or_default().to_string(),
                seq: json["seq"].as_u64().unwrap_or_default(),
            })
        } else if status == 409
            // A revision the source lacks is a refused promotion too; a 404 for a target the
            // config does not name is not counted (metric labels stay bounded).
            || (status == 404 && self.endpoint.config.target(target).is_some())
        {
            Some(PromotionEvent::Refused {
                to: target.to_string(),
                reason: json["error"].as_str().unwrap_or_default().to_string(),
            })
        } else {
            None
        };
        if let Some(event) = event {
            self.announce(std::slice::from_ref(&event));
        }
        (status, json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalOptions;
    use crate::promotion::gate::UpstreamCondition;

    #[tokio::test]
    async fn a_stage_follows_promotions_and_is_woken_by_them() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs");
        std::fs::create_dir_all(&jobs).unwrap();
        std::fs::write(jobs.join("readme.txt"), "jobs\n").unwrap();
        let text = format!(
            "state_dir: {state}\nsources:\n  jobs: {{path: {jobs}}}\ntargets:\n  - {{name: dev, source: jobs, endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}}}\n  - {{name: prod, source: jobs, promote_from: dev, promotion: {{auto: true, after: 0s}}, endpoints: {{dli: embedded, dlf: embedded, obs: embedded}}}}\n",
            state = dir.path().join("state").display(),
            jobs = jobs.display()
        );
        let config = Config::from_yaml_str(&text, std::path::Path::new("config.yaml")).unwrap();
        config.validate().unwrap();
        let (journal, _) = Journal::open(&config.state_dir, JournalOptions::default()).unwrap();
        let hook = PromotionHook::new(Arc::new(config), journal)
            .unwrap()
            .unwrap();
        assert!(hook.is_stage("prod") && !hook.is_stage("dev"));
        let woken = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = woken.clone();
        hook.set_listener(Box::new(move |event| {
            if let PromotionEvent::Promoted { to, .. } = event {
                sink.lock().unwrap().push(to.clone())
            }
        }));

        let source_config: crate::config::SourceConfig =
            serde_yaml::from_str(&format!("path: {}", jobs.display())).unwrap();
        let head = match Source::from_config(&source_config, dir.path()).unwrap() {
            Source::Dir { source, .. } => Arc::new(source.snapshot().unwrap()),
            Source::Git { .. } => unreachable!(),
        };
        assert_eq!(
            hook.promoted_snapshot("prod", Some(head.clone()))
                .await
                .unwrap(),
            None
        );

        let events = hook.after_pass(
            "dev",
            &UpstreamSample {
                revision: Some(head.revision.clone()),
                converged: true,
                condition: UpstreamCondition::Healthy,
                time: Utc::now() - chrono::Duration::seconds(1),
            },
        );
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(*woken.lock().unwrap(), vec!["prod".to_string()]);
        assert_eq!(hook.promoted_revision("prod"), Some(head.revision.clone()));
        let followed = hook
            .promoted_snapshot("prod", Some(head.clone()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(followed.revision, head.revision);
        // The directory moves on: prod keeps its promoted revision, which a directory can no
        // longer serve; that is an error, not a silent switch to the new content.
        std::fs::write(jobs.join("readme.txt"), "changed\n").unwrap();
        let error = hook.promoted_snapshot("prod", None).await.unwrap_err();
        assert!(matches!(
            error,
            PromotedRevisionError::DirectoryMovedOn { .. }
        ));
        assert!(hook.tick().is_empty());
    }
}
