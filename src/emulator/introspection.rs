//! The emulator's own API under `/_emulator/v1/`, not part of any cloud API: call counters per
//! operation (for benchmarks) and the run history of a job (to prove savepoints were carried).

use http::StatusCode;
use serde_json::{Value, json};

use super::server::{ApiError, Operation, Reply, Shared};

pub(crate) fn handle(
    shared: &Shared,
    operation: Operation,
    segments: &[&str],
    now_ms: i64,
) -> Reply {
    match (operation, segments) {
        (Operation::EmulatorStats, _) => {
            let stats = shared
                .stats
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            let total: u64 = stats.values().sum();
            Reply::json(json!({"operations": stats, "total": total}))
        }
        (Operation::EmulatorJobRuns, ["_emulator", "v1", project_id, "jobs", job_id, "runs"]) => {
            let Ok(job_id) = job_id.parse::<i64>() else {
                return not_found(format!("job id {job_id:?} is not a number"));
            };
            let found = shared.read(project_id, now_ms, |project| {
                project.flink_jobs.get(&job_id).map(|job| {
                    json!({
                        "job_id": job.job_id,
                        "name": job.name,
                        "status": job.status,
                        "savepoint_path": job.savepoint_path,
                        "runs": job.runs,
                        "history": job.history,
                    })
                })
            });
            match found {
                Some(body) => Reply::json(body),
                None => not_found(format!("project {project_id} has no job {job_id}")),
            }
        }
        (Operation::EmulatorSmnMessages, _) => Reply::json(json!({"messages": shared.smn.all()})),
        _ => not_found("no such emulator resource".to_string()),
    }
}

fn not_found(message: String) -> Reply {
    ApiError {
        status: StatusCode::NOT_FOUND,
        body: json!({"error_code": "EMULATOR.0404", "error_msg": Value::String(message)}),
    }
    .into()
}
