//! A minimal NETLINK_NETFILTER client: message building, NFNL batches (transactions) and
//! dumps, over a raw libc socket.
//!
//! Why raw libc rather than a crate: the only part of nf_tables garrison speaks over netlink
//! is set elements (plus a table probe, a rule dump for counters and a table deletion), which
//! is a few hundred lines; the crates that wrap libnftnl need the C library at build and run
//! time, and the pure-Rust ones are either unmaintained or far larger than what is used here.
//! Table, chain and rule creation stays with `nft` (see `ruleset`).
//!
//! The socket belongs to the network namespace of the thread that opens it.

use super::EnforceError;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// `NETLINK_NETFILTER`.
const NETLINK_NETFILTER: i32 = 12;
/// nfnetlink subsystem id of nf_tables.
pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
/// `NFPROTO_INET`: the family of garrison's table.
pub(crate) const NFPROTO_INET: u8 = 1;

pub(crate) const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub(crate) const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const SOL_NETLINK: i32 = 270;
const NETLINK_CAP_ACK: i32 = 10;

const NLMSG_HDRLEN: usize = 16;
const NFGEN_HDRLEN: usize = 4;

/// The socket send buffer asked for: a transaction must fit in one `sendmsg`.
const SNDBUF: usize = 16 << 20;
/// Receive buffer (dump chunks are at most 32 KiB; errors of a failed batch can queue up).
const RCVBUF: usize = 4 << 20;
/// How long to wait for the kernel before calling the socket broken.
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// The nf_tables message type `msg` as a netlink message type.
pub(crate) const fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// Rounds up to the netlink alignment (4 bytes).
const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A buffer of netlink messages under construction.
#[derive(Debug, Default)]
pub(crate) struct MsgBuf {
    buf: Vec<u8>,
}

impl MsgBuf {
    /// Empties the buffer, keeping its allocation.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }

    /// The encoded bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Drops everything from `len` on.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// Current length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Starts a message with its nfgenmsg header; returns its offset for [`MsgBuf::end_msg`].
    pub(crate) fn begin_msg(
        &mut self,
        ty: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
    ) -> usize {
        let off = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched by end_msg
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        off
    }

    /// Finishes the message started at `off`.
    pub(crate) fn end_msg(&mut self, off: usize) {
        let len = (self.buf.len() - off) as u32;
        self.buf[off..off + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Adds the flag bits to the message started at `off`.
    pub(crate) fn add_flags(&mut self, off: usize, flags: u16) {
        let cur = u16::from_ne_bytes([self.buf[off + 6], self.buf[off + 7]]);
        self.buf[off + 6..off + 8].copy_from_slice(&(cur | flags).to_ne_bytes());
    }

    /// Appends an attribute.
    pub(crate) fn attr(&mut self, ty: u16, data: &[u8]) {
        self.attr_parts(ty, &[data]);
    }

    /// Appends an attribute whose payload is the concatenation of `parts`.
    pub(crate) fn attr_parts(&mut self, ty: u16, parts: &[&[u8]]) {
        let len = 4 + parts.iter().map(|p| p.len()).sum::<usize>();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.pad();
    }

    /// Appends a NUL-terminated string attribute.
    pub(crate) fn attr_str(&mut self, ty: u16, s: &str) {
        self.attr_parts(ty, &[s.as_bytes(), &[0]]);
    }

    /// Appends a big-endian u32 attribute.
    pub(crate) fn attr_be32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    /// Appends a big-endian u64 attribute.
    pub(crate) fn attr_be64(&mut self, ty: u16, v: u64) {
        self.attr(ty, &v.to_be_bytes());
    }

    /// Opens a nested attribute; returns its offset for [`MsgBuf::nest_end`].
    pub(crate) fn nest_begin(&mut self, ty: u16) -> usize {
        let off = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        off
    }

    /// Closes the nested attribute opened at `off`.
    pub(crate) fn nest_end(&mut self, off: usize) {
        let len = (self.buf.len() - off) as u16;
        self.buf[off..off + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        let n = align4(self.buf.len()) - self.buf.len();
        self.buf.extend_from_slice(&[0u8; 3][..n]);
    }

    /// Starts an NFNL batch (one nf_tables transaction).
    pub(crate) fn batch_begin(&mut self, seq: u32) {
        let off = self.begin_msg(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        self.end_msg(off);
    }

    /// Ends an NFNL batch.
    pub(crate) fn batch_end(&mut self, seq: u32) {
        let off = self.begin_msg(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        self.end_msg(off);
    }
}

/// Iterates the attributes in `data` as (type without flags, payload).
pub(crate) fn attrs(data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let ty = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            return None;
        }
        let payload = &rest[4..len];
        rest = &rest[align4(len).min(rest.len())..];
        Some((ty, payload))
    })
}

/// A big-endian u32 payload.
pub(crate) fn be32(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?))
}

/// A big-endian u64 payload.
pub(crate) fn be64(p: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(p.get(..8)?.try_into().ok()?))
}

/// A NUL-terminated string payload.
pub(crate) fn cstr(p: &[u8]) -> &str {
    let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
    std::str::from_utf8(&p[..end]).unwrap_or("")
}

/// One netlink message of an answer.
pub(crate) struct Msg<'a> {
    /// Netlink message type.
    pub ty: u16,
    /// Sequence number it answers.
    pub seq: u32,
    /// Payload after the netlink header (for nf_tables: nfgenmsg, then attributes).
    pub payload: &'a [u8],
}

impl Msg<'_> {
    /// The attributes of an nf_tables message (after the nfgenmsg header).
    pub(crate) fn nft_attrs(&self) -> impl Iterator<Item = (u16, &[u8])> {
        attrs(self.payload.get(NFGEN_HDRLEN..).unwrap_or(&[]))
    }

    /// For NLMSG_ERROR: the errno (0 for an acknowledgement).
    fn errno(&self) -> Option<i32> {
        let raw = i32::from_ne_bytes(self.payload.get(..4)?.try_into().ok()?);
        Some(-raw)
    }
}

/// Splits a received datagram into messages.
fn messages(data: &[u8]) -> impl Iterator<Item = Msg<'_>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(rest[..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return None;
        }
        let msg = Msg {
            ty: u16::from_ne_bytes([rest[4], rest[5]]),
            seq: u32::from_ne_bytes(rest[8..12].try_into().ok()?),
            payload: &rest[NLMSG_HDRLEN..len],
        };
        rest = &rest[align4(len).min(rest.len())..];
        Some(msg)
    })
}

/// The outcome of one transaction: the messages the kernel refused, by sequence number.
#[derive(Debug, Default)]
pub(crate) struct BatchErrors {
    /// (sequence number, errno) of each refused message, in batch order.
    pub failed: Vec<(u32, i32)>,
}

/// A NETLINK_NETFILTER socket.
#[derive(Debug)]
pub(crate) struct Netlink {
    fd: OwnedFd,
    /// Send buffer size asked for so far.
    sndbuf: usize,
    seq: u32,
    rx: Vec<u8>,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub(crate) fn open() -> Result<Self, EnforceError> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(EnforceError::Netlink(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh, valid descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_nl is valid; nl_pid 0 lets the kernel pick the port id.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: addr is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(EnforceError::Netlink(io::Error::last_os_error()));
        }
        // Large buffers: FORCE needs CAP_NET_ADMIN, which garrison has when it can change
        // nftables at all; fall back to the unprivileged option (capped by the sysctls).
        set_buf(&fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, SNDBUF);
        set_buf(&fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, RCVBUF);
        // Error messages without a copy of the refused request: a failed 4 MiB batch would
        // otherwise echo every message back.
        setsockopt_int(&fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
        let tv = libc::timeval {
            tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: tv is a valid timeval of the given size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        // Seed sequence numbers from the clock so that late answers to a previous socket's
        // requests cannot be mistaken for ours.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        Ok(Netlink {
            fd,
            sndbuf: SNDBUF,
            seq: seed | 1,
            rx: vec![0u8; 1 << 20],
        })
    }

    /// Reserves `n` consecutive sequence numbers; returns the first.
    pub(crate) fn next_seqs(&mut self, n: u32) -> u32 {
        let first = self.seq;
        self.seq = self.seq.wrapping_add(n.max(1));
        if self.seq == 0 {
            self.seq = 1;
        }
        first
    }

    fn send(&self, data: &[u8]) -> Result<(), EnforceError> {
        // SAFETY: zeroed sockaddr_nl addresses the kernel (port 0).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        loop {
            // SAFETY: data and addr are valid for the given lengths.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    data.as_ptr().cast(),
                    data.len(),
                    0,
                    (&addr as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as u32,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(EnforceError::Netlink(e));
            }
        }
    }

    /// Receives one datagram into the receive buffer; returns its length.
    fn recv(&mut self) -> Result<usize, EnforceError> {
        loop {
            // SAFETY: rx is a valid writable buffer of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.rx.as_mut_ptr().cast(),
                    self.rx.len(),
                    0,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    return Err(EnforceError::Netlink(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no answer from the kernel within 10 s",
                    )));
                }
                _ => return Err(EnforceError::Netlink(e)),
            }
        }
    }

    /// Sends a complete batch (BATCH_BEGIN with `begin_seq` … messages … BATCH_END) whose
    /// last nf_tables message has sequence number `last_seq` and the ACK flag, and collects
    /// the kernel's verdict. The kernel applies all messages or none: any entry in the
    /// returned errors means nothing was applied.
    pub(crate) fn transact(
        &mut self,
        batch: &MsgBuf,
        begin_seq: u32,
        last_seq: u32,
    ) -> Result<BatchErrors, EnforceError> {
        if batch.len() + 4096 > self.sndbuf {
            // One batch is one datagram: make room for it (as nft does for large sets).
            self.sndbuf = batch.len() + 65536;
            set_buf(&self.fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, self.sndbuf);
        }
        self.send(batch.bytes())?;
        let mut out = BatchErrors::default();
        loop {
            let n = self.recv()?;
            let mut done = false;
            for m in messages(&self.rx[..n]) {
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                let errno = m.errno().unwrap_or(libc::EPROTO);
                if m.seq == begin_seq && errno != 0 {
                    // The whole batch was refused before any message (e.g. EPERM).
                    return Err(EnforceError::kernel("start an nftables transaction", errno));
                }
                if errno != 0 {
                    out.failed.push((m.seq, errno));
                }
                if m.seq == last_seq {
                    done = true;
                }
            }
            if done {
                return Ok(out);
            }
        }
    }

    /// Sends one request (not in a batch) and calls `each` for every answer message until
    /// the kernel is done. Returns the kernel's errno if it refused the request.
    pub(crate) fn request(
        &mut self,
        req: &MsgBuf,
        seq: u32,
        dump: bool,
        mut each: impl FnMut(&Msg<'_>),
    ) -> Result<Result<(), i32>, EnforceError> {
        self.send(req.bytes())?;
        loop {
            let n = self.recv()?;
            for m in messages(&self.rx[..n]) {
                if m.seq != seq {
                    continue; // a late answer to an earlier request
                }
                match m.ty {
                    NLMSG_ERROR => {
                        let errno = m.errno().unwrap_or(libc::EPROTO);
                        return Ok(if errno == 0 { Ok(()) } else { Err(errno) });
                    }
                    NLMSG_DONE => return Ok(Ok(())),
                    _ => {
                        each(&m);
                        if !dump {
                            return Ok(Ok(()));
                        }
                    }
                }
            }
        }
    }
}

/// Marks a batch message as wanting an acknowledgement.
pub(crate) const ACK: u16 = NLM_F_ACK;

fn setsockopt_int(fd: &OwnedFd, level: i32, opt: i32, v: i32) -> bool {
    // SAFETY: v is a valid int of the given size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        ) == 0
    }
}

fn set_buf(fd: &OwnedFd, force: i32, plain: i32, size: usize) {
    let size = size as i32;
    if !setsockopt_int(fd, libc::SOL_SOCKET, force, size) {
        setsockopt_int(fd, libc::SOL_SOCKET, plain, size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_header_and_attributes_are_aligned() {
        let mut b = MsgBuf::default();
        let off = b.begin_msg(
            nft_type(12),
            NLM_F_REQUEST | NLM_F_CREATE,
            7,
            NFPROTO_INET,
            0,
        );
        b.attr_str(1, "garrison"); // 4 + 9 = 13, padded to 16
        let nest = b.nest_begin(3);
        b.attr_be32(3, 1);
        b.nest_end(nest);
        b.end_msg(off);
        let bytes = b.bytes();
        assert_eq!(bytes.len(), 16 + 4 + 16 + 4 + 8);
        assert_eq!(
            u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize,
            bytes.len()
        );
        assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), 0x0a0c);
        assert_eq!(u16::from_ne_bytes([bytes[6], bytes[7]]), 0x401);
        assert_eq!(
            &bytes[16..20],
            &[1, 0, 0, 0],
            "nfgenmsg: inet, v0, res_id 0"
        );
        // string attribute: len 13 (unpadded), type 1, value, NUL, 3 bytes of padding
        assert_eq!(&bytes[20..24], &[13, 0, 1, 0]);
        assert_eq!(&bytes[24..33], b"garrison\0");
        assert_eq!(&bytes[33..36], &[0, 0, 0]);
        // nested attribute with the NESTED flag
        assert_eq!(&bytes[36..40], &[12, 0, 3, 0x80]);
        assert_eq!(&bytes[40..48], &[8, 0, 3, 0, 0, 0, 0, 1]);
        let parsed: Vec<_> = attrs(&bytes[20..]).collect();
        assert_eq!(parsed.len(), 2);
        assert_eq!(cstr(parsed[0].1), "garrison");
        assert_eq!(parsed[1].0, 3, "flags are masked off the type");
        let inner: Vec<_> = attrs(parsed[1].1).collect();
        assert_eq!(be32(inner[0].1), Some(1));
    }

    #[test]
    fn batch_markers_address_nf_tables() {
        let mut b = MsgBuf::default();
        b.batch_begin(5);
        b.batch_end(6);
        let bytes = b.bytes();
        assert_eq!(bytes.len(), 40);
        assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), 0x10);
        assert_eq!(
            &bytes[16..20],
            &[0, 0, 0, 10],
            "res_id NFNL_SUBSYS_NFTABLES, big endian"
        );
        assert_eq!(u16::from_ne_bytes([bytes[24], bytes[25]]), 0x11);
    }

    #[test]
    fn truncated_attributes_stop_iteration() {
        let data = [8u8, 0, 1, 0, 0, 0, 0, 1, 40, 0, 2, 0, 1];
        let v: Vec<_> = attrs(&data).collect();
        assert_eq!(v.len(), 1);
    }
}
