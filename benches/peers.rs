//! Side-by-side comparison (issue: Detection engine §7): garrison against CrowdSec, fail2ban
//! and sshguard on the same logs from `../shared/bench/gen.py`, in one run. Prints lines/s
//! and peak RSS of each and the ratios garrison/peer.
//!
//! Run with `cargo bench --bench peers`. Needs the Debian packages (`apt install crowdsec
//! fail2ban sshguard`); fails if one is missing. No peer touches the firewall or the network:
//! CrowdSec runs one-shot on a file (`-dsn file://… -no-api`) with a configuration built
//! under `target/peers/` from the package's offline hub, and pushes its alerts to a stub
//! local API on 127.0.0.1 served by this bench; fail2ban runs `fail2ban-regex` (no jail);
//! sshguard runs its parser and blocker only, the blocker's commands going to this bench
//! instead of a firewall backend.
//!
//! Sizes: `GARRISON_BENCH_LINES` (garrison, default 1,000,000), `GARRISON_PEERS_LINES`
//! (fail2ban and sshguard, default 100,000), `GARRISON_PEERS_CROWDSEC_LINES` (default
//! 20,000: CrowdSec 1.4 does a few thousand lines/s). Samples are the first lines of the
//! garrison input. CrowdSec's figure excludes its start-up (a run on an empty file is
//! subtracted).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Wall time and peak RSS of a finished child.
struct Usage {
    secs: f64,
    rss_kb: u64,
}

/// Waits for `child` with `wait4`, which reports its peak RSS; panics when it failed.
fn wait_usage(child: Child, what: &str) -> u64 {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is a child of this process that nobody else waits for.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4 {what}");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{what} failed (wait status {status})"
    );
    // Linux reports ru_maxrss in KiB.
    ru.ru_maxrss as u64
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} not found: install the peer with `apt install {package}` (Debian bookworm: \
         crowdsec 1.4.6, fail2ban 1.0.2, sshguard 2.4.2)"
    );
}

/// The first `n` lines of `file`, cached next to it.
fn head(file: &Path, n: usize) -> PathBuf {
    let out = file.with_extension(format!("head{n}.log"));
    if !out.exists() {
        let r = BufReader::new(std::fs::File::open(file).expect("input exists"));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&out).expect("writable"));
        for line in r.lines().take(n) {
            writeln!(w, "{}", line.expect("utf-8 input")).expect("write sample");
        }
    }
    out
}

/// Runs `cmd` (output discarded) to completion.
fn run(cmd: &mut Command, what: &str) -> Usage {
    let t = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let rss_kb = wait_usage(child, what);
    Usage {
        secs: t.elapsed().as_secs_f64(),
        rss_kb,
    }
}

fn garrison(file: &Path, log_type: &str) -> Usage {
    run(
        Command::new(env!("CARGO_BIN_EXE_garrison"))
            .args(["replay", "-o", "json", "-t", log_type])
            .arg(file),
        "garrison replay",
    )
}

fn fail2ban(file: &Path) -> Usage {
    require("/usr/bin/fail2ban-regex", "fail2ban");
    let t = Instant::now();
    let mut child = Command::new("/usr/bin/fail2ban-regex")
        .arg(file)
        .arg("/etc/fail2ban/filter.d/sshd.conf")
        .stdout(Stdio::piped())
        .spawn()
        .expect("fail2ban-regex runs");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)
        .expect("read fail2ban-regex output");
    let rss_kb = wait_usage(child, "fail2ban-regex");
    let secs = t.elapsed().as_secs_f64();
    let summary = out.lines().find(|l| l.starts_with("Lines:")).unwrap_or("");
    assert!(
        summary.contains("matched"),
        "fail2ban-regex printed no summary"
    );
    println!("  fail2ban-regex: {summary}");
    Usage { secs, rss_kb }
}

fn sshguard(file: &Path) -> Usage {
    let dir = "/usr/libexec/sshguard";
    require(&format!("{dir}/sshg-parser"), "sshguard");
    let t = Instant::now();
    let mut parser = Command::new(format!("{dir}/sshg-parser"))
        .stdin(std::fs::File::open(file).expect("sample exists"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("sshg-parser runs");
    // The blocker prints firewall commands; they come here, not to a backend.
    let mut blocker = Command::new(format!("{dir}/sshg-blocker"))
        .args(["-a", "30", "-p", "120", "-s", "1800"])
        .stdin(parser.stdout.take().expect("piped"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("sshg-blocker runs");
    let mut out = String::new();
    blocker
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)
        .expect("read sshg-blocker output");
    let p = wait_usage(parser, "sshg-parser");
    let b = wait_usage(blocker, "sshg-blocker");
    let secs = t.elapsed().as_secs_f64();
    let blocks = out.lines().filter(|l| l.starts_with("block")).count();
    println!("  sshguard: {blocks} block commands");
    Usage {
        secs,
        rss_kb: p + b,
    }
}

/// Alerts CrowdSec pushed to the stub local API.
static CROWDSEC_ALERTS: AtomicUsize = AtomicUsize::new(0);

/// A stub of CrowdSec's local API on 127.0.0.1: accepts the agent's login and alerts.
fn stub_lapi() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("bound").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().expect("clone socket"));
                let mut w = conn;
                loop {
                    let mut request = String::new();
                    if r.read_line(&mut request).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let reply = if request.contains("/watchers/login") {
                        r#"{"code":200,"expire":"2099-01-01T00:00:00Z","token":"bench"}"#.into()
                    } else if request.starts_with("POST") && request.contains("/alerts") {
                        let n = serde_json::from_slice::<Vec<serde_json::Value>>(&body)
                            .map_or(0, |v| v.len());
                        CROWDSEC_ALERTS.fetch_add(n, Ordering::Relaxed);
                        serde_json::to_string(&(0..n).map(|i| i.to_string()).collect::<Vec<_>>())
                            .unwrap_or_else(|_| "[]".into())
                    } else {
                        "{}".to_string()
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        reply.len()
                    );
                    if w.write_all(head.as_bytes()).is_err()
                        || w.write_all(reply.as_bytes()).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

const HUB: &str = "/usr/share/crowdsec/hub";

/// The hub files of a collection and everything it includes, as (kind, path).
fn collection_items(name: &str, out: &mut Vec<PathBuf>) {
    let yaml = ["yaml", "yml"]
        .iter()
        .map(|e| PathBuf::from(format!("{HUB}/collections/{name}.{e}")))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("collection {name} not in {HUB}"));
    let text = std::fs::read_to_string(&yaml).expect("read collection");
    let mut section = "";
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') && !line.starts_with('-') {
            section = line.trim_end_matches(':').trim();
            continue;
        }
        let Some(item) = line.trim().strip_prefix("- ") else {
            continue;
        };
        let item = item.trim().trim_matches('"');
        match section {
            "collections" => collection_items(item, out),
            "parsers" => {
                let found = std::fs::read_dir(format!("{HUB}/parsers"))
                    .expect("hub parsers")
                    .flatten()
                    .map(|stage| stage.path().join(format!("{item}.yaml")))
                    .find(|p| p.exists())
                    .unwrap_or_else(|| panic!("parser {item} not in {HUB}"));
                out.push(found);
            }
            "scenarios" | "postoverflows" => {
                let p = PathBuf::from(format!("{HUB}/{section}/{item}.yaml"));
                assert!(p.exists(), "{} missing", p.display());
                out.push(p);
            }
            _ => {}
        }
    }
}

/// A CrowdSec configuration under `target/peers/crowdsec` with the collections matching
/// garrison's defaults (linux, sshd, nginx with the generic HTTP scenarios).
fn crowdsec_config(lapi_port: u16) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers/crowdsec");
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = dir.join("cfg");
    let mut items = Vec::new();
    for c in [
        "crowdsecurity/linux",
        "crowdsecurity/sshd",
        "crowdsecurity/nginx",
    ] {
        collection_items(c, &mut items);
    }
    items.push(PathBuf::from(format!(
        "{HUB}/parsers/s02-enrich/crowdsecurity/whitelists.yaml"
    )));
    for item in items {
        let rel = item.strip_prefix(HUB).expect("in hub");
        // parsers/<stage>/<author>/<name>.yaml → cfg/parsers/<stage>/<name>.yaml
        let mut parts: Vec<_> = rel.iter().collect();
        parts.remove(parts.len() - 2);
        let dest: PathBuf = cfg.join(parts.iter().collect::<PathBuf>());
        std::fs::create_dir_all(dest.parent().expect("has parent")).expect("mkdir");
        if !dest.exists() {
            std::os::unix::fs::symlink(&item, &dest).expect("symlink hub item");
        }
    }
    // The hub's `non-syslog` raw parser (sets `program` from the acquisition type, which
    // nginx-logs filters on) is missing from the package's offline hub snapshot.
    std::fs::write(
        cfg.join("parsers/s00-raw/non-syslog.yaml"),
        "onsuccess: next_stage\nfilter: \"evt.Line.Labels.type != 'syslog'\"\n\
         name: crowdsecurity/non-syslog\ndescription: \"Parse non-syslog logs\"\n\
         statics:\n  - parsed: message\n    expression: evt.Line.Raw\n\
         \x20 - parsed: program\n    expression: evt.Line.Labels.type\n",
    )
    .expect("write non-syslog parser");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("mkdir data");
    for f in std::fs::read_dir("/usr/share/crowdsec/data")
        .expect("crowdsec data")
        .flatten()
    {
        std::fs::copy(f.path(), data.join(f.file_name())).expect("copy data");
    }
    std::fs::create_dir_all(cfg.join("patterns")).expect("mkdir patterns");
    for f in std::fs::read_dir("/etc/crowdsec/patterns")
        .expect("crowdsec patterns")
        .flatten()
    {
        std::fs::copy(f.path(), cfg.join("patterns").join(f.file_name())).expect("copy pattern");
    }
    std::fs::write(cfg.join("simulation.yaml"), "simulation: off\n").expect("write");
    std::fs::write(cfg.join("acquis.yaml"), "\n").expect("write");
    std::fs::write(
        cfg.join("local_api_credentials.yaml"),
        format!("url: http://127.0.0.1:{lapi_port}/\nlogin: bench\npassword: bench\n"),
    )
    .expect("write");
    let (c, d) = (cfg.display(), data.display());
    std::fs::write(
        cfg.join("config.yaml"),
        format!(
            "common:\n  daemonize: false\n  log_media: stdout\n  log_level: warning\n\
             config_paths:\n  config_dir: {c}/\n  data_dir: {d}/\n  simulation_path: {c}/simulation.yaml\n  \
             hub_dir: {HUB}/\n  index_path: {HUB}/.index.json\n\
             crowdsec_service:\n  acquisition_path: {c}/acquis.yaml\n  parser_routines: 1\n  buckets_routines: 1\n  output_routines: 1\n\
             api:\n  client:\n    credentials_path: {c}/local_api_credentials.yaml\n\
             prometheus:\n  enabled: false\n"
        ),
    )
    .expect("write");
    cfg.join("config.yaml")
}

fn crowdsec_run(config: &Path, file: &Path, log_type: &str) -> Usage {
    run(
        Command::new("/usr/bin/crowdsec")
            .arg("-c")
            .arg(config)
            .arg("-dsn")
            .arg(format!("file://{}", file.display()))
            .args(["-type", log_type, "-no-api"]),
        "crowdsec",
    )
}

/// CrowdSec on `file`, minus its start-up and shut-down (measured on an empty file).
fn crowdsec(config: &Path, file: &Path, log_type: &str) -> Usage {
    let empty = file.with_extension("empty.log");
    std::fs::write(&empty, "").expect("write empty sample");
    let idle = crowdsec_run(config, &empty, log_type);
    let before = CROWDSEC_ALERTS.load(Ordering::Relaxed);
    let run = crowdsec_run(config, file, log_type);
    let alerts = CROWDSEC_ALERTS.load(Ordering::Relaxed) - before;
    println!(
        "  crowdsec -type {log_type}: {:.2} s on the sample ({alerts} alerts), {:.2} s on an empty file",
        run.secs, idle.secs
    );
    assert!(
        alerts > 0,
        "crowdsec raised no alert on the {log_type} sample: misconfigured"
    );
    Usage {
        secs: (run.secs - idle.secs).max(1e-3),
        rss_kb: run.rss_kb,
    }
}

fn env_lines(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    require("/usr/bin/crowdsec", "crowdsec");
    require(HUB, "crowdsec");
    require("/usr/bin/fail2ban-regex", "fail2ban");
    require("/usr/libexec/sshguard/sshg-parser", "sshguard");
    let lines = common::bench_lines();
    let peer_lines = env_lines("GARRISON_PEERS_LINES", 100_000).min(lines);
    let cs_lines = env_lines("GARRISON_PEERS_CROWDSEC_LINES", 20_000).min(lines);
    let config = crowdsec_config(stub_lapi());

    let mut rows: Vec<(String, String, usize, Usage)> = Vec::new();
    for (kind, log_type) in [("sshd", "syslog"), ("nginx", "nginx")] {
        let file = common::generate(kind, lines);
        println!("{kind}: {}", file.display());
        rows.push((
            "garrison".into(),
            kind.into(),
            lines,
            garrison(&file, log_type),
        ));
        let sample = head(&file, cs_lines);
        rows.push((
            "crowdsec 1.4".into(),
            kind.into(),
            cs_lines,
            crowdsec(&config, &sample, log_type),
        ));
        if kind == "sshd" {
            let sample = head(&file, peer_lines);
            rows.push((
                "fail2ban-regex".into(),
                kind.into(),
                peer_lines,
                fail2ban(&sample),
            ));
            rows.push((
                "sshguard".into(),
                kind.into(),
                peer_lines,
                sshguard(&sample),
            ));
        }
    }

    println!(
        "\n{:<16} {:<6} {:>9} {:>8} {:>12} {:>9} {:>14} {:>12}",
        "tool", "log", "lines", "secs", "lines/s", "RSS MB", "garrison ×rate", "RSS ratio"
    );
    for (tool, kind, n, u) in &rows {
        let rate = *n as f64 / u.secs;
        let (g_rate, g_rss) = rows
            .iter()
            .find(|(t, k, _, _)| t == "garrison" && k == kind)
            .map(|(_, _, gn, gu)| (*gn as f64 / gu.secs, gu.rss_kb as f64))
            .unwrap_or((rate, u.rss_kb as f64));
        println!(
            "{tool:<16} {kind:<6} {n:>9} {:>8.2} {rate:>12.0} {:>9.1} {:>14.1} {:>12.2}",
            u.secs,
            u.rss_kb as f64 / 1024.0,
            g_rate / rate,
            g_rss / u.rss_kb as f64,
        );
    }
}
