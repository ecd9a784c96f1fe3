//! Commands for the network-namespace tests (`e2e_netns`, `firewall_bouncer`): they run
//! as root with tools `tests/run.sh` installs, and fail loudly when either is missing.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs a command and returns what it did; panics when it cannot start.
pub fn run(cmd: &[&str]) -> Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (is it installed? tests/run.sh installs it)",
                cmd[0]
            )
        })
}

/// Runs a command that must succeed.
pub fn must(cmd: &[&str]) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{} failed: {}{}",
        cmd.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts root (namespaces and nftables need it; CI runs as root) and that every tool is
/// installed.
pub fn require(tools: &[&str]) {
    assert!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "the namespace tests need root for network namespaces and nftables (CI runs as root)"
    );
    for t in tools {
        let found = Path::new(t).is_file()
            || std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()));
        assert!(
            found,
            "`{t}` is missing: run tests/run.sh, which installs it"
        );
    }
}
