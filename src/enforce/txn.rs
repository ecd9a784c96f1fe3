//! Queued element changes and their commit as nf_tables transactions over netlink.
//!
//! A transaction is all-or-nothing in the kernel: one refused message rolls back the whole
//! batch. So a refused batch is resent without what the kernel refused: a deletion of an
//! element that is already gone (ENOENT: it timed out) is dropped silently, a refused
//! multi-element message is split into single elements to find the culprit, and a refused
//! single element is dropped and logged. An addition refused with ENOENT means the table or
//! set is gone: the caller rebuilds.

use super::EnforceError;
use super::elements::{ElemKey, ElemWriter, SetKind};
use super::netlink::{self, MsgBuf, Netlink};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::time::Instant;

/// Bytes per transaction: a batch is one `sendmsg`, and smaller transactions keep the
/// kernel's per-commit work (and a retry after a refusal) bounded.
const TX_LIMIT: usize = 4 << 20;
/// Attempts per transaction (first try, split, drop).
const ATTEMPTS: usize = 4;

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Del,
    /// Empties the set (a DELSETELEM without elements).
    Flush,
}

/// One queued element change.
#[derive(Debug, Clone, Copy)]
struct Change {
    op: Op,
    set: SetKind,
    key: ElemKey,
    timeout_ms: u64,
    /// The comment, as a range of `Pending::text`.
    comment: (u32, u32),
}

/// Element changes waiting for the next commit, in order (a deletion before the re-addition
/// of the same element). Comments live in one shared string: no allocation per element.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    changes: Vec<Change>,
    text: String,
    /// When the oldest queued ban was requested (for the apply latency).
    pub oldest: Option<Instant>,
}

impl Pending {
    /// Queues an addition; `comment` writes the element's comment.
    pub(crate) fn add(
        &mut self,
        set: SetKind,
        key: ElemKey,
        timeout_ms: u64,
        comment: impl FnOnce(&mut String),
    ) {
        let start = self.text.len();
        comment(&mut self.text);
        let end = start
            + super::elements::truncate(&self.text[start..], super::elements::COMMENT_MAX).len();
        self.text.truncate(end);
        self.changes.push(Change {
            op: Op::Add,
            set,
            key,
            timeout_ms,
            comment: (start as u32, end as u32),
        });
    }

    /// Queues a deletion.
    pub(crate) fn del(&mut self, set: SetKind, key: ElemKey) {
        self.changes.push(Change {
            op: Op::Del,
            set,
            key,
            timeout_ms: 0,
            comment: (0, 0),
        });
    }

    /// Queues the emptying of `set` (what follows in the same transaction refills it, so
    /// packets never see it empty).
    pub(crate) fn flush_set(&mut self, set: SetKind) {
        self.changes.push(Change {
            op: Op::Flush,
            set,
            key: ElemKey { start: 0, last: 0 },
            timeout_ms: 0,
            comment: (0, 0),
        });
    }

    /// Number of queued changes.
    pub(crate) fn len(&self) -> usize {
        self.changes.len()
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Forgets everything queued, keeping the allocations.
    pub(crate) fn clear(&mut self) {
        self.changes.clear();
        self.text.clear();
        self.oldest = None;
    }

    /// Logs what would be done (dry run).
    pub(crate) fn log_dry_run(&self) {
        for c in &self.changes {
            let what = match c.op {
                Op::Add => "add",
                Op::Del => "delete",
                Op::Flush => {
                    tracing::info!(set = c.set.name(), "dry run: would empty the set");
                    continue;
                }
            };
            tracing::info!(
                set = c.set.name(),
                element = %ElemDisplay(c.set, c.key),
                timeout_s = c.timeout_ms / 1000,
                comment = &self.text[c.comment.0 as usize..c.comment.1 as usize],
                "dry run: would {what} element"
            );
        }
    }
}

/// An element for logs: an address, or `first-last`.
pub(crate) struct ElemDisplay(pub SetKind, pub ElemKey);

impl std::fmt::Display for ElemDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let one = |f: &mut std::fmt::Formatter<'_>, a: u128| {
            if self.0.is_v4() {
                write!(f, "{}", Ipv4Addr::from(a as u32))
            } else {
                write!(f, "{}", Ipv6Addr::from(a))
            }
        };
        one(f, self.1.start)?;
        if self.1.last != self.1.start {
            f.write_char('-')?;
            one(f, self.1.last)?;
        }
        Ok(())
    }
}

/// What a commit did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CommitReport {
    /// Transactions the kernel committed.
    pub transactions: u64,
    /// Elements added (or re-added).
    pub added: u64,
    /// Elements deleted.
    pub deleted: u64,
    /// Deletions of elements that were already gone.
    pub absent: u64,
    /// Changes the kernel refused (logged).
    pub refused: u64,
}

/// Why a commit stopped early.
#[derive(Debug)]
pub(crate) enum CommitError {
    /// The table or a set is missing: rebuild, then reload.
    Missing,
    /// Netlink or the kernel failed.
    Failed(EnforceError),
}

/// A message of a batch: its sequence number and the changes it carries.
struct Sent {
    seq: u32,
    changes: Range<usize>,
}

/// Commits everything in `p` to `table`: in transactions of at most [`TX_LIMIT`] bytes, or,
/// when `atomic`, in one transaction whatever its size (a set emptied and refilled must
/// never be seen empty).
pub(crate) fn commit(
    nl: &mut Netlink,
    buf: &mut MsgBuf,
    table: &str,
    p: &Pending,
    atomic: bool,
) -> Result<CommitReport, CommitError> {
    let mut report = CommitReport::default();
    let mut next = 0;
    while next < p.changes.len() {
        let mut pieces = vec![next..p.changes.len()];
        let mut sent = Vec::new();
        for attempt in 0..ATTEMPTS {
            // Only the first attempt may stop at the size limit: a retry resends what the
            // first one took, whatever its size (the socket buffer leaves room for it).
            let limit = if attempt == 0 && !atomic {
                TX_LIMIT
            } else {
                usize::MAX
            };
            let (begin, last, consumed) = encode(nl, buf, table, p, &pieces, limit, &mut sent);
            if attempt == 0 {
                next = consumed;
            }
            if sent.is_empty() {
                break; // everything was dropped
            }
            let errors = nl.transact(buf, begin, last).map_err(CommitError::Failed)?;
            if errors.failed.is_empty() {
                report.transactions += 1;
                for s in &sent {
                    for c in &p.changes[s.changes.clone()] {
                        match c.op {
                            Op::Add => report.added += 1,
                            Op::Del => report.deleted += 1,
                            Op::Flush => {}
                        }
                    }
                }
                break;
            }
            pieces = retry_pieces(p, &sent, &errors.failed, &mut report)?;
            if attempt + 1 == ATTEMPTS {
                report.refused += pieces.iter().map(|r| r.len() as u64).sum::<u64>();
                tracing::error!(
                    changes = pieces.len(),
                    "nftables kept refusing a transaction; dropped it"
                );
            }
        }
    }
    Ok(report)
}

/// The pieces to resend after the kernel refused the messages in `failed`.
fn retry_pieces(
    p: &Pending,
    sent: &[Sent],
    failed: &[(u32, i32)],
    report: &mut CommitReport,
) -> Result<Vec<Range<usize>>, CommitError> {
    let mut pieces = Vec::with_capacity(sent.len());
    for s in sent {
        let Some(&(_, errno)) = failed.iter().find(|(seq, _)| *seq == s.seq) else {
            pieces.push(s.changes.clone());
            continue;
        };
        let first = &p.changes[s.changes.start];
        if errno == libc::ENOENT && first.op == Op::Del {
            report.absent += s.changes.len() as u64; // already timed out: nothing to delete
        } else if errno == libc::ENOENT {
            return Err(CommitError::Missing);
        } else if s.changes.len() > 1 {
            pieces.extend(s.changes.clone().map(|i| i..i + 1));
        } else {
            report.refused += 1;
            let what = if first.op == Op::Add { "add" } else { "delete" };
            tracing::warn!(
                set = first.set.name(),
                element = %ElemDisplay(first.set, first.key),
                error = %std::io::Error::from_raw_os_error(errno),
                "nftables refused to {what} an element; skipped"
            );
        }
    }
    Ok(pieces)
}

/// Encodes one batch from `pieces` (each piece starts a new message) into `buf`, stopping
/// once it holds `limit` bytes; fills `sent` and returns (BATCH_BEGIN seq, last message seq, index of
/// the first change not encoded).
fn encode(
    nl: &mut Netlink,
    buf: &mut MsgBuf,
    table: &str,
    p: &Pending,
    pieces: &[Range<usize>],
    limit: usize,
    sent: &mut Vec<Sent>,
) -> (u32, u32, usize) {
    buf.clear();
    sent.clear();
    let begin = nl.next_seqs(1);
    buf.batch_begin(begin);
    let mut w = ElemWriter::new(buf, table);
    let mut consumed = pieces.last().map_or(0, |r| r.end);
    let mut last_off = None;
    'pieces: for piece in pieces {
        let mut fresh = true;
        for i in piece.clone() {
            let c = &p.changes[i];
            let add = c.op == Op::Add;
            // A deletion is its own message, so that ENOENT names exactly what is gone.
            if fresh || !add || !w.fits(c.set, add) || p.changes[i - 1].op != Op::Add {
                if w.buf_len() > limit {
                    consumed = i;
                    break 'pieces;
                }
                last_off = w.finish().or(last_off);
                let seq = nl.next_seqs(1);
                sent.push(Sent {
                    seq,
                    changes: i..i + 1,
                });
                if c.op == Op::Flush {
                    last_off = Some(w.flush_set(c.set, seq));
                    fresh = true;
                    continue;
                }
                w.start(c.set, add, seq);
                fresh = false;
            } else if let Some(s) = sent.last_mut() {
                s.changes.end = i + 1;
            }
            let comment = &p.text[c.comment.0 as usize..c.comment.1 as usize];
            w.push(c.key, add.then_some((c.timeout_ms, comment)));
        }
    }
    last_off = w.finish().or(last_off);
    let last_seq = sent.last().map_or(begin, |s| s.seq);
    if let Some(off) = last_off {
        buf.add_flags(off, netlink::ACK);
    }
    let end = nl.next_seqs(1);
    buf.batch_end(end);
    (begin, last_seq, consumed)
}
