//! Reading garrison's table back from the kernel (`garrison nft status`, tests, benches).

use super::EnforceError;
use super::elements::{self, SetKind};
use super::netlink::{MsgBuf, Netlink};
use super::ruleset::{self, RuleCounter};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// A set element as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelElement {
    /// First address.
    pub first: IpAddr,
    /// Last address (equal to `first` for a single address).
    pub last: IpAddr,
    /// Time left before the kernel removes it (`None`: no timeout).
    pub expires_in: Option<Duration>,
    /// Its comment.
    pub comment: Option<String>,
}

fn addr(set: SetKind, v: u128) -> IpAddr {
    if set.is_v4() {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// A netlink connection for reading garrison's table, in the calling thread's network
/// namespace.
pub struct Inspector {
    nl: Netlink,
    buf: MsgBuf,
    table: String,
}

impl Inspector {
    /// Opens a connection for reading `inet <table>`.
    pub fn open(table: &str) -> Result<Self, EnforceError> {
        ruleset::check_table_name(table)?;
        Ok(Inspector {
            nl: Netlink::open()?,
            buf: MsgBuf::default(),
            table: table.to_string(),
        })
    }

    /// True when the table exists.
    pub fn table_exists(&mut self) -> Result<bool, EnforceError> {
        Ok(ruleset::probe_table(&mut self.nl, &mut self.buf, &self.table)?.is_some())
    }

    /// True when `ip` is an element of `banned-ipv4` or `banned-ipv6` (a kernel lookup of
    /// that one element, not a dump).
    pub fn contains(&mut self, ip: IpAddr) -> Result<bool, EnforceError> {
        Ok(self.first_missing(&[ip])?.is_none())
    }

    /// The first of `ips` that is not an element of `banned-ipv4` / `banned-ipv6`, or `None`
    /// when all are. Looks elements up a thousand per request: linear, unlike a dump.
    pub fn first_missing(&mut self, ips: &[IpAddr]) -> Result<Option<IpAddr>, EnforceError> {
        let mut keys = Vec::with_capacity(1000);
        for chunk in ips.chunks(1000) {
            for set in [SetKind::Ipv4, SetKind::Ipv6] {
                keys.clear();
                let mut which = Vec::with_capacity(chunk.len());
                for ip in chunk {
                    match (ip, set.is_v4()) {
                        (IpAddr::V4(a), true) => keys.push(u32::from(*a) as u128),
                        (IpAddr::V6(a), false) => keys.push(u128::from(*a)),
                        _ => continue,
                    }
                    which.push(*ip);
                }
                if keys.is_empty() {
                    continue;
                }
                self.buf.clear();
                let seq = self.nl.next_seqs(1);
                elements::get_request(&mut self.buf, seq, &self.table, set, &keys);
                let mut found = 0;
                match self.nl.request(&self.buf, seq, true, |_| found += 1)? {
                    Ok(()) => {}
                    Err(libc::ENOENT) => return Ok(which.get(found).copied()),
                    Err(e) => {
                        let what = format!("look up elements of {}", set.name());
                        return Err(EnforceError::kernel(what, e));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Number of kernel elements in `set` (a range counts once); `None` when the set does
    /// not exist. This dumps the set: the kernel resumes a dump by skipping what it already
    /// sent, so a set of a million elements takes a minute; prefer
    /// [`Inspector::first_missing`] to check known addresses.
    pub fn count(&mut self, set: SetKind) -> Result<Option<usize>, EnforceError> {
        let mut n = 0;
        let exists = elements::dump_set(&mut self.nl, &mut self.buf, &self.table, set, |e| {
            if e.flags & elements::NFT_SET_ELEM_INTERVAL_END == 0 {
                n += 1;
            }
        })?;
        Ok(exists.then_some(n))
    }

    /// Every element of `set` (ranges rebuilt from their start and end elements).
    pub fn elements(&mut self, set: SetKind) -> Result<Vec<KernelElement>, EnforceError> {
        let mut out = Vec::new();
        let mut comments = std::collections::HashMap::new();
        elements::dump_set(&mut self.nl, &mut self.buf, &self.table, set, |e| {
            let Some(k) = set.key_value(e.key) else {
                return;
            };
            if e.flags & elements::NFT_SET_ELEM_INTERVAL_END == 0 {
                if let Some(c) = e.comment() {
                    comments.insert(k, c.to_string());
                }
                out.push((k, k, e.expiration_ms, e.flags));
            } else {
                out.push((k, k, None, e.flags));
            }
        })?;
        let ranges: Vec<(u128, u128, Option<u64>)> = if set.is_interval() {
            let end = |f: u32| f & elements::NFT_SET_ELEM_INTERVAL_END != 0;
            elements::pair_intervals(
                set,
                out.iter().map(|&(k, _, x, f)| (k, end(f), x)).collect(),
            )
        } else {
            out.iter().map(|&(k, l, x, _)| (k, l, x)).collect()
        };
        Ok(ranges
            .into_iter()
            .map(|(first, last, x)| KernelElement {
                first: addr(set, first),
                last: addr(set, last),
                expires_in: x.map(Duration::from_millis),
                comment: comments.remove(&first),
            })
            .collect())
    }

    /// The table's rules with their counters.
    pub fn rules(&mut self) -> Result<Vec<RuleCounter>, EnforceError> {
        ruleset::dump_rules(&mut self.nl, &mut self.buf, &self.table)
    }
}
