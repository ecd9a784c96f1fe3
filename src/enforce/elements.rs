//! garrison's four sets and the netlink encoding of their elements (NEWSETELEM, DELSETELEM,
//! GETSETELEM), as libnftnl and nft encode them, so that `nft list` shows them normally.

use super::netlink::{self, Msg, MsgBuf};

const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_DATA_VALUE: u16 = 1;
/// The element closes the interval opened by the previous one (its key is exclusive).
pub(crate) const NFT_SET_ELEM_INTERVAL_END: u32 = 1;

/// libnftnl user data: the element's comment (NUL-terminated string).
const NFTNL_UDATA_SET_ELEM_COMMENT: u8 = 0;
/// libnftnl user data: element flags (native-endian u32), for nft's listing.
const NFTNL_UDATA_SET_ELEM_FLAGS: u8 = 1;
/// The interval has no end element because it runs to the last address.
const NFTNL_SET_ELEM_F_INTERVAL_OPEN: u32 = 1;

/// nft truncates nothing but refuses comments over 128 bytes; keep below that.
pub(crate) const COMMENT_MAX: usize = 127;
/// Keep each message's element list below the 64 KiB limit of a netlink attribute.
const NEST_LIMIT: usize = 60_000;
/// Upper bound of one encoded element (key, end key, timeout, user data).
const ELEM_MAX: usize = 400;

/// One of the four sets in garrison's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetKind {
    /// Single IPv4 addresses (`ipv4_addr`, `flags timeout`).
    Ipv4,
    /// Single IPv6 addresses (`ipv6_addr`, `flags timeout`).
    Ipv6,
    /// IPv4 ranges (`ipv4_addr`, `flags interval, timeout`).
    Ipv4Ranges,
    /// IPv6 ranges (`ipv6_addr`, `flags interval, timeout`).
    Ipv6Ranges,
}

impl SetKind {
    /// All four, in the order they appear in the table.
    pub const ALL: [SetKind; 4] = [
        SetKind::Ipv4,
        SetKind::Ipv4Ranges,
        SetKind::Ipv6,
        SetKind::Ipv6Ranges,
    ];

    /// The set's name in the table.
    pub fn name(self) -> &'static str {
        match self {
            SetKind::Ipv4 => "banned-ipv4",
            SetKind::Ipv6 => "banned-ipv6",
            SetKind::Ipv4Ranges => "banned-ipv4-ranges",
            SetKind::Ipv6Ranges => "banned-ipv6-ranges",
        }
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        if self.is_v4() { 4 } else { 16 }
    }

    /// True for the IPv4 sets.
    pub fn is_v4(self) -> bool {
        matches!(self, SetKind::Ipv4 | SetKind::Ipv4Ranges)
    }

    /// True for the interval (range) sets.
    pub fn is_interval(self) -> bool {
        matches!(self, SetKind::Ipv4Ranges | SetKind::Ipv6Ranges)
    }

    /// Big-endian key bytes of an address held in a u128 (IPv4 in the low 32 bits).
    pub(crate) fn key_bytes(self, addr: u128) -> KeyBytes {
        if self.is_v4() {
            let b = (addr as u32).to_be_bytes();
            KeyBytes {
                buf: [b[0], b[1], b[2], b[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                len: 4,
            }
        } else {
            KeyBytes {
                buf: addr.to_be_bytes(),
                len: 16,
            }
        }
    }

    /// The address in big-endian `key` bytes, as a u128.
    pub(crate) fn key_value(self, key: &[u8]) -> Option<u128> {
        match key.len() {
            4 if self.is_v4() => Some(u32::from_be_bytes(key.try_into().ok()?) as u128),
            16 if !self.is_v4() => Some(u128::from_be_bytes(key.try_into().ok()?)),
            _ => None,
        }
    }

    /// The last address of the family.
    pub(crate) fn max_addr(self) -> u128 {
        if self.is_v4() {
            u32::MAX as u128
        } else {
            u128::MAX
        }
    }
}

/// A key, without allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyBytes {
    buf: [u8; 16],
    len: usize,
}

impl KeyBytes {
    /// The key's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// An element to add or delete: a single address, or a range `[start, last]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ElemKey {
    /// First address.
    pub start: u128,
    /// Last address (inclusive); equal to `start` for a single address.
    pub last: u128,
}

/// Writes the header of a set element message and opens its element list; returns the
/// offsets for [`end_setelem_msg`].
fn begin_setelem_msg(
    buf: &mut MsgBuf,
    msg: u16,
    flags: u16,
    seq: u32,
    table: &str,
    set: SetKind,
) -> (usize, usize) {
    let off = buf.begin_msg(netlink::nft_type(msg), flags, seq, netlink::NFPROTO_INET, 0);
    buf.attr_str(NFTA_SET_ELEM_LIST_TABLE, table);
    buf.attr_str(NFTA_SET_ELEM_LIST_SET, set.name());
    let nest = buf.nest_begin(NFTA_SET_ELEM_LIST_ELEMENTS);
    (off, nest)
}

fn end_setelem_msg(buf: &mut MsgBuf, (off, nest): (usize, usize)) {
    buf.nest_end(nest);
    buf.end_msg(off);
}

fn put_key(buf: &mut MsgBuf, key: KeyBytes) {
    let k = buf.nest_begin(NFTA_SET_ELEM_KEY);
    buf.attr(NFTA_DATA_VALUE, key.as_slice());
    buf.nest_end(k);
}

/// Appends the netlink element(s) of `elem` to an open element list. `add` carries the
/// timeout (ms; 0 for none) and comment; a deletion only needs the keys.
fn put_elem(buf: &mut MsgBuf, set: SetKind, elem: ElemKey, add: Option<(u64, &str)>) {
    let open = set.is_interval() && elem.last == set.max_addr();
    let e = buf.nest_begin(NFTA_LIST_ELEM);
    put_key(buf, set.key_bytes(elem.start));
    if let Some((timeout_ms, comment)) = add {
        if timeout_ms > 0 {
            buf.attr_be64(NFTA_SET_ELEM_TIMEOUT, timeout_ms);
        }
        let comment = truncate(comment, COMMENT_MAX);
        let clen = [(comment.len() + 1) as u8];
        let flags = NFTNL_SET_ELEM_F_INTERVAL_OPEN.to_ne_bytes();
        let mut parts: [&[u8]; 6] = [
            &[NFTNL_UDATA_SET_ELEM_COMMENT],
            &clen,
            comment.as_bytes(),
            &[0],
            &[],
            &[],
        ];
        let open_tlv = [NFTNL_UDATA_SET_ELEM_FLAGS, 4];
        if open {
            parts[4] = &open_tlv;
            parts[5] = &flags;
        }
        buf.attr_parts(NFTA_SET_ELEM_USERDATA, &parts);
    }
    buf.nest_end(e);
    if set.is_interval() && !open {
        let e = buf.nest_begin(NFTA_LIST_ELEM);
        put_key(buf, set.key_bytes(elem.last + 1));
        buf.attr_be32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
        buf.nest_end(e);
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Encodes set element messages, starting a new message whenever the current one is full.
pub(crate) struct ElemWriter<'a> {
    buf: &'a mut MsgBuf,
    table: &'a str,
    open: Option<(usize, usize)>,
    set: SetKind,
    add: bool,
    /// Sequence number of the open message.
    pub seq: u32,
}

impl<'a> ElemWriter<'a> {
    /// A writer appending to `buf` (inside a batch).
    pub(crate) fn new(buf: &'a mut MsgBuf, table: &'a str) -> Self {
        ElemWriter {
            buf,
            table,
            open: None,
            set: SetKind::Ipv4,
            add: true,
            seq: 0,
        }
    }

    /// Bytes encoded so far in the underlying buffer.
    pub(crate) fn buf_len(&self) -> usize {
        self.buf.len()
    }

    /// True when an element for `set` (added or deleted) can go into the open message: one
    /// is open, for the same set and operation, with room left under the attribute limit.
    pub(crate) fn fits(&self, set: SetKind, add: bool) -> bool {
        match self.open {
            Some((_, nest)) => {
                self.set == set && self.add == add && self.buf.len() - nest + ELEM_MAX <= NEST_LIMIT
            }
            None => false,
        }
    }

    /// Starts a new message with sequence number `seq` (closing the open one).
    pub(crate) fn start(&mut self, set: SetKind, add: bool, seq: u32) {
        self.finish();
        let (msg, flags) = if add {
            (
                NFT_MSG_NEWSETELEM,
                netlink::NLM_F_REQUEST | netlink::NLM_F_CREATE,
            )
        } else {
            (NFT_MSG_DELSETELEM, netlink::NLM_F_REQUEST)
        };
        self.open = Some(begin_setelem_msg(
            self.buf, msg, flags, seq, self.table, set,
        ));
        self.set = set;
        self.add = add;
        self.seq = seq;
    }

    /// Closes the open message and writes one that empties `set`; returns its offset.
    pub(crate) fn flush_set(&mut self, set: SetKind, seq: u32) -> usize {
        self.finish();
        let h = begin_setelem_msg(
            self.buf,
            NFT_MSG_DELSETELEM,
            netlink::NLM_F_REQUEST,
            seq,
            self.table,
            set,
        );
        // No element list: the kernel empties the set.
        self.buf.truncate(h.1);
        self.buf.end_msg(h.0);
        h.0
    }

    /// Appends an element to the open message.
    pub(crate) fn push(&mut self, elem: ElemKey, add: Option<(u64, &str)>) {
        put_elem(self.buf, self.set, elem, add);
    }

    /// Closes the open message; returns its offset, if one was open.
    pub(crate) fn finish(&mut self) -> Option<usize> {
        let open = self.open.take()?;
        end_setelem_msg(self.buf, open);
        Some(open.0)
    }
}

/// A set element as the kernel reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ElemView<'a> {
    /// Key bytes (big-endian address).
    pub key: &'a [u8],
    /// `NFT_SET_ELEM_*` flags.
    pub flags: u32,
    /// Timeout given when added (ms).
    pub timeout_ms: Option<u64>,
    /// Time left (ms).
    pub expiration_ms: Option<u64>,
    /// libnftnl user data (the comment).
    pub userdata: Option<&'a [u8]>,
}

impl ElemView<'_> {
    /// The element's comment, from its user data.
    pub(crate) fn comment(&self) -> Option<&str> {
        let mut ud = self.userdata?;
        while ud.len() >= 2 {
            let (ty, len) = (ud[0], ud[1] as usize);
            let val = ud.get(2..2 + len)?;
            if ty == NFTNL_UDATA_SET_ELEM_COMMENT {
                return Some(netlink::cstr(val));
            }
            ud = &ud[2 + len..];
        }
        None
    }
}

/// Calls `each` for every element in a NEWSETELEM message (a dump or get answer).
pub(crate) fn parse_elems(msg: &Msg<'_>, mut each: impl FnMut(ElemView<'_>)) {
    for (ty, payload) in msg.nft_attrs() {
        if ty != NFTA_SET_ELEM_LIST_ELEMENTS {
            continue;
        }
        for (ty, elem) in netlink::attrs(payload) {
            if ty != NFTA_LIST_ELEM {
                continue;
            }
            let mut v = ElemView {
                key: &[],
                flags: 0,
                timeout_ms: None,
                expiration_ms: None,
                userdata: None,
            };
            for (ty, p) in netlink::attrs(elem) {
                match ty {
                    NFTA_SET_ELEM_KEY => {
                        if let Some((_, val)) =
                            netlink::attrs(p).find(|(t, _)| *t == NFTA_DATA_VALUE)
                        {
                            v.key = val;
                        }
                    }
                    NFTA_SET_ELEM_FLAGS => v.flags = netlink::be32(p).unwrap_or(0),
                    NFTA_SET_ELEM_TIMEOUT => v.timeout_ms = netlink::be64(p),
                    NFTA_SET_ELEM_EXPIRATION => v.expiration_ms = netlink::be64(p),
                    NFTA_SET_ELEM_USERDATA => v.userdata = Some(p),
                    _ => {}
                }
            }
            each(v);
        }
    }
}

/// A dump request for every element of `set`.
pub(crate) fn dump_request(buf: &mut MsgBuf, seq: u32, table: &str, set: SetKind) {
    let off = buf.begin_msg(
        netlink::nft_type(NFT_MSG_GETSETELEM),
        netlink::NLM_F_REQUEST | netlink::NLM_F_DUMP,
        seq,
        netlink::NFPROTO_INET,
        0,
    );
    buf.attr_str(NFTA_SET_ELEM_LIST_TABLE, table);
    buf.attr_str(NFTA_SET_ELEM_LIST_SET, set.name());
    buf.end_msg(off);
}

/// A get request for single-address elements: the kernel answers each element in turn and
/// stops with ENOENT at the first one missing (acknowledged when all are there).
pub(crate) fn get_request(buf: &mut MsgBuf, seq: u32, table: &str, set: SetKind, addrs: &[u128]) {
    let flags = netlink::NLM_F_REQUEST | netlink::ACK;
    let h = begin_setelem_msg(buf, NFT_MSG_GETSETELEM, flags, seq, table, set);
    for &addr in addrs {
        let e = buf.nest_begin(NFTA_LIST_ELEM);
        put_key(buf, set.key_bytes(addr));
        buf.nest_end(e);
    }
    end_setelem_msg(buf, h);
}

/// Dumps every element of `set`, calling `each`; `Ok(false)` when the set (or table) does
/// not exist.
pub(crate) fn dump_set(
    nl: &mut netlink::Netlink,
    buf: &mut MsgBuf,
    table: &str,
    set: SetKind,
    mut each: impl FnMut(ElemView<'_>),
) -> Result<bool, super::EnforceError> {
    buf.clear();
    let seq = nl.next_seqs(1);
    dump_request(buf, seq, table, set);
    match nl.request(buf, seq, true, |m| parse_elems(m, &mut each))? {
        Ok(()) => Ok(true),
        Err(libc::ENOENT) => Ok(false),
        Err(e) => Err(super::EnforceError::kernel(
            format!("list set {}", set.name()),
            e,
        )),
    }
}

/// Rebuilds the ranges of an interval set from its elements as dumped (start elements and
/// `INTERVAL_END` elements, in any order): `(first, last, expiration in ms)`.
pub(crate) fn pair_intervals(
    set: SetKind,
    mut raw: Vec<(u128, bool, Option<u64>)>,
) -> Vec<(u128, u128, Option<u64>)> {
    raw.sort_unstable_by_key(|&(k, end, _)| (k, !end));
    let mut out = Vec::new();
    let mut open: Option<(u128, Option<u64>)> = None;
    for (key, is_end, exp) in raw {
        match (is_end, open.take()) {
            (true, Some((start, e))) if key > start => out.push((start, key - 1, e)),
            (true, _) => {} // a stray end (nft's leading end marker at 0)
            (false, prev) => {
                if let Some((start, e)) = prev {
                    // A start without an end: the range runs up to the next start.
                    out.push((start, key.saturating_sub(1), e));
                }
                open = Some((key, exp));
            }
        }
    }
    if let Some((start, e)) = open {
        out.push((start, set.max_addr(), e));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::netlink::attrs;

    fn one_msg(set: SetKind, elem: ElemKey, add: Option<(u64, &str)>) -> Vec<u8> {
        let mut buf = MsgBuf::default();
        let mut w = ElemWriter::new(&mut buf, "garrison");
        w.start(set, add.is_some(), 1);
        w.push(elem, add);
        w.finish();
        buf.bytes().to_vec()
    }

    fn elements(bytes: &[u8]) -> Vec<Vec<(u16, Vec<u8>)>> {
        let body = &bytes[20..];
        let (_, list) = attrs(body)
            .find(|(t, _)| *t == NFTA_SET_ELEM_LIST_ELEMENTS)
            .unwrap();
        attrs(list)
            .map(|(_, e)| attrs(e).map(|(t, p)| (t, p.to_vec())).collect())
            .collect()
    }

    #[test]
    fn single_add_has_key_timeout_and_comment() {
        let b = one_msg(
            SetKind::Ipv4,
            ElemKey {
                start: 0x0a000001,
                last: 0x0a000001,
            },
            Some((3_600_000, "ssh-bf #42")),
        );
        let names: Vec<_> = attrs(&b[20..]).map(|(t, p)| (t, p.to_vec())).collect();
        assert_eq!(names[0], (1, b"garrison\0".to_vec()));
        assert_eq!(names[1], (2, b"banned-ipv4\0".to_vec()));
        let elems = elements(&b);
        assert_eq!(elems.len(), 1);
        let e = &elems[0];
        assert_eq!(e[0].0, NFTA_SET_ELEM_KEY);
        assert_eq!(
            e[0].1,
            vec![8, 0, 1, 0, 10, 0, 0, 1],
            "key: DATA_VALUE 10.0.0.1"
        );
        assert_eq!(
            e[1],
            (NFTA_SET_ELEM_TIMEOUT, 3_600_000u64.to_be_bytes().to_vec())
        );
        let mut ud = vec![0, 11];
        ud.extend_from_slice(b"ssh-bf #42\0");
        assert_eq!(e[2], (NFTA_SET_ELEM_USERDATA, ud));
    }

    #[test]
    fn range_add_is_start_plus_exclusive_end() {
        let b = one_msg(
            SetKind::Ipv4Ranges,
            ElemKey {
                start: 0x0a000000,
                last: 0x0a0000ff,
            },
            Some((1000, "lists:firehol #7")),
        );
        let elems = elements(&b);
        assert_eq!(elems.len(), 2);
        assert_eq!(elems[0][0].1, vec![8, 0, 1, 0, 10, 0, 0, 0]);
        assert_eq!(
            elems[1][0].1,
            vec![8, 0, 1, 0, 10, 0, 1, 0],
            "end key is last + 1"
        );
        assert_eq!(elems[1][1], (NFTA_SET_ELEM_FLAGS, vec![0, 0, 0, 1]));
        assert_eq!(
            elems[1].len(),
            2,
            "the end element carries no timeout or comment"
        );
    }

    #[test]
    fn range_to_the_last_address_is_open() {
        let b = one_msg(
            SetKind::Ipv4Ranges,
            ElemKey {
                start: 0xffffff00,
                last: 0xffffffff,
            },
            Some((1000, "x")),
        );
        let elems = elements(&b);
        assert_eq!(elems.len(), 1, "no end element past the last address");
        let ud = &elems[0]
            .iter()
            .find(|(t, _)| *t == NFTA_SET_ELEM_USERDATA)
            .unwrap()
            .1;
        assert_eq!(
            &ud[ud.len() - 6..],
            &[1, 4, 1, 0, 0, 0][..],
            "open-interval flag for nft"
        );
    }

    #[test]
    fn delete_carries_keys_only() {
        let b = one_msg(SetKind::Ipv6, ElemKey { start: 1, last: 1 }, None);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 0x0a0e);
        let elems = elements(&b);
        assert_eq!(elems[0].len(), 1);
        assert_eq!(elems[0][0].1.len(), 4 + 16);
    }

    #[test]
    fn flush_is_a_delete_without_elements() {
        let mut buf = MsgBuf::default();
        let mut w = ElemWriter::new(&mut buf, "garrison");
        w.flush_set(SetKind::Ipv6Ranges, 9);
        let b = buf.bytes();
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 0x0a0e);
        let types: Vec<u16> = attrs(&b[20..]).map(|(t, _)| t).collect();
        assert_eq!(
            types,
            vec![NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET]
        );
        assert_eq!(
            u32::from_ne_bytes(b[..4].try_into().unwrap()) as usize,
            b.len()
        );
    }

    #[test]
    fn long_comments_are_cut_on_a_char_boundary() {
        let s = "é".repeat(100);
        let t = truncate(&s, COMMENT_MAX);
        assert!(t.len() <= COMMENT_MAX && t.len() % 2 == 0);
    }

    #[test]
    fn writer_splits_messages_below_the_attribute_limit() {
        let mut buf = MsgBuf::default();
        let mut w = ElemWriter::new(&mut buf, "garrison");
        let mut msgs = 0;
        for i in 0..5000u128 {
            if !w.fits(SetKind::Ipv4, true) {
                w.start(SetKind::Ipv4, true, msgs);
                msgs += 1;
            }
            w.push(
                ElemKey { start: i, last: i },
                Some((1, "a comment of some length #123456")),
            );
        }
        w.finish();
        assert!(msgs >= 3, "{msgs} messages");
        let mut seen = 0;
        let mut rest = buf.bytes();
        while !rest.is_empty() {
            let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
            seen += elements(&rest[..len]).len();
            rest = &rest[len..];
        }
        assert_eq!(seen, 5000);
    }

    #[test]
    fn dumped_intervals_pair_up() {
        let raw = vec![
            (0x0a000100, true, None),
            (0, true, None),
            (0x0a000000, false, Some(5000)),
            (0xffffff00, false, Some(7)),
        ];
        let got = pair_intervals(SetKind::Ipv4Ranges, raw);
        assert_eq!(
            got,
            vec![
                (0x0a000000, 0x0a0000ff, Some(5000)),
                (0xffffff00, 0xffffffff, Some(7))
            ]
        );
    }
}
