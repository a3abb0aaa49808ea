//! The fixed send schedule of a soak and its coordinated-omission correction, as pure functions.
//!
//! Each client `i` sends frame `k` at the *intended* time `start + offset[i] + k * period`, whatever
//! happened to frame `k - 1`. A sender that falls behind sends at once (it never skips a frame and never
//! re-bases its schedule), and every latency is measured from the intended time, not from when the
//! frame actually left (the wrk2 method). So a 30 ms stall delays every frame scheduled during it and
//! all of them show it, instead of one slow sample hiding behind a sender that simply waited.
//!
//! Everything random (start offsets, churn) comes from one seeded ChaCha8 stream, so a run repeats
//! with `--seed`.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One client's send schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Delay of this client's first frame after the common start (spreads clients over one period).
    pub offset: Duration,
    /// Time between frames (1 / fps).
    pub period: Duration,
}

impl Schedule {
    /// The intended send time of frame `seq`, relative to the common start.
    pub fn intended(&self, seq: u64) -> Duration {
        // u32 frames at >= 1 µs periods outlast any soak; saturate rather than overflow.
        let k = u32::try_from(seq).unwrap_or(u32::MAX);
        self.offset + self.period.saturating_mul(k)
    }

    /// How many frames are due by `elapsed` (frames 0..n have intended times <= elapsed).
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        if elapsed < self.offset {
            return 0;
        }
        let since = (elapsed - self.offset).as_nanos();
        (since / self.period.as_nanos().max(1)) as u64 + 1
    }

    /// How many frames this client sends in a run of `duration` (intended times < duration).
    pub fn frames_in(&self, duration: Duration) -> u64 {
        if duration <= self.offset {
            return 0;
        }
        let since = (duration - self.offset).as_nanos();
        since.div_ceil(self.period.as_nanos().max(1)) as u64
    }
}

/// The period of `fps` frames per second (at least 1 µs).
pub fn period(fps: f64) -> Duration {
    Duration::from_secs_f64(1.0 / fps.max(1e-3)).max(Duration::from_micros(1))
}

/// One schedule per client: start offsets drawn uniformly from [0, period) with the seed.
pub fn schedules(seed: u64, clients: u32, period: Duration) -> Vec<Schedule> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let p = period.as_nanos() as u64;
    (0..clients)
        .map(|_| Schedule { offset: Duration::from_nanos(rng.gen_range(0..p.max(1))), period })
        .collect()
}

/// Latency of a frame in µs measured from its intended send time (coordinated-omission corrected).
/// Clocks can disagree by a little across hosts; an arrival "before" the intended time counts as 0.
pub fn corrected_latency_us(intended_unix_us: u64, arrival_unix_us: u64) -> u64 {
    arrival_unix_us.saturating_sub(intended_unix_us)
}

/// One planned disconnect-and-reconnect of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChurnEvent {
    /// When, relative to the common start.
    pub at: Duration,
    pub client: u32,
}

/// The most reconnects one run plans, whatever the rate (a bound on memory and on the server).
pub const MAX_CHURN_EVENTS: usize = 1_000_000;

/// Reconnects at `rate` per second over the whole run (a Poisson process: exponential gaps), each on a
/// client chosen uniformly; seeded by `seed` through a stream separate from the start offsets.
pub fn churn_plan(seed: u64, clients: u32, duration: Duration, rate: f64) -> Vec<ChurnEvent> {
    let mut plan = Vec::new();
    if rate <= 0.0 || clients == 0 {
        return plan;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC4_52_4E); // distinct stream from the offsets
    let mut t = 0.0f64;
    let end = duration.as_secs_f64();
    while plan.len() < MAX_CHURN_EVENTS {
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        t += -u.ln() / rate;
        if t >= end {
            break;
        }
        plan.push(ChurnEvent { at: Duration::from_secs_f64(t), client: rng.gen_range(0..clients) });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_follow_the_schedule_not_the_sender() {
        let s = Schedule { offset: Duration::from_millis(5), period: Duration::from_millis(33) };
        assert_eq!(s.intended(0), Duration::from_millis(5));
        assert_eq!(s.intended(3), Duration::from_millis(104));
        assert_eq!(s.due_by(Duration::from_millis(4)), 0);
        assert_eq!(s.due_by(Duration::from_millis(5)), 1);
        assert_eq!(s.due_by(Duration::from_millis(104)), 4);
        assert_eq!(s.frames_in(Duration::from_millis(104)), 3);
        assert_eq!(s.frames_in(Duration::from_millis(105)), 4);
        assert_eq!(s.frames_in(Duration::ZERO), 0);
    }

    #[test]
    fn a_stall_shows_in_every_frame_scheduled_during_it() {
        // Sender stalls 100 ms from t=10ms; frames at 0, 10, 20 ... are due. Frames 1..=10 all leave at
        // 110 ms; measured from intended time their latencies are 100, 90, ... 10 ms: all counted.
        let s = Schedule { offset: Duration::ZERO, period: Duration::from_millis(10) };
        let stall_end = 110_000u64;
        let lat: Vec<u64> =
            (1..=10).map(|k| corrected_latency_us(s.intended(k).as_micros() as u64, stall_end)).collect();
        assert_eq!(
            lat,
            vec![100_000, 90_000, 80_000, 70_000, 60_000, 50_000, 40_000, 30_000, 20_000, 10_000]
        );
        assert_eq!(corrected_latency_us(10, 5), 0);
    }

    #[test]
    fn offsets_and_churn_repeat_with_the_seed() {
        let p = period(30.0);
        assert_eq!(p, Duration::from_nanos(33_333_333));
        let a = schedules(7, 64, p);
        assert_eq!(a, schedules(7, 64, p));
        assert_ne!(a, schedules(8, 64, p));
        assert!(a.iter().all(|s| s.offset < p && s.period == p));

        let c = churn_plan(7, 4, Duration::from_secs(10), 2.0);
        assert_eq!(c, churn_plan(7, 4, Duration::from_secs(10), 2.0));
        assert!((8..=40).contains(&c.len()), "{}", c.len());
        assert!(c.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(c.iter().all(|e| e.client < 4 && e.at < Duration::from_secs(10)));
        assert!(churn_plan(7, 4, Duration::from_secs(10), 0.0).is_empty());
        assert!(churn_plan(7, 0, Duration::from_secs(10), 1.0).is_empty());
        assert_eq!(churn_plan(7, 4, Duration::from_secs(10), 1e9).len(), MAX_CHURN_EVENTS);
    }
}
