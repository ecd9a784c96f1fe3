//! Shared by the benches: the generated logs.
// Each bench is its own crate and uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `../shared/bench/gen.py KIND --lines N`, cached under `target/bench-data`.
#[allow(dead_code)] // The blocklists bench generates with `generate_with`.
pub fn generate(kind: &str, lines: usize) -> PathBuf {
    let n = lines.to_string();
    generate_with(kind, &format!("{kind}-{lines}.log"), &["--lines", &n])
}

/// `../shared/bench/gen.py KIND ARGS --out target/bench-data/FILE`, cached.
pub fn generate_with(kind: &str, file: &str, args: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).expect("target/ is writable");
    let out = dir.join(file);
    if !out.exists() {
        let gen_py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen.py");
        let status = Command::new("python3")
            .arg(&gen_py)
            .arg(kind)
            .args(args)
            .arg("--out")
            .arg(&out)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("python3 runs gen.py");
        assert!(status.success(), "gen.py {kind} failed");
    }
    out
}

/// The process's resident set size, in KiB (0 when unknown).
#[allow(dead_code)] // Not every bench measures memory.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Lines per log: `GARRISON_BENCH_LINES`, default 1,000,000.
pub fn bench_lines() -> usize {
    std::env::var("GARRISON_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}
