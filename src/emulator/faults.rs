//! Injected faults: added latency, HTTP 500s, HTTP 429 throttling and dropped connections,
//! drawn from one seeded RNG so a test run is reproducible.

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::EmulatorFaults;

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
}

impl FaultInjector {
    pub fn new(settings: EmulatorFaults) -> FaultInjector {
        let rng = StdRng::seed_from_u64(settings.seed);
        FaultInjector {
            settings,
            rng: Mutex::new(rng),
        }
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
