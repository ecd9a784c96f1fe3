//! Shared by the benches: the generated logs.
// Each bench is its own crate and uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `../shared/bench/gen.py KIND --lines N`, cached under `target/bench-data`.
pub fn generate(kind: &str, lines: usize) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).expect("target/ is writable");
    let out = dir.join(format!("{kind}-{lines}.log"));
    if !out.exists() {
        let gen_py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen.py");
        let status = Command::new("python3")
            .arg(&gen_py)
            .args([kind, "--lines", &lines.to_string(), "--out"])
            .arg(&out)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("python3 runs gen.py");
        assert!(status.success(), "gen.py {kind} failed");
    }
    out
}

/// Lines per log: `GARRISON_BENCH_LINES`, default 1,000,000.
pub fn bench_lines() -> usize {
    std::env::var("GARRISON_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}
