//! Enforcement speed (issue 5): detection-to-kernel latency and bulk loading, run with
//! `cargo bench --bench enforce` as root.
//!
//! Every case runs in a fresh child process (this binary again) that first moves into a new,
//! empty network namespace (`unshare(CLONE_NEWNET)`): the host's ruleset is never touched,
//! the namespace vanishes with the process, and each case's peak memory is its own.
//!
//! (a) latency: 1,000 single bans, one at a time; each is timed from `add()` until a
//!     netlink GET of that element (polled) finds it in the kernel.
//! (b) 1,000,000 IPv4 bans (24 h, comment `lists:bench #<id>`): the netlink path fed by
//!     `add()`, the netlink path loading them from a streamed snapshot at start (as the
//!     daemon does, `spawn_streaming`), and `nft -j -f -`
//!     with the same elements as JSON (streamed into nft's stdin), plus `nft -f -` text for
//!     reference. Peak memory = this process's VmHWM + the largest child's ru_maxrss.

use garrison::config::model::Nftables;
use garrison::enforce::{self, Ban, EnforcerConfig, Inspector};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MODE_VAR: &str = "GARRISON_ENFORCE_BENCH_CASE";
const BULK: u32 = 1_000_000;
const LATENCY_N: usize = 1_000;

fn main() {
    if let Ok(case) = std::env::var(MODE_VAR) {
        enter_new_netns();
        let out = match case.as_str() {
            "latency" => latency(),
            "netlink-add" => bulk_netlink_add(),
            "netlink-snapshot" => bulk_netlink_snapshot(),
            "nft-json" => bulk_nft(true),
            "nft-text" => bulk_nft(false),
            other => panic!("unknown case {other}"),
        };
        println!("RESULT {out}");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "run as root: the bench creates network namespaces"
    );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let nft = Command::new("nft")
        .arg("-v")
        .output()
        .expect("nft (nftables) is needed");
    println!(
        "enforce bench: kernel {}, {}; every case in a fresh process and network namespace\n",
        kernel.trim(),
        String::from_utf8_lossy(&nft.stdout).trim()
    );
    println!(
        "(a) latency over {LATENCY_N} single bans, add() -> element found by a netlink GET (polled):"
    );
    println!("    {}\n", run_case("latency"));
    println!("(b) {BULK} IPv4 bans into the kernel:");
    println!(
        "    {:<34} {:>9} {:>9} {:>14} {:>14} {:>11}",
        "path", "time", "CPU", "RSS garrison", "RSS child", "total"
    );
    for (case, label) in [
        ("netlink-add", "netlink batches, fed by add()"),
        ("netlink-snapshot", "netlink batches, from snapshot()"),
        ("nft-json", "nft -j -f - (JSON)"),
        ("nft-text", "nft -f - (text)"),
    ] {
        println!("    {:<34} {}", label, run_case(case));
    }
    println!(
        "\n(CPU: user + system of the process and its nft children, including making the Ban \
         values; after each case every address was found in the kernel by netlink GETs)"
    );
}

/// Runs one case in a child process; its result line.
fn run_case(case: &str) -> String {
    let exe = std::env::current_exe().expect("bench executable");
    let out = Command::new(exe)
        .env(MODE_VAR, case)
        .stderr(Stdio::inherit())
        .output()
        .expect("run case");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "case {case} failed:\n{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or("no result")
        .to_string()
}

fn enter_new_netns() {
    // SAFETY: called first thing in the child, on its only thread.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    let host = std::fs::metadata("/proc/1/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let mine = std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    assert_ne!(
        host.ok(),
        mine.ok(),
        "refusing to run in the host's namespace"
    );
}

fn config() -> EnforcerConfig {
    EnforcerConfig {
        nftables: Nftables::default(),
        never: Vec::new(),
        dry_run: false,
    }
}

/// The origin and reason every bulk ban shares, as the daemon shares the store's interned
/// strings.
fn strings() -> &'static (Arc<str>, Arc<str>) {
    static S: std::sync::OnceLock<(Arc<str>, Arc<str>)> = std::sync::OnceLock::new();
    S.get_or_init(|| (Arc::from("lists:bench"), Arc::from("bench")))
}

fn bulk_ban(i: u32) -> Ban {
    let (origin, reason) = strings();
    Ban {
        id: i as i64,
        net: ipnet::IpNet::from(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))),
        expires: jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24),
        origin: Arc::clone(origin),
        reason: Arc::clone(reason),
    }
}

/// CPU time (user + system) of this process and its waited-for children, in seconds.
fn cpu_s() -> f64 {
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the zeroed struct.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut ru);
            ru
        };
        total += secs(ru.ru_utime) + secs(ru.ru_stime);
    }
    total
}

/// Peak resident memory of this process (VmHWM) and of its largest waited-for child, in MB.
fn peak_rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    // SAFETY: getrusage fills the zeroed struct.
    let children_kb = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru.ru_maxrss as f64
    };
    (hwm_kb / 1024.0, children_kb / 1024.0)
}

fn bulk_line(took: Duration, cpu: f64) -> String {
    let (me, child) = peak_rss_mb();
    format!(
        "{:>7.2} s {:>7.2} s {:>11.0} MB {:>11.0} MB {:>8.0} MB",
        took.as_secs_f64(),
        cpu,
        me,
        child,
        me + child
    )
}

/// Checks that every bulk address is in the kernel (netlink GETs, a thousand per request;
/// a dump would be quadratic in the kernel).
fn verify_present(n: u32) {
    let ips: Vec<IpAddr> = (0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    let mut ins = Inspector::open("garrison").expect("inspector");
    let missing = ins.first_missing(&ips).expect("netlink get");
    assert_eq!(missing, None, "an address is missing from banned-ipv4");
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn latency() -> String {
    let h = enforce::spawn(config(), Arc::new(Vec::new)).expect("spawn");
    assert!(h.wait_synced(Duration::from_secs(10)));
    let mut ins = Inspector::open("garrison").expect("inspector");
    let mut ms = Vec::with_capacity(LATENCY_N);
    for i in 0..LATENCY_N as u32 {
        let ban = bulk_ban(i);
        let ip = ban.net.addr();
        let t0 = Instant::now();
        h.add(ban);
        while !ins.contains(ip).expect("netlink get") {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "ban {ip} never reached the kernel"
            );
            std::thread::yield_now(); // leave the CPU to the enforcer on a busy machine
        }
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(1)); // bans arrive one at a time
    }
    let st = h.stats();
    h.shutdown();
    let max = ms.iter().cloned().fold(0.0, f64::max);
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (worker's own enqueue -> kernel ack: max {:.3} ms; {} transactions)",
        percentile(&mut ms, 0.5),
        percentile(&mut ms, 0.99),
        max,
        st.max_apply_latency.as_secs_f64() * 1e3,
        st.batches
    )
}

fn bulk_netlink_add() -> String {
    let h = enforce::spawn(config(), Arc::new(Vec::new)).expect("spawn");
    assert!(h.wait_synced(Duration::from_secs(10)));
    let (t0, cpu0) = (Instant::now(), cpu_s());
    for i in 0..BULK {
        h.add(bulk_ban(i));
    }
    while h.stats().added < BULK as u64 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "stuck: {:?}",
            h.stats()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let (took, cpu) = (t0.elapsed(), cpu_s() - cpu0);
    let st = h.stats();
    h.shutdown();
    verify_present(BULK);
    format!("{} ({} transactions)", bulk_line(took, cpu), st.batches)
}

fn bulk_netlink_snapshot() -> String {
    let (t0, cpu0) = (Instant::now(), cpu_s());
    // Streamed, as the daemon does at start: the snapshot is never a Vec of a million bans.
    let snapshot: enforce::StreamingSnapshot =
        Arc::new(|sink: &mut dyn FnMut(Ban)| (0..BULK).map(bulk_ban).for_each(&mut *sink));
    let h = enforce::spawn_streaming(config(), snapshot).expect("spawn");
    assert!(h.wait_synced(Duration::from_secs(120)), "{:?}", h.stats());
    let (took, cpu) = (t0.elapsed(), cpu_s() - cpu0);
    let st = h.stats();
    h.shutdown();
    verify_present(BULK);
    format!("{} ({} transactions)", bulk_line(took, cpu), st.batches)
}

/// Streams the elements into `nft -j -f -` (or `nft -f -`) for garrison's table.
fn bulk_nft(json: bool) -> String {
    // The table and sets, as garrison makes them.
    let h = enforce::spawn(config(), Arc::new(Vec::new)).expect("spawn");
    assert!(h.wait_synced(Duration::from_secs(10)));
    h.shutdown();
    let (t0, cpu0) = (Instant::now(), cpu_s());
    let args: &[&str] = if json {
        &["-j", "-f", "-"]
    } else {
        &["-f", "-"]
    };
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft");
    {
        let stdin = child.stdin.take().expect("stdin");
        let mut w = std::io::BufWriter::with_capacity(1 << 16, stdin);
        let ip = |i: u32| Ipv4Addr::from(0x0a00_0000 + i);
        if json {
            write!(w, r#"{{"nftables":[{{"add":{{"element":{{"family":"inet","table":"garrison","name":"banned-ipv4","elem":["#).unwrap();
            for i in 0..BULK {
                let sep = if i == 0 { "" } else { "," };
                write!(w, r#"{sep}{{"elem":{{"val":"{}","timeout":86400,"comment":"lists:bench #{i}"}}}}"#, ip(i)).unwrap();
            }
            writeln!(w, "]}}}}}}]}}").unwrap();
        } else {
            write!(w, "add element inet garrison banned-ipv4 {{ ").unwrap();
            for i in 0..BULK {
                let sep = if i == 0 { "" } else { ", " };
                write!(
                    w,
                    "{sep}{} timeout 86400s comment \"lists:bench #{i}\"",
                    ip(i)
                )
                .unwrap();
            }
            writeln!(w, " }}").unwrap();
        }
        w.flush().unwrap();
    }
    let status = child.wait().expect("nft");
    let (took, cpu) = (t0.elapsed(), cpu_s() - cpu0);
    assert!(status.success(), "nft failed");
    verify_present(BULK);
    bulk_line(took, cpu)
}
