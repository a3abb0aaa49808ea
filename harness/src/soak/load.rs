//! Did the load generator keep its schedule? A soak whose clients fell behind measures the harness, not
//! the server (wrk2's lesson: print the achieved rate beside the requested one). A pure function of the
//! run's figures, so the verdict is tested without sockets.

use std::time::Duration;

use crate::report::Load;

/// Default: per-client achieved frame rate below 95 % of the requested one is "behind".
pub const DEFAULT_FPS_RATIO: f64 = 0.95;

/// The limits of "kept its schedule".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BehindLimits {
    /// Achieved fps per client must be at least this fraction of the requested fps.
    pub fps_ratio: f64,
    /// `send_lag` p99 (intended send time to the start of building the frame) must be at most this.
    pub lag_p99: Duration,
}

impl BehindLimits {
    /// The defaults for `fps`: 95 % of the rate, and one frame period of lag.
    pub fn for_fps(fps: f64) -> Self {
        BehindLimits { fps_ratio: DEFAULT_FPS_RATIO, lag_p99: super::schedule::period(fps) }
    }
}

/// The load figures of a run and, when a limit was crossed, which one (the first sentence a user reads).
pub fn assess(
    requested_fps: f64,
    frames_sent_in_schedule: u64,
    clients: u32,
    schedule: Duration,
    send_lag_p99_us: Option<u64>,
    ascii_interval_p50_us: Option<u64>,
    limits: BehindLimits,
) -> Load {
    let secs = schedule.as_secs_f64();
    let achieved = if clients == 0 || secs <= 0.0 {
        0.0
    } else {
        frames_sent_in_schedule as f64 / f64::from(clients) / secs
    };
    let achieved = (achieved * 100.0).round() / 100.0;
    let ascii_fps = ascii_interval_p50_us.filter(|us| *us > 0).map(|us| (1e8 / us as f64).round() / 100.0);
    let lag_limit_us = limits.lag_p99.as_micros() as u64;
    let behind = if achieved < limits.fps_ratio * requested_fps {
        Some(format!(
            "the load generator fell behind: {achieved:.2} fps per client achieved of {requested_fps} requested \
             ({:.1} %, limit {:.0} %)",
            100.0 * achieved / requested_fps,
            100.0 * limits.fps_ratio
        ))
    } else {
        send_lag_p99_us.filter(|lag| *lag > lag_limit_us).map(|lag| {
            format!(
                "the load generator fell behind: send_lag p99 {lag} µs is over the limit of {lag_limit_us} µs \
                 (frames left later than their schedule)"
            )
        })
    };
    Load {
        requested_fps,
        achieved_fps: achieved,
        ascii_fps,
        send_lag_p99_us,
        fps_ratio_limit: limits.fps_ratio,
        lag_p99_limit_us: lag_limit_us,
        behind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sent: u64, lag: Option<u64>) -> Load {
        assess(30.0, sent, 64, Duration::from_secs(10), lag, Some(92_000), BehindLimits::for_fps(30.0))
    }

    #[test]
    fn a_run_that_kept_its_schedule_is_not_behind() {
        let l = run(64 * 300, Some(1_170));
        assert_eq!((l.achieved_fps, l.behind.as_deref()), (30.0, None));
        assert_eq!(l.lag_p99_limit_us, 33_333);
        assert_eq!(l.ascii_fps, Some(10.87));
    }

    #[test]
    fn too_few_frames_is_behind_and_says_by_how_much() {
        // 64 clients x 10 s at 30 fps is 19,200 frames; 17,000 is 26.56 fps, under 95 %.
        let l = run(17_000, Some(100));
        let why = l.behind.expect("behind");
        assert!(
            why.contains("26.56 fps per client achieved of 30 requested") && why.contains("limit 95 %"),
            "{why}"
        );
    }

    #[test]
    fn a_late_schedule_is_behind_even_when_every_frame_went_out() {
        // The encrypted 64-client soak: every frame sent eventually, send_lag p99 far over a period.
        let l = run(64 * 300, Some(265_000));
        let why = l.behind.expect("behind");
        assert!(why.contains("send_lag p99 265000 µs is over the limit of 33333 µs"), "{why}");
    }

    #[test]
    fn limits_are_settable() {
        let lenient = BehindLimits { fps_ratio: 0.5, lag_p99: Duration::from_millis(500) };
        let l = assess(30.0, 17_000, 64, Duration::from_secs(10), Some(265_000), None, lenient);
        assert_eq!(l.behind, None);
    }
}
