//! Compilation timings for `garrison check --timings`.

use std::fmt;
use std::time::{Duration, Instant};

/// How long each compilation step took.
#[derive(Debug, Default, Clone)]
pub struct Timings {
    /// Steps in order.
    pub steps: Vec<(&'static str, Duration)>,
}

impl Timings {
    /// Records a step that started at `start`.
    pub fn record(&mut self, step: &'static str, start: Instant) {
        self.steps.push((step, start.elapsed()));
    }

    /// The total of every step except the overall ones.
    pub fn total(&self) -> Duration {
        self.steps
            .iter()
            .filter(|(s, _)| !s.starts_with("total"))
            .map(|(_, d)| *d)
            .sum()
    }
}

impl fmt::Display for Timings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\ntimings:")?;
        for (step, d) in &self.steps {
            if !step.starts_with("total") {
                writeln!(f, "  {step:<40} {:>9.3} ms", d.as_secs_f64() * 1e3)?;
            }
        }
        writeln!(
            f,
            "  {:<40} {:>9.3} ms",
            "total",
            self.total().as_secs_f64() * 1e3
        )
    }
}
