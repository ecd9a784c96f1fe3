//! The Central API client against a Central API the test serves on 127.0.0.1 (axum), per
//! `centralapi_swagger.yaml`: registration and login, the startup pull and deltas applied
//! as differences, subscribed lists, signals, backoff on 5xx, bad payloads keeping the
//! previous list, and the daemon itself with `central enable=#true`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use garrison::capi::{CapiHandle, Options, Signal, Status, spawn_with};
use garrison::store::{Added, NewDecision, Store, Target, now_millis};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A request the fake Central API received.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    query: String,
    auth: Option<String>,
    body: Vec<u8>,
    at: Instant,
}

impl Req {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the fake Central API holds and answers.
#[derive(Default)]
struct Capi {
    requests: Vec<Req>,
    /// Registered machines: id → password.
    machines: HashMap<String, String>,
    /// Tokens it accepts.
    tokens: Vec<String>,
    /// Tokens issued so far.
    issued: usize,
    /// Answers to every route with this status while > 0 (then counts down).
    fail: usize,
    /// The body of `startup=true` pulls.
    startup: Vec<u8>,
    /// Bodies of the next delta pulls, in order; an empty delta once exhausted.
    deltas: VecDeque<Vec<u8>>,
    /// Subscribed list bodies: name → (body, Last-Modified).
    lists: HashMap<String, (Vec<u8>, String)>,
    /// `links` added to every stream answer without one (as the Central API sends them).
    links: Option<Value>,
}

type Shared = Arc<Mutex<Capi>>;

async fn handle(
    State(capi): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut c = capi.lock().expect("lock");
    let req = Req {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        auth: header("authorization"),
        body: body.to_vec(),
        at: Instant::now(),
    };
    c.requests.push(req.clone());
    if c.fail > 0 {
        c.fail -= 1;
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"message":"try later"}"#,
        )
            .into_response();
    }
    let ok = || (StatusCode::OK, r#"{"message":"OK"}"#).into_response();
    if let Some(name) = req.path.strip_prefix("/lists/") {
        let Some((body, modified)) = c.lists.get(name).cloned() else {
            return StatusCode::NOT_FOUND.into_response();
        };
        if header("if-modified-since").as_deref() == Some(modified.as_str()) {
            return StatusCode::NOT_MODIFIED.into_response();
        }
        return (StatusCode::OK, [("last-modified", modified)], body).into_response();
    }
    let body = req.json();
    let authed = req
        .auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| c.tokens.iter().any(|k| k == t));
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v3/watchers") => {
            let (Some(id), Some(pw)) = (body["machine_id"].as_str(), body["password"].as_str())
            else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            c.machines.insert(id.to_owned(), pw.to_owned());
            ok()
        }
        ("POST", "/v3/watchers/login") => {
            let id = body["machine_id"].as_str().unwrap_or_default();
            let pw = body["password"].as_str().unwrap_or_default();
            if c.machines.get(id).map(String::as_str) != Some(pw) {
                return (StatusCode::FORBIDDEN, r#"{"message":"bad login"}"#).into_response();
            }
            c.issued += 1;
            let token = format!("token-{}", c.issued);
            c.tokens.push(token.clone());
            let expire = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
            (
                StatusCode::OK,
                json!({"code": 200, "expire": expire.to_string(), "token": token}).to_string(),
            )
                .into_response()
        }
        _ if !authed => (StatusCode::UNAUTHORIZED, r#"{"message":"token"}"#).into_response(),
        ("GET", "/v3/decisions/stream") => {
            let mut body = if req.query.contains("startup=true") {
                c.startup.clone()
            } else {
                c.deltas
                    .pop_front()
                    .unwrap_or_else(|| br#"{"new":null,"deleted":null}"#.to_vec())
            };
            // Bad payloads are served as they are.
            if let (Some(links), Ok(Value::Object(mut o))) =
                (c.links.clone(), serde_json::from_slice::<Value>(&body))
                && !o.contains_key("links")
            {
                o.insert("links".into(), links);
                body = Value::Object(o).to_string().into_bytes();
            }
            (StatusCode::OK, body).into_response()
        }
        ("POST", "/v3/signals" | "/v3/metrics" | "/v3/watchers/enroll") => ok(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Starts the fake Central API; its base URL.
fn serve(capi: Shared) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            let app = Router::new().fallback(handle).with_state(capi);
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let addr = rx.recv().expect("address");
    format!("http://{addr}/")
}

/// Everything the client logs, for the tests that look for a log line.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(w.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().expect("lock")).into_owned()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "garrison-capi-{name}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn options(url: &str) -> Options {
    Options {
        url: url.to_owned(),
        pull_interval: Duration::from_millis(300),
        pull_jitter: Duration::from_millis(20),
        share_signals: true,
        push_interval: Duration::from_millis(100),
        push_batch: 250,
        queue_limit: 1000,
        heartbeat_interval: Duration::from_secs(3600),
        backoff_min: Duration::from_millis(40),
        backoff_max: Duration::from_secs(2),
        size_limit: 1 << 20,
        timeout: Duration::from_secs(5),
        scenarios: vec!["crowdsecurity/ssh-bf".into(), "test/http-probing".into()],
    }
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_status(h: &CapiHandle, what: &str, cond: impl Fn(&Status) -> bool) -> Status {
    wait_for(what, Duration::from_secs(15), || cond(&h.status()));
    h.status()
}

fn stop(h: CapiHandle) {
    h.stop();
    assert!(
        h.wait_stopped(Duration::from_secs(10)),
        "the CAPI thread did not stop"
    );
}

/// Active decisions of an origin: value → (scenario, type, id).
fn decisions(store: &Store, origin: &str) -> BTreeMap<String, (String, String, i64)> {
    let index = store.read();
    index
        .active(now_millis())
        .filter(|d| &**index.strings.get(d.origin) == origin)
        .map(|d| {
            (
                d.target.value(),
                (
                    index.strings.get(d.scenario).to_string(),
                    index.strings.get(d.decision_type).to_string(),
                    d.id,
                ),
            )
        })
        .collect()
}

fn count(capi: &Shared, method: &str, path: &str) -> usize {
    capi.lock()
        .expect("lock")
        .requests
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .count()
}

fn requests(capi: &Shared, path: &str) -> Vec<Req> {
    capi.lock()
        .expect("lock")
        .requests
        .iter()
        .filter(|r| r.path == path)
        .cloned()
        .collect()
}

fn stream(
    new: &[(&str, &str, &[&str])],
    deleted: &[(&str, &[&str])],
    links: Option<Value>,
) -> Vec<u8> {
    let new: Vec<Value> = new
        .iter()
        .map(|(scenario, scope, values)| {
            json!({
                "scenario": scenario,
                "scope": scope,
                "decisions": values.iter().map(|v| json!({"value": v, "duration": "167h"})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let deleted: Vec<Value> = deleted
        .iter()
        .map(|(scope, values)| json!({"scope": scope, "decisions": values}))
        .collect();
    let mut v = json!({"new": new, "deleted": deleted});
    if let Some(l) = links {
        v["links"] = l;
    }
    v.to_string().into_bytes()
}

#[test]
fn registers_once_logs_in_with_the_scenarios_and_reuses_the_credentials() {
    let capi: Shared = Arc::default();
    capi.lock().expect("lock").startup = stream(&[], &[], None);
    let url = serve(capi.clone());
    let dir = tempdir("register");
    let store = Store::open(&dir).expect("store");
    let h = spawn_with(options(&url), store.clone(), &dir).expect("spawn");
    let st = wait_status(&h, "a first pull", |s| s.last_pull.is_some());
    assert!(st.registered && st.logged_in, "{st:?}");
    // The credentials file: CrowdSec-shaped, private.
    let path = dir.join("capi-credentials.json");
    let creds: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("credentials file")).expect("json");
    let login = creds["login"].as_str().expect("login").to_owned();
    assert_eq!(login.len(), 48);
    assert!(login.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(creds["password"].as_str().map(str::len), Some(64));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the credentials file is readable by root only");
    assert_eq!(st.machine_id.as_deref(), Some(login.as_str()));
    let logins = requests(&capi, "/v3/watchers/login");
    assert_eq!(logins[0].json()["machine_id"], login.as_str());
    assert_eq!(
        logins[0].json()["scenarios"],
        json!(["crowdsecurity/ssh-bf", "test/http-probing"])
    );
    // The first pull is the full list; the next ones are deltas with the token.
    wait_for("a delta pull", Duration::from_secs(10), || {
        count(&capi, "GET", "/v3/decisions/stream") >= 2
    });
    let pulls = requests(&capi, "/v3/decisions/stream");
    assert_eq!(pulls[0].query, "startup=true");
    assert_eq!(pulls[1].query, "");
    assert_eq!(pulls[1].auth.as_deref(), Some("Bearer token-1"));
    // A revoked token: 401, login again, carry on.
    capi.lock().expect("lock").tokens.clear();
    wait_for("a login after the 401", Duration::from_secs(10), || {
        count(&capi, "POST", "/v3/watchers/login") >= 2
    });
    let before = count(&capi, "GET", "/v3/decisions/stream");
    wait_for("pulls with the new token", Duration::from_secs(10), || {
        requests(&capi, "/v3/decisions/stream")
            .iter()
            .skip(before)
            .any(|r| r.auth.as_deref() == Some("Bearer token-2"))
    });
    stop(h);
    // A restart reuses the credentials: no second registration, same machine.
    let h = spawn_with(options(&url), store, &dir).expect("respawn");
    let logins_before = count(&capi, "POST", "/v3/watchers/login");
    wait_for("a login after the restart", Duration::from_secs(10), || {
        count(&capi, "POST", "/v3/watchers/login") > logins_before
    });
    stop(h);
    assert_eq!(count(&capi, "POST", "/v3/watchers"), 1, "registered once");
    let last = requests(&capi, "/v3/watchers/login").pop().expect("login");
    assert_eq!(last.json()["machine_id"], login.as_str());
}

#[test]
fn startup_pull_then_deltas_apply_only_the_difference_and_lists_follow_their_links() {
    let capi: Shared = Arc::default();
    let url = serve(capi.clone());
    let link = |name: &str| {
        json!({
            "name": name,
            "url": format!("{url}lists/{name}?X-Amz-Signature=secret"),
            "remediation": "ban",
            "scope": "ip",
            "duration": "24h",
        })
    };
    {
        let mut c = capi.lock().expect("lock");
        c.startup = stream(
            &[
                (
                    "crowdsecurity/ssh-bf",
                    "ip",
                    &["192.0.2.1", "192.0.2.2", "203.0.113.7"],
                ),
                ("crowdsecurity/http-probing", "range", &["198.51.100.0/24"]),
            ],
            &[],
            None,
        );
        c.links = Some(json!({"blocklists": [link("firehol_test")]}));
        c.lists.insert(
            "firehol_test".into(),
            (
                b"# a comment\n192.0.2.10\n192.0.2.11\n".to_vec(),
                "Sat, 21 Nov 2026 10:00:00 GMT".into(),
            ),
        );
    }
    let dir = tempdir("pull");
    let store = Store::open(&dir).expect("store");
    // Whitelists win over the community list.
    store.set_protected(vec![(
        "203.0.113.0/24".parse().expect("net"),
        Arc::from("test whitelist"),
    )]);
    let h = spawn_with(options(&url), store.clone(), &dir).expect("spawn");
    let st = wait_status(&h, "the startup pull and its list", |s| {
        s.lists.first().is_some_and(|l| l.size == 2)
    });
    let first = decisions(&store, "CAPI");
    let values: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(values, ["192.0.2.1", "192.0.2.2", "198.51.100.0/24"]);
    assert_eq!(first["192.0.2.1"].0, "crowdsecurity/ssh-bf");
    assert_eq!(first["198.51.100.0/24"].0, "crowdsecurity/http-probing");
    assert_eq!(first["192.0.2.1"].1, "ban");
    assert!(
        !first.contains_key("203.0.113.7"),
        "the whitelisted value is refused"
    );
    let lists = decisions(&store, "lists");
    assert_eq!(
        lists.keys().map(String::as_str).collect::<Vec<_>>(),
        ["192.0.2.10", "192.0.2.11"]
    );
    assert!(
        lists
            .values()
            .all(|(s, t, _)| s == "firehol_test" && t == "ban")
    );
    assert_eq!(
        st.lists[0].source,
        format!("{url}lists/firehol_test"),
        "no signature shown"
    );
    // The list URL is pre-signed: fetched without the token.
    let fetches = requests(&capi, "/lists/firehol_test");
    assert!(fetches.iter().all(|r| r.auth.is_none()), "{fetches:?}");

    // A delta: 192.0.2.3 added, 192.0.2.1 expired, 192.0.2.2 untouched (same id); the
    // list changes too.
    {
        let mut c = capi.lock().expect("lock");
        c.deltas.push_back(stream(
            &[("crowdsecurity/ssh-bf", "Ip", &["192.0.2.3"])],
            &[("ip", &["192.0.2.1"])],
            None,
        ));
        c.lists.insert(
            "firehol_test".into(),
            (
                b"192.0.2.11\n192.0.2.12\n".to_vec(),
                "Sat, 21 Nov 2026 12:00:00 GMT".into(),
            ),
        );
    }
    wait_for("the delta", Duration::from_secs(10), || {
        decisions(&store, "CAPI").contains_key("192.0.2.3")
            && decisions(&store, "lists").contains_key("192.0.2.12")
    });
    let second = decisions(&store, "CAPI");
    assert_eq!(
        second.keys().map(String::as_str).collect::<Vec<_>>(),
        ["192.0.2.2", "192.0.2.3", "198.51.100.0/24"]
    );
    assert_eq!(
        second["192.0.2.2"].2, first["192.0.2.2"].2,
        "unchanged: same decision"
    );
    assert_eq!(second["198.51.100.0/24"].2, first["198.51.100.0/24"].2);
    let lists2 = decisions(&store, "lists");
    assert_eq!(
        lists2.keys().map(String::as_str).collect::<Vec<_>>(),
        ["192.0.2.11", "192.0.2.12"]
    );
    assert_eq!(lists2["192.0.2.11"].2, lists["192.0.2.11"].2);
    // An unchanged list is asked with If-Modified-Since and answered 304.
    let n = requests(&capi, "/lists/firehol_test").len();
    wait_for("a conditional list fetch", Duration::from_secs(10), || {
        requests(&capi, "/lists/firehol_test").len() > n
    });
    let st = h.status();
    assert_eq!(
        (st.lists[0].size, st.lists[0].last_error.clone()),
        (2, None)
    );
    assert_eq!(decisions(&store, "lists"), lists2, "a 304 changes nothing");

    // A restart pulls the full list again, and only the difference reaches the store.
    stop(h);
    {
        let mut c = capi.lock().expect("lock");
        c.startup = stream(
            &[
                ("crowdsecurity/ssh-bf", "ip", &["192.0.2.2", "192.0.2.3"]),
                ("crowdsecurity/http-probing", "range", &["198.51.100.0/24"]),
            ],
            &[],
            None,
        );
        // Unsubscribed from the list in the console.
        c.links = Some(json!({"blocklists": []}));
        c.deltas.clear();
    }
    let h = spawn_with(options(&url), store.clone(), &dir).expect("respawn");
    wait_for(
        "the unsubscribed list to go",
        Duration::from_secs(10),
        || decisions(&store, "lists").is_empty(),
    );
    assert_eq!(
        decisions(&store, "CAPI"),
        second,
        "same values, same decisions"
    );
    let st = h.status();
    assert_eq!(
        (st.added, st.removed, st.community_size),
        (0, 0, 3),
        "{st:?}"
    );
    stop(h);
}

fn alert(value: &str) -> garrison::alert::Alert {
    let t = jiff::Timestamp::now();
    let mut e = garrison::event::Event::new(
        format!(
            "Nov 21 10:00:00 host sshd[1]: Failed password for root from {value} SECRET-LOG-LINE"
        ),
        t,
        0,
    );
    e.has_line_time = true;
    garrison::alert::Alert {
        scenario: Arc::from("crowdsecurity/ssh-bf"),
        scope: garrison::alert::Scope::Ip,
        value: value.to_owned(),
        events_count: 6,
        start_at: t - jiff::SignedDuration::from_secs(3),
        stop_at: t,
        remediation: true,
        events: vec![e].into(),
        labels: vec![(Arc::from("secret-label"), "SECRET-LABEL-VALUE".into())].into(),
        custom_message: Some(format!(
            "Ip {value} performed 'crowdsecurity/ssh-bf' (6 events over 3s)"
        )),
    }
}

fn signal(store: &Store, value: &str) -> Signal {
    let now = now_millis();
    let decision = NewDecision {
        origin: "crowdsec".into(),
        scenario: "crowdsecurity/ssh-bf".into(),
        decision_type: "ban".into(),
        target: Target::parse("Ip", value).expect("ip"),
        until: now + 4 * 3_600_000,
        simulated: false,
    };
    let added: Added = store.add(None, vec![decision.clone()]);
    Signal::from_alert(&alert(value), &[decision], &added, now).expect("not simulated")
}

#[test]
fn signals_are_pushed_in_batches_with_only_the_anonymised_fields() {
    let capi: Shared = Arc::default();
    capi.lock().expect("lock").startup = stream(&[], &[], None);
    let url = serve(capi.clone());
    let dir = tempdir("signals");
    let store = Store::open(&dir).expect("store");
    let mut opts = options(&url);
    opts.push_batch = 2;
    opts.pull_interval = Duration::from_secs(3600);
    let h = spawn_with(opts, store.clone(), &dir).expect("spawn");
    let st = wait_status(&h, "login", |s| s.logged_in);
    let machine = st.machine_id.expect("machine id");
    for i in 1..=5 {
        h.push(signal(&store, &format!("192.0.2.{i}")));
    }
    wait_status(&h, "every signal sent", |s| s.signals_sent == 5);
    let pushes = requests(&capi, "/v3/signals");
    let sizes: Vec<usize> = pushes
        .iter()
        .map(|r| r.json().as_array().map_or(0, Vec::len))
        .collect();
    assert!(
        sizes.iter().all(|n| (1..=2).contains(n)),
        "batches of at most 2: {sizes:?}"
    );
    let all: Vec<Value> = pushes
        .iter()
        .flat_map(|r| r.json().as_array().cloned().unwrap_or_default())
        .collect();
    let sources: Vec<&str> = all
        .iter()
        .map(|s| s["source"]["value"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        sources,
        [
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.3",
            "192.0.2.4",
            "192.0.2.5"
        ]
    );
    let s = &all[0];
    assert_eq!(s["scenario"], "crowdsecurity/ssh-bf");
    assert_eq!(s["machine_id"], machine.as_str());
    assert_eq!(s["source"]["scope"], "Ip");
    assert_eq!(s["source"]["ip"], "192.0.2.1");
    assert_eq!(s["kind"], "crowdsec");
    for k in ["start_at", "stop_at", "created_at"] {
        let t = s[k].as_str().unwrap_or_default();
        assert!(t.parse::<jiff::Timestamp>().is_ok(), "{k}: {t:?}");
    }
    assert!(
        s["message"]
            .as_str()
            .is_some_and(|m| m.contains("192.0.2.1"))
    );
    let d = &s["decisions"][0];
    assert_eq!(
        (d["value"].as_str(), d["type"].as_str()),
        (Some("192.0.2.1"), Some("ban"))
    );
    assert_eq!(d["origin"], "crowdsec");
    assert_eq!(
        d["duration"].as_str().map(|d| d.starts_with("4h")),
        Some(true)
    );
    // Never the events, the log line, the labels or any context.
    let keys: Vec<&String> = s.as_object().expect("object").keys().collect();
    for k in ["events", "meta", "labels", "context"] {
        assert!(
            !keys.iter().any(|x| *x == k),
            "{k} must not be shared: {keys:?}"
        );
    }
    for r in &pushes {
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains("SECRET"), "log content shared: {text}");
        assert!(
            !text.contains("Failed password"),
            "log content shared: {text}"
        );
    }
    stop(h);

    // share-signals off: pushing is a no-op.
    let mut opts = options(&url);
    opts.share_signals = false;
    let h = spawn_with(opts, store.clone(), &dir).expect("spawn");
    wait_status(&h, "login", |s| s.logged_in);
    h.push(signal(&store, "192.0.2.9"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        h.status().signals_queued + h.status().signals_sent as usize,
        0
    );
    stop(h);
    assert_eq!(requests(&capi, "/v3/signals").len(), pushes.len());
}

#[test]
fn server_errors_and_an_unreachable_api_back_off_with_growing_delays() {
    let _ = logs();
    let capi: Shared = Arc::default();
    {
        let mut c = capi.lock().expect("lock");
        c.startup = stream(&[("s", "ip", &["192.0.2.1"])], &[], None);
        c.fail = 6;
    }
    let url = serve(capi.clone());
    let dir = tempdir("backoff");
    let store = Store::open(&dir).expect("store");
    let h = spawn_with(options(&url), store.clone(), &dir).expect("spawn");
    let st = wait_status(&h, "a few failures", |s| s.failures >= 3);
    assert!(
        st.last_error.as_deref().is_some_and(|e| e.contains("503")),
        "{st:?}"
    );
    assert!(st.retry_at.is_some());
    wait_status(&h, "recovery", |s| s.last_pull.is_some());
    let st = h.status();
    assert_eq!((st.failures, st.last_error.clone()), (0, None));
    assert_eq!(decisions(&store, "CAPI").len(), 1);
    stop(h);
    // The six failed attempts: each delay at least half of 40 ms doubled per failure.
    let times: Vec<Instant> = capi
        .lock()
        .expect("lock")
        .requests
        .iter()
        .map(|r| r.at)
        .collect();
    let gaps: Vec<Duration> = times.windows(2).take(6).map(|w| w[1] - w[0]).collect();
    for (i, g) in gaps.iter().enumerate() {
        let floor = Duration::from_millis(20 << i);
        assert!(*g >= floor, "delay {i} is {g:?}, below {floor:?}: {gaps:?}");
    }
    assert!(gaps[5] > gaps[0] * 4, "delays grow: {gaps:?}");
    assert!(
        log_text()
            .lines()
            .any(|l| l.contains("backing off") && l.contains(&url) && l.contains("503")),
        "no log line for the failures"
    );

    // Nobody listening: failures pile up, nothing crashes, the store keeps its list.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let h = spawn_with(
        options(&format!("http://127.0.0.1:{port}/")),
        store.clone(),
        &dir,
    )
    .expect("spawn");
    let st = wait_status(&h, "failures while unreachable", |s| s.failures >= 4);
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("unreachable")),
        "{st:?}"
    );
    assert_eq!(
        decisions(&store, "CAPI").len(),
        1,
        "the previous list stays"
    );
    stop(h);
}

#[test]
fn bad_payloads_are_rejected_with_a_log_line_and_the_previous_list_stays() {
    let logs = logs();
    let capi: Shared = Arc::default();
    let url = serve(capi.clone());
    let link = json!({"blocklists": [{
        "name": "bad_list",
        "url": format!("{url}lists/bad_list"),
        "remediation": "ban",
        "scope": "ip",
        "duration": "24h",
    }]});
    {
        let mut c = capi.lock().expect("lock");
        c.startup = stream(&[("s", "ip", &["192.0.2.1", "192.0.2.2"])], &[], None);
        c.links = Some(link);
        c.lists.insert(
            "bad_list".into(),
            (
                b"192.0.2.50\n".to_vec(),
                "Sat, 21 Nov 2026 10:00:00 GMT".into(),
            ),
        );
    }
    let dir = tempdir("bad");
    let store = Store::open(&dir).expect("store");
    let mut opts = options(&url);
    opts.size_limit = 4096;
    let h = spawn_with(opts, store.clone(), &dir).expect("spawn");
    wait_status(&h, "the startup pull", |s| {
        s.lists.first().is_some_and(|l| l.size == 1)
    });
    let before = decisions(&store, "CAPI");
    let list_before = decisions(&store, "lists");
    assert_eq!(before.len(), 2);
    let big: Vec<String> = (0..1000)
        .map(|i| format!("10.1.{}.{}", i / 250, i % 250))
        .collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"<html><body>502 Bad Gateway</body></html>".to_vec(),
            "decision stream",
        ),
        (
            "truncated JSON",
            br#"{"new":[{"scenario":"s","scope":"ip","decisions":[{"value":"192.0.2.3","dur"#
                .to_vec(),
            "decision stream",
        ),
        (
            "invalid addresses",
            stream(
                &[("s", "ip", &["not-an-ip", "300.1.2.3", "192.0.2.999"])],
                &[],
                None,
            ),
            "no valid decision",
        ),
        (
            "over the size limit",
            stream(&[("s", "ip", &big)], &[], None),
            "limit",
        ),
    ];
    for (what, body, expect) in cases {
        let pulls = count(&capi, "GET", "/v3/decisions/stream");
        capi.lock().expect("lock").deltas.push_back(body);
        wait_for(what, Duration::from_secs(10), || {
            count(&capi, "GET", "/v3/decisions/stream") > pulls && h.status().last_error.is_some()
        });
        let st = h.status();
        let err = st.last_error.clone().unwrap_or_default();
        assert!(err.contains(expect), "{what}: {err}");
        assert_eq!(
            decisions(&store, "CAPI"),
            before,
            "{what}: the previous list stays"
        );
        let log = String::from_utf8_lossy(&logs.lock().expect("lock")).into_owned();
        assert!(
            log.lines()
                .any(|l| l.contains("Central API answer rejected") && l.contains(&url)),
            "{what}: no log line"
        );
        // Recovers at the next pull (an empty delta).
        wait_status(&h, "recovery", |s| s.last_error.is_none());
    }
    // A subscribed list that turns into garbage or grows past the limit keeps its content.
    for (what, body) in [
        ("list garbage", b"<html>\n<p>oops</p>\n</html>\n".to_vec()),
        ("list too large", "192.0.2.60\n".repeat(1000).into_bytes()),
    ] {
        capi.lock().expect("lock").lists.insert(
            "bad_list".into(),
            (
                body,
                format!("Sun, 22 Nov 2026 10:00:{:02} GMT", what.len()),
            ),
        );
        let st = wait_status(&h, what, |s| {
            s.lists.first().is_some_and(|l| l.last_error.is_some())
        });
        assert_eq!(st.lists[0].size, 1, "{what}: {st:?}");
        assert_eq!(decisions(&store, "lists"), list_before, "{what}");
        assert!(
            log_text().contains("Central API blocklist not refreshed"),
            "{what}: no log line"
        );
        capi.lock().expect("lock").lists.insert(
            "bad_list".into(),
            (
                b"192.0.2.50\n".to_vec(),
                "Sat, 21 Nov 2026 10:00:00 GMT".into(),
            ),
        );
        wait_status(&h, "list recovery", |s| {
            s.lists.first().is_some_and(|l| l.last_error.is_none())
        });
    }
    stop(h);
}

// ---- The daemon itself --------------------------------------------------------------

const GARRISON: &str = env!("CARGO_BIN_EXE_garrison");

/// One alert per failed login line, with a ban: a signal per line.
const RULES: &str = r#"
scenarios {
    - "test-each-line" {
        description "one alert per failed login line"
        type trigger
        filter "evt.Meta.log_type == 'ssh_failed-auth'"
        groupby "evt.Meta.source_ip"
        labels { remediation #true }
    }
}
"#;

struct Daemon {
    child: std::process::Child,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    }
}

fn write_config(dir: &Path, metrics_port: u16, central: &str) {
    let cfg = format!(
        r#"
daemon state-dir="{dir}/state"
acquisitions {{
    - type=syslog name=test {{
        files "{dir}/logs/*.log"
    }}
}}
collections "sshd" "linux"
rule-dirs "rules"
enforcement enable=#false
lapi enable=#false
metrics listen="127.0.0.1:{metrics_port}"
{central}
"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("garrison.kdl"), cfg).expect("config");
}

fn start_daemon(dir: &Path, metrics_port: u16) -> Daemon {
    let log = std::fs::File::create(dir.join("daemon.log")).expect("log");
    let child = std::process::Command::new(GARRISON)
        .args(["run", "--config"])
        .arg(dir.join("garrison.kdl"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start garrison");
    let mut d = Daemon {
        child,
        dir: dir.to_owned(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_err() {
        assert!(
            matches!(d.child.try_wait(), Ok(None)) && Instant::now() < deadline,
            "garrison did not start:\n{}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    d
}

#[test]
fn the_daemon_calls_nothing_by_default_then_pulls_and_shares_once_enabled() {
    let capi: Shared = Arc::default();
    capi.lock().expect("lock").startup = stream(
        &[("crowdsecurity/ssh-bf", "ip", &["192.0.2.1", "192.0.2.2"])],
        &[],
        None,
    );
    let url = serve(capi.clone());
    let dir = tempdir("daemon");
    std::fs::create_dir_all(dir.join("rules")).expect("rules dir");
    std::fs::create_dir_all(dir.join("logs")).expect("logs dir");
    std::fs::write(dir.join("rules/each-line.kdl"), RULES).expect("rules");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    // No `central` section: a fresh install makes no outbound call.
    write_config(&dir, port, "");
    let d = start_daemon(&dir, port);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        capi.lock().expect("lock").requests.is_empty(),
        "an outbound call by default"
    );
    // Enabled on reload: registers, pulls the community list.
    write_config(
        &dir,
        port,
        &format!("central enable=#true url=\"{url}\" pull-interval=\"1h\""),
    );
    d.signal("-HUP");
    let db = dir.join("state/garrison.db");
    let capi_values = || -> Vec<String> {
        let Ok(conn) =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        else {
            return Vec::new();
        };
        let Ok(mut stmt) =
            conn.prepare("SELECT value FROM decisions WHERE origin = 'CAPI' ORDER BY value")
        else {
            return Vec::new();
        };
        stmt.query_map([], |r| r.get::<_, String>(0))
            .map(|rows| rows.flatten().collect())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while capi_values() != ["192.0.2.1", "192.0.2.2"] {
        assert!(
            Instant::now() < deadline,
            "no community decisions stored:\n{}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(&capi, "POST", "/v3/watchers"), 1);
    // `garrison blocklists list` shows the community list.
    let out = std::process::Command::new(GARRISON)
        .args(["blocklists", "list", "--config"])
        .arg(dir.join("garrison.kdl"))
        .output()
        .expect("blocklists list");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("CAPI (community)"), "{text}");
    assert!(text.contains("Central API"), "{text}");
    // And so do the metrics: size, last success, not failing.
    let metrics = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .expect("metrics")
        .into_body()
        .read_to_string()
        .expect("metrics text");
    let samples = garrison::metrics::parse_text(&metrics);
    let community = |name: &str| {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels
                        .iter()
                        .any(|(k, v)| k == "list" && v == "community")
            })
            .map(|s| s.value)
    };
    assert_eq!(
        community("garrison_blocklist_entries"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        community("garrison_blocklist_failing"),
        Some(0.0),
        "{metrics}"
    );
    let age =
        now_secs() - community("garrison_blocklist_last_success_timestamp_seconds").unwrap_or(0.0);
    assert!(
        (0.0..60.0).contains(&age),
        "last success {age} s ago: {metrics}"
    );
    // A local alert becomes a signal, without its log line.
    let line = "Nov 21 10:00:00 host sshd[1000]: Failed password for invalid user alice from 198.51.100.77 port 4000 ssh2\n";
    std::fs::write(dir.join("logs/auth.log"), line).expect("log line");
    let deadline = Instant::now() + Duration::from_secs(30);
    let signals = loop {
        let s = requests(&capi, "/v3/signals");
        if !s.is_empty() {
            break s;
        }
        assert!(Instant::now() < deadline, "no signal pushed:\n{}", d.logs());
        std::thread::sleep(Duration::from_millis(200));
    };
    let body = signals[0].json();
    assert_eq!(body[0]["scenario"], "test-each-line");
    assert_eq!(body[0]["source"]["value"], "198.51.100.77");
    let text = String::from_utf8_lossy(&signals[0].body);
    assert!(
        !text.contains("Failed password") && !text.contains("alice"),
        "{text}"
    );
    d.signal("-TERM");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn console_enroll_sends_the_key_with_the_stored_credentials() {
    let capi: Shared = Arc::default();
    let url = serve(capi.clone());
    let dir = tempdir("enroll");
    std::fs::create_dir_all(dir.join("rules")).expect("rules dir");
    std::fs::create_dir_all(dir.join("logs")).expect("logs dir");
    write_config(&dir, 1, &format!("central enable=#true url=\"{url}\""));
    let enroll = |extra: &[&str]| {
        let out = std::process::Command::new(GARRISON)
            .args(["console", "enroll", "AttachKey123", "--config"])
            .arg(dir.join("garrison.kdl"))
            .args(extra)
            .output()
            .expect("console enroll");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    enroll(&["--name", "web-1", "--tags", "prod", "--tags", "eu"]);
    // Registered first (no credentials yet), then logged in, then enrolled with the token.
    let paths: Vec<String> = capi
        .lock()
        .expect("lock")
        .requests
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        paths,
        ["/v3/watchers", "/v3/watchers/login", "/v3/watchers/enroll"]
    );
    let e = requests(&capi, "/v3/watchers/enroll").remove(0);
    assert_eq!(e.auth.as_deref(), Some("Bearer token-1"));
    assert_eq!(
        e.json(),
        json!({"attachment_key": "AttachKey123", "tags": ["prod", "eu"], "overwrite": false, "name": "web-1"})
    );
    let creds = dir.join("state/capi-credentials.json");
    assert!(creds.exists());
    // Again: the stored credentials are used, no second registration.
    enroll(&["--overwrite"]);
    assert_eq!(count(&capi, "POST", "/v3/watchers"), 1);
    let e = requests(&capi, "/v3/watchers/enroll").remove(1);
    assert_eq!(e.json()["overwrite"], true);
    // A malformed key is refused before any call.
    let out = std::process::Command::new(GARRISON)
        .args(["console", "enroll", "bad key!", "--config"])
        .arg(dir.join("garrison.kdl"))
        .output()
        .expect("console enroll");
    assert!(!out.status.success());
    assert_eq!(count(&capi, "POST", "/v3/watchers/enroll"), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
