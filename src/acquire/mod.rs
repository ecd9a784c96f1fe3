//! Acquire: log lines from files, the journal and a syslog listener, handed to the engine
//! in batches. Sources know nothing about parsing; they deliver bytes split into lines,
//! each batch with the cursor to persist once its lines are processed.

pub mod file;
pub mod journald;
pub mod lines;
pub mod syslog;

use crate::config::model::Acquisition;
use crossbeam_channel::Sender;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Index of an acquisition in the configuration.
pub type SourceId = usize;

/// Complete lines from one source, in one buffer (no allocation per line).
#[derive(Debug, Clone)]
pub struct Batch {
    /// The acquisition they come from.
    pub source: SourceId,
    /// The lines, each followed by `\n`.
    pub data: Vec<u8>,
    /// Lines dropped at the source for being longer than the limit.
    pub too_long: u64,
    /// A cursor to persist once the lines are processed: (key, value).
    pub cursor: Option<(String, String)>,
    /// When the lines were read (detection latency starts here).
    pub read_at: std::time::Instant,
}

impl Batch {
    /// An empty batch.
    pub fn new(source: SourceId) -> Self {
        Batch {
            source,
            data: Vec::new(),
            too_long: 0,
            cursor: None,
            read_at: std::time::Instant::now(),
        }
    }

    /// Appends a line (without its newline).
    pub fn push_line(&mut self, line: &[u8]) {
        self.data.extend_from_slice(line);
        self.data.push(b'\n');
    }
}

/// A stop flag shared with the source threads.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Asks the sources to stop.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A human description of an acquisition, for logs and `garrison run`'s start message.
pub fn describe(acq: &Acquisition) -> String {
    let what = if !acq.files.0.is_empty() {
        format!("files {}", acq.files.0.join(", "))
    } else if !acq.journald.0.is_empty() {
        format!("journal {}", acq.journald.0.join(" + "))
    } else if let Some(s) = &acq.syslog {
        format!("syslog {:?} on {}", s.protocol, s.listen).to_lowercase()
    } else {
        "nothing".into()
    };
    match &acq.name {
        Some(n) => format!("{n} ({}): {what}", acq.log_type),
        None => format!("{}: {what}", acq.log_type),
    }
}

/// The running sources.
pub struct Sources {
    stop: Stop,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Sources {
    /// Starts every acquisition; lines go to `out`.
    pub fn start(
        acquisitions: &[Acquisition],
        store: &crate::store::Store,
        out: &Sender<Batch>,
    ) -> std::io::Result<Sources> {
        let stop = Stop::default();
        let mut threads = Vec::new();
        let mut files = Vec::new();
        for (id, acq) in acquisitions.iter().enumerate() {
            if !acq.files.0.is_empty() {
                files.push(file::FileSpec {
                    source: id,
                    patterns: acq.files.0.clone(),
                });
            }
            if !acq.journald.0.is_empty() {
                let name = acq
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}-{id}", acq.log_type));
                threads.push(journald::run(
                    id,
                    name,
                    acq.journald.0.clone(),
                    store.clone(),
                    out.clone(),
                    stop.clone(),
                )?);
            }
            if let Some(listener) = &acq.syslog {
                threads.extend(syslog::run(id, listener, out.clone(), stop.clone())?);
            }
        }
        if !files.is_empty() {
            threads.push(file::run(
                files,
                Box::new(store.clone()),
                out.clone(),
                stop.clone(),
            )?);
        }
        Ok(Sources { stop, threads })
    }

    /// Stops every source and waits for it (each notices within about a second).
    pub fn stop(self) {
        self.stop.set();
        for t in self.threads {
            let _ = t.join();
        }
    }
}
