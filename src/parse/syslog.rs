//! Syslog envelopes: the `timestamp host program[pid]: message` framing that
//! wraps most Unix daemon logs.
//!
//! [`parse_syslog`] is a hand-written byte scanner (no regex, no allocation)
//! that returns slices of the input line. It accepts what CrowdSec's
//! `crowdsecurity/syslog-logs` s00 parser accepts (grok `SYSLOGLINE` and its
//! RFC 5424 branch) and a little more:
//!
//! * **RFC 3164 / BSD**: optional `<PRI>`, `Mmm dd hh:mm:ss` (day space-padded
//!   or not, optional `.frac`), optional `<facility.priority>`, host, then
//!   `program[pid]:` or `program:` and the message. Month names are English,
//!   case-insensitive, three letters or full.
//! * **ISO 8601 prefixes** (rsyslog `RSYSLOG_FileFormat`, journalctl
//!   `short-iso` / `short-iso-precise`): `2023-10-17T05:57:49.123456+11:00`,
//!   with `Z`, `+hhmm`, `+hh`, no zone, no fraction, or a space instead of
//!   `T` (as grok's `TIMESTAMP_ISO8601` allows).
//! * **RFC 5424**: `<PRI>VERSION TIMESTAMP HOST APP PROCID MSGID SD [MSG]`,
//!   with `-` nil values, structured data with quoted values and `\]`
//!   escapes, and a UTF-8 BOM before the message stripped.
//! * Program names are any printable ASCII except `[` and `]` (grok `PROG`),
//!   so `sshd-session`, `postfix/smtpd`, `org.gnome.Shell` work; `kernel:`
//!   has no pid.
//!
//! Differences from CrowdSec's grok, all in the lenient direction:
//! * A line whose first token after the timestamp is already a tag
//!   (`Feb 12 14:10:21 sshd[123]: msg`, `Mar  3 00:17:22 [sshd]: msg`) is read
//!   as having no host (CrowdSec rejects it).
//! * Runs of spaces between header fields are accepted.
//! * A tag with nothing after it (`host prog:`) gives an empty message.
//!
//! When the token after the host is not a tag (`host some text`), the line is
//! still accepted, as grok does: `program` is empty and `message` is the rest.
//!
//! A trailing `\n` or `\r\n` is not part of the message.

/// The parts of one syslog line, all borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyslogLine<'a> {
    /// The timestamp text exactly as in the line (`Feb  2 14:10:21`,
    /// `2023-10-17T05:57:49+11:00`); empty for an RFC 5424 nil (`-`)
    /// timestamp. Parse it with [`crate::parse::timefmt::parse_timestamp`].
    pub timestamp: &'a str,
    /// The host (grok `logsource`, CrowdSec `evt.Meta.machine`); `None` when
    /// the line has none or an RFC 5424 nil `-`.
    pub host: Option<&'a str>,
    /// The program / tag / RFC 5424 APP-NAME (`sshd`, `sshd-session`,
    /// `postfix/smtpd`); empty when the line has no tag.
    pub program: &'a str,
    /// The process id from `program[pid]:` or RFC 5424 PROCID.
    pub pid: Option<&'a str>,
    /// Everything after `program[pid]: ` (or after the structured data).
    pub message: &'a str,
    /// The digits of a leading `<PRI>`, when present (CrowdSec's
    /// `syslog_priority`).
    pub priority: Option<&'a str>,
    /// The RFC 5424 VERSION (CrowdSec's `syslog_version`); `None` for other
    /// formats, so `version.is_some()` tells an RFC 5424 line.
    pub version: Option<&'a str>,
    /// The RFC 5424 MSGID, unless nil.
    pub msgid: Option<&'a str>,
    /// The RFC 5424 STRUCTURED-DATA text (all elements, brackets included),
    /// unless nil. See [`sd_param`].
    pub structured_data: Option<&'a str>,
}

/// Splits a syslog line into its envelope fields, or `None` when the line
/// does not start like syslog (an access-log line, JSON, ...). Rejection
/// happens within the first few bytes for such lines.
pub fn parse_syslog(line: &str) -> Option<SyslogLine<'_>> {
    let line = strip_eol(line);
    let b = line.as_bytes();
    let mut out = SyslogLine::default();
    let mut i = 0;
    if b.first() == Some(&b'<') {
        let n = digit_run(b, 1);
        if !(1..=3).contains(&n) || b.get(1 + n) != Some(&b'>') {
            return None;
        }
        out.priority = line.get(1..1 + n);
        i = 2 + n;
        let v = digit_run(b, i);
        if (1..=2).contains(&v) && b.get(i + v) == Some(&b' ') {
            out.version = line.get(i..i + v);
            return rfc5424(line, i + v + 1, out);
        }
    }
    if i == 0
        && let Some(fast) = bsd_common(line)
    {
        return Some(fast);
    }
    bsd(line, i, out)
}

/// A part of a line as byte offsets, `start..end`.
pub type Span = (u32, u32);

/// The envelope of a syslog line in the common RFC 3164 shape (see [`common_spans`]) as
/// spans of the line: the parts of [`SyslogLine`] that shape has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyslogSpans {
    /// [`SyslogLine::timestamp`].
    pub timestamp: Span,
    /// [`SyslogLine::host`].
    pub host: Option<Span>,
    /// [`SyslogLine::program`]; `None` when the line has no tag.
    pub program: Option<Span>,
    /// [`SyslogLine::pid`].
    pub pid: Option<Span>,
    /// [`SyslogLine::message`].
    pub message: Span,
}

impl SyslogSpans {
    /// The parts as text of `line` (the line the spans were read from).
    fn in_line(self, line: &str) -> Option<SyslogLine<'_>> {
        let part = |(s, e): Span| line.get(s as usize..e as usize);
        Some(SyslogLine {
            timestamp: part(self.timestamp)?,
            host: match self.host {
                Some(h) => Some(part(h)?),
                None => None,
            },
            program: match self.program {
                Some(p) => part(p)?,
                None => "",
            },
            pid: match self.pid {
                Some(p) => Some(part(p)?),
                None => None,
            },
            message: part(self.message)?,
            ..SyslogLine::default()
        })
    }
}

/// What the last line in the common shape began with, for [`common_spans`] to recognise
/// the next one's header without reading it again: a log's lines mostly share their
/// second and their `host program[`.
#[derive(Debug, Clone, Default)]
pub struct HeaderMemo {
    /// The last timestamp (with the space after it) that had the shape.
    stamp: Option<[u8; 16]>,
    /// The bytes from the host to the `[` of the last `host prog[pid]:` header, up to
    /// [`HeaderMemo::PREFIX`] of them; `prefix_len` 0 when there is none.
    prefix: [u8; HeaderMemo::PREFIX],
    prefix_len: u8,
    /// The host's length in `prefix`.
    host_len: u8,
}

impl HeaderMemo {
    /// The longest `host prog[` remembered.
    const PREFIX: usize = 32;
}

/// The common RFC 3164 line, `Mmm dd hh:mm:ss host prog[pid]: message` with single spaces
/// (or `Mmm  d`), in one pass over each header field; `None` for anything else, which
/// [`bsd`] then reads. Where it answers, it answers as [`bsd`] does (a test checks them
/// against each other), reading the host while finding its end and the tag while finding
/// its end, instead of finding each token's end and then checking its bytes.
fn bsd_common(line: &str) -> Option<SyslogLine<'_>> {
    bsd_common_spans(line, &mut HeaderMemo::default())?.in_line(line)
}

/// [`parse_syslog`] as spans of `line`, for a line in the common RFC 3164 shape (see
/// [`bsd_common`]); `None` for any other line, which [`parse_syslog`] then reads. `memo`
/// carries what the last such line began with: the same timestamp is not checked again,
/// and the same `host prog[` is not scanned again.
pub fn common_spans(line: &str, memo: &mut HeaderMemo) -> Option<SyslogSpans> {
    bsd_common_spans(strip_eol(line), memo)
}

fn bsd_common_spans(line: &str, memo: &mut HeaderMemo) -> Option<SyslogSpans> {
    let b = line.as_bytes();
    let head: &[u8; 16] = b.get(..16)?.try_into().ok()?;
    if memo.stamp.as_ref() != Some(head) {
        let digit = |c: u8| c.is_ascii_digit();
        let shape = head[3] == b' '
            && (head[4] == b' ' || digit(head[4]))
            && digit(head[5])
            && head[6] == b' '
            && digit(head[7])
            && digit(head[8])
            && head[9] == b':'
            && digit(head[10])
            && digit(head[11])
            && head[12] == b':'
            && digit(head[13])
            && digit(head[14])
            && head[15] == b' ';
        if !shape || !is_month(&head[..3]) {
            return None;
        }
        memo.stamp = Some(*head);
    }
    let host_start = 16;
    let known = usize::from(memo.prefix_len);
    let (host_end, tag_start, k) = if known > 0
        && b.get(host_start..host_start + known)
            .is_some_and(|at| crate::same_bytes(at, &memo.prefix[..known]))
    {
        // The bytes the scans below read to the `[`, as last time: the same answers.
        let host_end = host_start + usize::from(memo.host_len);
        (host_end, host_end + 1, host_start + known - 1)
    } else {
        // The host: host bytes up to a space. A first token ending in `:` may be a tag (a
        // host-less line), and anything else is for the general reader.
        let is_host_byte = |c: u8| HEADER_BYTES[usize::from(c)] & HOST_BYTE != 0;
        if !matches!(b.get(host_start), Some(c) if c.is_ascii_alphanumeric() || *c == b':') {
            return None;
        }
        let mut j = host_start;
        while j < b.len() && is_host_byte(b[j]) {
            j += 1;
        }
        if b.get(j) != Some(&b' ') || b[j - 1] == b':' {
            return None;
        }
        let tag_start = j + 1;
        if matches!(b.get(tag_start), None | Some(b' ')) {
            return None;
        }
        // The tag: program bytes, then `[digits]:` or `:` ending the token.
        let is_prog = |c: u8| HEADER_BYTES[usize::from(c)] & PROGRAM_BYTE != 0;
        let mut k = tag_start;
        while k < b.len() && is_prog(b[k]) {
            k += 1;
        }
        if b.get(k) == Some(&b'[')
            && k > tag_start
            && let Some(prefix) = b.get(host_start..=k)
            && prefix.len() <= HeaderMemo::PREFIX
        {
            memo.prefix[..prefix.len()].copy_from_slice(prefix);
            memo.prefix_len = prefix.len() as u8;
            memo.host_len = (j - host_start) as u8;
        }
        (j, tag_start, k)
    };
    let span = |s: usize, e: usize| (s as u32, e as u32);
    let timestamp = span(0, 15);
    let host = Some(span(host_start, host_end));
    let ends_token = |at: usize| matches!(b.get(at), None | Some(b' '));
    let (program, pid, tag_end) = match b.get(k) {
        Some(b'[') if k > tag_start => {
            let digits_start = k + 1;
            let mut d = digits_start;
            while d < b.len() && b[d].is_ascii_digit() {
                d += 1;
            }
            if d == digits_start || b.get(d..d + 2) != Some(b"]:") || !ends_token(d + 2) {
                return None;
            }
            (Some(span(tag_start, k)), Some(span(digits_start, d)), d + 2)
        }
        None | Some(b' ') => {
            if k > tag_start + 1 && b[k - 1] == b':' {
                (Some(span(tag_start, k - 1)), None, k)
            } else {
                // Not a tag: the message is the rest, as grok reads it.
                return Some(SyslogSpans {
                    timestamp,
                    host,
                    program: None,
                    pid: None,
                    message: span(tag_start, b.len()),
                });
            }
        }
        _ => return None,
    };
    let message_start = if b.get(tag_end) == Some(&b' ') {
        tag_end + 1
    } else {
        tag_end
    };
    Some(SyslogSpans {
        timestamp,
        host,
        program,
        pid,
        message: span(message_start.min(b.len()), b.len()),
    })
}

/// [`HEADER_BYTES`]: a host name byte ([`is_host`]).
const HOST_BYTE: u8 = 1;
/// [`HEADER_BYTES`]: a program name byte (grok `PROG`: printable ASCII but `[` and `]`).
const PROGRAM_BYTE: u8 = 2;

/// The classes of each byte value for [`bsd_common`]'s scans: one look-up a byte where
/// the tests are several comparisons (host and tag bytes are most of a header's).
static HEADER_BYTES: [u8; 256] = header_bytes();

const fn header_bytes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':' | b'%') {
            table[i] |= HOST_BYTE;
        }
        if c >= 0x21 && c <= 0x7e && c != b'[' && c != b']' {
            table[i] |= PROGRAM_BYTE;
        }
        i += 1;
    }
    table
}

/// The raw value of parameter `name` in element `id` of RFC 5424 structured
/// data (as found in [`SyslogLine::structured_data`]), e.g.
/// `sd_param(r#"[meta sequenceId="1"]"#, "meta", "sequenceId") == Some("1")`.
///
/// The value is returned as written: `\"`, `\\` and `\]` escapes are left in.
pub fn sd_param<'a>(sd: &'a str, id: &str, name: &str) -> Option<&'a str> {
    let b = sd.as_bytes();
    let mut i = 0;
    while b.get(i) == Some(&b'[') {
        i += 1;
        let id_start = i;
        while i < b.len() && b[i] != b' ' && b[i] != b']' {
            i += 1;
        }
        let this_id = sd.get(id_start..i)?;
        // Parameters: SP name="value" ...
        loop {
            while b.get(i) == Some(&b' ') {
                i += 1;
            }
            match b.get(i) {
                Some(b']') => {
                    i += 1;
                    break;
                }
                None => return None,
                _ => {}
            }
            let n_start = i;
            while i < b.len() && !matches!(b[i], b'=' | b' ' | b']') {
                i += 1;
            }
            let pname = sd.get(n_start..i)?;
            if b.get(i) != Some(&b'=') || b.get(i + 1) != Some(&b'"') {
                return None;
            }
            i += 2;
            let v_start = i;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            let value = sd.get(v_start..i.min(b.len()))?;
            i += 1;
            if this_id == id && pname == name {
                return Some(value);
            }
        }
    }
    None
}

/// Drops a trailing `\n` / `\r\n` (or lone `\r`).
fn strip_eol(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

fn digit_run(b: &[u8], from: usize) -> usize {
    b.get(from..)
        .map_or(0, |s| s.iter().take_while(|c| c.is_ascii_digit()).count())
}

/// Skips spaces from `i`; returns the new position.
fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// End of the token starting at `i` (next space or end of line). Header
/// tokens are short, so a plain loop beats `memchr`'s setup cost.
fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b' ' {
        i += 1;
    }
    i.min(b.len())
}

/// RFC 3164 and ISO-prefixed lines, from byte `i` (after any `<PRI>`).
#[inline(always)]
fn bsd<'a>(line: &'a str, i: usize, mut out: SyslogLine<'a>) -> Option<SyslogLine<'a>> {
    let b = line.as_bytes();
    let first = *b.get(i)?;
    let ts_end = if first.is_ascii_alphabetic() {
        bsd_timestamp(b, i)?
    } else if first.is_ascii_digit() {
        iso_timestamp(b, i)?
    } else {
        return None;
    };
    out.timestamp = line.get(i..ts_end)?;
    if b.get(ts_end) != Some(&b' ') {
        return None;
    }
    let mut i = skip_spaces(b, ts_end);
    // Optional `<facility.priority> `.
    if b.get(i) == Some(&b'<')
        && let Some(after) = facility(b, i)
    {
        i = skip_spaces(b, after);
    }
    if i >= b.len() {
        return None;
    }
    let t1_end = token_end(b, i);
    // Host-less line: the first token is already the tag.
    if b.get(t1_end.wrapping_sub(1)) == Some(&b':')
        && t1_end > i
        && let Some((prog, pid)) = tag(line, i, t1_end)
    {
        out.program = prog;
        out.pid = pid;
        out.message = message_after(line, t1_end)?;
        return Some(out);
    }
    let host = line.get(i..t1_end)?;
    if !is_host(host.as_bytes()) {
        return None;
    }
    out.host = Some(host);
    if t1_end >= b.len() {
        out.message = "";
        return Some(out);
    }
    let i = skip_spaces(b, t1_end);
    let t2_end = token_end(b, i);
    if t2_end > i
        && b.get(t2_end - 1) == Some(&b':')
        && let Some((prog, pid)) = tag(line, i, t2_end)
    {
        out.program = prog;
        out.pid = pid;
        out.message = message_after(line, t2_end)?;
    } else {
        out.message = line.get(i..)?;
    }
    Some(out)
}

/// A host name or IP address (grok `IPORHOST`, loosely): starts with an
/// alphanumeric or `:` (IPv6), then alphanumerics and `.-_:%`.
fn is_host(h: &[u8]) -> bool {
    let ok = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':' | b'%');
    matches!(h.first(), Some(c) if c.is_ascii_alphanumeric() || *c == b':') && h.iter().all(ok)
}

/// The message after a tag ending at `end`: one separating space is dropped.
fn message_after(line: &str, end: usize) -> Option<&str> {
    let start = if line.as_bytes().get(end) == Some(&b' ') {
        end + 1
    } else {
        end
    };
    line.get(start.min(line.len())..)
}

/// A tag `prog[pid]:`, `prog:` or `[prog]:` occupying `start..end` (the
/// colon is the last byte). Program bytes are grok's `PROG`: printable ASCII
/// except `[` and `]`.
fn tag(line: &str, start: usize, end: usize) -> Option<(&str, Option<&str>)> {
    let b = line.as_bytes();
    let body_end = end.checked_sub(1)?; // drop ':'
    if body_end <= start {
        return None;
    }
    let is_prog = |c: u8| (0x21..=0x7e).contains(&c) && c != b'[' && c != b']';
    if b.get(body_end - 1) == Some(&b']') {
        let open = start + b.get(start..body_end)?.iter().position(|&c| c == b'[')?;
        let inner = line.get(open + 1..body_end - 1)?;
        if open == start {
            // `[prog]:`
            if !inner.is_empty() && inner.bytes().all(is_prog) {
                return Some((inner, None));
            }
            return None;
        }
        let prog = line.get(start..open)?;
        if prog.bytes().all(is_prog)
            && !inner.is_empty()
            && inner.bytes().all(|c| c.is_ascii_digit())
        {
            return Some((prog, Some(inner)));
        }
        return None;
    }
    let prog = line.get(start..body_end)?;
    prog.bytes().all(is_prog).then_some((prog, None))
}

/// `<digits.digits>`: returns the position after `>`.
fn facility(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    let n = digit_run(b, j);
    if n == 0 {
        return None;
    }
    j += n + 1; // digits and any separator byte
    let m = digit_run(b, j);
    if m == 0 || b.get(j + m) != Some(&b'>') || b.get(j + m + 1) != Some(&b' ') {
        return None;
    }
    Some(j + m + 1)
}

/// An English month name, three letters or full, in any case. Every syslog line asks, so
/// the first three letters are matched as one lowercased triple.
fn is_month(w: &[u8]) -> bool {
    let [a, b, c, rest @ ..] = w else {
        return false;
    };
    let Some(m) = super::timefmt::month_of_abbreviation([*a, *b, *c]) else {
        return false;
    };
    rest.is_empty()
        || super::timefmt::MONTHS
            .get(m as usize - 1)
            .and_then(|full| full.get(3..))
            .is_some_and(|full| full.eq_ignore_ascii_case(rest))
}

/// `Mmm +d hh:mm:ss[.frac]` from `i`; returns its end.
fn bsd_timestamp(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    while matches!(b.get(j), Some(c) if c.is_ascii_alphabetic()) {
        j += 1;
    }
    if !is_month(b.get(i..j)?) || b.get(j) != Some(&b' ') {
        return None;
    }
    j = skip_spaces(b, j);
    let d = digit_run(b, j);
    if !(1..=2).contains(&d) || b.get(j + d) != Some(&b' ') {
        return None;
    }
    j += d + 1;
    clock(b, j, true)
}

/// `h[h]:mm[:ss[(.|,|:)frac]]` from `i`; returns its end. Seconds are
/// required when `need_secs`.
fn clock(b: &[u8], i: usize, need_secs: bool) -> Option<usize> {
    let h = digit_run(b, i);
    if !(1..=2).contains(&h) || b.get(i + h) != Some(&b':') {
        return None;
    }
    let mut j = i + h + 1;
    if digit_run(b, j) != 2 {
        return None;
    }
    j += 2;
    if b.get(j) == Some(&b':') && digit_run(b, j + 1) == 2 {
        j += 3;
        if matches!(b.get(j), Some(b'.' | b',' | b':')) {
            let f = digit_run(b, j + 1);
            if f > 0 {
                j += 1 + f;
            }
        }
    } else if need_secs {
        return None;
    }
    Some(j)
}

/// `YYYY-MM-DD(T| )hh:mm[:ss[.frac]][Z|±hh[[:]mm]]` from `i`; returns its end.
fn iso_timestamp(b: &[u8], i: usize) -> Option<usize> {
    if digit_run(b, i) != 4 || b.get(i + 4) != Some(&b'-') {
        return None;
    }
    let mut j = i + 5;
    let m = digit_run(b, j);
    if !(1..=2).contains(&m) || b.get(j + m) != Some(&b'-') {
        return None;
    }
    j += m + 1;
    let d = digit_run(b, j);
    if !(1..=2).contains(&d) || !matches!(b.get(j + d), Some(b'T' | b' ')) {
        return None;
    }
    j = clock(b, j + d + 1, false)?;
    match b.get(j) {
        Some(b'Z') => j += 1,
        Some(b'+' | b'-') => {
            let h = digit_run(b, j + 1);
            if h == 2 {
                j += 3;
                if b.get(j) == Some(&b':') && digit_run(b, j + 1) == 2 {
                    j += 3;
                } else if digit_run(b, j) == 2 {
                    j += 2;
                }
            } else if h == 4 {
                j += 5;
            } else {
                return None;
            }
        }
        _ => {}
    }
    Some(j)
}

/// RFC 5424 from byte `i` (just after `<PRI>VERSION `).
#[inline(always)]
fn rfc5424<'a>(line: &'a str, i: usize, mut out: SyslogLine<'a>) -> Option<SyslogLine<'a>> {
    let b = line.as_bytes();
    let nil = |s: &'a str| if s == "-" { None } else { Some(s) };
    let mut i = skip_spaces(b, i);
    // TIMESTAMP
    let end = token_end(b, i);
    let ts = line.get(i..end)?;
    if ts == "-" {
        out.timestamp = "";
    } else if iso_timestamp(b, i) == Some(end) {
        out.timestamp = ts;
    } else {
        return None;
    }
    // HOSTNAME APP-NAME PROCID MSGID
    let mut fields = [""; 4];
    let mut pos = end;
    for f in &mut fields {
        if b.get(pos) != Some(&b' ') {
            return None;
        }
        i = skip_spaces(b, pos);
        pos = token_end(b, i);
        if pos == i {
            return None;
        }
        *f = line.get(i..pos)?;
    }
    let [host, app, procid, msgid] = fields;
    out.host = nil(host);
    out.program = nil(app).unwrap_or("");
    out.pid = nil(procid);
    out.msgid = nil(msgid);
    // STRUCTURED-DATA
    let i = skip_spaces(b, pos);
    let mut msg_start = i;
    match b.get(i) {
        None => {
            out.message = "";
            return Some(out);
        }
        Some(b'-') if matches!(b.get(i + 1), None | Some(b' ')) => msg_start = i + 1,
        Some(b'[') => {
            if let Some(sd_end) = sd_end(b, i) {
                out.structured_data = line.get(i..sd_end);
                msg_start = sd_end;
            }
        }
        _ => {}
    }
    if b.get(msg_start) == Some(&b' ') {
        msg_start += 1;
    }
    let msg = line.get(msg_start.min(line.len())..)?;
    out.message = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    Some(out)
}

/// End of the SD-ELEMENTs starting at `i` (a `[`), honouring quoted values
/// and backslash escapes; `None` when an element is not terminated.
fn sd_end(b: &[u8], mut i: usize) -> Option<usize> {
    while b.get(i) == Some(&b'[') {
        i += 1;
        let mut quoted = false;
        loop {
            match *b.get(i)? {
                b'\\' => i += 2,
                b'"' => {
                    quoted = !quoted;
                    i += 1;
                }
                b']' if !quoted => {
                    i += 1;
                    break;
                }
                _ => i += 1,
            }
        }
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> SyslogLine<'_> {
        parse_syslog(line).unwrap_or_else(|| panic!("should parse: {line:?}"))
    }

    #[test]
    fn bsd_basic() {
        let l =
            p("Feb 12 14:10:21 sd-126005 sshd[16378]: Invalid user pascal from 10.0.0.1 port 2");
        assert_eq!(l.timestamp, "Feb 12 14:10:21");
        assert_eq!(l.host, Some("sd-126005"));
        assert_eq!(l.program, "sshd");
        assert_eq!(l.pid, Some("16378"));
        assert_eq!(l.message, "Invalid user pascal from 10.0.0.1 port 2");
        assert_eq!(l.priority, None);
        assert_eq!(l.version, None);
    }

    #[test]
    fn bsd_padding_and_fraction() {
        let l = p("Sep  6 09:57:21 bullseye sshd[581]: Accepted");
        assert_eq!(l.timestamp, "Sep  6 09:57:21");
        let l = p("Nov 2 15:40:14 workshop sshd[28179]: x");
        assert_eq!(l.timestamp, "Nov 2 15:40:14");
        let l = p("Aug 03 21:39:20 hostname sshd[69420]: y");
        assert_eq!(l.timestamp, "Aug 03 21:39:20");
        let l = p("Jan 01 12:00:00.123456 myhost prog[9]: precise");
        assert_eq!(l.timestamp, "Jan 01 12:00:00.123456");
        assert_eq!(l.message, "precise");
        let l = p("June 5 01:02:03 h p: full month");
        assert_eq!(l.timestamp, "June 5 01:02:03");
    }

    #[test]
    fn bsd_pri_and_facility() {
        let l = p("<34>Oct 11 22:14:15 mymachine su: 'su root' failed on /dev/pts/8");
        assert_eq!(l.priority, Some("34"));
        assert_eq!(l.host, Some("mymachine"));
        assert_eq!(l.program, "su");
        assert_eq!(l.pid, None);
        assert_eq!(l.message, "'su root' failed on /dev/pts/8");
        let l = p("Oct 11 22:14:15 <4.6> gw kernel: drop");
        assert_eq!(l.host, Some("gw"));
        assert_eq!(l.program, "kernel");
        assert_eq!(l.message, "drop");
    }

    #[test]
    fn program_names() {
        for (line, prog, pid) in [
            (
                "Jun 12 16:20:12 leto sshd-session[406147]: Invalid",
                "sshd-session",
                Some("406147"),
            ),
            (
                "Jun 12 16:20:12 mx postfix/smtpd[12]: connect",
                "postfix/smtpd",
                Some("12"),
            ),
            (
                "Jun 12 16:20:12 pc org.gnome.Shell.desktop[2216]: x",
                "org.gnome.Shell.desktop",
                Some("2216"),
            ),
            (
                "Jun 12 16:20:12 pc kernel: [ 12.345] usb 1-1: new",
                "kernel",
                None,
            ),
            (
                "Jun 12 16:20:12 pc CRON[33]: (root) CMD (x)",
                "CRON",
                Some("33"),
            ),
            ("Jun 12 16:20:12 pc foo:bar: colon in name", "foo:bar", None),
        ] {
            let l = p(line);
            assert_eq!((l.program, l.pid), (prog, pid), "{line}");
            assert!(l.host.is_some(), "{line}");
        }
        let l = p("Jun 12 16:20:12 pc kernel: [ 12.345] usb 1-1: new");
        assert_eq!(l.message, "[ 12.345] usb 1-1: new");
    }

    #[test]
    fn no_tag_keeps_message() {
        let l = p("Feb 12 14:10:21 host just some words");
        assert_eq!(l.host, Some("host"));
        assert_eq!(l.program, "");
        assert_eq!(l.message, "just some words");
        let l = p("Feb 12 14:10:21 host prog[12]x: not a tag");
        assert_eq!(l.program, "");
        assert_eq!(l.message, "prog[12]x: not a tag");
        let l = p("Feb 12 14:10:21 host prog[abc]: pid not numeric");
        assert_eq!(l.program, "");
        let l = p("Feb 12 14:10:21 host");
        assert_eq!((l.host, l.program, l.message), (Some("host"), "", ""));
        let l = p("Feb 12 14:10:21 host prog:");
        assert_eq!((l.program, l.message), ("prog", ""));
    }

    #[test]
    fn hostless() {
        let l = p("Feb 12 14:10:21 sshd[123]: msg here");
        assert_eq!(
            (l.host, l.program, l.pid, l.message),
            (None, "sshd", Some("123"), "msg here")
        );
        let l = p("Mar  3 00:17:22 [sshd]: User root");
        assert_eq!((l.host, l.program, l.message), (None, "sshd", "User root"));
    }

    #[test]
    fn message_spacing_and_eol() {
        let l = p("Feb 12 14:10:21 h p[1]:  two spaces ");
        assert_eq!(l.message, " two spaces ");
        let l = p("Feb 12 14:10:21 h p[1]: crlf\r\n");
        assert_eq!(l.message, "crlf");
        let l = p("Feb 12 14:10:21  h  p[1]: runs of spaces");
        assert_eq!((l.host, l.program), (Some("h"), "p"));
    }

    #[test]
    fn iso_prefixes() {
        for (line, ts) in [
            (
                "2023-10-17T05:57:49.123456+11:00 host prog[1]: m",
                "2023-10-17T05:57:49.123456+11:00",
            ),
            (
                "2023-10-17T05:57:49Z host prog[1]: m",
                "2023-10-17T05:57:49Z",
            ),
            (
                "2023-10-17T05:57:49+11:00 host prog[1]: m",
                "2023-10-17T05:57:49+11:00",
            ),
            (
                "2024-01-01T12:00:00+0000 host prog[1]: m",
                "2024-01-01T12:00:00+0000",
            ),
            (
                "2024-01-01T12:00:00.123456+0000 host prog[1]: m",
                "2024-01-01T12:00:00.123456+0000",
            ),
            ("2024-01-01T12:00:00 host prog[1]: m", "2024-01-01T12:00:00"),
            ("2024-01-01 12:00:00 host prog[1]: m", "2024-01-01 12:00:00"),
            (
                "<13>2024-01-01T12:00:00-05 host prog[1]: m",
                "2024-01-01T12:00:00-05",
            ),
        ] {
            let l = p(line);
            assert_eq!(l.timestamp, ts, "{line}");
            assert_eq!(
                (l.host, l.program, l.pid, l.message),
                (Some("host"), "prog", Some("1"), "m")
            );
        }
    }

    #[test]
    fn rfc5424_lines() {
        let l = p(
            r#"<38>1 2022-01-19T14:23:55+00:00 OPNsense.localdomain sshd 44255 - [meta sequenceId="1"] Invalid user tutu"#,
        );
        assert_eq!(l.priority, Some("38"));
        assert_eq!(l.version, Some("1"));
        assert_eq!(l.timestamp, "2022-01-19T14:23:55+00:00");
        assert_eq!(l.host, Some("OPNsense.localdomain"));
        assert_eq!((l.program, l.pid, l.msgid), ("sshd", Some("44255"), None));
        assert_eq!(l.structured_data, Some(r#"[meta sequenceId="1"]"#));
        assert_eq!(l.message, "Invalid user tutu");
        assert_eq!(
            sd_param(l.structured_data.unwrap_or(""), "meta", "sequenceId"),
            Some("1")
        );

        let l = p(
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"App\\\"li]cation\" eventID=\"1011\"][examplePriority@32473 class=\"high\\]\"] \u{feff}An application event",
        );
        assert_eq!(l.msgid, Some("ID47"));
        assert_eq!(l.pid, None);
        assert_eq!(l.program, "evntslog");
        assert_eq!(l.message, "An application event");
        let sd = l.structured_data.unwrap_or("");
        assert!(sd.ends_with("class=\"high\\]\"]"), "{sd}");
        assert_eq!(sd_param(sd, "exampleSDID@32473", "eventID"), Some("1011"));
        assert_eq!(
            sd_param(sd, "exampleSDID@32473", "eventSource"),
            Some("App\\\"li]cation")
        );
        assert_eq!(
            sd_param(sd, "examplePriority@32473", "class"),
            Some("high\\]")
        );
        assert_eq!(sd_param(sd, "nope", "class"), None);

        let l = p("<34>1 - - - - - -");
        assert_eq!(
            (l.timestamp, l.host, l.program, l.pid, l.message),
            ("", None, "", None, "")
        );
        let l = p("<34>1 - - - - - - msg");
        assert_eq!(l.message, "msg");
        let l =
            p("<134>1 2025-11-06T11:32:42.868451+00:00 firewall.lan filterlog 92653 - - 7,,,100");
        assert_eq!(
            (l.program, l.pid, l.message),
            ("filterlog", Some("92653"), "7,,,100")
        );
        let l = p(
            "<171>1 2025-11-05T20:47:03.000000+00:00 firewall.lan nginx - - - 2025/11/05 20:47:03 [error] x",
        );
        assert_eq!((l.program, l.pid), ("nginx", None));
        assert_eq!(l.message, "2025/11/05 20:47:03 [error] x");
        // Unterminated SD: kept as message.
        let l = p("<34>1 - h a 1 - [unterminated sd");
        assert_eq!((l.structured_data, l.message), (None, "[unterminated sd"));
        // Missing header fields.
        assert_eq!(parse_syslog("<34>1 - h a"), None);
        assert_eq!(parse_syslog("<34>1 notatime h a 1 - - m"), None);
    }

    #[test]
    fn months_are_three_letters_or_full_in_any_case() {
        for w in [
            "Nov",
            "nov",
            "NOV",
            "May",
            "june",
            "September",
            "sEPTEMBER",
            "Dec",
        ] {
            assert!(is_month(w.as_bytes()), "{w}");
        }
        for w in [
            "",
            "No",
            "Sept",
            "Mayx",
            "Novembers",
            "Foo",
            "Jux",
            "N\u{f6}v",
        ] {
            assert!(!is_month(w.as_bytes()), "{w}");
        }
    }

    #[test]
    fn rejects_non_syslog() {
        for line in [
            "",
            " ",
            "1.2.3.4 - - [29/Jul/2023:10:26:06 -0700] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\"",
            "{\"time\":\"2023-10-17T05:57:49Z\",\"msg\":\"x\"}",
            "[10/Feb/2024:21:23:40 +0100] wings.example.com 1.2.3.4",
            "2025/11/05 20:47:03 [error] 24537#230441: *914 open()",
            "Hello world",
            "Feb 12 14:10:21",
            "Feb 12 14:10:21 ",
            "Feb 12 14:10 host prog: no seconds",
            "Foo 12 14:10:21 host prog: bad month",
            "<>Feb 12 14:10:21 host prog: empty pri",
            "<1234>Feb 12 14:10:21 host prog: long pri",
            "<12Feb 12 14:10:21 host prog: open pri",
            "2023-10-17X05:57:49 host prog: m",
            "é",
        ] {
            assert_eq!(parse_syslog(line), None, "{line:?}");
        }
    }

    #[test]
    fn never_panics() {
        let samples = [
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"App\\\"li]cation\"][x y=\"\\]\"] \u{feff}An application event",
            "<34>Oct 11 22:14:15 <4.6> mymachine su[12]: 'su root' failed é",
            "2023-10-17T05:57:49.123456+11:00 hôst prög[1]: mé",
            "Mar  3 00:17:22 [sshd]: User root",
            "Feb 12 14:10:21 host foo:bar[1]: x",
        ];
        for s in samples {
            for end in 0..=s.len() {
                if let Some(pre) = s.get(..end) {
                    let _ = parse_syslog(pre);
                    if let Some(l) = parse_syslog(pre)
                        && let Some(sd) = l.structured_data
                    {
                        let _ = sd_param(sd, "x", "y");
                    }
                }
                if let Some(suf) = s.get(end..) {
                    let _ = parse_syslog(suf);
                    let _ = sd_param(suf, "exampleSDID@32473", "iut");
                }
            }
        }
        let huge = format!("Feb 12 14:10:21 host prog[1]: {}", "x".repeat(1 << 20));
        assert_eq!(parse_syslog(&huge).map(|l| l.message.len()), Some(1 << 20));
        let huge_sd = format!("<1>1 - - - - - [{}", "\\".repeat(100_001));
        let _ = parse_syslog(&huge_sd);
        // Non-ASCII bytes right after delimiters.
        for s in [
            "<1>é",
            "<1>1 é",
            "Feb é",
            "Feb 12 14:10:21 é",
            "Feb 12 14:10:21 h é:",
            "Feb 12 14:10:21 h [é]:",
        ] {
            let _ = parse_syslog(s);
        }
    }

    // ---------------------------------------------------------------
    // Fixture tests against the CrowdSec hub's hubtest expectations.

    const HUB_TESTS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpora/crowdsec-hub/.tests"
    );

    /// `(index, field, value)` of `results["s00-raw"]["crowdsecurity/syslog-logs"][N].Evt.<Parsed|Meta>["field"] == "value"`.
    fn s00_asserts(text: &str) -> Vec<(usize, String, String)> {
        let prefix = "results[\"s00-raw\"][\"crowdsecurity/syslog-logs\"][";
        let mut out = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(prefix) else {
                continue;
            };
            let Some((idx, rest)) = rest.split_once(']') else {
                continue;
            };
            let Ok(idx) = idx.parse::<usize>() else {
                continue;
            };
            let rest = rest
                .strip_prefix(".Evt.Parsed[\"")
                .or_else(|| rest.strip_prefix(".Evt.Meta[\""));
            let Some(rest) = rest else { continue };
            let Some((field, value)) = rest.split_once("\"] == \"") else {
                continue;
            };
            let Some(value) = value.strip_suffix('"') else {
                continue;
            };
            out.push((
                idx,
                field.to_string(),
                value.replace("\\\"", "\"").replace("\\\\", "\\"),
            ));
        }
        out
    }

    #[test]
    fn hub_s00_syslog_asserts() {
        let Ok(dirs) = std::fs::read_dir(HUB_TESTS) else {
            eprintln!("hub corpus not found, skipping");
            return;
        };
        let mut checked = 0;
        let mut lines_parsed = 0;
        for dir in dirs.flatten() {
            let path = dir.path();
            let Ok(config) = std::fs::read_to_string(path.join("config.yaml")) else {
                continue;
            };
            if !config.contains("log_type: syslog") {
                continue;
            }
            let Some(log_file) = config
                .lines()
                .find_map(|l| l.trim().strip_prefix("log_file:"))
                .map(|s| s.trim().to_string())
            else {
                continue;
            };
            let Ok(log) = std::fs::read_to_string(path.join(&log_file)) else {
                continue;
            };
            let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
            let parsed: Vec<SyslogLine<'_>> = lines
                .iter()
                .map(|l| parse_syslog(l).unwrap_or_else(|| panic!("{log_file}: not parsed: {l:?}")))
                .collect();
            lines_parsed += parsed.len();
            let asserts = std::fs::read_to_string(path.join("parser.assert")).unwrap_or_default();
            for (idx, field, want) in s00_asserts(&asserts) {
                let Some(l) = parsed.get(idx) else {
                    panic!("{log_file}: assert index {idx} past {} lines", parsed.len())
                };
                let got = match field.as_str() {
                    "program" => Some(l.program),
                    "pid" => l.pid,
                    "message" => Some(l.message),
                    "timestamp" | "timestamp8601" => Some(l.timestamp),
                    "machine" => l.host,
                    "syslog_priority" => l.priority,
                    "syslog_version" => l.version,
                    "seq_id" => l
                        .structured_data
                        .and_then(|sd| sd_param(sd, "meta", "sequenceId")),
                    _ => continue, // logsource (static "syslog"), datasource_*
                };
                assert_eq!(got, Some(want.as_str()), "{log_file}[{idx}].{field}");
                if field == "timestamp8601" {
                    assert!(l.timestamp.starts_with(|c: char| c.is_ascii_digit()));
                } else if field == "timestamp" {
                    assert!(l.timestamp.starts_with(|c: char| c.is_ascii_alphabetic()));
                }
                checked += 1;
            }
        }
        eprintln!("hub: {lines_parsed} lines parsed, {checked} field asserts checked");
        assert!(checked > 250, "only {checked} asserts checked");
    }

    /// fail2ban's annotated samples: every line that parses as syslog must
    /// give a timestamp that resolves (with fail2ban's year rollback and its
    /// pinned clock) to the annotated `time`.
    #[test]
    fn fail2ban_sample_timestamps() {
        use crate::parse::timefmt::{TimeContext, format_rfc3339, parse_timestamp_with_offset};
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/corpora/fail2ban-logs/logs"
        );
        let Ok(files) = std::fs::read_dir(dir) else {
            eprintln!("fail2ban corpus not found, skipping");
            return;
        };
        let now: jiff::Timestamp = "2005-08-14T10:00:00Z".parse().expect("now");
        let ctx = TimeContext::new(now).with_year_rollback(true);
        let paris = jiff::tz::TimeZone::get("Europe/Paris").ok();
        let (mut syslog, mut checked, mut other) = (0, 0, 0);
        for f in files.flatten() {
            let Ok(bytes) = std::fs::read(f.path()) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let mut expect: Option<serde_json::Value> = None;
            for raw in text.split('\n') {
                let line = raw.strip_suffix('\r').unwrap_or(raw);
                if let Some(json) = expect.take() {
                    let Some(l) = parse_syslog(line) else {
                        other += 1;
                        continue;
                    };
                    syslog += 1;
                    assert!(!l.message.is_empty() || l.program.is_empty(), "{line}");
                    let Some(want) = json.get("time").and_then(|t| t.as_str()) else {
                        continue;
                    };
                    let (ts, off) = parse_timestamp_with_offset(l.timestamp, &ctx)
                        .unwrap_or_else(|| panic!("timestamp {:?} of {line:?}", l.timestamp));
                    // fail2ban's expected time is the CET/CEST wall clock,
                    // which is the written text when the line has no offset.
                    let explicit = l.timestamp.contains('Z')
                        || l.timestamp
                            .get(10..)
                            .is_some_and(|t| t.contains(['+', '-']));
                    let got = if explicit {
                        let Some(tz) = &paris else { continue };
                        ts.to_zoned(tz.clone())
                            .datetime()
                            .strftime("%Y-%m-%dT%H:%M:%S")
                            .to_string()
                    } else {
                        let s = format_rfc3339(ts, off);
                        s.get(..19).unwrap_or("").to_string()
                    };
                    // Normalise the annotation (one has an unpadded day).
                    let want = parse_timestamp_with_offset(want, &ctx)
                        .map(|(t, o)| format_rfc3339(t, o))
                        .unwrap_or_default();
                    assert_eq!(Some(got.as_str()), want.get(..19), "{:?}: {line}", f.path());
                    checked += 1;
                    continue;
                }
                let t = line.trim_start_matches('#').trim_start();
                if let Some(json) = t.strip_prefix("failJSON:") {
                    expect =
                        Some(serde_json::from_str(json.trim()).unwrap_or(serde_json::Value::Null));
                }
            }
        }
        eprintln!("fail2ban: {syslog} syslog lines, {checked} times checked, {other} non-syslog");
        assert!(checked > 200, "only {checked} times checked");
    }

    /// Every line of the hub's fixtures and fail2ban's samples, whole files read lossily.
    fn corpus_lines() -> Vec<String> {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
                panic!("{}: {e} (the shared corpora are needed)", dir.display())
            });
            for e in entries.flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if let Ok(bytes) = std::fs::read(&path) {
                    out.extend(String::from_utf8_lossy(&bytes).lines().map(str::to_owned));
                }
            }
        }
        let mut lines = Vec::new();
        walk(std::path::Path::new(HUB_TESTS), &mut lines);
        walk(
            std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/corpora/fail2ban-logs/logs"
            )),
            &mut lines,
        );
        lines
    }

    #[test]
    fn the_common_shape_reads_as_the_general_reader_does() {
        let mut seeds: Vec<String> = [
            "Nov 18 09:46:46 web01 sshd[214689]: Failed password for root from 1.2.3.4 port 2 ssh2",
            "Nov  8 09:46:46 web01 sshd[1]: x",
            "Nov 18 09:46:46 web01 sshd[]: x",
            "Nov 18 09:46:46 web01 sshd[12]x: y",
            "Nov 18 09:46:46 web01 [sshd]: x",
            "Nov 18 09:46:46 web01 sshd: x",
            "Nov 18 09:46:46 web01 sshd:",
            "Nov 18 09:46:46 web01 sshd[3]:",
            "Nov 18 09:46:46 web01 sshd[3]:x",
            "Nov 18 09:46:46 web01 : x",
            "Nov 18 09:46:46 web01 some text without tag",
            "Nov 18 09:46:46 web01  sshd[1]: two spaces",
            "Nov 18 09:46:46 web01",
            "Nov 18 09:46:46 web01 ",
            "Nov 18 09:46:46 sshd[1]: host-less",
            "Nov 18 09:46:46 host: host-less with a colon",
            "Nov 18 09:46:46 ::1 kernel: ipv6 host",
            "Nov 18 09:46:46 <13.6> web01 prog: facility",
            "Nov 18 09:46:46.123 web01 prog: fraction",
            "nov 18 09:46:46 web01 prog: lower month",
            "Nov 18 09:46:46 web01 a:b: colon in program",
            "Nov 18 09:46:46 web01 postfix/smtpd[77]: slash",
            "Nov 18 09:46:46 web%01 prog[1]: percent host",
            "Nov 18 09:46:46 web01 prog[1]:\tx",
            "Nov 18 09:46:46 web01 prog[1]: x\r\n",
            "Xyz 18 09:46:46 web01 prog[1]: x",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        seeds.extend(corpus_lines());
        let bytes = [
            b' ', b':', b'[', b']', b'0', b'9', b'a', b'Z', b'<', b'\t', b'.', b'-', b'%', 0xc3,
        ];
        let (mut same, mut checked, mut remembered) = (0usize, 0usize, 0usize);
        // One memo for every line checked: each mutation is read after its seed (or a
        // sibling), whose header the memo holds.
        let mut memo = HeaderMemo::default();
        let mut check = |line: &[u8]| {
            let Ok(line) = std::str::from_utf8(line) else {
                return;
            };
            let line = strip_eol(line);
            checked += 1;
            let known = usize::from(memo.prefix_len);
            let prefix_seen =
                known > 0 && line.as_bytes().get(16..16 + known) == Some(&memo.prefix[..known]);
            let spans = bsd_common_spans(line, &mut memo).and_then(|s| s.in_line(line));
            assert_eq!(spans, bsd_common(line), "with the memo: {line:?}");
            if let Some(fast) = bsd_common(line) {
                assert_eq!(Some(fast), bsd(line, 0, SyslogLine::default()), "{line:?}");
                same += 1;
                remembered += usize::from(prefix_seen);
            }
        };
        for seed in &seeds {
            let b = seed.as_bytes();
            check(b);
            // Single-byte mutations of the header (replaced, deleted, doubled).
            for i in 0..b.len().min(48) {
                for &c in &bytes {
                    let mut m = b.to_vec();
                    m[i] = c;
                    check(&m);
                }
                let mut m = b.to_vec();
                m.remove(i);
                check(&m);
                let mut m = b.to_vec();
                m.insert(i, b[i]);
                check(&m);
            }
        }
        // Every ASCII byte in the host, the program and the pid (the scans' byte classes).
        for seed in &seeds[..3] {
            let b = seed.as_bytes();
            for i in 16..b.len().min(36) {
                for c in 0..=0x7f {
                    let mut m = b.to_vec();
                    m[i] = c;
                    check(&m);
                }
            }
        }
        assert!(
            same > 10_000,
            "the common shape read only {same} of {checked}"
        );
        assert!(
            remembered > 5_000,
            "only {remembered} lines were read with a remembered header"
        );
    }
}
