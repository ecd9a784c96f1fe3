//! Local API identities: bouncers (API keys) and machines (agents with passwords).
//!
//! Kept in memory for every request and mirrored to the `bouncers` and `machines` tables
//! (migration 2) by a writer thread of its own, so requests never wait on the disk. Keys are
//! stored as hex SHA-512 like CrowdSec (`cscli bouncers add` keys work unchanged); passwords
//! as argon2id PHC strings. Writes are rare: creations, deletions, the first request from a
//! new address, and pull cursors (the decision-id high-water mark on change, the pull time at
//! most once a minute, as CrowdSec does).

use super::db::{self, DbError};
use super::decision::{Millis, now_millis};
use crossbeam_channel::Sender;
use rusqlite::{Connection, params};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use subtle::ConstantTimeEq;

/// A bouncer: a remediation component pulling decisions with an API key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Bouncer {
    /// Unique name (`NAME`, or `NAME@IP` when a shared key was used from a new address).
    pub name: String,
    /// hex(SHA-512(key)).
    #[serde(skip)]
    pub api_key: String,
    /// The address it pulls from (bound on its first request).
    pub ip_address: String,
    /// From its User-Agent: `crowdsec-firewall-bouncer`.
    #[serde(rename = "type")]
    pub bouncer_type: String,
    /// From its User-Agent: `v0.0.28`.
    pub version: String,
    /// Creation time (ms).
    pub created_at: Millis,
    /// Last successful pull (ms).
    pub last_pull: Option<Millis>,
    /// Highest decision id it has been sent (its delta cursor).
    pub last_pull_id: i64,
    /// Created automatically for a shared key used from another address.
    pub auto_created: bool,
    /// The key file it comes from (`lapi.bouncer-key-files`), if any.
    pub key_file: Option<String>,
}

/// A machine: an agent (or a CLI) that logs in with a password and pushes alerts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Machine {
    /// Its login.
    pub machine_id: String,
    /// argon2id PHC string.
    #[serde(skip)]
    pub password: String,
    /// Address of its last login.
    pub ip_address: String,
    /// From its User-Agent.
    pub version: String,
    /// Scenarios it announced at login (comma-separated).
    pub scenarios: String,
    /// May log in.
    pub is_validated: bool,
    /// Registration time (ms).
    pub created_at: Millis,
    /// Last alert push (ms).
    pub last_push: Option<Millis>,
    /// Last heartbeat (ms).
    pub last_heartbeat: Option<Millis>,
}

/// Errors of identity management.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The name is taken.
    #[error("{kind} '{name}' already exists")]
    Exists {
        /// `bouncer` or `machine`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// No such name.
    #[error("{kind} '{name}' does not exist")]
    NotFound {
        /// `bouncer` or `machine`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A name or key that cannot be used.
    #[error("{0}")]
    Invalid(String),
}

/// Why a machine login failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Unknown machine or wrong password (indistinguishable to the client).
    BadCredentials,
    /// Registered but not validated yet.
    NotValidated,
}

enum Write {
    PutBouncer(Bouncer),
    DeleteBouncer(String),
    PutMachine(Machine),
    DeleteMachine(String),
    Barrier(Sender<()>),
}

#[derive(Default)]
struct State {
    bouncers: BTreeMap<String, Bouncer>,
    machines: BTreeMap<String, Machine>,
    /// When each bouncer's cursor was last written (ms).
    persisted_pull: BTreeMap<String, (Millis, i64)>,
}

struct Inner {
    state: Mutex<State>,
    writer: Sender<Write>,
    path: PathBuf,
}

/// Bouncers and machines; cheap to clone.
#[derive(Clone)]
pub struct AuthStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// A pull time is written at most this often when the cursor id did not move.
const PULL_PERSIST_MS: Millis = 60_000;

/// hex(SHA-512(key)), as CrowdSec stores bouncer keys.
pub fn hash_key(key: &str) -> String {
    let digest = sha2::Sha512::digest(key.as_bytes());
    let mut out = String::with_capacity(128);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// A fresh API key like `cscli bouncers add`: 32 random bytes, base64 without padding
/// (43 characters).
pub fn generate_key() -> Result<String, AuthError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| AuthError::Invalid(format!("no randomness available: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes))
}

/// A fresh random password for a machine (32 random bytes, URL-safe base64).
pub fn generate_password() -> Result<String, AuthError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| AuthError::Invalid(format!("no randomness available: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// An argon2id PHC hash of `password`.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| AuthError::Invalid(format!("no randomness available: {e}")))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| AuthError::Invalid(format!("salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Invalid(format!("cannot hash the password: {e}")))
}

fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Checks a bouncer or machine name: printable, no spaces or slashes, at most 128 bytes.
pub fn check_name(kind: &str, name: &str) -> Result<(), AuthError> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != '\\')
    {
        return Err(AuthError::Invalid(format!(
            "invalid {kind} name `{name}`: use 1 to 128 printable ASCII characters without spaces or slashes"
        )));
    }
    Ok(())
}

impl AuthStore {
    /// Opens the identities in the database at `path` (migrated by [`db::open`]) and starts
    /// their writer thread.
    pub fn open(path: &Path) -> Result<AuthStore, DbError> {
        let conn = db::open(path)?;
        let err = |source| DbError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let state = load(&conn).map_err(err)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let p = path.to_owned();
        std::thread::Builder::new()
            .name("garrison-auth-db".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while let Ok(w) = rx.try_recv() {
                        batch.push(w);
                    }
                    if let Err(e) = write_batch(&mut conn, &batch) {
                        tracing::error!(error = %e, db = %p.display(), "cannot save bouncers/machines");
                    }
                    for w in batch {
                        if let Write::Barrier(tx) = w {
                            let _ = tx.send(());
                        }
                    }
                }
            })
            .map_err(|e| {
                err(rusqlite::Error::InvalidPath(
                    format!("auth writer thread: {e}").into(),
                ))
            })?;
        Ok(AuthStore {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                writer: tx,
                path: path.to_owned(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn queue(&self, w: Write) {
        if self.inner.writer.send(w).is_err() {
            tracing::error!("the bouncers/machines writer has stopped; a change is not saved");
        }
    }

    /// Waits until every change so far is written (tests, shutdown).
    pub fn flush(&self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.queue(Write::Barrier(tx));
        let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
    }

    // ---- bouncers ----

    /// Every bouncer, by name.
    pub fn bouncers(&self) -> Vec<Bouncer> {
        self.state().bouncers.values().cloned().collect()
    }

    /// Adds a bouncer with `key` (or a fresh one); returns the key, which is not stored.
    pub fn add_bouncer(&self, name: &str, key: Option<&str>) -> Result<String, AuthError> {
        check_name("bouncer", name)?;
        let key = match key {
            Some(k) if k.trim().len() < 16 => {
                return Err(AuthError::Invalid(
                    "an API key must have at least 16 characters".into(),
                ));
            }
            Some(k) => k.trim().to_owned(),
            None => generate_key()?,
        };
        let mut st = self.state();
        if st.bouncers.contains_key(name) {
            return Err(AuthError::Exists {
                kind: "bouncer",
                name: name.to_owned(),
            });
        }
        let b = new_bouncer(name, hash_key(&key), None, false);
        st.bouncers.insert(name.to_owned(), b.clone());
        self.queue(Write::PutBouncer(b));
        Ok(key)
    }

    /// Deletes a bouncer (and those auto-created from its key for other addresses).
    pub fn delete_bouncer(&self, name: &str) -> Result<Vec<String>, AuthError> {
        let mut st = self.state();
        let Some(b) = st.bouncers.remove(name) else {
            return Err(AuthError::NotFound {
                kind: "bouncer",
                name: name.to_owned(),
            });
        };
        let prefix = format!("{name}@");
        let children: Vec<String> = st
            .bouncers
            .values()
            .filter(|o| o.auto_created && o.api_key == b.api_key && o.name.starts_with(&prefix))
            .map(|o| o.name.clone())
            .collect();
        let mut gone = vec![name.to_owned()];
        for c in children {
            st.bouncers.remove(&c);
            gone.push(c);
        }
        for g in &gone {
            st.persisted_pull.remove(g);
            self.queue(Write::DeleteBouncer(g.clone()));
        }
        Ok(gone)
    }

    /// Makes the bouncers of `lapi.bouncer-key-files` match `entries` (name, file, key):
    /// creates or re-keys them, and deletes file bouncers no longer listed.
    pub fn sync_key_files(&self, entries: &[(String, String, String)]) {
        let mut st = self.state();
        let listed: std::collections::HashSet<&str> =
            entries.iter().map(|(n, _, _)| n.as_str()).collect();
        let stale: Vec<String> = st
            .bouncers
            .values()
            .filter(|b| b.key_file.is_some() && !listed.contains(b.name.as_str()))
            .map(|b| b.name.clone())
            .collect();
        for name in stale {
            tracing::info!(bouncer = %name, "bouncer key file no longer configured; bouncer removed");
            st.bouncers.remove(&name);
            self.queue(Write::DeleteBouncer(name));
        }
        for (name, file, key) in entries {
            let hash = hash_key(key);
            let old_hash = st.bouncers.get(name).map(|b| b.api_key.clone());
            match old_hash {
                Some(old) if old == hash => {
                    if let Some(b) = st.bouncers.get_mut(name)
                        && b.key_file.as_deref() != Some(file)
                    {
                        b.key_file = Some(file.clone());
                        self.queue(Write::PutBouncer(b.clone()));
                    }
                }
                Some(old) => {
                    // Re-keyed: the bouncer and its per-address copies take the new key.
                    let prefix = format!("{name}@");
                    for b in st.bouncers.values_mut() {
                        if b.name == *name
                            || (b.auto_created && b.api_key == old && b.name.starts_with(&prefix))
                        {
                            b.api_key = hash.clone();
                            if b.name == *name {
                                b.key_file = Some(file.clone());
                            }
                            self.queue(Write::PutBouncer(b.clone()));
                        }
                    }
                    tracing::info!(bouncer = %name, file = %file, "bouncer key changed");
                }
                None => {
                    let b = new_bouncer(name, hash, Some(file.clone()), false);
                    st.bouncers.insert(name.clone(), b.clone());
                    self.queue(Write::PutBouncer(b));
                }
            }
        }
    }

    /// Authenticates a bouncer key from `ip`, the way CrowdSec does: the bouncer with this
    /// key and address; else the only one with this key and no address yet (bound now);
    /// else a new `NAME@IP` sharing the key. A HEAD request (`bind = false`) only checks the
    /// key. Records the User-Agent (`type/version`). Returns the bouncer's name.
    pub fn authenticate_bouncer(
        &self,
        key: &str,
        ip: &str,
        user_agent: Option<&str>,
        bind: bool,
    ) -> Option<String> {
        let hash = hash_key(key);
        let mut st = self.state();
        // Compare against every key in constant time, without stopping at the first match.
        let mut matching: Vec<String> = Vec::new();
        for b in st.bouncers.values() {
            if bool::from(b.api_key.as_bytes().ct_eq(hash.as_bytes())) {
                matching.push(b.name.clone());
            }
        }
        if matching.is_empty() {
            return None;
        }
        if !bind {
            return matching.into_iter().next();
        }
        let (ua_type, ua_version) = split_user_agent(user_agent.unwrap_or(""));
        let name = if let Some(n) = matching
            .iter()
            .find(|n| st.bouncers.get(*n).is_some_and(|b| b.ip_address == ip))
        {
            n.clone()
        } else if matching.len() == 1
            && st
                .bouncers
                .get(&matching[0])
                .is_some_and(|b| b.ip_address.is_empty())
        {
            matching[0].clone()
        } else {
            // Key sharing: a bouncer per address, named after the original.
            let base = matching
                .iter()
                .filter_map(|n| st.bouncers.get(n))
                .find(|b| !b.auto_created)
                .map_or_else(
                    || {
                        matching[0]
                            .split('@')
                            .next()
                            .unwrap_or("bouncer")
                            .to_owned()
                    },
                    |b| b.name.clone(),
                );
            let mut name = format!("{base}@{ip}");
            let mut n = 2;
            while st.bouncers.contains_key(&name) {
                name = format!("{base}@{ip}#{n}");
                n += 1;
            }
            tracing::info!(bouncer = %name, "new bouncer for a shared key used from another address");
            let b = new_bouncer(&name, hash, None, true);
            st.bouncers.insert(name.clone(), b);
            name
        };
        if let Some(b) = st.bouncers.get_mut(&name) {
            let mut changed = false;
            if b.ip_address != ip {
                b.ip_address = ip.to_owned();
                changed = true;
            }
            if b.bouncer_type != ua_type || b.version != ua_version {
                b.bouncer_type = ua_type;
                b.version = ua_version;
                changed = true;
            }
            if changed {
                let row = b.clone();
                self.queue(Write::PutBouncer(row));
            }
        }
        Some(name)
    }

    /// A bouncer's delta cursor: its last pull time and the highest decision id sent.
    pub fn pull_cursor(&self, name: &str) -> Option<(Option<Millis>, i64)> {
        self.state()
            .bouncers
            .get(name)
            .map(|b| (b.last_pull, b.last_pull_id))
    }

    /// Records a complete pull at `at` that sent every decision up to `last_id`.
    pub fn set_pulled(&self, name: &str, at: Millis, last_id: i64) {
        let mut st = self.state();
        let Some(b) = st.bouncers.get_mut(name) else {
            return;
        };
        b.last_pull = Some(at);
        b.last_pull_id = last_id;
        let row = b.clone();
        let persist = match st.persisted_pull.get(name) {
            Some((t, id)) => *id != last_id || at - *t >= PULL_PERSIST_MS,
            None => true,
        };
        if persist {
            st.persisted_pull.insert(name.to_owned(), (at, last_id));
            self.queue(Write::PutBouncer(row));
        }
    }

    /// Records a query-mode pull (`GET /v1/decisions`) at most once a minute.
    pub fn touch_pull(&self, name: &str, at: Millis) {
        let mut st = self.state();
        let Some(b) = st.bouncers.get_mut(name) else {
            return;
        };
        if b.last_pull.is_some_and(|t| at - t < PULL_PERSIST_MS) {
            return;
        }
        b.last_pull = Some(at);
        let row = b.clone();
        st.persisted_pull
            .insert(name.to_owned(), (at, row.last_pull_id));
        self.queue(Write::PutBouncer(row));
    }

    // ---- machines ----

    /// Every machine, by id.
    pub fn machines(&self) -> Vec<Machine> {
        self.state().machines.values().cloned().collect()
    }

    /// A machine by id.
    pub fn machine(&self, id: &str) -> Option<Machine> {
        self.state().machines.get(id).cloned()
    }

    /// Registers a machine with a password (hashed here: slow, call off async threads).
    pub fn add_machine(
        &self,
        id: &str,
        password: &str,
        ip: &str,
        validated: bool,
    ) -> Result<(), AuthError> {
        check_name("machine", id)?;
        if password.is_empty() {
            return Err(AuthError::Invalid("the password is empty".into()));
        }
        if self.state().machines.contains_key(id) {
            return Err(AuthError::Exists {
                kind: "machine",
                name: id.to_owned(),
            });
        }
        let hash = hash_password(password)?;
        let mut st = self.state();
        if st.machines.contains_key(id) {
            return Err(AuthError::Exists {
                kind: "machine",
                name: id.to_owned(),
            });
        }
        let m = Machine {
            machine_id: id.to_owned(),
            password: hash,
            ip_address: ip.to_owned(),
            version: String::new(),
            scenarios: String::new(),
            is_validated: validated,
            created_at: now_millis(),
            last_push: None,
            last_heartbeat: None,
        };
        st.machines.insert(id.to_owned(), m.clone());
        self.queue(Write::PutMachine(m));
        Ok(())
    }

    /// Checks a login (argon2: slow, call off async threads).
    pub fn check_login(&self, id: &str, password: &str) -> Result<Machine, LoginError> {
        let m = self.machine(id);
        let Some(m) = m else {
            // Same work for an unknown machine, so timing does not tell which ids exist.
            let _ = verify_password(password, DUMMY_HASH);
            return Err(LoginError::BadCredentials);
        };
        if !verify_password(password, &m.password) {
            return Err(LoginError::BadCredentials);
        }
        if !m.is_validated {
            return Err(LoginError::NotValidated);
        }
        Ok(m)
    }

    /// Marks a machine validated.
    pub fn validate_machine(&self, id: &str) -> Result<(), AuthError> {
        self.update_machine(id, |m| m.is_validated = true)
    }

    /// Deletes a machine.
    pub fn delete_machine(&self, id: &str) -> Result<(), AuthError> {
        let mut st = self.state();
        if st.machines.remove(id).is_none() {
            return Err(AuthError::NotFound {
                kind: "machine",
                name: id.to_owned(),
            });
        }
        self.queue(Write::DeleteMachine(id.to_owned()));
        Ok(())
    }

    /// Changes a machine and saves it.
    pub fn update_machine(
        &self,
        id: &str,
        change: impl FnOnce(&mut Machine),
    ) -> Result<(), AuthError> {
        let mut st = self.state();
        let Some(m) = st.machines.get_mut(id) else {
            return Err(AuthError::NotFound {
                kind: "machine",
                name: id.to_owned(),
            });
        };
        let before = m.clone();
        change(m);
        if *m != before {
            let row = m.clone();
            self.queue(Write::PutMachine(row));
        }
        Ok(())
    }
}

/// A valid argon2 hash of a random string, for constant-time failed logins.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$ZmlgBzgPvPKm3D0V8xGsb1UrCsUJxf3C3uY1PwzQ1Ww";

/// Splits a User-Agent into (type, version) like CrowdSec: `name/version`, else `(UA, N/A)`.
pub fn split_user_agent(ua: &str) -> (String, String) {
    let parts: Vec<&str> = ua.split('/').collect();
    if parts.len() == 2 {
        (parts[0].to_owned(), parts[1].to_owned())
    } else {
        (ua.to_owned(), "N/A".to_owned())
    }
}

fn new_bouncer(name: &str, hash: String, key_file: Option<String>, auto: bool) -> Bouncer {
    Bouncer {
        name: name.to_owned(),
        api_key: hash,
        ip_address: String::new(),
        bouncer_type: String::new(),
        version: String::new(),
        created_at: now_millis(),
        last_pull: None,
        last_pull_id: 0,
        auto_created: auto,
        key_file,
    }
}

fn load(conn: &Connection) -> rusqlite::Result<State> {
    let mut st = State::default();
    let mut stmt = conn.prepare(
        "SELECT name, api_key, ip_address, type, version, created_at, last_pull, last_pull_id, auto_created, key_file FROM bouncers",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let b = Bouncer {
            name: r.get(0)?,
            api_key: r.get(1)?,
            ip_address: r.get(2)?,
            bouncer_type: r.get(3)?,
            version: r.get(4)?,
            created_at: r.get(5)?,
            last_pull: r.get(6)?,
            last_pull_id: r.get(7)?,
            auto_created: r.get::<_, i64>(8)? != 0,
            key_file: r.get(9)?,
        };
        if let Some(t) = b.last_pull {
            st.persisted_pull
                .insert(b.name.clone(), (t, b.last_pull_id));
        }
        st.bouncers.insert(b.name.clone(), b);
    }
    let mut stmt = conn.prepare(
        "SELECT machine_id, password, ip_address, version, scenarios, is_validated, created_at, last_push, last_heartbeat FROM machines",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let m = Machine {
            machine_id: r.get(0)?,
            password: r.get(1)?,
            ip_address: r.get(2)?,
            version: r.get(3)?,
            scenarios: r.get(4)?,
            is_validated: r.get::<_, i64>(5)? != 0,
            created_at: r.get(6)?,
            last_push: r.get(7)?,
            last_heartbeat: r.get(8)?,
        };
        st.machines.insert(m.machine_id.clone(), m);
    }
    Ok(st)
}

fn write_batch(conn: &mut Connection, batch: &[Write]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for w in batch {
        match w {
            Write::PutBouncer(b) => {
                tx.execute(
                    "INSERT OR REPLACE INTO bouncers (name, api_key, ip_address, type, version, created_at, last_pull, last_pull_id, auto_created, key_file)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        b.name,
                        b.api_key,
                        b.ip_address,
                        b.bouncer_type,
                        b.version,
                        b.created_at,
                        b.last_pull,
                        b.last_pull_id,
                        b.auto_created,
                        b.key_file
                    ],
                )?;
            }
            Write::DeleteBouncer(name) => {
                tx.execute("DELETE FROM bouncers WHERE name = ?1", [name])?;
            }
            Write::PutMachine(m) => {
                tx.execute(
                    "INSERT OR REPLACE INTO machines (machine_id, password, ip_address, version, scenarios, is_validated, created_at, last_push, last_heartbeat)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        m.machine_id,
                        m.password,
                        m.ip_address,
                        m.version,
                        m.scenarios,
                        m.is_validated,
                        m.created_at,
                        m.last_push,
                        m.last_heartbeat
                    ],
                )?;
            }
            Write::DeleteMachine(id) => {
                tx.execute("DELETE FROM machines WHERE machine_id = ?1", [id])?;
            }
            Write::Barrier(_) => {}
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdb() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("garrison-auth-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("garrison.db")
    }

    #[test]
    fn keys_look_like_cscli_and_hash_like_crowdsec() {
        let k = generate_key().expect("key");
        assert_eq!(k.len(), 43);
        assert_eq!(hash_key("abc").len(), 128);
        assert!(hash_key("abc").starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn bouncers_bind_addresses_share_keys_and_survive_reopen() {
        let path = tempdb();
        let auth = AuthStore::open(&path).expect("open");
        let key = auth.add_bouncer("fw", None).expect("add");
        assert!(auth.add_bouncer("fw", None).is_err());
        assert_eq!(
            auth.authenticate_bouncer("nope", "1.1.1.1", None, true),
            None
        );
        let ua = Some("crowdsec-firewall-bouncer/v0.0.28");
        assert_eq!(
            auth.authenticate_bouncer(&key, "10.0.0.1", ua, true)
                .as_deref(),
            Some("fw")
        );
        assert_eq!(
            auth.authenticate_bouncer(&key, "10.0.0.2", ua, true)
                .as_deref(),
            Some("fw@10.0.0.2")
        );
        assert_eq!(
            auth.authenticate_bouncer(&key, "10.0.0.1", ua, true)
                .as_deref(),
            Some("fw")
        );
        auth.set_pulled("fw", 1000, 7);
        auth.flush();
        drop(auth);
        let auth = AuthStore::open(&path).expect("reopen");
        let b = auth.bouncers();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].bouncer_type, "crowdsec-firewall-bouncer");
        assert_eq!(b[0].version, "v0.0.28");
        assert_eq!(auth.pull_cursor("fw"), Some((Some(1000), 7)));
        assert_eq!(auth.delete_bouncer("fw").expect("delete").len(), 2);
    }

    #[test]
    fn machines_log_in_only_when_validated() {
        let auth = AuthStore::open(&tempdb()).expect("open");
        auth.add_machine("agent", "s3cret", "127.0.0.1", false)
            .expect("add");
        assert_eq!(
            auth.check_login("agent", "s3cret"),
            Err(LoginError::NotValidated)
        );
        auth.validate_machine("agent").expect("validate");
        assert!(auth.check_login("agent", "s3cret").is_ok());
        assert_eq!(
            auth.check_login("agent", "bad"),
            Err(LoginError::BadCredentials)
        );
        assert_eq!(
            auth.check_login("ghost", "x"),
            Err(LoginError::BadCredentials)
        );
    }
}
