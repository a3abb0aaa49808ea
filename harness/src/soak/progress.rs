//! Live progress of a soak. One [`Tick`] per second feeds every output (STYLE.md 24): an indicatif bar
//! on a terminal, a JSON line per tick with `--json`, nothing with `--quiet`.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// The once-a-second state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tick {
    pub elapsed_s: f64,
    /// Frames delivered (seen by the server, or sent when it cannot tell) per second in the last interval.
    pub fps: f64,
    /// p99 of the end-to-end latency so far, µs (`None` before the first sample).
    pub p99_us: Option<u64>,
    pub errors: u64,
    pub clients_connected: u64,
}

impl Tick {
    /// The bar's message, also used for `--quiet`'s final line.
    pub fn message(&self) -> String {
        let p99 = self.p99_us.map_or("-".to_string(), |us| format!("{:.1}ms", us as f64 / 1000.0));
        format!(
            "{:>7.0} fps  p99 {p99:>8}  errors {}  clients {}",
            self.fps, self.errors, self.clients_connected
        )
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Json,
    Quiet,
}

pub struct Progress {
    mode: Mode,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(mode: Mode, duration: Duration) -> Self {
        let bar = (mode == Mode::Bar).then(|| {
            // Drawn on stderr, and hidden by indicatif when stderr is not a terminal.
            let bar = ProgressBar::with_draw_target(
                Some(duration.as_millis() as u64),
                ProgressDrawTarget::stderr_with_hz(4),
            );
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
                    .expect("static template parses")
                    .progress_chars("=> "),
            );
            bar
        });
        Progress { mode, bar }
    }

    pub fn tick(&self, t: &Tick) {
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.set_position((t.elapsed_s * 1000.0) as u64);
                    bar.set_message(t.message());
                }
            }
            Mode::Json => {
                // One line per tick on stderr, so stdout carries only the final result.
                eprintln!("{}", serde_json::json!({ "progress": t }));
            }
            Mode::Quiet => {}
        }
    }

    /// Shows a line above the bar (or on stderr without one).
    pub fn println(&self, line: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.println(line),
            (None, Mode::Quiet) => {}
            (None, _) => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_shows_what_matters() {
        let t = Tick { elapsed_s: 1.0, fps: 1920.4, p99_us: Some(12_345), errors: 2, clients_connected: 64 };
        let m = t.message();
        assert!(m.contains("1920 fps") && m.contains("12.3ms") && m.contains("errors 2"), "{m}");
        let none = Tick { p99_us: None, ..t }.message();
        assert!(none.contains("p99        -"), "{none}");
    }
}
