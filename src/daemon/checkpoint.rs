//! WAL checkpoints off the store's writer thread.
//!
//! SQLite checkpoints a WAL database from the committing connection once the log holds
//! 1,000 pages: the store's writer thread then copies them into the database file and
//! syncs it before it can commit anything else, a stall of milliseconds that every write
//! queued behind it waits out (the daemon bench saw a latency spike every hundred attacks).
//! This thread checkpoints passively, often enough that the log stays far below that size
//! in normal operation, so the writer only appends. Durability is unchanged (WAL with
//! `synchronous=NORMAL` either way): only the thread that copies pages back changes.

use crossbeam_channel::{RecvTimeoutError, Sender};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

/// Between two checkpoints: short enough that even a burst of writes (a page or ten per
/// decision) stays well below SQLite's own 1,000-page trigger.
const EVERY: Duration = Duration::from_millis(250);

/// The running checkpointer; dropping it stops the thread.
pub struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts checkpointing the database at `path`.
pub fn spawn(path: &Path) -> std::io::Result<Checkpointer> {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let path = path.to_owned();
    let thread = std::thread::Builder::new()
        .name("garrison-ckpt".into())
        .spawn(move || {
            let mut state = State {
                path,
                conn: None,
                seen: None,
                failed: false,
            };
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                state.checkpoint();
            }
        })?;
    Ok(Checkpointer {
        stop: Some(stop),
        thread: Some(thread),
    })
}

struct State {
    path: PathBuf,
    conn: Option<rusqlite::Connection>,
    /// `PRAGMA data_version` at the last checkpoint: unchanged means nothing to copy.
    seen: Option<i64>,
    /// A failure was logged (logged once until it works again).
    failed: bool,
}

impl State {
    fn checkpoint(&mut self) {
        match self.try_checkpoint() {
            Ok(()) => self.failed = false,
            Err(e) => {
                if !self.failed {
                    tracing::warn!(db = %self.path.display(), error = %e, "WAL checkpoint failed; SQLite's own checkpoints still run");
                }
                self.failed = true;
                self.conn = None;
            }
        }
    }

    fn try_checkpoint(&mut self) -> rusqlite::Result<()> {
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => {
                let c = rusqlite::Connection::open(&self.path)?;
                c.execute_batch("PRAGMA synchronous = NORMAL;")?;
                c.busy_timeout(Duration::from_millis(100))?;
                self.conn.insert(c)
            }
        };
        // Idle: another connection's commit is the only thing that changes data_version.
        let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.seen == Some(version) {
            return Ok(());
        }
        // PASSIVE never waits for the writer or readers; what it cannot copy now is
        // copied next time.
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        self.seen = Some(version);
        Ok(())
    }
}
