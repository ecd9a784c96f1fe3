//! Tailing files by glob, with a persisted cursor and both kinds of rotation.
//!
//! One thread tails every file. It sleeps on inotify events for the watched directories
//! (and wakes once a second to catch anything missed), so an idle system costs nothing.
//! - First start: a file is tailed from its end; a file that appears later is read whole.
//! - Restart: reading resumes at the stored (device, inode, offset). If the file was rotated
//!   meanwhile, the rest of the old inode is read from its new name in the same directory
//!   first, then the new file from its start.
//! - Rotation by rename (logrotate `create`): the open handle is drained to its end, then
//!   the new file at the path is read from its start.
//! - `copytruncate`: a size below the offset means truncation; reading restarts at 0.
//! - A partial last line waits for its newline; the cursor only covers complete lines.

use super::{Batch, SourceId, Stop};
use crate::acquire::lines::MAX_LINE;
use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where reading of one file stands; persisted as JSON under `file:<path>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCursor {
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file.
    pub inode: u64,
    /// Bytes consumed (complete lines only).
    pub offset: u64,
}

/// Reads cursors stored by an earlier run.
pub trait CursorSource: Send {
    /// The stored cursor for a key.
    fn cursor(&self, key: &str) -> Option<String>;
}

impl CursorSource for crate::store::Store {
    fn cursor(&self, key: &str) -> Option<String> {
        crate::store::Store::cursor(self, key)
    }
}

/// The cursor key of a path.
pub fn cursor_key(path: &Path) -> String {
    format!("file:{}", path.display())
}

/// An open file read line by line.
struct Reader {
    file: File,
    dev: u64,
    inode: u64,
    /// Bytes read from the file so far (its read position).
    read_pos: u64,
    /// Start of the first line not yet handed on: what the cursor stores.
    offset: u64,
    /// Bytes of the current, incomplete line.
    pending: Vec<u8>,
    /// Inside an over-long line: drop bytes until the next newline.
    skipping: bool,
    /// The read buffer, reused.
    buf: Vec<u8>,
}

impl Reader {
    fn at(mut file: File, dev: u64, inode: u64, offset: u64) -> Option<Reader> {
        file.seek(SeekFrom::Start(offset)).ok()?;
        Some(Reader {
            file,
            dev,
            inode,
            read_pos: offset,
            offset,
            pending: Vec::new(),
            skipping: false,
            buf: Vec::new(),
        })
    }

    fn rewind(&mut self) -> bool {
        self.read_pos = 0;
        self.offset = 0;
        self.pending.clear();
        self.skipping = false;
        self.file.seek(SeekFrom::Start(0)).is_ok()
    }

    /// Reads one chunk; a batch of its complete lines, or None at the end of the data.
    fn read_batch(&mut self, source: SourceId, path: &Path) -> Option<Batch> {
        if self.buf.len() != READ_CHUNK {
            self.buf.resize(READ_CHUNK, 0);
        }
        let mut buf = std::mem::take(&mut self.buf);
        let n = match self.file.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "read failed");
                0
            }
        };
        let batch = (n > 0).then(|| self.split(&buf[..n], source, path));
        self.buf = buf;
        batch
    }

    /// Hands on the complete lines of `buf`, keeping a partial last line.
    fn split(&mut self, buf: &[u8], source: SourceId, path: &Path) -> Batch {
        let n = buf.len();
        let base = self.read_pos;
        self.read_pos += n as u64;
        let mut batch = Batch::new(source);
        let mut start = 0usize;
        while let Some(nl) = memchr::memchr(b'\n', &buf[start..]) {
            let piece = &buf[start..start + nl];
            if self.skipping {
                self.skipping = false;
            } else if self.pending.is_empty() {
                batch.push_line(piece);
            } else {
                self.pending.extend_from_slice(piece);
                batch.push_line(&self.pending);
                self.pending.clear();
            }
            start += nl + 1;
            self.offset = base + start as u64;
        }
        let rest = &buf[start..];
        if !rest.is_empty() && !self.skipping {
            if self.pending.len() + rest.len() > MAX_LINE {
                // Counted once; the rest of this line is dropped up to its newline.
                batch.too_long += 1;
                self.skipping = true;
                self.pending.clear();
            } else {
                self.pending.extend_from_slice(rest);
            }
        }
        // The cursor covers complete lines only: a restart re-reads a partial line whole.
        batch.cursor = Some((
            cursor_key(path),
            serde_json::json!({"dev": self.dev, "inode": self.inode, "offset": self.offset})
                .to_string(),
        ));
        batch
    }
}

/// One file being tailed.
struct Tailed {
    source: SourceId,
    path: PathBuf,
    reader: Reader,
    /// A rotated-away file still to drain before `reader` (the old inode).
    draining: Option<Reader>,
}

/// The file sources of one acquisition.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// The acquisition.
    pub source: SourceId,
    /// Paths or globs.
    pub patterns: Vec<String>,
}

/// Bytes read at most per batch: big enough to amortise the hand-over, small enough that
/// the few batches queued for the engine bound memory when it falls behind.
const READ_CHUNK: usize = 256 << 10;

/// Tails files until `stop` is set; batches go to `out`.
pub fn run(
    specs: Vec<FileSpec>,
    cursors: Box<dyn CursorSource>,
    out: Sender<Batch>,
    stop: Stop,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("garrison-files".into())
        .spawn(move || Tailer::new(specs, cursors, out, stop).run())
}

struct Tailer {
    specs: Vec<FileSpec>,
    cursors: Box<dyn CursorSource>,
    out: Sender<Batch>,
    stop: Stop,
    files: BTreeMap<PathBuf, Tailed>,
    /// Paths that matched a pattern but could not be opened (logged once).
    unreadable: std::collections::HashSet<PathBuf>,
    /// Cursors handed on in this run: fresher than the database, whose writes may still be
    /// queued when a file comes back.
    known: std::collections::HashMap<PathBuf, FileCursor>,
}

impl Tailer {
    fn new(
        specs: Vec<FileSpec>,
        cursors: Box<dyn CursorSource>,
        out: Sender<Batch>,
        stop: Stop,
    ) -> Self {
        Tailer {
            specs,
            cursors,
            out,
            stop,
            files: BTreeMap::new(),
            unreadable: Default::default(),
            known: Default::default(),
        }
    }

    fn run(mut self) {
        // One pending wake-up is enough (a pass reads everything new), so the channel holds
        // one: while the engine lags and this thread waits to hand on a batch, events for
        // every append would otherwise pile up without bound.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.is_ok() {
                let _ = tx.try_send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; checking files every second");
                None
            }
        };
        if let Some(w) = watcher.as_mut() {
            use notify::Watcher;
            for dir in self.watch_dirs() {
                if !dir.is_dir() {
                    tracing::info!(dir = %dir.display(), "directory does not exist yet; checking for it every second");
                    continue;
                }
                if let Err(e) = w.watch(&dir, notify::RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory; checking it every second");
                }
            }
        }
        self.discover(true);
        self.poll_all();
        while !self.stop.is_set() {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(()) => {
                    // Coalesce a burst of events into one pass.
                    while rx.try_recv().is_ok() {}
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            self.discover(false);
            self.poll_all();
        }
    }

    /// Directories to watch: the parent of each pattern, up to its first wildcard.
    fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for spec in &self.specs {
            for p in &spec.patterns {
                let fixed: PathBuf = Path::new(p)
                    .components()
                    .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
                    .collect();
                let dir = if fixed.as_os_str() == p.as_str() {
                    fixed.parent().map(Path::to_path_buf).unwrap_or_default()
                } else {
                    fixed
                };
                if !dir.as_os_str().is_empty() && !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
        dirs
    }

    /// Opens files that match a pattern and are not tailed yet.
    fn discover(&mut self, first: bool) {
        let specs = self.specs.clone();
        for spec in &specs {
            for pattern in &spec.patterns {
                let paths: Vec<PathBuf> = match glob::glob(pattern) {
                    Ok(paths) => paths.filter_map(Result::ok).collect(),
                    Err(e) => {
                        if first {
                            tracing::error!(pattern, error = %e, "invalid file pattern");
                        }
                        continue;
                    }
                };
                if first && paths.is_empty() {
                    tracing::info!(pattern, "no file matches yet; watching for it");
                }
                for path in paths {
                    if !self.files.contains_key(&path) && path.is_file() {
                        self.open(spec.source, path, first);
                    }
                }
            }
        }
    }

    fn open(&mut self, source: SourceId, path: PathBuf, first: bool) {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                if self.unreadable.insert(path.clone()) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open log file");
                }
                return;
            }
        };
        self.unreadable.remove(&path);
        let Ok(meta) = file.metadata() else { return };
        let (dev, inode, size) = (meta.dev(), meta.ino(), meta.size());
        let stored: Option<FileCursor> = self.known.get(&path).copied().or_else(|| {
            self.cursors
                .cursor(&cursor_key(&path))
                .and_then(|s| serde_json::from_str(&s).ok())
        });
        let mut draining = None;
        let offset = match stored {
            // Same file: resume, unless it was truncated while we were away.
            Some(c) if c.dev == dev && c.inode == inode && c.offset <= size => c.offset,
            Some(c) if c.dev == dev && c.inode == inode => 0,
            // Rotated while we were away: finish the old inode first if it is still there.
            Some(c) => {
                if let Some(old) = find_inode(&path, c.dev, c.inode) {
                    tracing::info!(path = %path.display(), rotated = %old.display(), "rotated while stopped; reading the rest of the old file first");
                    draining = File::open(&old)
                        .ok()
                        .and_then(|f| Reader::at(f, c.dev, c.inode, c.offset));
                }
                0
            }
            // Never seen: at first start tail from the end (old lines are history, not an
            // attack in progress); a file created while running is read whole.
            None if first => size,
            None => 0,
        };
        tracing::info!(path = %path.display(), offset, "tailing");
        let Some(reader) = Reader::at(file, dev, inode, offset) else {
            return;
        };
        self.files.insert(
            path.clone(),
            Tailed {
                source,
                path,
                reader,
                draining,
            },
        );
    }

    fn poll_all(&mut self) {
        let paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        for path in paths {
            let Some(mut t) = self.files.remove(&path) else {
                continue;
            };
            let keep = self.poll(&mut t);
            if keep {
                self.files.insert(path, t);
            }
        }
    }

    /// Reads what is new in one file; false when it is gone for good.
    fn poll(&mut self, t: &mut Tailed) -> bool {
        if let Some(mut old) = t.draining.take()
            && !self.drain(&mut old, t.source, &t.path)
        {
            return false;
        }
        match std::fs::metadata(&t.path) {
            Ok(meta) if meta.dev() == t.reader.dev && meta.ino() == t.reader.inode => {
                if meta.size() < t.reader.offset {
                    tracing::info!(path = %t.path.display(), "file truncated (copytruncate); reading from its start");
                    if !t.reader.rewind() {
                        return false;
                    }
                }
                self.drain(&mut t.reader, t.source, &t.path)
            }
            Ok(_) => {
                // Renamed away and replaced: drain the old inode, then follow the path.
                if !self.drain(&mut t.reader, t.source, &t.path) {
                    return false;
                }
                tracing::info!(path = %t.path.display(), "file rotated; following the new file");
                let Some(reader) = File::open(&t.path).ok().and_then(|f| {
                    let meta = f.metadata().ok()?;
                    Reader::at(f, meta.dev(), meta.ino(), 0)
                }) else {
                    return false;
                };
                t.reader = reader;
                self.drain(&mut t.reader, t.source, &t.path)
            }
            Err(_) => {
                // Gone (deleted, or renamed with no replacement yet): hand on what was
                // written before, then forget it; discovery picks it up when it returns.
                self.drain(&mut t.reader, t.source, &t.path);
                tracing::info!(path = %t.path.display(), "file disappeared; watching for it to come back");
                false
            }
        }
    }

    /// Hands on every complete line available; false when the engine has stopped.
    fn drain(&mut self, reader: &mut Reader, source: SourceId, path: &Path) -> bool {
        while let Some(batch) = reader.read_batch(source, path) {
            self.known.insert(
                path.to_owned(),
                FileCursor {
                    dev: reader.dev,
                    inode: reader.inode,
                    offset: reader.offset,
                },
            );
            if self.out.send(batch).is_err() {
                return false;
            }
        }
        true
    }
}

/// A file with this device and inode in the same directory as `path` (its rotated name).
fn find_inode(path: &Path, dev: u64, inode: u64) -> Option<PathBuf> {
    let dir = path.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && m.dev() == dev && m.ino() == inode)
        })
        .map(|e| e.path())
}
