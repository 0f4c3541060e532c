//! Injected faults: added latency, HTTP 500s, HTTP 429 throttling and dropped connections,
//! drawn from one seeded RNG so a test run is reproducible; and faults aimed at one operation:
//! late delivery (held, then applied) and lost answers (applied, then the connection dropped).

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::{EmulatorFaults, TargetedFault};

/// The marker in a SQL job's `sql_body` that fails every run on start.
pub const FAIL_ON_START_MARKER: &str = "dli-emulator:fail-on-start";
/// The marker (followed by a number of milliseconds) that fails every run that long after it
/// reached `job_running`.
pub const FAIL_AFTER_MARKER: &str = "dli-emulator:fail-after-ms=";

/// How a run of a job is made to fail (a deterministic fault: the same job fails the same way
/// on every run, across restarts of the emulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    /// 0: the start fails (`job_submit_fail`); else the run fails this long after it reached
    /// `job_running` (`job_running_exception`).
    pub after_ms: u64,
    /// Where the fault comes from, for the status description.
    pub cause: String,
}

/// The failure a run of `name` (with this SQL body, for SQL jobs) gets: a `job_failures` entry
/// naming the job wins, else a marker in the SQL.
pub fn run_failure(
    faults: &EmulatorFaults,
    name: &str,
    sql_body: Option<&str>,
) -> Option<RunFailure> {
    if let Some(entry) = faults.job_failures.iter().find(|entry| entry.job == name) {
        return Some(RunFailure {
            after_ms: entry.after_ms,
            cause: format!("faults.job_failures names job {name}"),
        });
    }
    let sql = sql_body?;
    if sql.contains(FAIL_ON_START_MARKER) {
        return Some(RunFailure {
            after_ms: 0,
            cause: format!("the SQL holds {FAIL_ON_START_MARKER}"),
        });
    }
    let at = sql.find(FAIL_AFTER_MARKER)?;
    let digits: String = sql[at + FAIL_AFTER_MARKER.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let after_ms = digits.parse::<u64>().ok()?;
    Some(RunFailure {
        after_ms,
        cause: format!("the SQL holds {FAIL_AFTER_MARKER}{after_ms}"),
    })
}

/// What to do to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultDecision {
    None,
    ServerError,
    Throttle { retry_after_seconds: u64 },
    DropConnection,
}

/// The fault injector.
#[derive(Debug)]
pub struct FaultInjector {
    settings: EmulatorFaults,
    rng: Mutex<StdRng>,
    /// Calls seen so far per targeted fault (`late` first, then `lost_answer`).
    targeted_calls: Mutex<Vec<u32>>,
}

impl FaultInjector {
    pub fn new(settings: EmulatorFaults) -> FaultInjector {
        let rng = StdRng::seed_from_u64(settings.seed);
        let targeted = settings.late.len() + settings.lost_answer.len();
        FaultInjector {
            settings,
            rng: Mutex::new(rng),
            targeted_calls: Mutex::new(vec![0; targeted]),
        }
    }

    /// How long to hold a call of `operation` before applying it (late delivery), if at all.
    /// Counts the call against the fault's `skip`/`times`.
    pub fn hold(&self, operation: &str) -> Option<std::time::Duration> {
        let index = self.hit(0, &self.settings.late, operation)?;
        Some(std::time::Duration::from_millis(
            self.settings.late[index].delay_ms,
        ))
    }

    /// Whether the answer to this (applied) call of `operation` is lost.
    pub fn lose_answer(&self, operation: &str) -> bool {
        self.hit(
            self.settings.late.len(),
            &self.settings.lost_answer,
            operation,
        )
        .is_some()
    }

    fn hit(&self, offset: usize, faults: &[TargetedFault], operation: &str) -> Option<usize> {
        let mut counts = self
            .targeted_calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (index, fault) in faults.iter().enumerate() {
            if fault.operation != operation {
                continue;
            }
            let seen = &mut counts[offset + index];
            *seen += 1;
            let past_skip = *seen > fault.skip;
            let within = fault.times == 0 || *seen <= fault.skip + fault.times;
            if past_skip && within {
                return Some(index);
            }
        }
        None
    }

    pub fn latency(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.settings.latency_ms)
    }

    /// Draws the fate of one call. One draw per call keeps the sequence reproducible for a
    /// given seed and call order.
    pub fn decide(&self) -> FaultDecision {
        let settings = &self.settings;
        if settings.error_rate <= 0.0 && settings.drop_rate <= 0.0 && settings.throttle_rate <= 0.0
        {
            return FaultDecision::None;
        }
        let roll: f64 = self
            .rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .r#gen();
        if roll < settings.drop_rate {
            FaultDecision::DropConnection
        } else if roll < settings.drop_rate + settings.throttle_rate {
            FaultDecision::Throttle {
                retry_after_seconds: settings.retry_after_seconds,
            }
        } else if roll < settings.drop_rate + settings.throttle_rate + settings.error_rate {
            FaultDecision::ServerError
        } else {
            FaultDecision::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_fail_by_job_name_or_by_a_marker_in_the_sql() {
        let faults = EmulatorFaults {
            job_failures: vec![super::super::config::JobFailure {
                job: "named".into(),
                after_ms: 0,
            }],
            ..EmulatorFaults::default()
        };
        assert_eq!(run_failure(&faults, "named", None).unwrap().after_ms, 0);
        assert_eq!(run_failure(&faults, "other", Some("SELECT 1")), None);
        assert_eq!(run_failure(&faults, "other", None), None);
        let on_start = run_failure(
            &faults,
            "other",
            Some("-- dli-emulator:fail-on-start\nSELECT 1"),
        );
        assert_eq!(on_start.unwrap().after_ms, 0);
        let later = run_failure(
            &faults,
            "other",
            Some("-- dli-emulator:fail-after-ms=2500\n"),
        );
        assert_eq!(later.unwrap().after_ms, 2500);
        assert_eq!(
            run_failure(&faults, "other", Some("dli-emulator:fail-after-ms=x")),
            None
        );
    }

    #[test]
    fn same_seed_same_faults_and_rates_are_roughly_honoured() {
        let settings = EmulatorFaults {
            error_rate: 0.2,
            throttle_rate: 0.1,
            drop_rate: 0.1,
            seed: 7,
            ..EmulatorFaults::default()
        };
        let first: Vec<_> = (0..200)
            .map({
                let injector = FaultInjector::new(settings.clone());
                move |_| injector.decide()
            })
            .collect();
        let second: Vec<_> = (0..200)
            .map({
                let injector = FaultInjector::new(settings.clone());
                move |_| injector.decide()
            })
            .collect();
        assert_eq!(first, second);
        let errors = first
            .iter()
            .filter(|decision| **decision == FaultDecision::ServerError)
            .count();
        assert!((20..=60).contains(&errors), "{errors} errors of 200");
        assert!(first.contains(&FaultDecision::DropConnection));
        assert!(FaultInjector::new(EmulatorFaults::default()).decide() == FaultDecision::None);
    }
}
