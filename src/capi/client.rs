//! The Central API over HTTP: a blocking client (ureq) for the routes of CrowdSec's
//! `centralapi_swagger.yaml` (base path `/v3`): register, login, decision stream, signals,
//! metrics and enrollment. It runs on the CAPI thread and in `garrison console enroll`,
//! never on the async runtime.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// The API version prefix of every route (the swagger's `basePath`).
pub const API_PREFIX: &str = "/v3";

/// The credentials file inside the state directory.
pub const CREDENTIALS_FILE: &str = "capi-credentials.json";

/// How long before its announced expiry a token is renewed (or, without an expiry, how
/// long one is used).
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
const TOKEN_DEFAULT_LIFE: Duration = Duration::from_secs(50 * 60);

/// The machine's Central API credentials, as CrowdSec keeps them in
/// `online_api_credentials.yaml` (`url`, `login`, `password`), here in JSON, mode 0600.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
    /// The Central API's URL when they were made (informative: `central.url` is used).
    #[serde(default)]
    pub url: String,
    /// The machine id: 48 alphanumerics.
    pub login: String,
    /// The password: 64 alphanumerics.
    pub password: String,
}

impl Credentials {
    /// Fresh credentials shaped like CrowdSec's (`cmd/crowdsec-cli/core/idgen`): the 32
    /// hex digits of `/etc/machine-id` (random ones when absent) and 16 random
    /// alphanumerics; a 64-character password.
    pub fn generate(url: &str) -> Result<Credentials, String> {
        let machine: String = std::fs::read_to_string("/etc/machine-id")
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(32)
            .collect();
        let machine = if machine.len() == 32 {
            machine
        } else {
            random_alphanumeric(32)?
        };
        Ok(Credentials {
            url: url.to_owned(),
            login: format!("{machine}{}", random_alphanumeric(16)?),
            password: random_alphanumeric(64)?,
        })
    }

    /// Reads the credentials file; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<Credentials>, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the credentials file, readable by its owner only (it holds a password).
    pub fn write(&self, path: &Path) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        // `mode` only applies to a new file: a leftover temporary file keeps its bits.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
        // `garrison console enroll` run by root before the daemon registered must not leave
        // a file the daemon's (dynamic) user cannot read: the file takes the owner of the
        // state directory. For anyone but root this is a no-op or refused, and ignored.
        if let Some(dir) = path.parent()
            && let Ok(meta) = std::fs::metadata(dir)
        {
            use std::os::unix::fs::MetadataExt;
            let _ = std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()));
        }
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

/// `n` random characters out of `[A-Za-z0-9]`, unbiased (rejection sampling).
fn random_alphanumeric(n: usize) -> Result<String, String> {
    const SET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        getrandom::fill(&mut buf).map_err(|e| format!("no randomness available: {e}"))?;
        // 62 * 4 = 248: bytes at or above it would favour the first characters.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == n {
                break;
            }
            out.push(char::from(SET[usize::from(*b) % SET.len()]));
        }
    }
    Ok(out)
}

/// Why a call failed, and so whether to retry it.
#[derive(Debug, Clone, PartialEq)]
pub enum CapiError {
    /// No answer: connection refused, DNS, timeout, TLS.
    Unreachable(String),
    /// A 5xx answer.
    Server(u16, String),
    /// A 401 or 403 on an authenticated route: the token expired or was revoked.
    Unauthorized(String),
    /// Another 4xx: the request itself is refused.
    Refused(u16, String),
    /// An answer that is not what the specification describes (garbage, truncated JSON,
    /// too large, values that are not addresses).
    BadPayload(String),
}

impl std::fmt::Display for CapiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CapiError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CapiError::Server(s, b) => write!(f, "server error: HTTP {s}: {b}"),
            CapiError::Unauthorized(b) => write!(f, "unauthorized: {b}"),
            CapiError::Refused(s, b) => write!(f, "refused: HTTP {s}: {b}"),
            CapiError::BadPayload(e) => write!(f, "bad payload: {e}"),
        }
    }
}

impl std::error::Error for CapiError {}

/// `GET /decisions/stream`'s answer (`GetDecisionsStreamResponse`). CrowdSec's server
/// sends `null` for an empty array, so every part is optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Stream {
    /// Decisions to add, grouped by scenario and scope.
    #[serde(default)]
    pub new: Option<Vec<NewItem>>,
    /// Values to remove, grouped by scope.
    #[serde(default)]
    pub deleted: Option<Vec<DeletedItem>>,
    /// Subscribed blocklists (and allowlists, not used here).
    #[serde(default)]
    pub links: Option<Links>,
}

/// `GetDecisionsStreamResponseNewItem`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NewItem {
    /// The scenario that made them.
    pub scenario: String,
    /// `ip`, `range`, ...
    pub scope: String,
    /// The values and their durations.
    pub decisions: Vec<NewValue>,
}

/// One value of a [`NewItem`].
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NewValue {
    /// The address or range.
    pub value: String,
    /// A Go duration (`167h`).
    pub duration: String,
}

/// `GetDecisionsStreamResponseDeletedItem`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DeletedItem {
    /// `ip`, `range`, ...
    pub scope: String,
    /// The values.
    pub decisions: Vec<String>,
}

/// `GetDecisionsStreamResponseLinks`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Links {
    /// The blocklists this machine is subscribed to in the console.
    #[serde(default)]
    pub blocklists: Option<Vec<BlocklistLink>>,
}

/// `BlocklistLink`: a subscribed list and where to download it (a pre-signed URL, fetched
/// without the token).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct BlocklistLink {
    /// The list's name: the scenario of its decisions.
    pub name: String,
    /// Where to download it: one value per line.
    pub url: String,
    /// The decision type (`ban`).
    pub remediation: String,
    /// The scope of its values (`ip`, `range`).
    pub scope: String,
    /// How long its decisions last (a Go duration).
    pub duration: String,
}

/// A blocking Central API client.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    size_limit: u64,
    token: Option<(String, Instant)>,
}

impl Client {
    /// A client for the Central API at `url` (`https://api.crowdsec.net/`); answers larger
    /// than `size_limit` bytes are refused; every call gives up after `timeout`.
    pub fn new(url: &str, timeout: Duration, size_limit: u64) -> Client {
        Client {
            agent: agent(timeout),
            base: url.trim_end_matches('/').to_owned(),
            size_limit,
            token: None,
        }
    }

    /// The agent, for downloading subscribed lists (their URLs are pre-signed).
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    fn url(&self, route: &str) -> String {
        format!("{}{API_PREFIX}{route}", self.base)
    }

    /// Whether a token is held and not about to expire.
    pub fn logged_in(&self) -> bool {
        self.token
            .as_ref()
            .is_some_and(|(_, until)| Instant::now() < *until)
    }

    /// Forgets the token (after a 401): the next call logs in again.
    pub fn forget_token(&mut self) {
        self.token = None;
    }

    /// `POST /watchers`: registers the machine.
    pub fn register(&self, creds: &Credentials) -> Result<(), CapiError> {
        let body = serde_json::json!({"machine_id": creds.login, "password": creds.password});
        let resp = self.agent.post(self.url("/watchers")).send_json(&body);
        self.answer(resp, false).map(|_| ())
    }

    /// `POST /watchers/login` with the installed scenarios: keeps the token.
    pub fn login(&mut self, creds: &Credentials, scenarios: &[String]) -> Result<(), CapiError> {
        let body = serde_json::json!({
            "machine_id": creds.login,
            "password": creds.password,
            "scenarios": scenarios,
        });
        let resp = self
            .agent
            .post(self.url("/watchers/login"))
            .send_json(&body);
        let bytes = self.answer(resp, false)?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| CapiError::BadPayload(format!("login answer: {e}")))?;
        let token = v
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| CapiError::BadPayload("login answer without a token".into()))?;
        // Renewed a minute before the announced expiry; without one, after 50 minutes.
        let life = v
            .get("expire")
            .and_then(Value::as_str)
            .and_then(|e| e.parse::<jiff::Timestamp>().ok())
            .and_then(|e| {
                let secs = e.as_second() - jiff::Timestamp::now().as_second();
                u64::try_from(secs).ok().map(Duration::from_secs)
            })
            .map_or(TOKEN_DEFAULT_LIFE, |d| d.saturating_sub(TOKEN_MARGIN));
        self.token = Some((token.to_owned(), Instant::now() + life));
        Ok(())
    }

    fn bearer(&self) -> Result<String, CapiError> {
        match &self.token {
            Some((t, _)) => Ok(format!("Bearer {t}")),
            None => Err(CapiError::Unauthorized("not logged in".into())),
        }
    }

    /// `GET /decisions/stream`, with `startup=true` for the full community list.
    pub fn decisions_stream(&self, startup: bool) -> Result<Stream, CapiError> {
        let mut url = self.url("/decisions/stream");
        if startup {
            url.push_str("?startup=true");
        }
        let resp = self
            .agent
            .get(url)
            .header("Authorization", &self.bearer()?)
            .call();
        let bytes = self.answer(resp, true)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| CapiError::BadPayload(format!("decision stream: {e}")))
    }

    /// `POST /signals`.
    pub fn push_signals(&self, signals: &[super::Signal]) -> Result<(), CapiError> {
        let resp = self
            .agent
            .post(self.url("/signals"))
            .header("Authorization", &self.bearer()?)
            .send_json(signals);
        self.answer(resp, true).map(|_| ())
    }

    /// `POST /metrics`: what the machine runs; the Central API's sign of life.
    pub fn push_metrics(&self, body: &Value) -> Result<(), CapiError> {
        let resp = self
            .agent
            .post(self.url("/metrics"))
            .header("Authorization", &self.bearer()?)
            .send_json(body);
        self.answer(resp, true).map(|_| ())
    }

    /// `POST /watchers/enroll`: attaches the machine to a console account.
    pub fn enroll(
        &self,
        attachment_key: &str,
        name: Option<&str>,
        tags: &[String],
        overwrite: bool,
    ) -> Result<(), CapiError> {
        let mut body = serde_json::json!({
            "attachment_key": attachment_key,
            "tags": tags,
            "overwrite": overwrite,
        });
        if let (Some(n), Some(o)) = (name, body.as_object_mut()) {
            o.insert("name".into(), n.into());
        }
        let resp = self
            .agent
            .post(self.url("/watchers/enroll"))
            .header("Authorization", &self.bearer()?)
            .send_json(&body);
        self.answer(resp, true).map(|_| ())
    }

    /// The body of a 2xx answer (at most `size_limit` bytes), or the error it means.
    fn answer(
        &self,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        authed: bool,
    ) -> Result<Vec<u8>, CapiError> {
        let mut resp = resp.map_err(|e| CapiError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let limit = self.size_limit;
        let body = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => {
                    CapiError::BadPayload(format!("answer larger than the {limit}-byte limit"))
                }
                e => CapiError::Unreachable(format!("reading the answer: {e}")),
            });
        let text = |b: &Result<Vec<u8>, CapiError>| match b {
            Ok(b) => error_text(b),
            Err(e) => e.to_string(),
        };
        match status {
            200..=299 => body,
            401 | 403 if authed => Err(CapiError::Unauthorized(text(&body))),
            500..=599 => Err(CapiError::Server(status, text(&body))),
            s => Err(CapiError::Refused(s, text(&body))),
        }
    }
}

/// The agent every Central API call and list download uses.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("garrison/v", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The `message` of an error answer, or its first characters.
fn error_text(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(m) = v.get("message").and_then(Value::as_str)
    {
        return m.to_owned();
    }
    String::from_utf8_lossy(body).chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_match_the_central_api_pattern() {
        let c = Credentials::generate("https://api.crowdsec.net/").expect("randomness");
        assert_eq!(c.login.len(), 48);
        assert_eq!(c.password.len(), 64);
        assert!(c.login.chars().all(|ch| ch.is_ascii_alphanumeric()));
        assert!(c.password.chars().all(|ch| ch.is_ascii_alphanumeric()));
        let d = Credentials::generate("https://api.crowdsec.net/").expect("randomness");
        assert_ne!(c.login, d.login);
        assert_ne!(c.password, d.password);
    }

    #[test]
    fn credentials_file_is_private_and_round_trips() {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("garrison-capi-creds-{}", uuid::Uuid::new_v4()));
        let path = dir.join(CREDENTIALS_FILE);
        assert_eq!(Credentials::read(&path), Ok(None));
        let c = Credentials::generate("http://127.0.0.1:1/").expect("randomness");
        c.write(&path).expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Credentials::read(&path), Ok(Some(c)));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn credentials_file_takes_the_owner_of_the_state_directory() {
        use std::os::unix::fs::MetadataExt;
        // Only root can give a file away (as `garrison console enroll` does under sudo).
        let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        assert_eq!(uid, Some(0), "this test needs root (CI runs as root)");
        let dir =
            std::env::temp_dir().join(format!("garrison-capi-owner-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown dir");
        let path = dir.join(CREDENTIALS_FILE);
        let c = Credentials::generate("http://127.0.0.1:1/").expect("randomness");
        c.write(&path).expect("write");
        let meta = std::fs::metadata(&path).expect("meta");
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        let _ = std::fs::remove_dir_all(dir);
    }
}
