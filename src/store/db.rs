//! SQLite: schema migrations, loading at start, and the single writer thread.
//!
//! One thread owns the write connection and commits whatever is queued in one transaction,
//! so a burst of decisions costs one fsync-free WAL commit, and the async threads never wait
//! on the disk. Writes are applied in the order they were queued: a file cursor queued after
//! the decisions its lines produced is committed with them or after them, never before.

use super::decision::{Decision, DecisionIndex, Millis, Target};
use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// Errors of the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer garrison.
    #[error(
        "database {path} has schema version {found}, newer than this garrison's {known}; upgrade garrison or move the file away"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
}

/// Versioned migrations: entry `n` brings the schema from version `n` to `n + 1`. Append
/// only; never edit a released entry.
pub const MIGRATIONS: &[&str] = &[
    // 1: decisions, alerts, acquisition cursors.
    "CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        machine_id TEXT NOT NULL,
        scenario TEXT NOT NULL,
        message TEXT NOT NULL,
        events_count INTEGER NOT NULL,
        start_at INTEGER NOT NULL,
        stop_at INTEGER NOT NULL,
        source_scope TEXT NOT NULL,
        source_value TEXT NOT NULL,
        remediation INTEGER NOT NULL,
        simulated INTEGER NOT NULL,
        payload TEXT NOT NULL
     );
     CREATE INDEX alerts_created_at ON alerts(created_at);
     CREATE INDEX alerts_source_value ON alerts(source_value);
     CREATE TABLE decisions (
        id INTEGER PRIMARY KEY,
        created_at INTEGER NOT NULL,
        until INTEGER NOT NULL,
        alert_id INTEGER NOT NULL,
        origin TEXT NOT NULL,
        scenario TEXT NOT NULL,
        type TEXT NOT NULL,
        scope TEXT NOT NULL,
        value TEXT NOT NULL,
        simulated INTEGER NOT NULL
     );
     CREATE INDEX decisions_until ON decisions(until);
     CREATE INDEX decisions_alert ON decisions(alert_id);
     CREATE TABLE cursors (
        source TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL
     );",
    // 2: the Local API's bouncers (API keys as hex SHA-512) and machines (argon2 hashes).
    "CREATE TABLE bouncers (
        name TEXT PRIMARY KEY,
        api_key TEXT NOT NULL,
        ip_address TEXT NOT NULL,
        type TEXT NOT NULL,
        version TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_pull INTEGER,
        last_pull_id INTEGER NOT NULL,
        auto_created INTEGER NOT NULL,
        key_file TEXT
     );
     CREATE TABLE machines (
        machine_id TEXT PRIMARY KEY,
        password TEXT NOT NULL,
        ip_address TEXT NOT NULL,
        version TEXT NOT NULL,
        scenarios TEXT NOT NULL,
        is_validated INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        last_push INTEGER,
        last_heartbeat INTEGER
     );",
    // 3: a decision's end once changed (a deletion) goes in its own table, keyed by id. The
    //    rows of a list's vanished entries are spread over the whole decisions table, so
    //    updating them in place rewrote a page per row (330 ms for 1% of a million-entry
    //    list); appended here, they fill a few pages. Nothing queries decisions by end
    //    time, so that index goes.
    "CREATE TABLE decision_ends (
        id INTEGER PRIMARY KEY,
        until INTEGER NOT NULL
     );
     DROP INDEX IF EXISTS decisions_until;",
];

/// Opens (creating if needed) the database and brings its schema up to date.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    let err = |source| DbError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let mut conn = Connection::open(path).map_err(err)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;",
    )
    .map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(DbError::TooNew {
            path: path.to_owned(),
            found: version,
            known,
        });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", n as i64 + 1)
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(conn)
}

/// Loads every retained decision into a fresh index; also returns the next alert id.
pub fn load(conn: &Connection) -> rusqlite::Result<(DecisionIndex, i64)> {
    let max_decision: i64 =
        conn.query_row("SELECT coalesce(max(id), 0) FROM decisions", [], |r| {
            r.get(0)
        })?;
    let max_alert: i64 =
        conn.query_row("SELECT coalesce(max(id), 0) FROM alerts", [], |r| r.get(0))?;
    let mut index = DecisionIndex::with_next_id(max_decision + 1);
    let mut stmt = conn.prepare(
        "SELECT id, created_at, until, alert_id, origin, scenario, type, scope, value, simulated
         FROM decisions ORDER BY id",
    )?;
    // Changed ends, merged in by id (both walks are in id order).
    let mut ends_stmt = conn.prepare("SELECT id, until FROM decision_ends ORDER BY id")?;
    let mut ends =
        ends_stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Millis>(1)?)))?;
    let mut next_end = ends.next().transpose()?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let mut until: Millis = r.get(2)?;
        while let Some((end_id, end)) = next_end
            && end_id <= id
        {
            if end_id == id {
                until = end;
            }
            next_end = ends.next().transpose()?;
        }
        let scope: String = r.get(7)?;
        let value: String = r.get(8)?;
        // A row this version cannot read (edited by hand) is skipped, not fatal.
        let Ok(target) = Target::parse(&scope, &value) else {
            tracing::warn!(
                scope,
                value,
                "skipping a stored decision with an invalid target"
            );
            continue;
        };
        let origin: String = r.get(4)?;
        let scenario: String = r.get(5)?;
        let decision_type: String = r.get(6)?;
        let d = Decision {
            id,
            created_at: r.get(1)?,
            until,
            alert_id: r.get(3)?,
            origin: index.strings.intern(&origin),
            scenario: index.strings.intern(&scenario),
            decision_type: index.strings.intern(&decision_type),
            target,
            simulated: r.get::<_, i64>(9)? != 0,
        };
        index.insert(d);
    }
    Ok((index, max_alert + 1))
}

/// Reads a stored acquisition cursor.
pub fn read_cursor(conn: &Connection, source: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT value FROM cursors WHERE source = ?1",
        [source],
        |r| r.get(0),
    )
    .optional()
}

/// A decision row, ready to write. Its strings are the index's interned ones (shared, not
/// copied) and its value stays a compact [`Target`] until the writer thread formats it: a
/// million queued rows cost no string allocation.
#[derive(Debug, Clone)]
pub struct DecisionRow {
    /// Id.
    pub id: i64,
    /// Creation time.
    pub created_at: Millis,
    /// End time.
    pub until: Millis,
    /// Alert id (0: none).
    pub alert_id: i64,
    /// Origin.
    pub origin: Arc<str>,
    /// Scenario.
    pub scenario: Arc<str>,
    /// Type.
    pub decision_type: Arc<str>,
    /// Scope and value.
    pub target: Target,
    /// Simulated.
    pub simulated: bool,
}

impl DecisionRow {
    /// Resolves a decision's interned strings.
    pub fn of(d: &Decision, index: &DecisionIndex) -> Self {
        DecisionRow {
            id: d.id,
            created_at: d.created_at,
            until: d.until,
            alert_id: d.alert_id,
            origin: Arc::clone(index.strings.get(d.origin)),
            scenario: Arc::clone(index.strings.get(d.scenario)),
            decision_type: Arc::clone(index.strings.get(d.decision_type)),
            target: d.target.clone(),
            simulated: d.simulated,
        }
    }
}

/// Decisions that differ only by target, without an alert ([`super::Store::add_targets`]):
/// the shared fields once, then 48 bytes per decision.
#[derive(Debug, Clone)]
pub struct TargetRows {
    /// Creation time.
    pub created_at: Millis,
    /// End time.
    pub until: Millis,
    /// Origin.
    pub origin: Arc<str>,
    /// Scenario.
    pub scenario: Arc<str>,
    /// Type.
    pub decision_type: Arc<str>,
    /// (id, target) of each decision.
    pub rows: Vec<(i64, Target)>,
}

/// An alert row: the alert as given, with what the store assigns.
#[derive(Debug, Clone)]
pub struct AlertRow {
    /// Id.
    pub id: i64,
    /// UUID.
    pub uuid: String,
    /// When it was stored.
    pub created_at: Millis,
    /// The alert.
    pub alert: super::NewAlert,
}

/// One queued write.
#[derive(Debug)]
pub enum Write {
    /// An alert and its decisions.
    Alert(Box<AlertRow>, Vec<DecisionRow>),
    /// Decisions without an alert.
    Decisions(Vec<DecisionRow>),
    /// Decisions sharing everything but their target (bulk adds).
    Targets(Box<TargetRows>),
    /// New end times (deletions), written to `decision_ends`.
    Expire(Vec<(i64, Millis)>),
    /// Decisions pruned for good.
    Remove(Vec<i64>),
    /// Alerts older than this, with no retained decision, are pruned.
    PruneAlerts(Millis),
    /// An acquisition cursor.
    Cursor(String, String),
    /// Alerts deleted through the Local API (their decisions are expired separately).
    DeleteAlerts(Vec<i64>),
    /// Answers once everything queued before it is committed.
    Barrier(Sender<()>),
    /// Writes committed in one transaction: a batch of lines' decisions with its cursor.
    Group(Vec<Write>),
}

impl Write {
    /// Decision rows it carries (what the backlog counts).
    pub fn rows(&self) -> usize {
        match self {
            Write::Alert(_, ds) | Write::Decisions(ds) => ds.len(),
            Write::Targets(t) => t.rows.len(),
            Write::Expire(ends) => ends.len(),
            Write::Group(ws) => ws.iter().map(Write::rows).sum(),
            _ => 0,
        }
    }
}

/// Rows queued for the writer and not yet committed: bulk writers wait on it so that a
/// million-decision list never queues a million rows in memory (see [`Backlog::wait_below`]).
#[derive(Debug, Default)]
pub struct Backlog {
    rows: Mutex<usize>,
    drained: Condvar,
}

impl Backlog {
    /// Counts `n` more queued rows.
    pub fn add(&self, n: usize) {
        if n > 0 {
            *self
                .rows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) += n;
        }
    }

    /// Counts `n` rows as written (or dropped).
    fn done(&self, n: usize) {
        if n > 0 {
            let mut rows = self
                .rows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *rows = rows.saturating_sub(n);
            self.drained.notify_all();
        }
    }

    /// Rows queued now.
    pub fn rows(&self) -> usize {
        *self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until at most `max` rows are queued, or `patience` has passed (a stuck writer
    /// must not stop the daemon: memory grows instead).
    pub fn wait_below(&self, max: usize, patience: std::time::Duration) {
        let rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = self
            .drained
            .wait_timeout_while(rows, patience, |r| *r > max)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

/// Spawns the writer thread; it ends when every sender is dropped. It counts what it
/// commits off `backlog`.
pub fn spawn_writer(
    conn: Connection,
    rx: Receiver<Write>,
    path: PathBuf,
    backlog: Arc<Backlog>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("garrison-db".into())
        .spawn(move || writer_loop(conn, rx, &path, &backlog))
}

/// Writes queued at most in one transaction.
const MAX_BATCH: usize = 4096;

fn writer_loop(mut conn: Connection, rx: Receiver<Write>, path: &Path, backlog: &Backlog) {
    let mut batch = Vec::with_capacity(64);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        // For tracing a write from its queueing to its commit (`RUST_LOG`): a write that
        // never commits shows whether it reached this thread.
        tracing::debug!(writes = batch.len(), "writing");
        // A failed transaction is retried once (a busy database); after that the batch is
        // logged and dropped rather than blocking every later write.
        for attempt in 0..2 {
            let started = std::time::Instant::now();
            let written = write_batch(&mut conn, &batch);
            let took = started.elapsed();
            if took >= SLOW_WRITE {
                // Decisions wait for this (a busy lock, a slow or full disk).
                tracing::warn!(db = %path.display(), writes = batch.len(), ?took, "slow database write");
            }
            match written {
                Ok(()) => {
                    tracing::debug!(writes = batch.len(), cursors = ?cursors_of(&batch), "committed");
                    break;
                }
                Err(e) if attempt == 0 => {
                    tracing::warn!(error = %e, db = %path.display(), "database write failed, retrying");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => {
                    tracing::error!(error = %e, db = %path.display(), writes = batch.len(), "database write failed; these writes are lost");
                }
            }
        }
        let rows: usize = batch.iter().map(Write::rows).sum();
        backlog.done(rows);
        for b in batch.drain(..) {
            answer_barriers(b);
        }
        if rows >= TRIM_AFTER {
            super::release_freed_memory();
        }
    }
}

/// A transaction taking this long is logged as a warning.
const SLOW_WRITE: std::time::Duration = std::time::Duration::from_secs(1);

/// The acquisition cursor values a batch commits, for debug logs.
fn cursors_of(batch: &[Write]) -> Vec<&str> {
    fn walk<'w>(w: &'w Write, out: &mut Vec<&'w str>) {
        match w {
            Write::Cursor(_, value) => out.push(value),
            Write::Group(ws) => ws.iter().for_each(|w| walk(w, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    batch.iter().for_each(|w| walk(w, &mut out));
    out
}

/// Rows committed in one transaction past which the writer hands the freed heap back: a
/// bulk add's rows are freed here once written, after the list's own thread has trimmed,
/// and glibc would keep those megabytes resident until the next large free.
const TRIM_AFTER: usize = 16_384;

fn answer_barriers(w: Write) {
    match w {
        Write::Barrier(tx) => {
            let _ = tx.send(());
        }
        Write::Group(ws) => ws.into_iter().for_each(answer_barriers),
        _ => {}
    }
}

/// Rows per statement for bulk inserts: SQLite's per-statement work (a savepoint, its
/// statement journal, the VM's setup) is then paid once per this many rows.
const ROWS_PER_INSERT: usize = 64;

/// `INSERT OR REPLACE` of `n` decision rows in one statement.
fn insert_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT OR REPLACE INTO decisions (id, created_at, until, alert_id, origin, scenario, type, scope, value, simulated) VALUES ",
    );
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?,?,?,?,?)");
    }
    sql
}

/// Writes bulk decisions, [`ROWS_PER_INSERT`] per statement.
fn put_targets(tx: &rusqlite::Transaction<'_>, t: &TargetRows) -> rusqlite::Result<()> {
    let mut value = String::new();
    let mut bind = |stmt: &mut rusqlite::CachedStatement<'_>, rows: &[(i64, Target)]| {
        for (i, (id, target)) in rows.iter().enumerate() {
            let p = i * 10;
            value.clear();
            target.write_value(&mut value);
            stmt.raw_bind_parameter(p + 1, id)?;
            stmt.raw_bind_parameter(p + 2, t.created_at)?;
            stmt.raw_bind_parameter(p + 3, t.until)?;
            stmt.raw_bind_parameter(p + 4, 0i64)?;
            stmt.raw_bind_parameter(p + 5, &*t.origin)?;
            stmt.raw_bind_parameter(p + 6, &*t.scenario)?;
            stmt.raw_bind_parameter(p + 7, &*t.decision_type)?;
            stmt.raw_bind_parameter(p + 8, target.scope())?;
            stmt.raw_bind_parameter(p + 9, value.as_str())?;
            stmt.raw_bind_parameter(p + 10, false)?;
        }
        stmt.raw_execute().map(|_| ())
    };
    let mut chunks = t.rows.chunks_exact(ROWS_PER_INSERT);
    if chunks.len() > 0 {
        let mut many = tx.prepare_cached(&insert_sql(ROWS_PER_INSERT))?;
        for chunk in chunks.by_ref() {
            bind(&mut many, chunk)?;
        }
    }
    let mut one = tx.prepare_cached(&insert_sql(1))?;
    for row in chunks.remainder() {
        bind(&mut one, std::slice::from_ref(row))?;
    }
    Ok(())
}

/// `INSERT OR REPLACE` of `n` (id, until) rows into `decision_ends` in one statement.
fn ends_sql(n: usize) -> String {
    let mut sql = String::from("INSERT OR REPLACE INTO decision_ends (id, until) VALUES ");
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?)");
    }
    sql
}

/// Writes changed ends, [`ROWS_PER_INSERT`] per statement: a list refresh expires
/// thousands at once.
fn put_ends(tx: &rusqlite::Transaction<'_>, ends: &[(i64, Millis)]) -> rusqlite::Result<()> {
    let bind = |stmt: &mut rusqlite::CachedStatement<'_>, rows: &[(i64, Millis)]| {
        for (i, (id, until)) in rows.iter().enumerate() {
            stmt.raw_bind_parameter(i * 2 + 1, id)?;
            stmt.raw_bind_parameter(i * 2 + 2, until)?;
        }
        stmt.raw_execute().map(|_| ())
    };
    let mut chunks = ends.chunks_exact(ROWS_PER_INSERT);
    if chunks.len() > 0 {
        let mut many = tx.prepare_cached(&ends_sql(ROWS_PER_INSERT))?;
        for chunk in chunks.by_ref() {
            bind(&mut many, chunk)?;
        }
    }
    let mut one = tx.prepare_cached(&ends_sql(1))?;
    for row in chunks.remainder() {
        bind(&mut one, std::slice::from_ref(row))?;
    }
    Ok(())
}

fn write_batch(conn: &mut Connection, batch: &[Write]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut ins_decision = tx.prepare_cached(
            "INSERT OR REPLACE INTO decisions (id, created_at, until, alert_id, origin, scenario, type, scope, value, simulated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut ins_alert = tx.prepare_cached(
            "INSERT OR REPLACE INTO alerts (id, uuid, created_at, machine_id, scenario, message, events_count, start_at, stop_at, source_scope, source_value, remediation, simulated, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        let mut remove = tx.prepare_cached("DELETE FROM decisions WHERE id = ?1")?;
        let mut remove_end = tx.prepare_cached("DELETE FROM decision_ends WHERE id = ?1")?;
        let mut cursor = tx.prepare_cached(
            "INSERT INTO cursors (source, value, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(source) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )?;
        // One buffer for every row's value (formatted here, off the callers' threads).
        let mut value = String::new();
        let mut put_decisions = |rows: &[DecisionRow]| -> rusqlite::Result<()> {
            for d in rows {
                value.clear();
                d.target.write_value(&mut value);
                ins_decision.execute(params![
                    d.id,
                    d.created_at,
                    d.until,
                    d.alert_id,
                    &*d.origin,
                    &*d.scenario,
                    &*d.decision_type,
                    d.target.scope(),
                    value.as_str(),
                    d.simulated
                ])?;
            }
            Ok(())
        };
        let mut stack: Vec<&Write> = batch.iter().rev().collect();
        while let Some(w) = stack.pop() {
            match w {
                Write::Group(ws) => stack.extend(ws.iter().rev()),
                Write::Alert(row, ds) => {
                    let a = &row.alert;
                    ins_alert.execute(params![
                        row.id,
                        row.uuid,
                        row.created_at,
                        a.machine_id,
                        a.scenario,
                        a.message,
                        a.events_count,
                        a.start_at,
                        a.stop_at,
                        a.source_scope,
                        a.source_value,
                        a.remediation,
                        a.simulated,
                        a.payload.to_string()
                    ])?;
                    put_decisions(ds)?;
                }
                Write::Decisions(ds) => put_decisions(ds)?,
                Write::Targets(t) => put_targets(&tx, t)?,
                Write::Expire(ends) => put_ends(&tx, ends)?,
                Write::Remove(ids) => {
                    for id in ids {
                        remove.execute([id])?;
                        remove_end.execute([id])?;
                    }
                }
                Write::PruneAlerts(before) => {
                    tx.execute(
                        "DELETE FROM alerts WHERE created_at < ?1
                         AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.alert_id = alerts.id)",
                        [before],
                    )?;
                }
                Write::Cursor(source, value) => {
                    cursor.execute(params![source, value, super::decision::now_millis()])?;
                }
                Write::DeleteAlerts(ids) => {
                    for id in ids {
                        tx.execute("DELETE FROM alerts WHERE id = ?1", [id])?;
                    }
                }
                Write::Barrier(_) => {}
            }
        }
    }
    tx.commit()
}
