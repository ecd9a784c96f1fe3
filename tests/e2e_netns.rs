//! End to end, against the kernel: real Debian nginx and sshd in a victim network namespace,
//! an attacker and a bystander in theirs, garrison tailing the victim's logs and banning in
//! the victim's nftables. Needs root, iproute2, nftables, nginx, openssh-server, sshpass,
//! curl and netcat (tests/run.sh installs them); fails loudly when any is missing.
//!
//! Traffic goes only to addresses inside the namespaces this test creates (documentation
//! ranges 192.0.2.0/24, 198.51.100.0/24 and 2001:db8::/32), and the namespaces are removed
//! afterwards, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod netns_common;
use netns_common::{must, require, run};

const GARRISON: &str = env!("CARGO_BIN_EXE_garrison");

const VICTIM4: &str = "192.0.2.1";
const ATTACKER4: &str = "192.0.2.2";
/// A second attacker address on the same host, for the SSH attack.
const ATTACKER4_SSH: &str = "192.0.2.3";
const BYSTANDER_SIDE4: &str = "198.51.100.1";
const VICTIM6: &str = "2001:db8:a::1";
const ATTACKER6: &str = "2001:db8:a::2";
const BYSTANDER_SIDE6: &str = "2001:db8:b::1";

/// The three namespaces and everything started in them; torn down on drop.
struct Lab {
    dir: PathBuf,
    victim: String,
    attacker: String,
    bystander: String,
    services: Vec<Child>,
    garrison: Option<Child>,
    starts: u32,
}

impl Lab {
    fn new() -> Lab {
        let id = std::process::id();
        let dir = std::env::temp_dir().join(format!("garrison-e2e-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www")).expect("temp dir");
        let lab = Lab {
            dir,
            victim: format!("gv{id}"),
            attacker: format!("ga{id}"),
            bystander: format!("gb{id}"),
            services: Vec::new(),
            garrison: None,
            starts: 0,
        };
        for ns in [&lab.victim, &lab.attacker, &lab.bystander] {
            must(&["ip", "netns", "add", ns]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let (va, av) = (format!("va{id}"), format!("av{id}"));
        let (vb, bv) = (format!("vb{id}"), format!("bv{id}"));
        let link = |a: &str, na: &str, b: &str, nb: &str| {
            must(&[
                "ip", "link", "add", a, "netns", na, "type", "veth", "peer", "name", b, "netns", nb,
            ]);
        };
        link(&va, &lab.victim, &av, &lab.attacker);
        link(&vb, &lab.victim, &bv, &lab.bystander);
        let addr = |ns: &str, dev: &str, a: &str| {
            if a.contains(':') {
                must(&["ip", "-n", ns, "addr", "add", a, "dev", dev, "nodad"]);
            } else {
                must(&["ip", "-n", ns, "addr", "add", a, "dev", dev]);
            }
        };
        addr(&lab.victim, &va, "192.0.2.1/24");
        addr(&lab.victim, &va, "2001:db8:a::1/64");
        addr(&lab.attacker, &av, "192.0.2.2/24");
        addr(&lab.attacker, &av, "192.0.2.3/24");
        addr(&lab.attacker, &av, "2001:db8:a::2/64");
        addr(&lab.victim, &vb, "198.51.100.1/24");
        addr(&lab.victim, &vb, "2001:db8:b::1/64");
        addr(&lab.bystander, &bv, "198.51.100.2/24");
        addr(&lab.bystander, &bv, "2001:db8:b::2/64");
        for (ns, dev) in [
            (&lab.victim, &va),
            (&lab.victim, &vb),
            (&lab.attacker, &av),
            (&lab.bystander, &bv),
        ] {
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn exec(&self, ns: &str, cmd: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(cmd);
        run(&full)
    }

    fn spawn(&self, ns: &str, cmd: &[&str], log: &Path) -> Child {
        let log = std::fs::File::create(log).expect("log file");
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn in namespace")
    }

    fn start_nginx(&mut self) {
        std::fs::write(self.path("www/index.html"), "hello\n").expect("index");
        let conf = format!(
            r#"
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/nginx-tmp;
    server {{
        listen 80;
        listen [::]:80;
        root {d}/www;
    }}
}}
"#,
            d = self.dir.display()
        );
        std::fs::write(self.path("nginx.conf"), conf).expect("nginx.conf");
        std::fs::write(self.path("access.log"), "").expect("access.log");
        let conf = self.path("nginx.conf").display().to_string();
        let child = self.spawn(
            &self.victim,
            &["nginx", "-c", &conf],
            &self.path("nginx.out"),
        );
        self.services.push(child);
        self.wait_port(&self.bystander, BYSTANDER_SIDE4, 80, true);
    }

    fn start_sshd(&mut self) {
        // A test user with a password nobody else knows; the attacker only tries wrong ones.
        let _ = run(&["useradd", "-M", "-s", "/bin/sh", "garrison-e2e"]);
        let key = self.path("ssh_host_ed25519_key");
        must(&[
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            &key.display().to_string(),
        ]);
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let conf = format!(
            "Port 22\nListenAddress 0.0.0.0\nListenAddress ::\nHostKey {}\nPidFile {}/sshd.pid\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM yes\nMaxStartups 100\n",
            key.display(),
            self.dir.display()
        );
        std::fs::write(self.path("sshd_config"), conf).expect("sshd_config");
        std::fs::write(self.path("sshd.log"), "").expect("sshd.log");
        let conf = self.path("sshd_config").display().to_string();
        let log = self.path("sshd.log").display().to_string();
        // -E: sshd writes its messages to the file garrison tails (type `sshd`).
        let child = self.spawn(
            &self.victim,
            &["/usr/sbin/sshd", "-D", "-f", &conf, "-E", &log],
            &self.path("sshd.out"),
        );
        self.services.push(child);
        self.wait_port(&self.bystander, BYSTANDER_SIDE4, 22, true);
    }

    fn config(&self) -> PathBuf {
        self.path("garrison.kdl")
    }

    fn write_config(&self) {
        let cfg = format!(
            r#"
daemon state-dir="{d}/state"
acquisitions {{
    - type=nginx name=nginx {{
        files "{d}/access.log"
    }}
    - type=sshd name=sshd {{
        files "{d}/sshd.log"
    }}
}}
collections "sshd" "linux" "nginx" "base-http-scenarios"
enforcement {{
    nftables table="garrison_e2e"
}}
lapi listen="127.0.0.1:18080" unix-socket="{d}/garrison.sock"
metrics listen="127.0.0.1:16061"
"#,
            d = self.dir.display()
        );
        std::fs::write(self.config(), cfg).expect("config");
    }

    fn start_garrison(&mut self) {
        self.starts += 1;
        let cfg = self.config().display().to_string();
        let log = self.path(&format!("garrison-{}.log", self.starts));
        let child = self.spawn(&self.victim, &[GARRISON, "run", "--config", &cfg], &log);
        self.garrison = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.path("garrison.sock").exists() {
            assert!(
                Instant::now() < deadline,
                "garrison did not start:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    fn kill_garrison(&mut self) {
        if let Some(mut c) = self.garrison.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.path("garrison.sock"));
    }

    fn garrison_cli(&self, args: &[&str]) -> Output {
        let cfg = self.config().display().to_string();
        let mut cmd = vec![GARRISON];
        cmd.extend_from_slice(args);
        let out = Command::new("ip")
            .args(["netns", "exec", &self.victim])
            .args(&cmd)
            .env("GARRISON_CONFIG", &cfg)
            .output()
            .expect("garrison cli");
        assert!(
            out.status.success(),
            "garrison {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for i in 1..=self.starts {
            s.push_str(
                &std::fs::read_to_string(self.path(&format!("garrison-{i}.log")))
                    .unwrap_or_default(),
            );
        }
        s
    }

    /// Whether a TCP connection from `ns` (optionally from `source`) to `addr:port` opens
    /// within 1 s.
    fn connects(&self, ns: &str, source: Option<&str>, addr: &str, port: u16) -> bool {
        let port = port.to_string();
        let mut cmd = vec!["nc", "-z", "-w", "1"];
        if let Some(s) = source {
            cmd.extend_from_slice(&["-s", s]);
        }
        cmd.extend_from_slice(&[addr, &port]);
        self.exec(ns, &cmd).status.success()
    }

    fn wait_port(&self, ns: &str, addr: &str, port: u16, open: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.connects(ns, None, addr, port) != open {
            assert!(
                Instant::now() < deadline,
                "{addr}:{port} never became reachable"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `source` in the attacker namespace can (or cannot) connect.
    fn wait_reachable(
        &self,
        source: &str,
        addr: &str,
        port: u16,
        want: bool,
        within: Duration,
    ) -> Duration {
        let t0 = Instant::now();
        loop {
            if self.connects(&self.attacker, Some(source), addr, port) == want {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < within,
                "{source} → {addr}:{port} still {} after {within:?}\nnft:\n{}\ngarrison:\n{}",
                if want { "blocked" } else { "open" },
                String::from_utf8_lossy(
                    &self.exec(&self.victim, &["nft", "list", "ruleset"]).stdout
                ),
                self.logs()
            );
        }
    }

    fn http_get(&self, ns: &str, url: &str) -> Option<String> {
        let out = self.exec(
            ns,
            &[
                "curl",
                "-s",
                "-g",
                "--max-time",
                "2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                url,
            ],
        );
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn probe_http(&self, base: &str, source: &str) {
        for i in 0..20 {
            let url = format!("{base}/probe-{i}/admin.php");
            let _ = self.exec(
                &self.attacker,
                &[
                    "curl",
                    "-s",
                    "-g",
                    "--interface",
                    source,
                    "--max-time",
                    "1",
                    "-o",
                    "/dev/null",
                    &url,
                ],
            );
        }
    }

    fn brute_force_ssh(&self, source: &str) {
        for _ in 0..8 {
            let _ = self.exec(
                &self.attacker,
                &[
                    "sshpass",
                    "-p",
                    "wrong-password",
                    "ssh",
                    "-b",
                    source,
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-o",
                    "ConnectTimeout=2",
                    "-o",
                    "NumberOfPasswordPrompts=1",
                    "-o",
                    "PubkeyAuthentication=no",
                    &format!("garrison-e2e@{VICTIM4}"),
                    "true",
                ],
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill_garrison();
        for mut c in self.services.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // nginx forks a worker: end everything still running in the victim namespace.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.victim])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        for ns in [&self.victim, &self.attacker, &self.bystander] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[test]
fn attacks_from_a_namespace_end_in_dropped_connections() {
    require(&[
        "ip",
        "nft",
        "nginx",
        "sshd",
        "ssh",
        "sshpass",
        "curl",
        "nc",
        "ssh-keygen",
    ]);
    let mut lab = Lab::new();
    lab.start_nginx();
    lab.start_sshd();
    lab.write_config();
    lab.start_garrison();
    let base4 = format!("http://{VICTIM4}");
    assert_eq!(
        lab.http_get(&lab.attacker, &format!("{base4}/")).as_deref(),
        Some("200")
    );

    // (a) HTTP probing → the attacker's next connection to port 80 times out; the bystander
    // still gets 200.
    lab.probe_http(&base4, ATTACKER4);
    let t = lab.wait_reachable(ATTACKER4, VICTIM4, 80, false, Duration::from_secs(5));
    eprintln!("(a) HTTP prober banned {t:?} after its last probe");
    assert_eq!(
        lab.http_get(&lab.attacker, &format!("{base4}/")),
        None,
        "the prober gets no answer"
    );
    assert_eq!(
        lab.http_get(&lab.bystander, &format!("http://{BYSTANDER_SIDE4}/"))
            .as_deref(),
        Some("200"),
        "the bystander is served"
    );

    // The ban went through the enforcer: its latency histogram has an observation, and
    // the decision is counted by origin.
    let out = lab.exec(
        &lab.victim,
        &[
            GARRISON,
            "metrics",
            "--raw",
            "--url",
            "http://127.0.0.1:16061/metrics",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let samples = garrison::metrics::parse_text(&text);
    let value = |name: &str| -> f64 {
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    };
    assert!(
        value("garrison_enforcement_latency_seconds_count") >= 1.0,
        "no enforcement latency observed:\n{text}"
    );
    assert!(
        value("garrison_enforcement_latency_seconds_sum")
            / value("garrison_enforcement_latency_seconds_count")
            < 1.0,
        "{text}"
    );
    assert!(
        samples.iter().any(|s| s.name == "garrison_active_decisions"
            && s.value >= 1.0
            && s.labels
                .iter()
                .any(|(k, v)| k == "origin" && v == "crowdsec")),
        "no active crowdsec decision in the metrics:\n{text}"
    );

    // (b) SSH brute force → port 22 unreachable from that address.
    lab.brute_force_ssh(ATTACKER4_SSH);
    lab.wait_reachable(ATTACKER4_SSH, VICTIM4, 22, false, Duration::from_secs(5));
    assert!(
        lab.connects(&lab.bystander, None, BYSTANDER_SIDE4, 22),
        "bystander reaches sshd"
    );

    // (c) Deleting the decision restores access.
    lab.garrison_cli(&["decisions", "delete", "--ip", ATTACKER4]);
    lab.wait_reachable(ATTACKER4, VICTIM4, 80, true, Duration::from_secs(3));
    assert_eq!(
        lab.http_get(&lab.attacker, &format!("{base4}/")).as_deref(),
        Some("200")
    );

    // (d) garrison killed: the ban holds meanwhile, and after the restart.
    lab.kill_garrison();
    assert!(
        !lab.connects(&lab.attacker, Some(ATTACKER4_SSH), VICTIM4, 22),
        "ban holds while garrison is down"
    );
    lab.start_garrison();
    assert!(
        !lab.connects(&lab.attacker, Some(ATTACKER4_SSH), VICTIM4, 22),
        "ban holds after restart"
    );

    // (e) The ruleset flushed (a firewall reload): the ban is back within 2 s.
    must(&[
        "ip",
        "netns",
        "exec",
        &lab.victim,
        "nft",
        "flush",
        "ruleset",
    ]);
    let t0 = Instant::now();
    loop {
        let listed = lab.exec(
            &lab.victim,
            &["nft", "list", "table", "inet", "garrison_e2e"],
        );
        if listed.status.success()
            && String::from_utf8_lossy(&listed.stdout).contains(ATTACKER4_SSH)
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "table not rebuilt within 2 s:\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("(e) table rebuilt {:?} after a flush", t0.elapsed());
    assert!(
        !lab.connects(&lab.attacker, Some(ATTACKER4_SSH), VICTIM4, 22),
        "ban back after flush"
    );

    // (f) An IPv6 attacker is banned the same way; the IPv6 bystander is served.
    let base6 = format!("http://[{VICTIM6}]");
    assert_eq!(
        lab.http_get(&lab.attacker, &format!("{base6}/")).as_deref(),
        Some("200")
    );
    lab.probe_http(&base6, ATTACKER6);
    lab.wait_reachable(ATTACKER6, VICTIM6, 80, false, Duration::from_secs(5));
    assert_eq!(
        lab.http_get(&lab.bystander, &format!("http://[{BYSTANDER_SIDE6}]/"))
            .as_deref(),
        Some("200")
    );
    let listing = String::from_utf8_lossy(
        &lab.exec(
            &lab.victim,
            &["nft", "list", "table", "inet", "garrison_e2e"],
        )
        .stdout,
    )
    .into_owned();
    eprintln!("nft list table inet garrison_e2e:\n{listing}");
    assert!(listing.contains(ATTACKER6), "the IPv6 ban is in the table");
}
