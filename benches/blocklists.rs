//! Blocklists: a 1,000,000-entry list parsed, stored and enforced end to end (time, memory),
//! then a refresh that changes 1% of it. `GARRISON_BENCH_LINES` changes the list's size.
//!
//! Run as root, the bench moves into a new, empty network namespace (the host's ruleset is
//! never touched) and wires an nftables enforcer to the store as the daemon does (the same
//! subscription as `src/daemon/enforcement.rs`): "enforced" then means every element is in
//! the kernel. Without root, kernel enforcement is skipped and the figures say so.
//! "Stored" means committed to SQLite, not only in the in-memory index.

mod common;

use common::rss_kib;
use garrison::blocklists::{Options, spawn_with};
use garrison::config::model::{Blocklist, BlocklistFormat, Nftables};
use garrison::config::types::Duration;
use garrison::enforce::{EnforcerConfig, EnforcerHandle};
use garrison::store::{Store, now_millis};
use std::time::Instant;

/// Peak resident memory of this process so far (VmHWM), in KiB.
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn start_enforcer(store: &Store) -> Option<EnforcerHandle> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    // SAFETY: unshare has no memory preconditions; only this thread moves, and the
    // enforcer thread it spawns next inherits the new namespace.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
    let cfg = EnforcerConfig {
        nftables: Nftables::default(),
        never: Vec::new(),
        dry_run: false,
    };
    // The daemon's own bridge: the store's bans become kernel elements.
    let h = garrison::daemon::enforcement::start(store, cfg).expect("enforcer");
    assert!(h.wait_synced(std::time::Duration::from_secs(10)));
    Some(h)
}

/// Waits until the enforcer has added `added` and deleted `deleted` elements in all.
fn wait_kernel(h: Option<&EnforcerHandle>, added: u64, deleted: u64) {
    let Some(h) = h else { return };
    let t0 = Instant::now();
    loop {
        let st = h.stats();
        if st.added >= added && st.deleted + st.already_gone >= deleted {
            return;
        }
        assert!(t0.elapsed().as_secs() < 120, "enforcer stuck: {st:?}");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn main() {
    let n = common::bench_lines();
    let src = common::generate_with("ips", &format!("ips-{n}.txt"), &["--count", &n.to_string()]);
    let dir = std::env::temp_dir().join(format!("garrison-bench-lists-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let list = dir.join("list.txt");
    std::fs::copy(&src, &list).expect("copy the list");
    let store = Store::open(&dir).expect("store");
    let enforcer = start_enforcer(&store);
    let cfg = Blocklist {
        name: "bench".into(),
        url: None,
        file: Some(list.display().to_string()),
        format: BlocklistFormat::Text,
        decision_type: "ban".into(),
        duration: Duration::from_secs(24 * 3600),
        refresh: Duration::from_secs(6 * 3600),
    };
    let opts = Options {
        refresh_at_start: false,
        ..Options::default()
    };
    let h = spawn_with(vec![cfg], store.clone(), dir.clone(), None, opts).expect("spawn");
    let where_ = if enforcer.is_some() {
        "kernel: nftables in a new network namespace"
    } else {
        "kernel: SKIPPED (not root)"
    };
    println!("blocklists bench: {n}-entry list; {where_}");
    let rss0 = rss_kib();
    let t = Instant::now();
    let st = h.refresh(None).expect("refresh");
    let indexed = t.elapsed();
    wait_kernel(enforcer.as_ref(), st[0].size as u64, 0);
    let kernel = t.elapsed();
    store.flush();
    let total = t.elapsed();
    println!(
        "first load: {} entries ({} invalid), cumulative: in the index {:.2} s, in the kernel \
         {:.2} s, committed to SQLite {:.2} s (end to end)",
        st[0].size,
        st[0].invalid,
        indexed.as_secs_f64(),
        kernel.as_secs_f64(),
        total.as_secs_f64(),
    );
    println!(
        "  RSS (garrison: store, list, enforcer, SQLite): {} MiB before, {} MiB with {} active \
         decisions; peak {} MiB",
        rss0 / 1024,
        rss_kib() / 1024,
        store.read().active(now_millis()).count(),
        peak_kib() / 1024
    );

    // 1% changed: the first entries replaced by others (198.18.0.0/15, benchmark space).
    let text = std::fs::read_to_string(&src).expect("read the list");
    let changed = n / 100;
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.lines().enumerate() {
        if i < changed {
            let ip = std::net::Ipv4Addr::from(0xc612_0000u32 + i as u32);
            out.push_str(&ip.to_string());
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    drop(text);
    std::fs::write(&list, out).expect("write the list");
    let before = enforcer.as_ref().map(|e| e.stats());
    let t = Instant::now();
    let st = h.refresh(None).expect("refresh");
    let indexed = t.elapsed();
    if let Some(b) = &before {
        wait_kernel(
            enforcer.as_ref(),
            b.added + st[0].added as u64,
            b.deleted + b.already_gone + st[0].removed as u64,
        );
    }
    let kernel = t.elapsed();
    store.flush();
    let total = t.elapsed();
    println!(
        "refresh, {changed} changed: +{} -{} ({} unchanged), cumulative: in the index {} ms, in \
         the kernel {} ms, committed to SQLite {} ms (end to end); RSS {} MiB, peak {} MiB",
        st[0].added,
        st[0].removed,
        st[0].unchanged,
        indexed.as_millis(),
        kernel.as_millis(),
        total.as_millis(),
        rss_kib() / 1024,
        peak_kib() / 1024
    );
    let t = Instant::now();
    let st = h.refresh(None).expect("refresh");
    println!(
        "refresh, unchanged file: not modified = {} in {} ms",
        st[0].not_modified,
        t.elapsed().as_millis()
    );
    drop(h);
    store.flush();
    if let Some(e) = enforcer {
        e.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
