//! The daemon's promotion endpoints without the HTTP framework: the server authorises the
//! request (bearer token), then hands the body here and sends back the status and JSON.
//!
//! `POST /api/v1/targets/{t}/promote` → [`PromotionEndpoint::promote`];
//! `GET /api/v1/pipeline` → [`PromotionEndpoint::pipeline`].

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::manual::{PromoteBody, PromotionError, check_requested_revision};
use super::pipeline::{Pipeline, PipelineView};
use super::revision::RevisionCheckError;
use crate::config::Config;
use crate::journal::Journal;

/// What the promotion endpoints share with the daemon loop.
#[derive(Debug, Clone)]
pub struct PromotionEndpoint {
    pub config: Arc<Config>,
    pub journal: Journal,
    pub pipeline: Arc<Mutex<Pipeline>>,
}

impl PromotionEndpoint {
    /// A manual promotion. Blocking (it reads the source and appends to the journal): call it
    /// from `spawn_blocking`. Returns the HTTP status and the JSON body: 200 with the report,
    /// 409 refused (a failed revision, a closed window, a revision that does not validate for
    /// the target), 404 unknown target or a revision not in the source, 400 not a pipeline
    /// target or malformed, 503 source unreadable, 500 journal failure.
    pub fn promote(&self, target: &str, body: PromoteBody, now: DateTime<Utc>) -> (u16, Value) {
        let request = body.into_request();
        // Checked before the pipeline is locked: reading the revision may fetch from git.
        let result = check_requested_revision(&self.journal, &self.config, target, &request)
            .and_then(|()| {
                self.pipeline
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .promote_manually(&self.journal, &self.config, target, &request, now)
            });
        if let Err(PromotionError::Unpromotable { .. }) = &result {
            self.pipeline
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .count_manual(target, "refused");
        }
        match result {
            Ok(mut report) => {
                report.via = "daemon".to_string();
                (
                    200,
                    serde_json::to_value(&report).unwrap_or_else(|_| json!({})),
                )
            }
            Err(error) => {
                let status = match &error {
                    PromotionError::Refused { .. } => 409,
                    PromotionError::Unpromotable { reason, .. } => match reason {
                        RevisionCheckError::Unknown { .. } => 404,
                        RevisionCheckError::Invalid { .. } => 409,
                        RevisionCheckError::Unavailable { .. } => 503,
                    },
                    PromotionError::UnknownTarget { .. } => 404,
                    PromotionError::NotAPipeline { .. } | PromotionError::Policy(_) => 400,
                    _ => 500,
                };
                (status, json!({"error": super::error_text(&error)}))
            }
        }
    }

    /// Every target with its revision, promotions and gate.
    pub fn pipeline(&self, now: DateTime<Utc>) -> PipelineView {
        let state = self.journal.state();
        self.pipeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .view(&self.config, &state, now)
    }
}
