//! Detection throughput (issue: Detection engine): replays 1,000,000-line sshd and nginx logs
//! from `../shared/bench/gen.py` through the default collections on one thread and prints
//! lines/s and peak RSS. Targets: sshd ≥ 2,000,000 lines/s, nginx ≥ 1,000,000 lines/s,
//! peak RSS ≤ 64 MB. Run with `cargo bench --bench replay`; `GARRISON_BENCH_LINES` changes
//! the size, `GARRISON_BENCH_RUNS` the number of replays of each log (default 3).
//!
//! A shared host's speed changes from second to second (single replays of the same build
//! scatter by ±10 % here), so each log is replayed several times, every run printed, and
//! the target judged on the median run. Each run is a process of its own, as a
//! `garrison replay` is: start-up is paid every time, and nothing one run loaded or
//! allocated helps the next. With one run (`GARRISON_BENCH_RUNS=1`, as under a profiler)
//! the replay runs in this process.

mod common;

use garrison::cli::replay::{Output, ReplayArgs, replay_each};
use std::process::Command;
use std::time::Instant;

/// Set in a child process: the kind of log it replays once.
const ONE_RUN: &str = "GARRISON_BENCH_ONE_RUN";

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

/// The logs, each with its acquisition type and its lines/s target.
const KINDS: [(&str, &str, f64); 2] = [
    ("sshd", "syslog", 2_000_000.0),
    ("nginx", "nginx", 1_000_000.0),
];

/// Replays the `kind` log once in this process; prints and returns lines/s and peak RSS (MB).
fn replay_once(kind: &str, log_type: &str, lines: usize) -> (f64, u64) {
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
    let rss = peak_rss_kb().unwrap_or(0) / 1024;
    println!(
        "replay {kind}: {} lines in {secs:.2} s = {rate:.0} lines/s; {} parsed, {} alerts; peak RSS {rss} MB",
        stats.read.lines, stats.engine.parsed, alerts,
    );
    (rate, rss)
}

/// Replays the `kind` log once in a child process of this bench; its lines/s and peak RSS.
fn replay_in_child(kind: &str) -> (f64, u64) {
    let exe = std::env::current_exe().expect("the bench knows its own path");
    let out = Command::new(exe)
        .arg("--bench")
        .env(ONE_RUN, kind)
        .output()
        .expect("the bench runs itself");
    assert!(out.status.success(), "the {kind} replay failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    // `... = RATE lines/s; ... peak RSS MB MB`
    let number_before = |end: &str| -> Option<f64> {
        let head = &text[..text.find(end)?];
        head.rsplit(' ').next()?.parse().ok()
    };
    let rate = number_before(" lines/s").expect("the child printed its lines/s");
    let rss = number_before(" MB").expect("the child printed its peak RSS");
    (rate, rss as u64)
}

fn main() {
    let lines = common::bench_lines();
    if let Ok(kind) = std::env::var(ONE_RUN) {
        let &(kind, log_type, _) = KINDS
            .iter()
            .find(|(k, ..)| *k == kind)
            .expect("a known kind");
        replay_once(kind, log_type, lines);
        return;
    }
    let runs: usize = std::env::var("GARRISON_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    // `GARRISON_BENCH_KINDS=sshd` (or `nginx`) runs one log only, e.g. under a profiler.
    let kinds = std::env::var("GARRISON_BENCH_KINDS").unwrap_or_default();
    for (kind, log_type, target) in KINDS {
        if !kinds.is_empty() && !kinds.split(',').any(|k| k == kind) {
            continue;
        }
        if runs == 1 {
            let (rate, rss) = replay_once(kind, log_type, lines);
            println!(
                "replay {kind}: {rate:.0} lines/s (target {target:.0}, {:.1}% of it); peak RSS {rss} MB (target 64 MB)",
                100.0 * rate / target
            );
            continue;
        }
        // Generated before the children start, which would otherwise race to write it.
        common::generate(kind, lines);
        let (mut rates, mut peak) = (Vec::with_capacity(runs), 0);
        for run in 1..=runs {
            print!("run {run}/{runs}: ");
            let (rate, rss) = replay_in_child(kind);
            rates.push(rate);
            peak = peak.max(rss);
        }
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        println!(
            "replay {kind}: median of {runs} runs = {median:.0} lines/s (target {target:.0}, {:.1}% of it; slowest {:.0}, fastest {:.0}); peak RSS {peak} MB (target 64 MB)",
            100.0 * median / target,
            rates[0],
            rates[rates.len() - 1],
        );
    }
}
