//! Blocklists: a 1,000,000-entry list parsed and stored (time, RSS), then a refresh that
//! changes 1% of it. Kernel enforcement is not measured (it needs root and a network
//! namespace): the figures are fetch (a local file) + parse + diff + store.
//! `GARRISON_BENCH_LINES` changes the list's size.

mod common;

use common::rss_kib;
use garrison::blocklists::{Options, spawn_with};
use garrison::config::model::{Blocklist, BlocklistFormat};
use garrison::config::types::Duration;
use garrison::store::Store;
use std::time::Instant;

fn main() {
    let n = common::bench_lines();
    let src = common::generate_with("ips", &format!("ips-{n}.txt"), &["--count", &n.to_string()]);
    let dir = std::env::temp_dir().join(format!("garrison-bench-lists-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let list = dir.join("list.txt");
    std::fs::copy(&src, &list).expect("copy the list");
    let store = Store::open(&dir).expect("store");
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
    let rss0 = rss_kib();
    let t = Instant::now();
    let st = h.refresh(None).expect("refresh");
    let first = t.elapsed();
    let rss1 = rss_kib();
    let t = Instant::now();
    store.flush();
    let flushed = t.elapsed();
    let rss2 = rss_kib();
    println!(
        "first load: {} entries ({} invalid) parsed and stored in {:.2} s; RSS {} MiB -> {} MiB; \
         database written {:.2} s later; RSS {} MiB",
        st[0].size,
        st[0].invalid,
        first.as_secs_f64(),
        rss0 / 1024,
        rss1 / 1024,
        flushed.as_secs_f64(),
        rss2 / 1024
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
    std::fs::write(&list, out).expect("write the list");
    let t = Instant::now();
    let st = h.refresh(None).expect("refresh");
    let refresh = t.elapsed();
    println!(
        "refresh, {changed} changed: +{} -{} ({} unchanged) in {} ms; RSS {} MiB",
        st[0].added,
        st[0].removed,
        st[0].unchanged,
        refresh.as_millis(),
        rss_kib() / 1024
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
    let _ = std::fs::remove_dir_all(&dir);
}
