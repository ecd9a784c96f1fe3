//! Detection throughput (issue: Detection engine): replays 1,000,000-line sshd and nginx logs
//! from `../shared/bench/gen.py` through the default collections on one thread and prints
//! lines/s and peak RSS. Targets: sshd ≥ 2,000,000 lines/s, nginx ≥ 1,000,000 lines/s,
//! peak RSS ≤ 64 MB. Run with `cargo bench --bench replay`; `GARRISON_BENCH_LINES` changes
//! the size.

mod common;

use garrison::cli::replay::{Output, ReplayArgs, replay_each};
use std::time::Instant;

fn peak_rss_kb() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let lines = common::bench_lines();
    // `GARRISON_BENCH_KINDS=sshd` (or `nginx`) runs one log only, e.g. under a profiler.
    let kinds = std::env::var("GARRISON_BENCH_KINDS").unwrap_or_default();
    for (kind, log_type, target) in [
        ("sshd", "syslog", 2_000_000.0),
        ("nginx", "nginx", 1_000_000.0),
    ] {
        if !kinds.is_empty() && !kinds.split(',').any(|k| k == kind) {
            continue;
        }
        let file = common::generate(kind, lines);
        let args = ReplayArgs {
            config: None,
            log_type: log_type.into(),
            labels: Vec::new(),
            scenarios: Vec::new(),
            no_whitelist: false,
            output: Output::Json,
            files: vec![file],
        };
        let t = Instant::now();
        // Findings are counted as they come, as `garrison replay -o json` prints them.
        let mut alerts = 0u64;
        let stats = replay_each(&args, false, |_| alerts += 1).expect("replay runs");
        let secs = t.elapsed().as_secs_f64();
        let rate = stats.read.lines as f64 / secs;
        println!(
            "replay {kind}: {} lines in {secs:.2} s = {rate:.0} lines/s (target {target:.0}, {:.1}% of it); {} parsed, {} alerts; peak RSS so far {} MB (target 64 MB)",
            stats.read.lines,
            100.0 * rate / target,
            stats.engine.parsed,
            alerts,
            peak_rss_kb().unwrap_or(0) / 1024,
        );
    }
}
