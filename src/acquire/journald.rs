//! Reading the systemd journal through `journalctl --follow --output=json`.
//!
//! Each entry becomes a syslog-style line (`<RFC 3339 time> <host> <identifier>[<pid>]:
//! <message>`), so the same `syslog` parsers serve the journal and classic log files, and the
//! event time is the entry's own. The entry cursor is persisted with each batch; a restart
//! resumes right after it, and a first start reads only new entries.

use super::{Batch, SourceId, Stop};
use crate::store::Store;
use crossbeam_channel::Sender;
use serde::Deserialize;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The `journalctl` binary; tests replace it with a script replaying a recorded export.
fn journalctl() -> String {
    std::env::var("GARRISON_JOURNALCTL").unwrap_or_else(|_| "journalctl".into())
}

/// The fields of an entry garrison reads. `MESSAGE` is a string, or an array of bytes
/// when it is not valid UTF-8.
#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "__CURSOR")]
    cursor: Option<String>,
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime: Option<String>,
    #[serde(rename = "_HOSTNAME")]
    hostname: Option<String>,
    #[serde(rename = "SYSLOG_IDENTIFIER")]
    identifier: Option<String>,
    #[serde(rename = "_PID")]
    pid: Option<String>,
    #[serde(rename = "MESSAGE")]
    message: Option<serde_json::Value>,
}

/// Renders an entry as a syslog line; None when it has no message.
fn entry_line(entry: &Entry, out: &mut Vec<u8>) -> Option<()> {
    let message: Vec<u8> = match entry.message.as_ref()? {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        serde_json::Value::Array(bytes) => bytes
            .iter()
            .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect(),
        _ => return None,
    };
    let micros: i64 = entry.realtime.as_deref()?.parse().ok()?;
    let time = jiff::Timestamp::from_microsecond(micros).ok()?;
    let host = entry.hostname.as_deref().unwrap_or("localhost");
    let ident = entry.identifier.as_deref().unwrap_or("unknown");
    out.clear();
    // Formatted straight into the line buffer: no string per entry.
    let _ = write!(out, "{}", time.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"));
    out.push(b' ');
    out.extend_from_slice(host.as_bytes());
    out.push(b' ');
    out.extend_from_slice(ident.as_bytes());
    if let Some(pid) = &entry.pid {
        out.push(b'[');
        out.extend_from_slice(pid.as_bytes());
        out.push(b']');
    }
    out.extend_from_slice(b": ");
    // A multi-line message would split into several lines: keep it one.
    out.extend(message.iter().map(|b| if *b == b'\n' { b' ' } else { *b }));
    Some(())
}

/// Entries per batch at most.
const BATCH_ENTRIES: usize = 512;

/// Follows the journal for `matches` (OR'ed) until `stop`.
pub fn run(
    source: SourceId,
    name: String,
    matches: Vec<String>,
    store: Store,
    out: Sender<Batch>,
    stop: Stop,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("garrison-journal-{source}"))
        .spawn(move || {
            let key = format!("journald:{name}");
            let mut backoff = Duration::from_secs(1);
            while !stop.is_set() {
                let cursor = store.cursor(&key);
                let started = std::time::Instant::now();
                if let Err(e) = follow(source, &key, &matches, cursor, &out, &stop) {
                    tracing::warn!(source = %name, error = %e, "journalctl failed");
                }
                if stop.is_set() {
                    break;
                }
                // Restart, backing off when journalctl keeps dying at once.
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                let until = std::time::Instant::now() + backoff;
                while std::time::Instant::now() < until && !stop.is_set() {
                    std::thread::sleep(Duration::from_millis(200));
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        })
}

fn follow(
    source: SourceId,
    key: &str,
    matches: &[String],
    cursor: Option<String>,
    out: &Sender<Batch>,
    stop: &Stop,
) -> std::io::Result<()> {
    let mut cmd = Command::new(journalctl());
    cmd.args(["--follow", "--output=json", "--no-pager", "--quiet"]);
    match &cursor {
        Some(c) => cmd.arg(format!("--after-cursor={c}")),
        None => cmd.arg("--lines=0"),
    };
    // Matches on the same field are OR'ed by journalctl, on different fields AND'ed;
    // `+` makes every one an alternative.
    for (i, m) in matches.iter().enumerate() {
        if i > 0 {
            cmd.arg("+");
        }
        cmd.arg(m);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    tracing::info!(matches = %matches.join(" + "), resume = cursor.is_some(), "following the journal");
    // A blocked read cannot see the stop flag: a watcher kills journalctl instead.
    let watcher_stop = stop.clone();
    let done = Stop::default();
    let watcher_done = done.clone();
    let watcher = std::thread::spawn(move || {
        while !watcher_done.is_set() {
            if watcher_stop.is_set() {
                if let Ok(pid) = libc::pid_t::try_from(pid) {
                    // SAFETY: kill(2) on a child we spawned and have not reaped.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let result = read_entries(source, key, child.stdout.take(), out);
    done.set();
    let _ = child.kill();
    let _ = child.wait();
    let _ = watcher.join();
    result
}

fn read_entries(
    source: SourceId,
    key: &str,
    stdout: Option<std::process::ChildStdout>,
    out: &Sender<Batch>,
) -> std::io::Result<()> {
    let Some(stdout) = stdout else {
        return Ok(());
    };
    let mut reader = BufReader::with_capacity(1 << 16, stdout);
    let mut raw = Vec::new();
    let mut line = Vec::new();
    let mut batch = Batch::new(source);
    let mut entries = 0usize;
    let mut last_cursor = None;
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        match serde_json::from_slice::<Entry>(&raw) {
            Ok(entry) => {
                if entry_line(&entry, &mut line).is_some() {
                    if line.len() > super::lines::MAX_LINE {
                        batch.too_long += 1;
                    } else {
                        batch.push_line(&line);
                    }
                }
                if entry.cursor.is_some() {
                    last_cursor = entry.cursor;
                }
                entries += 1;
            }
            Err(e) => tracing::debug!(error = %e, "skipping an unreadable journal entry"),
        }
        // Hand the batch on when nothing more is waiting, so one entry is not delayed.
        if entries >= BATCH_ENTRIES || reader.buffer().is_empty() {
            batch.cursor = last_cursor.take().map(|c| (key.to_owned(), c));
            let full = std::mem::replace(&mut batch, Batch::new(source));
            entries = 0;
            if out.send(full).is_err() {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_become_syslog_lines_with_their_own_time() {
        let raw = r#"{"__CURSOR":"s=1","__REALTIME_TIMESTAMP":"1700000000123456","_HOSTNAME":"web","SYSLOG_IDENTIFIER":"sshd-session","_PID":"42","MESSAGE":"Failed password for root from 192.0.2.7 port 22 ssh2"}"#;
        let entry: Entry = serde_json::from_str(raw).expect("entry");
        let mut line = Vec::new();
        entry_line(&entry, &mut line).expect("line");
        assert_eq!(
            String::from_utf8(line).expect("utf8"),
            "2023-11-14T22:13:20.123456+00:00 web sshd-session[42]: Failed password for root from 192.0.2.7 port 22 ssh2"
        );
    }

    #[test]
    fn binary_messages_are_kept_as_bytes() {
        let raw = r#"{"__REALTIME_TIMESTAMP":"1700000000000000","SYSLOG_IDENTIFIER":"x","MESSAGE":[104,255,10,105]}"#;
        let entry: Entry = serde_json::from_str(raw).expect("entry");
        let mut line = Vec::new();
        entry_line(&entry, &mut line).expect("line");
        assert!(line.ends_with(b": h\xff i"));
    }
}
