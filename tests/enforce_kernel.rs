//! The nftables enforcer against the real kernel, inside network namespaces these tests
//! create: each [`Netns`] is a thread that called `unshare(CLONE_NEWNET)`, so the namespace
//! (with its ruleset, links and sockets) disappears when the thread ends, also when a test
//! fails. The host's own ruleset and network are never touched.
//!
//! Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for unshare), `nft` (nftables) and `ip`
//! (iproute2); the tests fail, loudly, without them (tests/run.sh installs them).

use garrison::config::model::{Hook, NftAction, Nftables};
use garrison::config::types::List;
use garrison::enforce::{self, Ban, EnforcerConfig, EnforcerHandle, Inspector, SetKind};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Namespaces

type Job = Box<dyn FnOnce() + Send>;

/// A thread living in its own, new network namespace (loopback up), running jobs.
struct Netns {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// `/proc/<pid>/task/<tid>/ns/net`, for `ip link ... netns <path>`.
    path: String,
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests create network namespaces: run them as root (CI does)"
    );
    for (tool, pkg) in [("nft", "nftables"), ("ip", "iproute2")] {
        let ok = Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "`{tool}` is missing: install the Debian package `{pkg}` (tests/run.sh does)"
        );
    }
}

fn host_netns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/1/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0)
}

impl Netns {
    fn new() -> Netns {
        require_root();
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            // SAFETY: unshare only affects this thread (and what it creates later).
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            if rc != 0 {
                let _ = ready_tx.send(Err(std::io::Error::last_os_error().to_string()));
                return;
            }
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let path = format!("/proc/{}/task/{tid}/ns/net", std::process::id());
            let _ = ready_tx.send(Ok(path));
            for job in rx {
                job();
            }
        });
        let path = ready_rx
            .recv()
            .expect("netns thread")
            .expect("unshare(CLONE_NEWNET)");
        {
            use std::os::unix::fs::MetadataExt;
            let ino = std::fs::metadata(&path).expect("netns path").ino();
            assert_ne!(
                ino,
                host_netns(),
                "refusing to work in the host's namespace"
            );
        }
        let ns = Netns {
            jobs: Some(tx),
            thread: Some(thread),
            path,
        };
        ns.sh("ip link set lo up");
        ns
    }

    /// Runs `f` on the namespace's thread (threads and processes it starts are inside too).
    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        });
        self.jobs
            .as_ref()
            .expect("netns alive")
            .send(job)
            .expect("netns thread alive");
        match rx.recv().expect("job finished") {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    /// Runs a shell command inside; panics with its output on failure.
    fn sh(&self, cmd: &str) -> String {
        let cmd = cmd.to_string();
        self.run(move || {
            let out = Command::new("sh")
                .args(["-c", &cmd])
                .output()
                .expect("run sh");
            assert!(
                out.status.success(),
                "`{cmd}` failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    }

    /// Starts an enforcer inside.
    fn enforcer(&self, cfg: EnforcerConfig, store: &Store) -> EnforcerHandle {
        let snap = store.snapshot();
        let h = self.run(move || enforce::spawn(cfg, snap).expect("spawn enforcer"));
        assert!(
            h.wait_synced(Duration::from_secs(10)),
            "first sync: {:?}",
            h.stats()
        );
        h
    }

    fn inspector(&self) -> Inspector {
        self.run(|| Inspector::open("garrison").expect("inspector"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.jobs.take(); // the thread leaves its loop, ending the namespace
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

/// The daemon's store, as seen by `snapshot()`.
#[derive(Clone, Default)]
struct Store(Arc<Mutex<Vec<Ban>>>);

impl Store {
    fn put(&self, b: &Ban) {
        self.0.lock().unwrap().push(b.clone());
    }
    fn snapshot(&self) -> Arc<dyn Fn() -> Vec<Ban> + Send + Sync> {
        let s = self.clone();
        Arc::new(move || s.0.lock().unwrap().clone())
    }
}

fn ban(id: i64, net: &str, secs: i64, origin: &str, reason: &str) -> Ban {
    let net: IpNet = match net.parse() {
        Ok(n) => n,
        Err(_) => IpNet::from(net.parse::<IpAddr>().expect("address")),
    };
    Ban {
        id,
        net,
        expires: jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs),
        origin: origin.into(),
        reason: reason.into(),
    }
}

fn config(nft: Nftables, never: &[&str]) -> EnforcerConfig {
    EnforcerConfig {
        nftables: nft,
        never: never.iter().map(|n| n.parse().unwrap()).collect(),
        dry_run: false,
    }
}

fn defaults() -> Nftables {
    Nftables::default()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Polls `cond` until true or `timeout`; the time it took.
fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if cond() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// The element of `set` starting at `first`, read from the kernel.
fn element(ins: &mut Inspector, set: SetKind, first: &str) -> Option<enforce::KernelElement> {
    ins.elements(set)
        .unwrap()
        .into_iter()
        .find(|e| e.first == ip(first))
}

/// The `timeout` of `elem` in an `nft list` listing, in seconds (`1h`, `59m59s`).
fn listed_timeout(listing: &str, elem: &str) -> u64 {
    let after = format!("{elem} timeout ");
    let at = listing
        .find(&after)
        .unwrap_or_else(|| panic!("no `{after}` in\n{listing}"));
    let token = listing[at + after.len()..]
        .split_whitespace()
        .next()
        .unwrap_or("");
    garrison::parse::timefmt::parse_go_duration(token)
        .unwrap_or_else(|| panic!("unexpected timeout `{token}`"))
        .as_secs()
}

fn secs_left(e: &enforce::KernelElement) -> u64 {
    e.expires_in.expect("element has a timeout").as_secs()
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn table_has_the_sets_chains_priority_and_leaves_other_tables_alone() {
    let ns = Netns::new();
    ns.sh("nft add table inet other; nft add set inet other s '{ type ipv4_addr; }'; \
           nft add chain inet other c '{ type filter hook input priority 0; }'; \
           nft add rule inet other c ip saddr @s counter drop; nft add element inet other s '{ 192.0.2.9 }'");
    let other_before = ns.sh("nft list table inet other");
    let nft = Nftables {
        hooks: List(vec![Hook::Input, Hook::Forward]),
        priority: -7,
        action: NftAction::Reject,
        keep_on_stop: false,
        ..defaults()
    };
    let store = Store::default();
    store.put(&ban(42, "198.51.100.7", 3600, "crowdsec", "ssh-bf"));
    store.put(&ban(7, "203.0.113.0/24", 3600, "lists:firehol", "firehol"));
    let h = ns.enforcer(config(nft, &[]), &store);

    let listing = ns.sh("nft list table inet garrison");
    println!("{listing}");
    let json: serde_json::Value =
        serde_json::from_str(&ns.sh("nft -j list table inet garrison")).unwrap();
    let items = json["nftables"].as_array().unwrap();
    let sets: Vec<_> = items.iter().filter_map(|i| i.get("set")).collect();
    let find = |name: &str| {
        sets.iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("set {name}"))
    };
    for (name, ty, interval) in [
        ("banned-ipv4", "ipv4_addr", false),
        ("banned-ipv6", "ipv6_addr", false),
        ("banned-ipv4-ranges", "ipv4_addr", true),
        ("banned-ipv6-ranges", "ipv6_addr", true),
    ] {
        let s = find(name);
        assert_eq!(s["type"], ty, "{name}");
        let flags: Vec<_> = s["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert!(flags.contains(&"timeout"), "{name}: {flags:?}");
        assert_eq!(flags.contains(&"interval"), interval, "{name}: {flags:?}");
    }
    let chains: Vec<_> = items.iter().filter_map(|i| i.get("chain")).collect();
    for hook in ["input", "forward"] {
        let c = chains
            .iter()
            .find(|c| c["name"] == hook)
            .unwrap_or_else(|| panic!("chain {hook}"));
        assert_eq!(c["hook"], hook);
        assert_eq!(c["prio"], -7);
        assert_eq!(c["type"], "filter");
        assert_eq!(c["policy"], "accept");
    }
    // Readable: one counted rule per set and chain, comments saying why.
    assert!(
        listing.contains("ip saddr @banned-ipv4 counter packets 0 bytes 0 jump reject-banned"),
        "{listing}"
    );
    assert!(
        listing.contains("ip6 saddr @banned-ipv6-ranges counter"),
        "{listing}"
    );
    assert!(
        listing.contains("reject with icmpx admin-prohibited"),
        "{listing}"
    );
    assert!(
        listing.contains("meta l4proto tcp reject with tcp reset"),
        "{listing}"
    );
    // The one-hour bans read `timeout 1h`, give or take the time the enforcer took to apply
    // them on a loaded machine (timeouts are whole seconds of what is left) and, for ranges,
    // the half second their expiry is rounded to.
    for (elem, comment) in [
        ("198.51.100.7", "ssh-bf #42"),
        ("203.0.113.0/24", "lists:firehol #7"),
    ] {
        let timeout = listed_timeout(&listing, elem);
        assert!(
            (3_590..=3_601).contains(&timeout),
            "{elem}: timeout {timeout} s\n{listing}"
        );
        assert!(
            listing.contains(&format!("comment \"{comment}\"")),
            "{listing}"
        );
    }

    let rules = ns.inspector().rules().unwrap();
    assert_eq!(rules.len(), 2 * 4 + 2, "{rules:?}");
    assert_eq!(
        ns.sh("nft list table inet other"),
        other_before,
        "another table was touched"
    );
    ns.run(move || h.shutdown());
    assert_eq!(
        ns.sh("nft list table inet other"),
        other_before,
        "another table was touched"
    );
    assert!(
        !ns.inspector().table_exists().unwrap(),
        "keep_on_stop = false removes the table"
    );
}

#[test]
fn add_renew_and_remove_addresses_and_ranges() {
    let ns = Netns::new();
    let h = ns.enforcer(config(defaults(), &[]), &Store::default());
    let mut ins = ns.inspector();
    h.add(ban(1, "192.0.2.10", 3600, "crowdsec", "ssh-bf"));
    h.add(ban(2, "2001:db8::10", 3600, "cscli", "manual"));
    h.add(ban(3, "198.51.100.0/24", 3600, "lists:firehol", "firehol"));
    h.add(ban(4, "2001:db8:1::/48", 3600, "CAPI", "http-probing"));
    assert!(
        eventually(Duration::from_secs(2), || ins
            .contains(ip("2001:db8::10"))
            .unwrap())
        .is_some()
    );

    let e = element(&mut ins, SetKind::Ipv4, "192.0.2.10").expect("IPv4 element");
    assert_eq!(e.comment.as_deref(), Some("ssh-bf #1"));
    assert!((3590..=3600).contains(&secs_left(&e)), "{e:?}");
    let e = element(&mut ins, SetKind::Ipv6, "2001:db8::10").expect("IPv6 element");
    assert_eq!(e.comment.as_deref(), Some("cscli manual #2"));
    let e = element(&mut ins, SetKind::Ipv4Ranges, "198.51.100.0").expect("IPv4 range");
    assert_eq!(
        e.last,
        ip("198.51.100.255"),
        "the whole range is banned, not its first address"
    );
    assert_eq!(e.comment.as_deref(), Some("lists:firehol #3"));
    assert!(secs_left(&e) >= 3590, "{e:?}");
    let e = element(&mut ins, SetKind::Ipv6Ranges, "2001:db8:1::").expect("IPv6 range");
    assert_eq!(e.last, ip("2001:db8:1:ffff:ffff:ffff:ffff:ffff"));

    // Renewal: a longer ban refreshes the timeout (and the comment); a shorter one does not shorten it.
    h.add(ban(5, "192.0.2.10", 3 * 3600, "crowdsec", "ssh-bf"));
    h.add(ban(
        6,
        "198.51.100.0/24",
        2 * 3600,
        "lists:firehol",
        "firehol",
    ));
    assert!(
        eventually(Duration::from_secs(2), || element(
            &mut ins,
            SetKind::Ipv4,
            "192.0.2.10"
        )
        .is_some_and(|e| secs_left(&e) > 3 * 3600 - 10))
        .is_some(),
        "renewal refreshed the timeout"
    );
    assert_eq!(
        element(&mut ins, SetKind::Ipv4, "192.0.2.10")
            .unwrap()
            .comment
            .as_deref(),
        Some("ssh-bf #5")
    );
    assert!(
        eventually(Duration::from_secs(2), || element(
            &mut ins,
            SetKind::Ipv4Ranges,
            "198.51.100.0"
        )
        .is_some_and(|e| secs_left(&e) > 2 * 3600 - 10))
        .is_some()
    );
    h.add(ban(8, "192.0.2.10", 60, "crowdsec", "ssh-bf"));
    std::thread::sleep(Duration::from_millis(100));
    assert!(secs_left(&element(&mut ins, SetKind::Ipv4, "192.0.2.10").unwrap()) > 3 * 3600 - 20);

    // Nested range with a longer ban: the outer range is split around it, nothing overlaps.
    h.add(ban(
        9,
        "198.51.100.128/25",
        5 * 3600,
        "crowdsec",
        "http-probing",
    ));
    assert!(
        eventually(Duration::from_secs(2), || element(
            &mut ins,
            SetKind::Ipv4Ranges,
            "198.51.100.128"
        )
        .is_some())
        .is_some()
    );
    let ranges = ins.elements(SetKind::Ipv4Ranges).unwrap();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0].last, ip("198.51.100.127"));
    assert_eq!(ranges[1].comment.as_deref(), Some("http-probing #9"));

    // Removal, including of something never banned (tolerated).
    h.remove("192.0.2.10/32".parse().unwrap());
    h.remove("2001:db8::10/128".parse().unwrap());
    h.remove("198.51.100.0/24".parse().unwrap());
    h.remove("2001:db8:1::/48".parse().unwrap());
    h.remove("192.0.2.99/32".parse().unwrap());
    assert!(
        eventually(Duration::from_secs(2), || !ins
            .contains(ip("192.0.2.10"))
            .unwrap()
            && !ins.contains(ip("2001:db8::10")).unwrap()
            && ins.count(SetKind::Ipv6Ranges).unwrap() == Some(0))
        .is_some()
    );
    let left = ins.elements(SetKind::Ipv4Ranges).unwrap();
    assert_eq!(
        left.len(),
        1,
        "the nested ban stays when the outer one goes: {left:?}"
    );
    assert_eq!(
        (left[0].first, left[0].last),
        (ip("198.51.100.128"), ip("198.51.100.255"))
    );

    // A ban that timed out in the kernel can still be removed without error.
    h.add(ban(10, "192.0.2.20", 2, "crowdsec", "ssh-bf"));
    assert!(
        eventually(Duration::from_secs(2), || ins
            .contains(ip("192.0.2.20"))
            .unwrap())
        .is_some()
    );
    std::thread::sleep(Duration::from_millis(2600));
    assert!(
        !ins.contains(ip("192.0.2.20")).unwrap(),
        "the kernel timed it out"
    );
    h.remove("192.0.2.20/32".parse().unwrap());
    h.add(ban(11, "192.0.2.21", 60, "crowdsec", "ssh-bf"));
    assert!(
        eventually(Duration::from_secs(2), || ins
            .contains(ip("192.0.2.21"))
            .unwrap())
        .is_some()
    );
    let st = h.stats();
    assert_eq!(st.errors, 0, "{st:?}");
    assert!(
        st.already_gone >= 2,
        "ENOENT on removal is tolerated: {st:?}"
    );
    ns.run(move || h.shutdown());
}

#[test]
fn whitelisted_and_admin_networks_are_never_banned() {
    let ns = Netns::new();
    let store = Store::default();
    store.put(&ban(1, "10.1.2.3", 3600, "CAPI", "ssh-bf")); // in the snapshot too
    let h = ns.enforcer(
        config(
            defaults(),
            &["10.0.0.0/8", "2001:db8::1/128", "192.0.2.0/28"],
        ),
        &store,
    );
    h.add(ban(2, "10.9.9.9", 3600, "cscli", "manual"));
    h.add(ban(3, "0.0.0.0/0", 3600, "lists:bad", "bad")); // contains the admin network
    h.add(ban(4, "192.0.2.0/24", 3600, "crowdsec", "http-probing"));
    h.add(ban(5, "2001:db8::1", 3600, "crowdsec", "ssh-bf"));
    h.add(ban(6, "192.0.2.200", 3600, "crowdsec", "ssh-bf")); // outside: allowed
    let mut ins = ns.inspector();
    assert!(
        eventually(Duration::from_secs(2), || ins
            .contains(ip("192.0.2.200"))
            .unwrap())
        .is_some()
    );
    assert!(!ins.contains(ip("10.1.2.3")).unwrap());
    assert!(!ins.contains(ip("10.9.9.9")).unwrap());
    assert!(!ins.contains(ip("2001:db8::1")).unwrap());
    assert_eq!(ins.count(SetKind::Ipv4Ranges).unwrap(), Some(0));
    assert_eq!(h.stats().refused, 5, "{:?}", h.stats());
    ns.run(move || h.shutdown());
}

#[test]
fn flushed_ruleset_is_restored_within_two_seconds() {
    let ns = Netns::new();
    let store = Store::default();
    store.put(&ban(1, "192.0.2.1", 3600, "crowdsec", "ssh-bf"));
    store.put(&ban(2, "2001:db8::2", 3600, "crowdsec", "ssh-bf"));
    store.put(&ban(3, "198.51.100.0/24", 3600, "lists:firehol", "firehol"));
    let h = ns.enforcer(config(defaults(), &[]), &store);
    // A ban added while running: stored first, then handed to the enforcer.
    let late = ban(4, "192.0.2.4", 3600, "cscli", "manual");
    store.put(&late);
    h.add(late);
    let mut ins = ns.inspector();
    assert!(
        eventually(Duration::from_secs(2), || ins
            .contains(ip("192.0.2.4"))
            .unwrap())
        .is_some()
    );

    for round in 0..2 {
        ns.sh("nft flush ruleset");
        assert!(!ins.table_exists().unwrap());
        let took = eventually(Duration::from_secs(2), || {
            ins.table_exists().unwrap()
                && ins.contains(ip("192.0.2.1")).unwrap()
                && ins.contains(ip("2001:db8::2")).unwrap()
                && ins.contains(ip("192.0.2.4")).unwrap()
                && ins.count(SetKind::Ipv4Ranges).unwrap() == Some(1)
        });
        println!("round {round}: table and bans back after {took:?}");
        assert!(took.is_some(), "not restored within 2 s: {:?}", h.stats());
    }
    assert_eq!(ins.rules().unwrap().len(), 4, "chain and rules restored");
    assert!(h.stats().full_syncs >= 3);
    ns.run(move || h.shutdown());
}

#[test]
fn resync_repairs_a_flushed_set_and_drops_stale_elements() {
    let ns = Netns::new();
    let store = Store::default();
    store.put(&ban(1, "192.0.2.1", 3600, "crowdsec", "ssh-bf"));
    store.put(&ban(2, "198.51.100.0/24", 3600, "lists:firehol", "firehol"));
    let h = ns.enforcer(config(defaults(), &[]), &store);
    ns.sh(
        "nft flush set inet garrison banned-ipv4; nft flush set inet garrison banned-ipv4-ranges; \
           nft add element inet garrison banned-ipv4 '{ 192.0.2.66 timeout 1h comment \"stale\" }'",
    );
    let mut ins = ns.inspector();
    assert!(!ins.contains(ip("192.0.2.1")).unwrap());
    h.resync();
    assert!(
        eventually(Duration::from_secs(2), || ins
            .contains(ip("192.0.2.1"))
            .unwrap()
            && !ins.contains(ip("192.0.2.66")).unwrap()
            && ins.count(SetKind::Ipv4Ranges).unwrap() == Some(1))
        .is_some(),
        "{:?}",
        h.stats()
    );
    // Resyncs empty and refill the sets in one transaction: a lookup never misses, even
    // while 50,000 elements are reloaded.
    for i in 0..50_000u32 {
        let net = IpNet::from(IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i)));
        store.put(&Ban {
            net,
            ..ban(100, "192.0.2.1", 3600, "lists:x", "x")
        });
    }
    let syncs = h.stats().full_syncs;
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (stop, mut ins) = (Arc::clone(&stop), ns.inspector());
        std::thread::spawn(move || {
            let mut misses = 0;
            while !stop.load(Ordering::Relaxed) {
                if !ins.contains(ip("192.0.2.1")).unwrap() {
                    misses += 1;
                }
            }
            misses
        })
    };
    for _ in 0..5 {
        h.resync();
    }
    let done = eventually(Duration::from_secs(5), || h.stats().full_syncs > syncs);
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    assert!(done.is_some());
    assert_eq!(
        poller.join().unwrap(),
        0,
        "a lookup missed the ban during a resync"
    );
    ns.run(move || h.shutdown());
}

#[test]
fn restart_keeps_bans_and_shutdown_honours_keep_on_stop() {
    let ns = Netns::new();
    let store = Store::default();
    store.put(&ban(1, "192.0.2.1", 3600, "crowdsec", "ssh-bf"));
    let h = ns.enforcer(config(defaults(), &[]), &store);
    ns.run(move || h.shutdown());
    let mut ins = ns.inspector();
    assert!(
        ins.contains(ip("192.0.2.1")).unwrap(),
        "keep_on_stop = true keeps the bans"
    );

    // Restart with a changed store: kept elements are reconciled, not reloaded.
    store.0.lock().unwrap().clear();
    store.put(&ban(2, "192.0.2.2", 3600, "crowdsec", "ssh-bf"));
    let nft = Nftables {
        keep_on_stop: false,
        priority: 5,
        ..defaults()
    };
    let h = ns.enforcer(config(nft, &[]), &store);
    assert!(ins.contains(ip("192.0.2.2")).unwrap());
    assert!(
        !ins.contains(ip("192.0.2.1")).unwrap(),
        "a ban gone from the store is removed"
    );
    assert!(
        ns.sh("nft list chain inet garrison input")
            .contains("priority filter + 5"),
        "chain follows the config"
    );
    ns.run(move || h.shutdown());
    assert!(
        !ins.table_exists().unwrap(),
        "keep_on_stop = false removes the table"
    );
    enforce::remove_table("garrison").expect("removing an absent table is not an error");
}

#[test]
fn dry_run_touches_nothing() {
    let ns = Netns::new();
    let store = Store::default();
    store.put(&ban(1, "192.0.2.1", 3600, "crowdsec", "ssh-bf"));
    let cfg = EnforcerConfig {
        dry_run: true,
        ..config(defaults(), &[])
    };
    let h = ns.enforcer(cfg, &store);
    h.add(ban(2, "192.0.2.2", 3600, "crowdsec", "ssh-bf"));
    assert!(eventually(Duration::from_secs(2), || h.stats().ipv4 == 2).is_some());
    assert!(
        ns.sh("nft list ruleset").trim().is_empty(),
        "dry run created nothing"
    );
    ns.run(move || h.shutdown());
}

// ---------------------------------------------------------------------------------------
// Real packets: attacker and bystander in one namespace, victim in another, a veth between.

/// A TCP listener on a thread of the victim's namespace; stops on drop.
struct Listener {
    stop: Arc<AtomicBool>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn listen(ns: &Netns, addr: SocketAddr) -> Listener {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    ns.run(move || {
        let l = std::net::TcpListener::bind(addr).expect("bind listener");
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => drop(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
    });
    Listener { stop }
}

/// Connects from `src` to `dst` within `timeout`: Ok, or the error (TimedOut when dropped,
/// ConnectionRefused when rejected).
fn connect_from(src: IpAddr, dst: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst.ip()) else {
        panic!("IPv4 only")
    };
    // SAFETY: plain socket calls on a descriptor we own; structures are fully initialised.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        assert!(fd >= 0);
        let fd = OwnedFd::from_raw_fd(fd);
        let sin = |a: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(a).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        let local = sin(s, 0);
        if libc::bind(
            fd.as_raw_fd(),
            (&local as *const libc::sockaddr_in).cast(),
            len,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sin(d, dst.port());
        if libc::connect(
            fd.as_raw_fd(),
            (&remote as *const libc::sockaddr_in).cast(),
            len,
        ) != 0
        {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, timeout.as_millis() as i32) == 0 {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        let mut err: i32 = 0;
        let mut l = std::mem::size_of::<i32>() as u32;
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut i32).cast(),
            &mut l,
        );
        if err != 0 {
            Err(std::io::Error::from_raw_os_error(err))
        } else {
            Ok(())
        }
    }
}

fn packet_test(action: NftAction) {
    let victim = Netns::new();
    let attacker = Netns::new();
    victim.sh(&format!(
        "ip link add gv0 type veth peer name ga0 netns {} && ip addr add 10.99.0.1/24 dev gv0 && ip link set gv0 up",
        attacker.path
    ));
    attacker.sh("ip addr add 10.99.0.2/24 dev ga0 && ip addr add 10.99.0.3/24 dev ga0 && ip link set ga0 up");
    let port = 8022;
    let dst: SocketAddr = format!("10.99.0.1:{port}").parse().unwrap();
    let _listener = listen(&victim, dst);
    let (attacker_ip, bystander_ip) = (ip("10.99.0.2"), ip("10.99.0.3"));
    let try_connect = |src: IpAddr, t: Duration| attacker.run(move || connect_from(src, dst, t));
    let ok = eventually(Duration::from_secs(5), || {
        try_connect(attacker_ip, Duration::from_millis(500)).is_ok()
    });
    assert!(ok.is_some(), "the attacker connects before the ban");

    let nft = Nftables {
        action,
        ..defaults()
    };
    let h = victim.enforcer(config(nft, &[]), &Store::default());
    h.add(ban(1, "10.99.0.2", 3600, "crowdsec", "ssh-bf"));
    let mut ins = victim.inspector();
    assert!(
        eventually(Duration::from_secs(2), || ins
            .contains(attacker_ip)
            .unwrap())
        .is_some()
    );

    let err = try_connect(attacker_ip, Duration::from_millis(800))
        .expect_err("the banned attacker is blocked");
    match action {
        NftAction::Drop => assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}"),
        NftAction::Reject => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}"),
    }
    try_connect(bystander_ip, Duration::from_secs(2)).expect("a bystander still connects");
    let rules = ins.rules().unwrap();
    let hit = rules
        .iter()
        .find(|r| r.set.as_deref() == Some("banned-ipv4"))
        .expect("rule for banned-ipv4");
    assert!(
        hit.packets >= 1,
        "the rule counted the dropped SYNs: {rules:?}"
    );

    h.remove("10.99.0.2/32".parse().unwrap());
    assert!(
        eventually(Duration::from_secs(2), || !ins
            .contains(attacker_ip)
            .unwrap())
        .is_some()
    );
    try_connect(attacker_ip, Duration::from_secs(2))
        .expect("unbanned, the attacker connects again");
    victim.run(move || h.shutdown());
}

#[test]
fn packets_from_a_banned_address_are_dropped() {
    packet_test(NftAction::Drop);
}

#[test]
fn packets_from_a_banned_address_are_rejected() {
    packet_test(NftAction::Reject);
}

#[test]
fn cli_status_and_remove() {
    let ns = Netns::new();
    let store = Store::default();
    store.put(&ban(1, "192.0.2.1", 3600, "crowdsec", "ssh-bf"));
    store.put(&ban(2, "198.51.100.0/24", 3600, "lists:firehol", "firehol"));
    let h = ns.enforcer(config(defaults(), &[]), &store);
    ns.run(move || h.shutdown());
    let bin = env!("CARGO_BIN_EXE_garrison");
    let status = ns.sh(&format!("{bin} nft status"));
    println!("{status}");
    assert!(status.contains("table inet garrison"), "{status}");
    let line = |set: &str| {
        status
            .lines()
            .find(|l| l.split_whitespace().next() == Some(set))
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(
        line("banned-ipv4").split_whitespace().nth(1),
        Some("1"),
        "{status}"
    );
    assert_eq!(
        line("banned-ipv4-ranges").split_whitespace().nth(1),
        Some("1"),
        "{status}"
    );
    assert_eq!(
        line("banned-ipv6").split_whitespace().nth(1),
        Some("0"),
        "{status}"
    );
    assert!(status.contains("chain input: 4 rules"), "{status}");
    assert!(
        ns.sh(&format!("{bin} nft remove"))
            .contains("table inet garrison removed")
    );
    assert!(!ns.inspector().table_exists().unwrap());
    assert!(
        ns.sh(&format!("{bin} nft remove --table garrison"))
            .contains("was not there")
    );
    assert!(ns.sh(&format!("{bin} nft status")).contains("absent"));
}
