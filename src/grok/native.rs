//! Native scanners for stock patterns on the hot path.
//!
//! The regex crate finds a grok's captures in three passes: a forward DFA to the match's
//! end, a reverse DFA to its start, then a bounded backtracker over the match for the
//! groups. For the nginx access pattern, the most common line garrison reads, the
//! backtracker alone costs more than everything else done to the line.
//!
//! A native scanner reads such a line once, byte by byte. It is exact by construction,
//! not by approximation:
//! - it is attached only to a grok whose expanded regex is, byte for byte, the stock text
//!   it was written for (`nginx_access.re`; a test keeps that file equal to what the
//!   shipped rules expand to, so editing the rule or a pattern it uses detaches it);
//! - it accepts only lines of a strict canonical shape, on which the regex's
//!   leftmost-first semantics leave no choice (each step below says why), and returns the
//!   same captures the regex would;
//! - on anything else it declines, and the regex runs as before.
//!
//! A differential test runs both on the hub's fixtures, generated logs and mutated lines.

/// The expanded stock nginx access pattern (the first alternative of the shipped
/// `nginx-logs` parser): the hub's pattern with garrison's stock library.
const NGINX_ACCESS: &str = include_str!("nginx_access.re");

/// Fields the nginx access scanner sets, in the order of its capture array.
const NGINX_ACCESS_FIELDS: [&str; 10] = [
    "remote_addr",
    "remote_user",
    "time_local",
    "verb",
    "request",
    "http_version",
    "status",
    "body_bytes_sent",
    "http_referer",
    "http_user_agent",
];

/// The expanded `http-logs` enrichment pattern (the shipped parser's first alternative):
/// splits a request into path and query string, and the path into directory, file name
/// and extension.
const HTTP_REQUEST_PATH: &str = r"^(([^\?]*/)(?:([^/\?][^/\?]*?)((?:\.[^\.\?/]*)?))?)(?:\?(.*))?$";

/// Fields the request-path scanner sets, in the order of its capture array.
const HTTP_REQUEST_PATH_FIELDS: [&str; 5] =
    ["request", "file_dir", "file_frag", "file_ext", "http_args"];

/// A native scanner bound to one grok's field indices.
#[derive(Debug, Clone)]
pub(crate) enum Native {
    /// The nginx `combined` access line, optionally without the `$host` prefix and the
    /// ingress tail (lines with either decline).
    NginxAccess {
        /// Grok field index of each of [`NGINX_ACCESS_FIELDS`].
        fields: [usize; 10],
    },
    /// The `http-logs` split of a request path.
    HttpRequestPath {
        /// Grok field index of each of [`HTTP_REQUEST_PATH_FIELDS`].
        fields: [usize; 5],
    },
}

impl Native {
    /// The scanner for a grok with this expanded text and these fields, if there is one.
    pub(crate) fn for_pattern(expanded: &str, fields: &[Box<str>]) -> Option<Native> {
        fn indices<const N: usize>(fields: &[Box<str>], names: [&str; N]) -> Option<[usize; N]> {
            let mut idx = [0usize; N];
            for (slot, name) in idx.iter_mut().zip(names) {
                *slot = fields.iter().position(|f| **f == *name)?;
            }
            Some(idx)
        }
        if expanded == NGINX_ACCESS.trim_end_matches('\n') {
            return indices(fields, NGINX_ACCESS_FIELDS)
                .map(|fields| Native::NginxAccess { fields });
        }
        if expanded == HTTP_REQUEST_PATH {
            return indices(fields, HTTP_REQUEST_PATH_FIELDS)
                .map(|fields| Native::HttpRequestPath { fields });
        }
        None
    }

    /// Scans `h`: on a line the scanner accepts, calls `out(field, start, end)` for every
    /// non-empty capture (as [`super::Grok::captures_into`] does) and returns `true`;
    /// returns `false`, having called nothing, when the regex must decide.
    pub(crate) fn captures(&self, h: &str, out: &mut impl FnMut(usize, usize, usize)) -> bool {
        fn emit<const N: usize>(
            fields: &[usize; N],
            spans: Option<[(usize, usize); N]>,
            out: &mut impl FnMut(usize, usize, usize),
        ) -> bool {
            let Some(spans) = spans else { return false };
            for (&field, (start, end)) in fields.iter().zip(spans) {
                if start < end {
                    out(field, start, end);
                }
            }
            true
        }
        match self {
            Native::NginxAccess { fields } => emit(fields, nginx_access(h.as_bytes()), out),
            Native::HttpRequestPath { fields } => {
                emit(fields, http_request_path(h.as_bytes()), out)
            }
        }
    }
}

/// `b` at `i` starts with `lit`.
fn at(b: &[u8], i: usize, lit: &[u8]) -> bool {
    b.get(i..i + lit.len()) == Some(lit)
}

/// The end of the run of bytes from `i` that `class` admits.
fn run(b: &[u8], mut i: usize, class: impl Fn(u8) -> bool) -> usize {
    while i < b.len() && class(b[i]) {
        i += 1;
    }
    i
}

/// A canonical dotted quad at `i` (four decimal octets 0-255, no leading zeros): its end.
///
/// On such a token the stock `IPV4` matches it whole (each octet alternative
/// `25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?` ends where the octet does, before a `.` or the
/// space that must follow), and `IPV6`, tried first, cannot match: every `IPV6`
/// alternative needs a `:` the token does not have.
fn dotted_quad(b: &[u8], mut i: usize) -> Option<usize> {
    for n in 0..4 {
        if n > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let end = run(b, i, |c| c.is_ascii_digit());
        let digits = b.get(i..end)?;
        let value = match digits {
            [d] => u32::from(d - b'0'),
            [b'1'..=b'9', ..] if digits.len() <= 3 => digits
                .iter()
                .fold(0u32, |v, d| v * 10 + u32::from(d - b'0')),
            _ => return None,
        };
        if value > 255 {
            return None;
        }
        i = end;
    }
    Some(i)
}

/// Whether `token` (no space, no `%`, at least one `:`) is, whole, a match of the stock
/// `IPV6` as the grok expands it (`\d` as `[0-9]`).
///
/// Then it is also the `IPORHOST` capture when a space follows: `IPV4` and `HOSTNAME`
/// cannot match a `:`, and without a `%` the zone suffix `(%.+)?`, the only part that
/// could run past the space, cannot start.
fn ipv6_token(token: &[u8]) -> bool {
    static FULL: std::sync::OnceLock<Option<regex::bytes::Regex>> = std::sync::OnceLock::new();
    FULL.get_or_init(|| {
        let text = format!("^(?:{})$", super::STOCK_IPV6.replace(r"\d", "[0-9]"));
        regex::bytes::Regex::new(&text).ok()
    })
    .as_ref()
    .is_some_and(|re| re.is_match(token))
}

/// Two ASCII digits at `i`, as a number.
fn two_digits(b: &[u8], i: usize) -> Option<u32> {
    match b.get(i..i + 2)? {
        [x @ b'0'..=b'9', y @ b'0'..=b'9'] => Some(u32::from(x - b'0') * 10 + u32::from(y - b'0')),
        _ => None,
    }
}

/// `dd/Mon/yyyy:hh:mm:ss +zzzz` at `i`, every part in the range the stock `HTTPDATE`
/// matches whole: its end. (The capture is everything between `[` and `]`, which
/// `HTTPDATE` cannot contain, so only whether it matches matters, not how.)
fn httpdate(b: &[u8], i: usize) -> Option<usize> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let d = b.get(i..i + 26)?;
    let day = two_digits(d, 0)?;
    let ok = (1..=31).contains(&day)
        && d[2] == b'/'
        && MONTHS.iter().any(|m| d[3..6] == m[..])
        && d[6] == b'/'
        && d[7..11].iter().all(u8::is_ascii_digit)
        && d[11] == b':'
        && two_digits(d, 12)? <= 23
        && d[14] == b':'
        && two_digits(d, 15)? <= 59
        && d[17] == b':'
        && two_digits(d, 18)? <= 59
        && d[20] == b' '
        && matches!(d[21], b'+' | b'-')
        && d[22..26].iter().all(u8::is_ascii_digit);
    ok.then_some(i + 26)
}

/// The nginx `combined` line: `IP - USER [DATE] "VERB REQUEST HTTP/V" STATUS BYTES "REF" "UA"`
/// with nothing after, as capture spans in [`NGINX_ACCESS_FIELDS`] order.
///
/// Why each step is the regex's only choice:
/// - the address is a canonical dotted quad or a token of hex digits, `:` and `.` that the
///   stock `IPV6` matches whole (see [`dotted_quad`] and [`ipv6_token`]);
/// - the optional `$host[:port] ` prefix needs an `IPORHOST` after its space; here the
///   address is followed by ` - `, and `-` starts no `IPORHOST`, so the prefix is skipped
///   and the match starts at 0 (the leftmost start);
/// - `(USER )?` is greedy over a class without ` ` or `[`: the whole run, or nothing when
///   `[` follows ` - ` at once;
/// - `DATA:request` is lazy: the first ` HTTP/` after which the rest of the pattern
///   matches wins; the scanner checks the rest at the first ` HTTP/` and declines if it
///   fails there, rather than looking further;
/// - `NUMBER`s are digit runs ended by a byte that is not a digit or `.`; the two quoted
///   fields are `[^"]*` runs, ended by the next `"`;
/// - the optional ingress tail can only match text after the last quote; the scanner
///   accepts only lines that end there.
fn nginx_access(b: &[u8]) -> Option<[(usize, usize); 10]> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let user =
        |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'@' | b'-' | b'+' | b'_' | b'%');
    let digits = |i: usize| {
        let end = run(b, i, |c| c.is_ascii_digit());
        (end > i).then_some(end)
    };

    let addr_end = match dotted_quad(b, 0) {
        Some(end) => end,
        None => {
            let end = memchr::memchr(b' ', b)?;
            let token = &b[..end];
            let plausible = memchr::memchr(b':', token).is_some()
                && token
                    .iter()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'));
            if !plausible || !ipv6_token(token) {
                return None;
            }
            end
        }
    };
    if !at(b, addr_end, b" - ") {
        return None;
    }
    let mut i = addr_end + 3;
    let user_span = if b.get(i) == Some(&b'[') {
        (i, i)
    } else {
        let end = run(b, i, user);
        if end == i || !at(b, end, b" [") {
            return None;
        }
        let s = (i, end);
        i = end + 1;
        s
    };
    let date_start = i + 1;
    let date_end = httpdate(b, date_start)?;
    if !at(b, date_end, b"] \"") {
        return None;
    }
    let verb_start = date_end + 3;
    let verb_end = run(b, verb_start, word);
    if verb_end == verb_start || b.get(verb_end) != Some(&b' ') {
        return None;
    }
    let req_start = verb_end + 1;
    let req_end = req_start + memchr::memmem::find(b.get(req_start..)?, b" HTTP/")?;
    if req_end == req_start {
        return None;
    }
    // `HTTP/NUMBER"`: digits, optionally `.digits`, then the quote.
    let ver_start = req_end + 6;
    let mut ver_end = digits(ver_start)?;
    if b.get(ver_end) == Some(&b'.') {
        ver_end = digits(ver_end + 1)?;
    }
    if !at(b, ver_end, b"\" ") {
        return None;
    }
    let status_start = ver_end + 2;
    let status_end = digits(status_start)?;
    if b.get(status_end) != Some(&b' ') {
        return None;
    }
    let bytes_start = status_end + 1;
    let bytes_end = digits(bytes_start)?;
    if !at(b, bytes_end, b" \"") {
        return None;
    }
    let ref_start = bytes_end + 2;
    let ref_end = ref_start + memchr::memchr(b'"', b.get(ref_start..)?)?;
    if !at(b, ref_end, b"\" \"") {
        return None;
    }
    let ua_start = ref_end + 3;
    let ua_end = ua_start + memchr::memchr(b'"', b.get(ua_start..)?)?;
    if ua_end + 1 != b.len() {
        return None;
    }
    Some([
        (0, addr_end),
        user_span,
        (date_start, date_end),
        (verb_start, verb_end),
        (req_start, req_end),
        (ver_start, ver_end),
        (status_start, status_end),
        (bytes_start, bytes_end),
        (ref_start, ref_end),
        (ua_start, ua_end),
    ])
}

/// A request split as [`HTTP_REQUEST_PATH`] splits it, as capture spans in
/// [`HTTP_REQUEST_PATH_FIELDS`] order; `None` when the path has no `/` (the regex fails
/// too) or the request holds a newline (which `.` does not match: the regex decides).
///
/// Why each part is the regex's only choice (`q` is the first `?`, or the end):
/// - nothing in the path part can cross `?`, and after it only `\?.*$` or `$` may follow,
///   so the path part (`request`) is everything before `q`, and `http_args` everything
///   after it;
/// - `[^?]*/` is greedy: it backs off to the last `/` before `q`, where the rest always
///   matches (`file_dir`);
/// - the name after it has no `/` or `?`; the lazy `[^/?][^/?]*?` stops at the first place
///   from which `(\.[^.?/]*)?` reaches `q`: the last `.`, when that is not the name's
///   first byte, else `q` itself (`file_frag`, then `file_ext`).
fn http_request_path(b: &[u8]) -> Option<[(usize, usize); 5]> {
    if memchr::memchr(b'\n', b).is_some() {
        return None;
    }
    let q = memchr::memchr(b'?', b).unwrap_or(b.len());
    let slash = memchr::memrchr(b'/', &b[..q])?;
    let name = slash + 1;
    let dot = memchr::memrchr(b'.', &b[name..q])
        .filter(|&d| d > 0)
        .map_or(q, |d| name + d);
    let args = if q < b.len() {
        (q + 1, b.len())
    } else {
        (q, q)
    };
    Some([(0, q), (0, name), (name, dot), (dot, q), args])
}
