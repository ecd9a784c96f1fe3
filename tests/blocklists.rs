//! Third-party blocklists against a local HTTP server the test starts on 127.0.0.1: first
//! load, refresh applying only the difference, 304, bad payloads keeping the previous list,
//! protected addresses, restarts, renewals and file lists.

use garrison::blocklists::{ListStatus, Options, spawn_with};
use garrison::config::model::{Blocklist, BlocklistFormat};
use garrison::config::types::Duration;
use garrison::store::{Store, now_millis};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What the test server serves: a body and its ETag; `requests` counts what it answered.
#[derive(Default)]
struct Served {
    body: Vec<u8>,
    etag: String,
    requests: usize,
    not_modified: usize,
}

/// A one-file HTTP/1.1 server with ETag support; returns its URL.
fn server(served: Arc<Mutex<Served>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut inm = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("if-none-match")
                {
                    inm = Some(v.trim().to_owned());
                }
            }
            let mut s = served.lock().expect("lock");
            s.requests += 1;
            let head = if inm.as_deref() == Some(s.etag.as_str()) {
                s.not_modified += 1;
                "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".to_owned()
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nETag: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    s.etag,
                    s.body.len()
                )
            };
            let _ = stream.write_all(head.as_bytes());
            if !head.starts_with("HTTP/1.1 304") {
                let _ = stream.write_all(&s.body);
            }
        }
    });
    format!("http://{addr}/list.txt")
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "garrison-lists-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn list(name: &str, url: Option<String>, file: Option<&str>, format: BlocklistFormat) -> Blocklist {
    Blocklist {
        name: name.into(),
        url,
        file: file.map(str::to_owned),
        format,
        decision_type: "ban".into(),
        duration: Duration::from_secs(24 * 3600),
        refresh: Duration::from_secs(6 * 3600),
    }
}

fn options() -> Options {
    Options {
        refresh_at_start: false,
        ..Options::default()
    }
}

fn ips(range: std::ops::Range<u32>) -> Vec<String> {
    range
        .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string())
        .collect()
}

/// The list's active decisions: value → id.
fn decisions(store: &Store, name: &str) -> HashMap<String, i64> {
    let index = store.read();
    index
        .active(now_millis())
        .filter(|d| {
            &**index.strings.get(d.origin) == "lists" && &**index.strings.get(d.scenario) == name
        })
        .map(|d| (d.target.value(), d.id))
        .collect()
}

fn set(served: &Arc<Mutex<Served>>, body: impl Into<Vec<u8>>, etag: &str) {
    let mut s = served.lock().expect("lock");
    s.body = body.into();
    s.etag = format!("\"{etag}\"");
}

fn one(r: Result<Vec<ListStatus>, String>) -> ListStatus {
    let mut v = r.expect("refresh");
    assert_eq!(v.len(), 1);
    v.remove(0)
}

#[test]
fn refreshes_apply_only_the_difference_and_304_applies_nothing() {
    let dir = tempdir();
    let store = Store::open(&dir).expect("store");
    let served = Arc::new(Mutex::new(Served::default()));
    let url = server(served.clone());
    let first = ips(0..200);
    set(
        &served,
        format!("# test list\n{}\n", first.join("\n")),
        "v1",
    );
    let cfg = vec![list("test", Some(url.clone()), None, BlocklistFormat::Text)];
    let h = spawn_with(cfg.clone(), store.clone(), dir.clone(), None, options()).expect("spawn");

    let st = one(h.refresh(Some("test")));
    assert_eq!((st.added, st.size, st.last_error.clone()), (200, 200, None));
    let before = decisions(&store, "test");
    assert_eq!(before.len(), 200);

    // 1% changed: two entries gone, two new.
    let second: Vec<String> = ips(2..202);
    set(&served, second.join("\n"), "v2");
    let st = one(h.refresh(None));
    assert_eq!((st.added, st.removed, st.renewed, st.size), (2, 2, 0, 200));
    assert_eq!(st.unchanged, 198);
    let after = decisions(&store, "test");
    for v in &second[..198] {
        assert_eq!(
            after[v], before[v],
            "unchanged entry {v} keeps its decision"
        );
    }
    assert!(!after.contains_key(&first[0]) && after.contains_key(&second[199]));

    // Unchanged: the server answers 304 and nothing is applied.
    let st = one(h.refresh(None));
    assert!(st.not_modified);
    assert_eq!((st.added, st.removed, st.renewed), (0, 0, 0));
    assert_eq!(served.lock().expect("lock").not_modified, 1);
    assert_eq!(decisions(&store, "test"), after);

    // A restart: state from blocklists.json and the store; still a 304, nothing applied.
    drop(h);
    let last_id = store.read().last_id();
    let h = spawn_with(cfg, store.clone(), dir.clone(), None, options()).expect("respawn");
    assert_eq!(h.status()[0].size, 200);
    let st = one(h.refresh(Some("test")));
    assert!(st.not_modified, "{st:?}");
    assert_eq!(st.added, 0);
    assert_eq!(store.read().last_id(), last_id, "no decision made");
    assert!(h.refresh(Some("nope")).is_err(), "unknown list");
}

#[test]
fn bad_payloads_keep_the_previous_list() {
    let dir = tempdir();
    let store = Store::open(&dir).expect("store");
    let served = Arc::new(Mutex::new(Served::default()));
    let url = server(served.clone());
    let good: Vec<String> = ips(0..50);
    set(&served, serde_json::to_vec(&good).expect("json"), "g");
    let cfg = vec![list("j", Some(url), None, BlocklistFormat::Json)];
    let opts = Options {
        size_limit: 4096,
        ..options()
    };
    let h = spawn_with(cfg, store.clone(), dir, None, opts).expect("spawn");
    assert_eq!(one(h.refresh(None)).size, 50);
    let kept = decisions(&store, "j");

    let bad: [(&[u8], &str); 4] = [
        (b"<html><body>502 Bad Gateway</body></html>", "garbage"),
        (b"[\"10.0.0.1\", \"10.0.0.2\", \"10.0", "truncated"),
        (&[b' '; 5000], "too large"),
        (b"", "empty"),
    ];
    for (i, (body, what)) in bad.iter().enumerate() {
        set(&served, body.to_vec(), &format!("bad{i}"));
        let st = one(h.refresh(None));
        assert!(st.last_error.is_some(), "{what} rejected: {st:?}");
        assert_eq!(
            decisions(&store, "j"),
            kept,
            "{what}: previous list in force"
        );
    }
    // Invalid entries are counted; the valid ones apply.
    let mut mixed: Vec<serde_json::Value> = good[..49].iter().map(|v| v.as_str().into()).collect();
    mixed.push(serde_json::json!({"value": "not-an-ip"}));
    mixed.push(serde_json::json!({"ip": "10.9.9.9"}));
    mixed.push("300.1.2.3".into());
    set(&served, serde_json::to_vec(&mixed).expect("json"), "mixed");
    let st = one(h.refresh(None));
    assert_eq!(st.last_error, None);
    assert_eq!((st.invalid, st.added, st.removed, st.size), (2, 1, 1, 50));
}

#[test]
fn protected_addresses_never_become_decisions() {
    let dir = tempdir();
    let store = Store::open(&dir).expect("store");
    store.set_protected(vec![("10.0.0.0/30".parse().expect("net"), "admin".into())]);
    let served = Arc::new(Mutex::new(Served::default()));
    let url = server(served.clone());
    set(&served, "10.0.0.1\n10.0.0.2\n10.0.0.0/8\n10.0.1.1\n", "p");
    let cfg = vec![list("p", Some(url), None, BlocklistFormat::Text)];
    let h = spawn_with(cfg, store.clone(), dir, None, options()).expect("spawn");
    let st = one(h.refresh(None));
    assert_eq!((st.refused, st.added), (3, 1), "{st:?}");
    assert_eq!(
        decisions(&store, "p").into_keys().collect::<Vec<_>>(),
        ["10.0.1.1"]
    );
}

#[test]
fn file_lists_are_relative_to_the_config_and_renewed_before_they_lapse() {
    let dir = tempdir();
    let conf = dir.join("etc");
    std::fs::create_dir_all(&conf).expect("dir");
    std::fs::write(conf.join("mine.txt"), "192.0.2.1\n198.51.100.0/24 ; net\n").expect("write");
    let store = Store::open(&dir.join("state")).expect("store");
    let mut l = list("mine", None, Some("mine.txt"), BlocklistFormat::Text);
    l.duration = Duration::from_secs(2);
    let h = spawn_with(
        vec![l.clone()],
        store.clone(),
        dir.join("state"),
        Some(conf.clone()),
        options(),
    )
    .expect("spawn");
    let st = one(h.refresh(None));
    assert_eq!((st.added, st.size), (2, 2), "{st:?}");
    let st = one(h.refresh(None));
    assert!(st.not_modified, "same file");
    // Less than half the duration left: renewed, without a gap.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let old = decisions(&store, "mine");
    let st = one(h.refresh(None));
    assert_eq!((st.renewed, st.added, st.size), (2, 0, 2), "{st:?}");
    let new = decisions(&store, "mine");
    assert_eq!(new.len(), 2);
    assert!(new.iter().all(|(v, id)| old[v] != *id), "new decisions");
    // A list removed from the configuration takes its decisions with it.
    h.reconfigure(Vec::new());
    assert!(h.refresh(None).expect("refresh").is_empty());
    assert!(decisions(&store, "mine").is_empty());
    // A missing file is an error, nothing else.
    let mut gone = l;
    gone.file = Some("missing.txt".into());
    h.reconfigure(vec![gone]);
    let st = one(h.refresh(None));
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("missing.txt"))
    );
}
