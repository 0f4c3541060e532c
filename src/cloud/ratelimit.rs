//! A small token bucket: the client-side rate limit of one service client.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Hands out `rate` permits per second with up to `burst` at once; callers wait their turn.
#[derive(Debug)]
pub struct TokenBucket {
    rate_per_second: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A non-positive or non-finite rate disables the limit.
    pub fn new(rate_per_second: f64, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate_per_second,
            burst,
            state: Mutex::new(BucketState {
                tokens: burst,
                refilled_at: Instant::now(),
            }),
        }
    }

    fn unlimited(&self) -> bool {
        !(self.rate_per_second.is_finite() && self.rate_per_second > 0.0)
    }

    /// Waits until a permit is available and takes it. Returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        if self.unlimited() {
            return Duration::ZERO;
        }
        let started = Instant::now();
        // Holding the lock while sleeping queues callers fairly (tokio's mutex is FIFO).
        let mut state = self.state.lock().await;
        loop {
            let now = Instant::now();
            let elapsed = now.duration_since(state.refilled_at).as_secs_f64();
            state.tokens = (state.tokens + elapsed * self.rate_per_second).min(self.burst);
            state.refilled_at = now;
            if state.tokens >= 1.0 {
                state.tokens -= 1.0;
                return started.elapsed();
            }
            let missing = 1.0 - state.tokens;
            tokio::time::sleep(Duration::from_secs_f64(missing / self.rate_per_second)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn permits_follow_the_rate_after_the_burst() {
        let bucket = TokenBucket::new(50.0, 2);
        let start = Instant::now();
        for _ in 0..12 {
            bucket.acquire().await;
        }
        // Two permits come from the burst; ten more at 50/s cannot take less than ~200 ms.
        // Only a lower bound: a slow machine may take longer, never shorter.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    }

    #[tokio::test]
    async fn zero_rate_means_unlimited() {
        let bucket = TokenBucket::new(0.0, 1);
        for _ in 0..100 {
            assert_eq!(bucket.acquire().await, Duration::ZERO);
        }
    }
}
