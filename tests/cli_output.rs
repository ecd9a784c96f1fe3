//! What `garrison replay -o json` and `garrison explain -o json` print, as a process whose
//! standard output is a pipe (as in `garrison replay -o json auth.log > alerts.json`): the
//! documented objects, fields in the documented order, every record there when it exits
//! (the output is buffered).

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

const GARRISON: &str = env!("CARGO_BIN_EXE_garrison");

/// A log in a directory of its own under the target directory.
fn log_file(name: &str, lines: &[String]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_output");
    std::fs::create_dir_all(&dir).expect("target dir is writable");
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("log written");
    path
}

/// Seven failed passwords a second apart from each of `attackers` (public documentation
/// addresses: never whitelisted), and a cron line between them.
fn brute_force(attackers: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    for (a, ip) in attackers.iter().enumerate() {
        for s in 0..7 {
            lines.push(format!(
                "Nov 18 09:{:02}:{s:02} web01 sshd[{}]: Failed password for root from {ip} port {} ssh2",
                10 + a,
                4000 + a,
                50000 + s
            ));
            lines.push(format!(
                "Nov 18 09:{:02}:{s:02} web01 CRON[99]: pam_unix(cron:session): session closed for user root",
                10 + a
            ));
        }
    }
    lines
}

/// The keys of a JSON object, in the order they were printed.
fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn replay_json_prints_each_alert_as_documented_and_all_of_them_through_a_pipe() {
    let attackers = ["198.51.100.7", "203.0.113.9", "192.0.2.77"];
    let log = log_file("replay.log", &brute_force(&attackers));
    let out = Command::new(GARRISON)
        .args(["replay", "--type", "syslog", "-o", "json"])
        .arg(&log)
        .output()
        .expect("garrison replay runs");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let records: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
        .collect();
    // The summary on standard error counts the alerts: every one was printed.
    assert!(
        stderr.contains(&format!("; {} alerts", records.len())),
        "{stderr}\n{stdout}"
    );
    for ip in attackers {
        let bf: Vec<&Value> = records
            .iter()
            .filter(|r| r["scenario"] == "ssh-bf" && r["source"]["value"] == ip)
            .collect();
        assert_eq!(bf.len(), 1, "one ssh-bf alert for {ip}: {stdout}");
        let r = bf[0];
        assert_eq!(
            keys(r),
            [
                "scenario",
                "source",
                "events_count",
                "start_at",
                "stop_at",
                "decisions"
            ]
        );
        assert_eq!(keys(&r["source"]), ["scope", "value"]);
        assert_eq!(r["source"]["scope"], "Ip");
        // Capacity 5: the sixth failure overflows.
        assert_eq!(r["events_count"], 6);
        assert!(
            r["start_at"].as_str().is_some_and(|t| t.ends_with(":00Z")),
            "{r}"
        );
        assert!(
            r["stop_at"].as_str().is_some_and(|t| t.ends_with(":05Z")),
            "{r}"
        );
        let d = &r["decisions"][0];
        assert_eq!(keys(d), ["type", "duration", "scope", "value"]);
        assert_eq!(d["type"], "ban");
        assert_eq!(d["duration"], "4h0m0s");
        assert_eq!(d["value"], ip);
    }
}

#[test]
fn explain_json_prints_one_object_per_input_line_in_order() {
    let lines = brute_force(&["198.51.100.7"]);
    let log = log_file("explain.log", &lines);
    let out = Command::new(GARRISON)
        .args(["explain", "--type", "syslog", "-o", "json", "--file"])
        .arg(&log)
        .output()
        .expect("garrison explain runs");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let records: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
        .collect();
    assert_eq!(records.len(), lines.len(), "{stdout}");
    for (n, r) in records.iter().enumerate() {
        assert_eq!(r["line"], n + 1, "{r}");
        let sshd = lines[n].contains("sshd[");
        assert_eq!(r["parsed"], sshd, "{r}");
        let poured = r["poured"].as_array().expect("poured is a list");
        assert_eq!(
            poured.iter().any(|s| s == "ssh-bf"),
            sshd,
            "only sshd failures pour into ssh-bf: {r}"
        );
    }
}
