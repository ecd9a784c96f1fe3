//! Interoperability with clients nobody here wrote: pycrowdsec (StreamClient, QueryClient)
//! and Debian's crowdsec 1.4.6 (`cscli` as a machine). `tests/run.sh` installs them; a
//! missing tool fails the test, it never skips. `GARRISON_PYTHON` names the Python with
//! pycrowdsec (default `python3`), `GARRISON_CSCLI` the cscli binary (default `cscli`).

mod lapi_common;

use lapi_common::Server;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const PY: &str = r#"
import os, sys, time
from pycrowdsec.client import StreamClient, QueryClient
url, key = os.environ["LAPI_URL"] + "/", os.environ["LAPI_KEY"]

q = QueryClient(api_key=key, lapi_url=url)
d = q.get_decisions_for("192.0.2.1")
assert [x["value"] for x in d] == ["192.0.2.1"], d
assert q.get_action_for("192.0.2.1") == "ban"
d = q.get_decisions_for("198.51.100.7")
assert d[0]["value"] == "198.51.100.0/24" and d[0]["type"] == "captcha", d
assert q.get_decisions_for("203.0.113.1") is None

s = StreamClient(key, lapi_url=url, interval=1)
s.run()
assert s.get_action_for("192.0.2.1") == "ban", s.get_current_decisions()
assert s.get_action_for("198.51.100.0/24") == "captcha", s.get_current_decisions()
print("STEP", flush=True)
sys.stdin.readline()
deadline = time.time() + 15
while time.time() < deadline:
    if s.get_action_for("192.0.2.1") is None and s.get_action_for("203.0.113.9") == "ban":
        break
    time.sleep(0.2)
else:
    print("stream did not converge:", s.get_current_decisions(), flush=True)
    os._exit(1)
print("OK", flush=True)
os._exit(0)
"#;

fn tool(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

#[test]
fn pycrowdsec_query_and_stream_clients_see_additions_and_deletions() {
    let s = Server::start();
    let key = s.bouncer("pycrowdsec");
    let ban = s.decide("Ip", "192.0.2.1", 4 * 3600, "crowdsec");
    s.state.store.add(
        None,
        vec![garrison::store::NewDecision {
            origin: "cscli".into(),
            scenario: "manual".into(),
            decision_type: "captcha".into(),
            target: garrison::store::Target::parse("Range", "198.51.100.0/24").expect("range"),
            until: garrison::store::now_millis() + 3_600_000,
            simulated: false,
        }],
    );
    let python = tool("GARRISON_PYTHON", "python3");
    let mut child = Command::new(&python)
        .args(["-c", PY])
        .env("LAPI_URL", &s.url)
        .env("LAPI_KEY", &key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} (install pycrowdsec: tests/run.sh): {e}"));
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert_eq!(
        line.trim(),
        "STEP",
        "pycrowdsec failed before the stream step (is pycrowdsec installed for {python}?)"
    );
    s.state.store.expire_where(|d, _| d.id == ban);
    s.decide("Ip", "203.0.113.9", 3600, "crowdsec");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("write");
    line.clear();
    out.read_line(&mut line).expect("read");
    let status = child.wait().expect("wait");
    assert!(
        status.success() && line.trim() == "OK",
        "pycrowdsec: {line}"
    );
}

/// A temporary cscli configuration whose credentials point at `s`.
fn cscli_config(s: &Server, login: &str, password: &str) -> std::path::PathBuf {
    let dir = s.dir.join("cscli");
    for d in ["data", "hub"] {
        std::fs::create_dir_all(dir.join(d)).expect("dir");
    }
    std::fs::write(dir.join("hub/.index.json"), "{}").expect("index");
    std::fs::write(dir.join("simulation.yaml"), "simulation: false\n").expect("sim");
    std::fs::write(
        dir.join("local_api_credentials.yaml"),
        format!("url: {}/\nlogin: {login}\npassword: {password}\n", s.url),
    )
    .expect("credentials");
    let d = dir.display();
    let cfg = format!(
        "common:\n  log_media: stdout\n  log_level: error\nconfig_paths:\n  config_dir: {d}/\n  data_dir: {d}/data/\n  hub_dir: {d}/hub/\n  index_path: {d}/hub/.index.json\n  simulation_path: {d}/simulation.yaml\napi:\n  client:\n    insecure_skip_verify: false\n    credentials_path: {d}/local_api_credentials.yaml\n"
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, cfg).expect("config");
    path
}

fn cscli(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let bin = tool("GARRISON_CSCLI", "cscli");
    let out = Command::new(&bin)
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {bin} (Debian's crowdsec package: tests/run.sh): {e}")
        });
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn cscli_lists_adds_and_deletes_decisions_and_alerts() {
    let s = Server::start();
    s.machine("cscli-test", "cscli-test-password");
    let cfg = cscli_config(&s, "cscli-test", "cscli-test-password");
    // cscli decisions add: an alert with a cscli decision.
    let (ok, out) = cscli(
        &cfg,
        &[
            "decisions",
            "add",
            "-i",
            "192.0.2.33",
            "-d",
            "2h",
            "-R",
            "interop test",
        ],
    );
    assert!(ok, "cscli decisions add: {out}");
    let (ok, out) = cscli(&cfg, &["decisions", "list", "-o", "json"]);
    assert!(ok, "cscli decisions list: {out}");
    assert!(
        out.contains("192.0.2.33") && out.contains("interop test"),
        "{out}"
    );
    let (ok, out) = cscli(&cfg, &["decisions", "list"]);
    assert!(
        ok && out.contains("192.0.2.33") && out.contains("cscli"),
        "{out}"
    );
    let (ok, out) = cscli(&cfg, &["alerts", "list"]);
    assert!(ok && out.contains("192.0.2.33"), "cscli alerts list: {out}");
    let (ok, out) = cscli(&cfg, &["alerts", "inspect", "1"]);
    assert!(
        ok && out.contains("192.0.2.33"),
        "cscli alerts inspect: {out}"
    );
    let (st, body) = s.bouncer_get("/v1/decisions?ip=192.0.2.33");
    assert_eq!(st, 200);
    assert!(body.contains("\"origin\":\"cscli\""), "{body}");
    let (ok, out) = cscli(&cfg, &["decisions", "delete", "-i", "192.0.2.33"]);
    assert!(
        ok && out.contains("1 decision(s) deleted"),
        "cscli decisions delete: {out}"
    );
    let (_, out) = cscli(&cfg, &["decisions", "list"]);
    assert!(!out.contains("192.0.2.33"), "{out}");
}

#[test]
fn crowdsec_agent_pushes_alerts_from_a_replayed_log() {
    let s = Server::start();
    s.machine("agent-1", "agent-password-1");
    let hub = std::path::PathBuf::from(tool("GARRISON_CROWDSEC_HUB", "/usr/share/crowdsec/hub"));
    let patterns = tool("GARRISON_CROWDSEC_PATTERNS", "/etc/crowdsec/patterns");
    assert!(
        hub.is_dir(),
        "{} missing: install Debian's crowdsec (tests/run.sh)",
        hub.display()
    );
    let d = s.dir.join("agent");
    for (stage, file) in [
        (
            "parsers/s00-raw",
            "parsers/s00-raw/crowdsecurity/syslog-logs.yaml",
        ),
        (
            "parsers/s01-parse",
            "parsers/s01-parse/crowdsecurity/sshd-logs.yaml",
        ),
        (
            "parsers/s02-enrich",
            "parsers/s02-enrich/crowdsecurity/dateparse-enrich.yaml",
        ),
        ("scenarios", "scenarios/crowdsecurity/ssh-bf.yaml"),
    ] {
        let dir = d.join(stage);
        std::fs::create_dir_all(&dir).expect("dir");
        let src = hub.join(file);
        let name = src.file_name().expect("name").to_owned();
        std::os::unix::fs::symlink(&src, dir.join(name)).expect("symlink");
    }
    std::fs::create_dir_all(d.join("data")).expect("data");
    std::os::unix::fs::symlink(&patterns, d.join("patterns")).expect("patterns");
    std::fs::write(d.join("simulation.yaml"), "simulation: false\n").expect("sim");
    // Ten failed logins within a second, stamped now: an ssh-bf overflow.
    let now = jiff::Zoned::now().strftime("%b %e %H:%M:%S").to_string();
    let log: String = (0..10)
        .map(|i| format!("{now} host sshd[{}]: Failed password for invalid user admin{i} from 192.0.2.99 port {} ssh2\n", 1000 + i, 40000 + i))
        .collect();
    let log_path = d.join("auth.log");
    std::fs::write(&log_path, log).expect("log");
    std::fs::write(d.join("acquis.yaml"), "").expect("acquis");
    std::fs::write(
        d.join("local_api_credentials.yaml"),
        format!(
            "url: {}/\nlogin: agent-1\npassword: agent-password-1\n",
            s.url
        ),
    )
    .expect("credentials");
    let p = d.display();
    let cfg = format!(
        "common:\n  daemonize: false\n  log_media: stdout\n  log_level: info\n  working_dir: .\nconfig_paths:\n  config_dir: {p}/\n  data_dir: {p}/data/\n  simulation_path: {p}/simulation.yaml\n  hub_dir: {hub}/\n  index_path: {hub}/.index.json\n  notification_dir: {p}/notifications/\n  plugin_dir: /usr/lib/crowdsec/plugins/\ncrowdsec_service:\n  acquisition_path: {p}/acquis.yaml\n  parser_routines: 1\napi:\n  client:\n    insecure_skip_verify: false\n    credentials_path: {p}/local_api_credentials.yaml\nprometheus:\n  enabled: false\n",
        hub = hub.display()
    );
    std::fs::write(d.join("config.yaml"), cfg).expect("config");
    let bin = tool("GARRISON_CROWDSEC", "crowdsec");
    // A hung agent gets SIGQUIT: Go then prints every goroutine's stack, which shows where
    // it waited (a flake in CI once ended in this timeout with nothing logged).
    let out = Command::new("timeout")
        .args(["-s", "QUIT", "-k", "10", "120", &bin, "-c"])
        .arg(d.join("config.yaml"))
        .arg("-dsn")
        .arg(format!("file://{}", log_path.display()))
        .args(["-type", "syslog", "-no-api"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {bin} (Debian's crowdsec package: tests/run.sh): {e}")
        });
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The alert reached garrison, pushed by machine agent-1, and the profiles banned the source.
    let m = s.state.auth.machine("agent-1").expect("machine");
    // garrison's side of the exchange, for a failure: whether the agent logged in (its
    // address and version are recorded then) and pushed.
    let seen = format!(
        "garrison saw machine agent-1: ip {:?}, version {:?}, last push {:?}, last heartbeat {:?}; agent exit {:?}",
        m.ip_address, m.version, m.last_push, m.last_heartbeat, out.status
    );
    let (_, body) = s.bouncer_get("/v1/decisions?ip=192.0.2.99");
    assert!(
        body.contains("crowdsecurity/ssh-bf"),
        "no decision from the agent's alert: {body}\n{seen}\n{log}"
    );
    assert!(m.last_push.is_some(), "{seen}\n{log}");
}
