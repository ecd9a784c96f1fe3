//! Startup budget: compiling the default configuration with every shipped rule must take
//! less than 50 ms (issue: Foundation). Run with `cargo bench --bench startup`.
//!
//! Cold figures come from fresh `garrison check --timings` processes (the shipped rules are
//! decoded once per process, so only a new process measures a cold start); the warm figure is
//! a recompilation inside one process, as a SIGHUP reload does.

use std::process::Command;
use std::time::{Duration, Instant};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_garrison");
    let runs = 20;
    let (mut compile, mut process) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(bin)
            .args(["check", "--timings"])
            .output()
            .expect("run garrison");
        process.push(ms(t.elapsed()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let total = text
            .lines()
            .find(|l| l.trim_start().starts_with("total"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("check --timings prints a total");
        compile.push(total);
    }
    println!(
        "startup (cold, fresh process): compile default config + shipped rules: median {:.1} ms, p90 {:.1} ms (target < 50 ms); whole `garrison check` process: median {:.1} ms",
        percentile(&mut compile, 0.5),
        percentile(&mut compile, 0.9),
        percentile(&mut process, 0.5),
    );

    garrison::compile::compile_path(None).expect("default config compiles");
    let mut warm: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            garrison::compile::compile_path(None).expect("compiles");
            ms(t.elapsed())
        })
        .collect();
    println!(
        "startup (warm, recompile in-process as on reload): median {:.1} ms",
        percentile(&mut warm, 0.5)
    );
}
