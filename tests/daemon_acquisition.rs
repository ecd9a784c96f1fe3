//! `garrison run` as a process: tailing through rotations, restarts, kill -9, reloads and
//! the journal. Every line carries its own address and a trigger scenario makes one alert
//! per line, so the alerts table tells exactly which lines were processed, and how often.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GARRISON: &str = env!("CARGO_BIN_EXE_garrison");

/// One alert per line: groupby the source, trigger, no remediation (no decisions).
const TRIGGER_RULES: &str = r#"
scenarios {
    - "test-each-line" {
        description "one alert per failed login line"
        type trigger
        filter "evt.Meta.log_type == 'ssh_failed-auth'"
        groupby "evt.Meta.source_ip"
    }
}
"#;

struct Sandbox {
    dir: PathBuf,
    daemon: Option<Child>,
    port: u16,
    starts: u32,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("garrison-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rules")).expect("temp dir");
        std::fs::create_dir_all(dir.join("logs")).expect("logs dir");
        std::fs::write(dir.join("rules/trigger.kdl"), TRIGGER_RULES).expect("rules");
        // A port per test, so tests can run in parallel.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let sb = Sandbox {
            dir,
            daemon: None,
            port,
            starts: 0,
        };
        sb.write_config(&format!(r#"files "{}/logs/*.log""#, sb.dir.display()));
        sb
    }

    fn write_config(&self, source: &str) {
        let cfg = format!(
            r#"
daemon state-dir="{dir}/state"
acquisitions {{
    - type=syslog name=test {{
        {source}
    }}
}}
collections "sshd" "linux"
rule-dirs "rules"
enforcement enable=#false
lapi enable=#false
metrics listen="127.0.0.1:{port}"
"#,
            dir = self.dir.display(),
            port = self.port
        );
        std::fs::write(self.dir.join("garrison.kdl"), cfg).expect("config");
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(name)
    }

    fn start(&mut self) {
        self.start_with_env(&[]);
    }

    fn start_with_env(&mut self, env: &[(&str, &str)]) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("daemon-{}.log", self.starts)))
            .expect("daemon log");
        let mut cmd = Command::new(GARRISON);
        // The database writer logs each commit with its cursors: a failure shows whether
        // the lines' alerts were committed, and when.
        cmd.env("RUST_LOG", "info,garrison::store::db=debug");
        cmd.args(["run", "--config"])
            .arg(self.dir.join("garrison.kdl"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start garrison");
        self.daemon = Some(child);
        // Ready when the metrics endpoint answers.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                self.alive() && Instant::now() < deadline,
                "garrison did not start:\n{}",
                self.daemon_logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Give the tailer its first scan (it records the starting offsets).
        std::thread::sleep(Duration::from_millis(300));
    }

    fn signal(&mut self, sig: &str) {
        let pid = self.daemon.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    fn stop(&mut self) {
        self.signal("-TERM");
        let mut child = self.daemon.take().expect("running");
        let status = child.wait().expect("wait");
        assert!(status.success(), "garrison exited with {status}");
    }

    fn kill9(&mut self) {
        let mut child = self.daemon.take().expect("running");
        child.kill().expect("kill -9");
        let _ = child.wait();
    }

    fn alive(&mut self) -> bool {
        matches!(self.daemon.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// How many alerts each source address has (empty while the database cannot be read).
    fn alerts(&self) -> BTreeMap<String, usize> {
        self.try_alerts().unwrap_or_default()
    }

    fn try_alerts(&self) -> rusqlite::Result<BTreeMap<String, usize>> {
        let conn = self.read_db()?;
        let mut stmt = conn.prepare(
            "SELECT source_value, count(*) FROM alerts WHERE scenario = 'test-each-line' GROUP BY source_value",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = BTreeMap::new();
        for r in rows {
            let (k, n) = r?;
            out.insert(k, n as usize);
        }
        Ok(out)
    }

    fn read_db(&self) -> rusqlite::Result<rusqlite::Connection> {
        rusqlite::Connection::open_with_flags(
            self.dir.join("state/garrison.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
    }

    /// What the database holds, for a failure message: the last read error, alert ids and
    /// sources, and the cursors.
    fn db_report(&self) -> String {
        let read = || -> rusqlite::Result<String> {
            let conn = self.read_db()?;
            let mut out = String::new();
            let mut stmt = conn.prepare("SELECT id, source_value FROM alerts ORDER BY id")?;
            for r in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
                let (id, v) = r?;
                out.push_str(&format!("alert {id} {v}\n"));
            }
            let mut stmt = conn.prepare("SELECT source, value FROM cursors")?;
            for r in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
                let (s, v) = r?;
                out.push_str(&format!("cursor {s} = {v}\n"));
            }
            Ok(out)
        };
        let files: Vec<String> = ["garrison.db", "garrison.db-wal", "garrison.db-shm"]
            .iter()
            .map(|f| {
                let len = std::fs::metadata(self.dir.join("state").join(f)).map(|m| m.len());
                format!("{f}: {len:?}")
            })
            .collect();
        format!(
            "{}\n{}\nlast read: {:?}\nthreads:\n{}",
            files.join(", "),
            read().unwrap_or_else(|e| format!("cannot read the database: {e}")),
            self.try_alerts().err(),
            self.threads()
        )
    }

    /// Where each of the daemon's threads waits (name, kernel wait channel, syscall), for
    /// a failure message: a write that never commits shows which thread holds it up.
    fn threads(&self) -> String {
        let Some(pid) = self.daemon.as_ref().map(Child::id) else {
            return "not running".into();
        };
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return "no /proc entry".into();
        };
        let mut out: Vec<String> = tasks
            .flatten()
            .map(|t| {
                let p = t.path();
                let syscall = read(p.join("syscall"));
                format!(
                    "{} wchan={} syscall={}",
                    read(p.join("comm")).trim(),
                    read(p.join("wchan")).trim(),
                    syscall.split_whitespace().next().unwrap_or("?")
                )
            })
            .collect();
        out.sort();
        out.join("\n")
    }

    /// Waits until exactly the addresses of `lines` have alerts, each one.
    fn expect_exactly(&self, ids: std::ops::Range<u32>) {
        let want: BTreeMap<String, usize> = ids.map(|i| (addr(i), 1)).collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.alerts();
            if got == want {
                // Stable: nothing more arrives (no duplicate shows up late).
                std::thread::sleep(Duration::from_millis(700));
                assert_eq!(self.alerts(), want, "alerts changed after settling");
                return;
            }
            if Instant::now() > deadline {
                let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
                let dup: Vec<(&String, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
                let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
                panic!(
                    "lines processed wrongly: {} missing {missing:?}, duplicated {dup:?}, unexpected {extra:?}\ndatabase:\n{}\ndaemon logs:\n{}",
                    missing.len(),
                    self.db_report(),
                    self.daemon_logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn daemon_logs(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            let mut paths: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("daemon-"))
                })
                .collect();
            paths.sort();
            for p in paths {
                out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
        out
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A distinct documentation address per line number.
fn addr(i: u32) -> String {
    format!("2001:db8::{:x}", i + 1)
}

fn line(i: u32) -> String {
    format!(
        "Nov 21 10:00:00 host sshd[{}]: Failed password for invalid user u{i} from {} port 4000 ssh2\n",
        1000 + i,
        addr(i)
    )
}

fn append(path: &Path, ids: std::ops::Range<u32>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    let mut s = String::new();
    for i in ids {
        s.push_str(&line(i));
    }
    f.write_all(s.as_bytes()).expect("append");
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn first_start_tails_from_the_end_and_a_partial_line_waits() {
    let mut sb = Sandbox::new("tail");
    let log = sb.log("auth.log");
    append(&log, 0..5); // history before the first start: not an attack in progress
    sb.start();
    append(&log, 5..8);
    // Half a line: nothing until its newline arrives.
    let l = line(8);
    let (a, b) = l.split_at(30);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(a.as_bytes()))
        .expect("partial");
    sb.expect_exactly(5..8);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(b.as_bytes()))
        .expect("rest");
    sb.expect_exactly(5..9);
    sb.stop();
}

#[test]
fn rotation_by_rename_loses_and_repeats_nothing() {
    let mut sb = Sandbox::new("rename");
    let log = sb.log("auth.log");
    std::fs::write(&log, "").expect("create");
    sb.start();
    append(&log, 0..50);
    // logrotate `create`: rename, then a new file at the path; lines keep coming to both.
    std::fs::rename(&log, sb.dir.join("logs/auth.log.1")).expect("rename");
    append(&sb.dir.join("logs/auth.log.1"), 50..60); // a writer still holding the old file
    append(&log, 60..100);
    sb.expect_exactly(0..100);
    sb.stop();
}

#[test]
fn copytruncate_loses_and_repeats_nothing() {
    let mut sb = Sandbox::new("copytruncate");
    let log = sb.log("auth.log");
    std::fs::write(&log, "").expect("create");
    sb.start();
    append(&log, 0..40);
    sb.expect_exactly(0..40);
    std::fs::copy(&log, sb.dir.join("logs/auth.log.1.old")).expect("copy");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .and_then(|f| f.set_len(0))
        .expect("truncate");
    append(&log, 40..45);
    sb.expect_exactly(0..45);
    sb.stop();
}

#[test]
fn restart_resumes_at_the_cursor_even_across_a_rotation() {
    let mut sb = Sandbox::new("restart");
    let log = sb.log("auth.log");
    std::fs::write(&log, "").expect("create");
    sb.start();
    append(&log, 0..10);
    sb.expect_exactly(0..10);
    sb.stop();
    // While stopped: more lines, then a rotation, then lines in the new file.
    append(&log, 10..20);
    std::fs::rename(&log, sb.dir.join("logs/auth.log.1")).expect("rename");
    append(&log, 20..25);
    sb.start();
    sb.expect_exactly(0..25);
    sb.stop();
}

#[test]
fn kill_9_in_the_middle_of_a_burst_loses_and_repeats_nothing() {
    let mut sb = Sandbox::new("kill9");
    let log = sb.log("auth.log");
    std::fs::write(&log, "").expect("create");
    sb.start();
    append(&log, 0..3000);
    // Kill while the burst is being processed.
    wait_for("some lines processed", Duration::from_secs(10), || {
        !sb.alerts().is_empty()
    });
    sb.kill9();
    let seen = sb.alerts().len();
    sb.start();
    sb.expect_exactly(0..3000);
    eprintln!("killed after {seen} of 3000 lines; none lost or repeated after restart");
    sb.stop();
}

#[test]
fn a_file_that_disappears_and_comes_back_is_followed() {
    let mut sb = Sandbox::new("vanish");
    let log = sb.log("auth.log");
    std::fs::write(&log, "").expect("create");
    sb.start();
    append(&log, 0..5);
    sb.expect_exactly(0..5);
    std::fs::remove_file(&log).expect("remove");
    std::thread::sleep(Duration::from_millis(1500));
    append(&log, 5..9);
    sb.expect_exactly(0..9);
    sb.stop();
}

#[test]
fn a_bad_config_on_reload_keeps_the_running_rules() {
    let mut sb = Sandbox::new("reload");
    let log = sb.log("auth.log");
    std::fs::write(&log, "").expect("create");
    sb.start();
    let good = std::fs::read_to_string(sb.dir.join("garrison.kdl")).expect("config");
    std::fs::write(
        sb.dir.join("garrison.kdl"),
        good.replace("rule-dirs", "profiles { - oops {\nrule-dirs"),
    )
    .expect("break config");
    sb.signal("-HUP");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sb.alive(), "a bad reload must not stop garrison");
    assert!(
        sb.daemon_logs().contains("reload failed"),
        "the failure is logged: {}",
        sb.daemon_logs()
    );
    append(&log, 0..5);
    sb.expect_exactly(0..5);
    // A good config is taken on the next reload.
    std::fs::write(sb.dir.join("garrison.kdl"), &good).expect("fix config");
    sb.signal("-HUP");
    wait_for("reload done", Duration::from_secs(10), || {
        sb.daemon_logs().contains("reload done")
    });
    append(&log, 5..8);
    sb.expect_exactly(0..8);
    sb.stop();
}

#[test]
fn journal_entries_are_read_and_the_cursor_is_resumed() {
    let mut sb = Sandbox::new("journal");
    // A recorded `journalctl --output=json` export replayed by a stand-in journalctl, which
    // also records its arguments (CI machines run no journald).
    let export: String = (0..6)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({
                    "__CURSOR": format!("s=test;i={i}"),
                    "__REALTIME_TIMESTAMP": format!("{}", 1_763_700_000_000_000u64 + u64::from(i)),
                    "_HOSTNAME": "web",
                    "SYSLOG_IDENTIFIER": "sshd-session",
                    "_PID": "77",
                    "MESSAGE": format!("Failed password for invalid user u{i} from {} port 4000 ssh2", addr(i)),
                })
            )
        })
        .collect();
    std::fs::write(sb.dir.join("export.json"), export).expect("export");
    let fake = sb.dir.join("journalctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" >> {dir}/journalctl.args\ncat {dir}/export.json\nexec sleep 3600\n",
            dir = sb.dir.display()
        ),
    )
    .expect("fake journalctl");
    Command::new("chmod")
        .args(["+x"])
        .arg(&fake)
        .status()
        .expect("chmod");
    sb.write_config(r#"journald "_SYSTEMD_UNIT=sshd.service" "SYSLOG_IDENTIFIER=sshd-session""#);
    let fake_s = fake.display().to_string();
    sb.start_with_env(&[("GARRISON_JOURNALCTL", &fake_s)]);
    sb.expect_exactly(0..6);
    sb.stop();
    let args = std::fs::read_to_string(sb.dir.join("journalctl.args")).expect("args");
    assert!(
        args.lines().next().is_some_and(|l| l.contains("--lines=0")
            && l.contains("_SYSTEMD_UNIT=sshd.service + SYSLOG_IDENTIFIER=sshd-session")),
        "first start follows new entries for either match: {args}"
    );
    sb.start_with_env(&[("GARRISON_JOURNALCTL", &fake_s)]);
    wait_for("journalctl restarted", Duration::from_secs(10), || {
        std::fs::read_to_string(sb.dir.join("journalctl.args"))
            .is_ok_and(|a| a.lines().count() >= 2)
    });
    sb.stop();
    let args = std::fs::read_to_string(sb.dir.join("journalctl.args")).expect("args");
    assert!(
        args.lines()
            .nth(1)
            .is_some_and(|l| l.contains("--after-cursor=s=test;i=5")),
        "a restart resumes after the last entry processed: {args}"
    );
}

/// The metrics after real traffic: lines per source and per parser, active decisions by
/// origin, Local API requests by route, the detection latency histogram, and the
/// `garrison metrics` tables that show them.
#[test]
fn metrics_count_lines_parsers_decisions_and_api_requests() {
    let mut sb = Sandbox::new("metrics");
    let log = sb.log("auth.log");
    std::fs::write(&log, "").expect("log");
    sb.start();
    append(&log, 0..5);
    // Two lines no raw parser reads (not syslog), so unparsed counts are not all zero.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(b"not a syslog line\nneither is this\n"))
        .expect("garbage");
    sb.expect_exactly(0..5);
    let cfg = sb.dir.join("garrison.kdl");
    let cli = |args: &[&str]| {
        let out = Command::new(GARRISON)
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .expect("garrison cli");
        assert!(
            out.status.success(),
            "garrison {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    cli(&[
        "decisions",
        "add",
        "--ip",
        "2001:db8::ffff",
        "--duration",
        "1h",
        "--reason",
        "metrics test",
    ]);
    cli(&["decisions", "list"]);
    let url = format!("http://127.0.0.1:{}/metrics", sb.port);
    let text = ureq::get(&url)
        .call()
        .expect("scrape")
        .body_mut()
        .read_to_string()
        .expect("body");
    let samples = garrison::metrics::parse_text(&text);
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.value)
            .sum()
    };
    let src = [("source", "test")];
    assert_eq!(value("garrison_lines_read_total", &src), 7.0, "{text}");
    assert_eq!(value("garrison_lines_parsed_total", &src), 5.0, "{text}");
    assert_eq!(value("garrison_lines_unparsed_total", &src), 2.0, "{text}");
    // Per parser: the raw syslog parser saw every line and rejected the two others; the
    // sshd parser accepted the five failed logins.
    let parser = |suffix: &str, name: &str| -> f64 {
        samples
            .iter()
            .filter(|s| s.name == format!("garrison_parser_{suffix}_total"))
            .filter(|s| s.labels.iter().any(|(k, v)| k == "source" && v == "test"))
            .filter(|s| {
                s.labels
                    .iter()
                    .any(|(k, v)| k == "parser" && v.ends_with(name))
            })
            .map(|s| s.value)
            .sum()
    };
    assert_eq!(parser("hits", "syslog-logs"), 7.0, "{text}");
    assert_eq!(parser("parsed", "syslog-logs"), 5.0, "{text}");
    assert_eq!(parser("unparsed", "syslog-logs"), 2.0, "{text}");
    assert_eq!(parser("parsed", "sshd-logs"), 5.0, "{text}");
    assert_eq!(
        value(
            "garrison_active_decisions",
            &[("origin", "cscli"), ("action", "ban")]
        ),
        1.0,
        "{text}"
    );
    // The CLI's two requests, by route template (never the raw URI) and status.
    let api: Vec<&garrison::metrics::Sample> = samples
        .iter()
        .filter(|s| s.name == "garrison_api_requests_total")
        .collect();
    let requests: f64 = api.iter().map(|s| s.value).sum();
    assert!(requests >= 2.0, "{text}");
    assert!(
        api.iter().all(|s| s
            .labels
            .iter()
            .any(|(k, v)| k == "code" && v.starts_with('2'))
            && s.labels
                .iter()
                .any(|(k, v)| k == "method" && (v == "GET" || v == "POST"))),
        "{text}"
    );
    assert!(
        api.iter().all(|s| s
            .labels
            .iter()
            .any(|(k, v)| k == "route" && v.starts_with("/v1/"))),
        "{text}"
    );
    // One detection per alert, each well under a second.
    let count = value("garrison_detection_latency_seconds_count", &[]);
    let sum = value("garrison_detection_latency_seconds_sum", &[]);
    assert_eq!(count, 5.0, "{text}");
    assert!(sum > 0.0 && sum / count < 1.0, "{text}");
    let tables = cli(&["metrics", "--url", &url]);
    eprintln!("{tables}");
    for want in [
        "Parsers:",
        "sshd-logs",
        "Active decisions:",
        "cscli",
        "Local API requests:",
        "detection (line read",
    ] {
        assert!(tables.contains(want), "no {want:?} in:\n{tables}");
    }
    sb.stop();
}
