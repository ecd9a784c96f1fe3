//! An in-process Local API on 127.0.0.1:0 with a temporary state directory, for the
//! `lapi_*` tests and the benchmark-free interop tests.
#![allow(dead_code)]

use garrison::api::{ApiState, serve};
use garrison::config::model::Lapi;
use garrison::store::{NewDecision, Store, Target, now_millis};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};

/// A running server.
pub struct Server {
    pub url: String,
    pub socket: PathBuf,
    pub dir: PathBuf,
    pub state: ApiState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn ruleset() -> Arc<garrison::compile::Ruleset> {
    static RS: OnceLock<Arc<garrison::compile::Ruleset>> = OnceLock::new();
    RS.get_or_init(|| {
        garrison::compile::compile_path(None)
            .expect("the default configuration compiles")
            .ruleset
    })
    .clone()
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(|_| {})
    }

    pub fn start_with(change: impl FnOnce(&mut Lapi)) -> Server {
        let dir = std::env::temp_dir().join(format!("garrison-lapi-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store = Store::open(&dir).expect("store");
        let state = ApiState::new(store, Arc::new(RwLock::new(ruleset()))).expect("state");
        let mut lapi = Lapi {
            listen: "127.0.0.1:0".into(),
            ..Lapi::default()
        };
        change(&mut lapi);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (st, d) = (state.clone(), dir.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let shutdown = async move {
                    let _ = rx.await;
                };
                if let Err(e) = serve(lapi, d, st, shutdown).await {
                    panic!("serve: {e}");
                }
            });
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let (url, socket) = loop {
            let l = state.listening();
            if l.len() >= 2 {
                let url = l
                    .iter()
                    .find(|x| x.starts_with("http"))
                    .cloned()
                    .expect("tcp");
                let sock = l
                    .iter()
                    .find_map(|x| x.strip_prefix("unix:"))
                    .map(PathBuf::from)
                    .expect("unix");
                break (url, sock);
            }
            assert!(std::time::Instant::now() < deadline, "server did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        Server {
            url,
            socket,
            dir,
            state,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// A bouncer key.
    pub fn bouncer(&self, name: &str) -> String {
        self.state.auth.add_bouncer(name, None).expect("bouncer")
    }

    /// A validated machine with a password.
    pub fn machine(&self, name: &str, password: &str) {
        self.state
            .auth
            .add_machine(name, password, "", true)
            .expect("machine");
    }

    /// Adds a decision directly to the store.
    pub fn decide(&self, scope: &str, value: &str, secs: i64, origin: &str) -> i64 {
        let added = self.state.store.add(
            None,
            vec![NewDecision {
                origin: origin.into(),
                scenario: "test/scenario".into(),
                decision_type: "ban".into(),
                target: Target::parse(scope, value).expect("target"),
                until: now_millis() + secs * 1000,
                simulated: false,
            }],
        );
        added.decision_ids[0]
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plain HTTP client that never treats a status as an error.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent("test-bouncer/v1.0")
        .build()
        .into()
}

/// (status, body) of a response.
pub fn read(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
    let mut r = r.expect("request");
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .unwrap_or_default();
    (status, body)
}

impl Server {
    /// `GET path` as a fresh bouncer named `check`.
    pub fn bouncer_get(&self, path: &str) -> (u16, String) {
        let key = match self.state.auth.add_bouncer("check", None) {
            Ok(k) => k,
            Err(_) => panic!("bouncer_get may be called once per server"),
        };
        read(
            agent()
                .get(format!("{}{path}", self.url))
                .header("X-Api-Key", &key)
                .call(),
        )
    }
}
