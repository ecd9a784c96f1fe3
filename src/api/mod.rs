//! The Local API: CrowdSec's LAPI for bouncers and agents on TCP (optionally TLS), and the
//! same routes plus garrison's admin routes (`/v1/garrison/...`, for the CLI) on a Unix
//! socket whose file permissions are the authentication.
//!
//! Wire behaviour follows CrowdSec's Go handlers, not its swagger file: 403
//! `{"message":"access forbidden"}` for a bad key, `null` for an empty decision query, the
//! stream's exact byte shape, Go duration strings, per-bouncer delta cursors, 201 answers
//! for alerts and usage metrics, empty 404/405 bodies, no response compression.

// Helpers return an axum `Response` as their error, axum's own idiom for early answers;
// boxing it would only add an allocation on error paths.
#![allow(clippy::result_large_err)]

pub mod admin;
mod alerts;
mod bouncer;
pub mod client;
mod decisions;
mod machine;
mod tls;
pub mod upstream;
pub mod wire;

use crate::compile::Ruleset;
use crate::config::model::{Config, Lapi};
use crate::store::Store;
use crate::store::auth::AuthStore;
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use bytes::Bytes;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// Errors starting or running the Local API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The database could not be opened.
    #[error(transparent)]
    Db(#[from] crate::store::db::DbError),
    /// The TCP address could not be bound.
    #[error("lapi.listen {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The Unix socket could not be created.
    #[error("Unix socket {path}: {reason}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("lapi.tls: {0}")]
    Tls(String),
    /// A bouncer key file could not be read.
    #[error("lapi.bouncer-key-files.{name}: {path}: {reason}")]
    KeyFile {
        /// The bouncer.
        name: String,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Serving failed.
    #[error("serving the Local API: {0}")]
    Serve(std::io::Error),
}

/// Request counters, for `garrison lapi status`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Failed bouncer or machine authentications.
    pub failed_auth: AtomicU64,
}

/// Everything the handlers share; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// Decisions and alerts.
    pub store: Store,
    /// The compiled rules, swapped on reload: profiles and whitelists for pushed alerts.
    pub ruleset: Arc<RwLock<Arc<Ruleset>>>,
    /// Bouncers and machines.
    pub auth: AuthStore,
    /// Counters.
    pub stats: Arc<Stats>,
    jwt_secret: Arc<[u8]>,
    started: Instant,
    listen: Arc<RwLock<Vec<String>>>,
    auto_register: Arc<RwLock<Vec<ipnet::IpNet>>>,
    blocklists: Arc<RwLock<Option<crate::blocklists::BlocklistsHandle>>>,
    central: Arc<RwLock<Option<crate::capi::CapiHandle>>>,
    /// The daemon's registry, once given (requests are counted into it).
    metrics: Arc<std::sync::OnceLock<Arc<crate::metrics::Metrics>>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("store", &self.store)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// The state for `store` and `ruleset`; opens the bouncers and machines kept in the
    /// store's database. The JWT secret is `CS_LAPI_SECRET` (at least 64 bytes) as in
    /// CrowdSec, otherwise random per start (agents log in again).
    pub fn new(store: Store, ruleset: Arc<RwLock<Arc<Ruleset>>>) -> Result<ApiState, ApiError> {
        let auth = AuthStore::open(store.path())?;
        let secret: Vec<u8> = match std::env::var("CS_LAPI_SECRET") {
            Ok(s) if s.len() >= 64 => s.into_bytes(),
            _ => {
                let mut b = vec![0u8; 64];
                getrandom::fill(&mut b)
                    .map_err(|e| ApiError::Tls(format!("no randomness for the JWT secret: {e}")))?;
                b
            }
        };
        Ok(ApiState {
            store,
            ruleset,
            auth,
            stats: Arc::new(Stats::default()),
            jwt_secret: Arc::from(secret),
            started: Instant::now(),
            listen: Arc::new(RwLock::new(Vec::new())),
            auto_register: Arc::new(RwLock::new(Vec::new())),
            blocklists: Arc::new(RwLock::new(None)),
            central: Arc::new(RwLock::new(None)),
            metrics: Arc::default(),
        })
    }

    /// Gives the admin routes the blocklist thread (`garrison blocklists`); until then they
    /// answer that no list is configured. Every clone of this state sees it.
    pub fn set_blocklists(&self, handle: Option<crate::blocklists::BlocklistsHandle>) {
        *self
            .blocklists
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = handle;
    }

    /// Counts requests into the daemon's metrics (`garrison_api_requests_total`) from now
    /// on, in every clone of this state; later calls are ignored.
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// The blocklist thread, when the daemon started one.
    pub fn blocklists(&self) -> Option<crate::blocklists::BlocklistsHandle> {
        self.blocklists
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Gives the admin routes the Central API thread, for its status.
    pub fn set_central(&self, handle: Option<crate::capi::CapiHandle>) {
        *self
            .central
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = handle;
    }

    /// The Central API thread, when `central.enable`.
    pub fn central(&self) -> Option<crate::capi::CapiHandle> {
        self.central
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads `lapi.bouncer-key-files` and `auto-register-cidrs` again (at start and on
    /// reload). A key file that cannot be read is an error and changes nothing.
    pub fn reload(&self, lapi: &Lapi) -> Result<(), ApiError> {
        let mut entries = Vec::new();
        for (name, path) in &lapi.bouncer_key_files {
            let err = |reason: String| ApiError::KeyFile {
                name: name.clone(),
                path: path.clone(),
                reason,
            };
            crate::store::auth::check_name("bouncer", name).map_err(|e| err(e.to_string()))?;
            let key = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
            let key = key.trim();
            if key.len() < 16 {
                return Err(err(
                    "the key must have at least 16 characters (generate one with `openssl rand -base64 32`)".into(),
                ));
            }
            entries.push((name.clone(), path.clone(), key.to_owned()));
        }
        self.auth.sync_key_files(&entries);
        *self
            .auto_register
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            lapi.auto_register_cidrs.0.iter().map(|c| c.0).collect();
        Ok(())
    }

    /// Where [`serve`] listens (`http://127.0.0.1:8080`, `unix:/path`), once it started.
    pub fn listening(&self) -> Vec<String> {
        self.listen
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn ruleset(&self) -> Arc<Ruleset> {
        self.ruleset
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn auto_registers(&self, peer: &Peer) -> bool {
        let Peer::Tcp(addr) = peer else {
            return true;
        };
        let ip = crate::parse::normalize_ip(&addr.ip().to_string()).unwrap_or(addr.ip());
        self.auto_register
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|n| n.contains(&ip))
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP (or TLS) client.
    Tcp(SocketAddr),
    /// The Unix socket: trusted by its file permissions.
    Unix,
}

impl Peer {
    /// The address as CrowdSec records it (`127.0.0.1`, `::1`; `@` for the Unix socket).
    pub fn ip(&self) -> String {
        match self {
            Peer::Tcp(a) => crate::parse::normalize_ip(&a.ip().to_string())
                .unwrap_or(a.ip())
                .to_string(),
            Peer::Unix => "@".into(),
        }
    }

    /// Loopback or the Unix socket (CrowdSec lets only these delete alerts).
    pub fn is_local(&self) -> bool {
        match self {
            Peer::Tcp(a) => a.ip().is_loopback() || a.ip().to_canonical().is_loopback(),
            Peer::Unix => true,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix => f.write_str("unix socket"),
        }
    }
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer::Tcp(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tokio::net::UnixListener>> for Peer {
    fn connect_info(_: IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        Peer::Unix
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Self {
        Peer::Tcp(*stream.remote_addr())
    }
}

/// The CLI's socket: `lapi.unix-socket`, or `garrison.sock` in the state directory.
pub fn socket_path(config: &Config) -> PathBuf {
    socket_path_for(&config.lapi, Path::new(&config.daemon.state_dir))
}

fn socket_path_for(lapi: &Lapi, state_dir: &Path) -> PathBuf {
    match &lapi.unix_socket {
        Some(p) => PathBuf::from(p),
        None => state_dir.join("garrison.sock"),
    }
}

/// A JSON error body `{"message": ...}`, CrowdSec's shape.
pub(crate) fn message(status: StatusCode, text: impl Into<String>) -> Response {
    let body = serde_json::json!({ "message": text.into() });
    (status, json_bytes(body.to_string().into_bytes())).into_response()
}

/// A JSON response from bytes already serialised.
pub(crate) fn json_bytes(body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// A JSON response with a status.
pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(b) => (status, json_bytes(b)).into_response(),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Body size limits: CrowdSec's 50 MiB for authenticated routes, 2 MiB for registration.
pub(crate) const BODY_LIMIT: usize = 50 << 20;
pub(crate) const REGISTER_BODY_LIMIT: usize = 2 << 20;

/// Reads a request body up to `limit` bytes: 413 with a message beyond.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_big = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_big {
            message(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {limit} bytes"),
            )
        } else {
            message(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        }
    })
}

/// Parses a JSON body: 400 with the position of the error.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| message(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// Query parameters in order; a malformed query string is a 400 with a message.
pub(crate) struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .map(Params)
            .map_err(|e| {
                message(
                    StatusCode::BAD_REQUEST,
                    format!("invalid query string: {e}"),
                )
            })
    }
}

impl Params {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

async fn health() -> Response {
    json_bytes(br#"{"status":"up"}"#.to_vec())
}

/// CrowdSec's routes (TCP and the Unix socket).
fn crowdsec_routes() -> Router<ApiState> {
    Router::new()
        .route("/health", get(health))
        .route("/v1/watchers", post(machine::register))
        .route("/v1/watchers/login", post(machine::login))
        .route(
            "/v1/watchers/self",
            axum::routing::delete(machine::delete_self),
        )
        .route("/v1/refresh_token", get(machine::refresh))
        .route("/v1/heartbeat", get(machine::heartbeat))
        .route(
            "/v1/alerts",
            post(alerts::create)
                .get(alerts::list)
                .head(alerts::list)
                .delete(alerts::delete_many),
        )
        .route(
            "/v1/alerts/{alert_id}",
            get(alerts::get_one)
                .head(alerts::get_one)
                .delete(alerts::delete_one),
        )
        .route(
            "/v1/decisions",
            get(decisions::get)
                .head(decisions::get)
                .delete(decisions::delete_many),
        )
        .route(
            "/v1/decisions/{decision_id}",
            axum::routing::delete(decisions::delete_one),
        )
        .route(
            "/v1/decisions/stream",
            get(decisions::stream).head(decisions::stream_head),
        )
        .route("/v1/usage-metrics", post(machine::usage_metrics))
}

async fn count_requests(
    axum::extract::State(state): axum::extract::State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let Some(metrics) = state.metrics.get() else {
        return next.run(req).await;
    };
    // The route template, not the raw URI: bounded label values whatever clients send.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    // Standard methods only: extension methods would let clients grow the label set.
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let response = next.run(req).await;
    metrics
        .api_requests
        .get_or_create(&crate::metrics::ApiLabels {
            route,
            method,
            code: response.status().as_str().to_owned(),
        })
        .inc();
    response
}

/// Gzip request bodies (`Content-Encoding: gzip`) are inflated before any handler reads
/// them, as CrowdSec accepts; body limits then apply to the inflated size. Other encodings
/// pass through untouched (the handler answers 400 on what it cannot parse, as CrowdSec
/// does). Only requests: responses are never compressed, which CrowdSec warns would break
/// bouncers.
fn request_decompression() -> tower_http::decompression::RequestDecompressionLayer {
    tower_http::decompression::RequestDecompressionLayer::new().pass_through_unaccepted(true)
}

/// The router served on TCP: CrowdSec's routes only.
pub fn tcp_router(state: ApiState) -> Router {
    crowdsec_routes()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(request_decompression())
        .with_state(state)
}

/// The router served on the Unix socket: CrowdSec's routes and garrison's admin routes.
pub fn unix_router(state: ApiState) -> Router {
    crowdsec_routes()
        .merge(admin::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(request_decompression())
        .with_state(state)
}

/// Serves the Local API until `shutdown` resolves: TCP on `lapi.listen` (TLS when
/// `lapi.tls` is set; not at all when `lapi.enable` is false) and the Unix socket
/// ([`socket_path`]), created with mode 0660 (a stale file is replaced). Bouncer key files
/// are read first.
pub async fn serve(
    config: Lapi,
    state_dir: PathBuf,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    state.reload(&config)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut listen = Vec::new();

    if config.enable {
        let tcp = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|source| ApiError::Bind {
                addr: config.listen.clone(),
                source,
            })?;
        let local = tcp.local_addr().map_err(ApiError::Serve)?;
        let app = tcp_router(state.clone()).into_make_service_with_connect_info::<Peer>();
        match &config.tls {
            Some(t) => {
                let listener = tls::TlsListener::new(tcp, &t.cert, &t.key)?;
                listen.push(format!("https://{local}"));
                tracing::info!(address = %local, "Local API listening (TLS)");
                let s = stopped();
                tasks.spawn(
                    async move { axum::serve(listener, app).with_graceful_shutdown(s).await },
                );
            }
            None => {
                listen.push(format!("http://{local}"));
                tracing::info!(address = %local, "Local API listening");
                let s = stopped();
                tasks.spawn(async move { axum::serve(tcp, app).with_graceful_shutdown(s).await });
            }
        }
    }

    let sock = socket_path_for(&config, &state_dir);
    let unix = bind_socket(&sock).await?;
    listen.push(format!("unix:{}", sock.display()));
    tracing::info!(socket = %sock.display(), "Local API admin socket");
    *state
        .listen
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = listen;
    let app = unix_router(state.clone()).into_make_service_with_connect_info::<Peer>();
    let s = stopped();
    tasks.spawn(async move { axum::serve(unix, app).with_graceful_shutdown(s).await });

    shutdown.await;
    let _ = stop_tx.send(true);
    // Open streams get a few seconds to finish; then the servers are dropped.
    let drain = async {
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "Local API server ended with an error");
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
    tasks.abort_all();
    let _ = std::fs::remove_file(&sock);
    state.auth.flush();
    Ok(())
}

/// Binds the admin socket with mode 0660, replacing a stale file but never a live socket.
async fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, ApiError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let err = |reason: String| ApiError::Socket {
        path: path.to_owned(),
        reason,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("creating its directory: {e}")))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(err(
                    "another process (a running garrison?) is listening on it".into(),
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| err(format!("removing the stale socket: {e}")))?;
        }
        Ok(_) => {
            return Err(err(
                "the path exists and is not a socket; remove it or set lapi.unix-socket".into(),
            ));
        }
        Err(_) => {}
    }
    // A new socket gets 0777 minus the umask (0755 with the usual 022: nobody else can
    // connect), then exactly 0660; the state directory's own mode guards the moment between.
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| err(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| err(format!("setting mode 0660: {e}")))?;
    Ok(listener)
}
