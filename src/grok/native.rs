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
//!   it was written for (see [`STOCK`]; a test checks that the shipped rules expand to
//!   these texts, so editing a rule or a pattern it uses detaches its scanner);
//! - it accepts only lines of a strict canonical shape, on which the regex's
//!   leftmost-first semantics leave no choice (each scanner says why), and returns the
//!   same captures the regex would;
//! - on anything else it declines, and the regex runs as before.
//!
//! Some stock texts also have a refuter: a test that proves the regex cannot match a line
//! (a literal every match needs is absent, or each place a match could start is followed
//! by a byte its next part cannot begin with). A failed alternative is the common case on
//! a parser's later alternatives, and the regex crate spends as much to fail on a line
//! holding the alternative's literal as to match it.
//!
//! A differential test runs both on the hub's fixtures, fail2ban's sample logs, edge cases
//! and their single-byte mutations.

/// The expanded stock nginx access pattern (the first alternative of the shipped
/// `nginx-logs` parser): the hub's pattern with garrison's stock library.
const NGINX_ACCESS: &str = include_str!("nginx_access.re");

/// The hub's `SSHD_DISC_PREAUTH` (`Disconnected from %{IP} port %{NUMBER}...`), expanded:
/// it reads the stock `IP`, not the sshd parser's `IP_WORKAROUND`.
const SSHD_DISC_PREAUTH: &str = include_str!("sshd_disc_preauth.re");

/// The expansion of the sshd parser's `IP_WORKAROUND` (stock `IPV6`, then the hub's
/// dotted-quad workaround), which every sshd text below captures in one group.
const IP_WORKAROUND: &str = include_str!("ip_workaround.re");

/// How a stock text reads.
enum Text {
    /// Exactly this.
    Whole(&'static str),
    /// This, `(`, [`IP_WORKAROUND`], `)`, then that.
    AroundIp(&'static str, &'static str),
    /// These parts with `(`, [`IP_WORKAROUND`], `)` between each two.
    AroundIps(&'static [&'static str]),
}

impl Text {
    fn is(&self, expanded: &str) -> bool {
        match self {
            Text::Whole(t) => expanded == t.trim_end_matches('\n'),
            Text::AroundIp(pre, post) => {
                let ip = IP_WORKAROUND.trim_end_matches('\n');
                expanded.len() == pre.len() + ip.len() + 2 + post.len()
                    && expanded
                        .strip_prefix(pre)
                        .and_then(|r| r.strip_prefix('('))
                        .and_then(|r| r.strip_prefix(ip))
                        .and_then(|r| r.strip_prefix(')'))
                        == Some(post)
            }
            Text::AroundIps(parts) => {
                let ip = IP_WORKAROUND.trim_end_matches('\n');
                let group = format!("({ip})");
                let mut rest = expanded;
                for (k, part) in parts.iter().enumerate() {
                    let Some(r) = rest.strip_prefix(part) else {
                        return false;
                    };
                    rest = r;
                    if k + 1 < parts.len() {
                        let Some(r) = rest.strip_prefix(group.as_str()) else {
                            return false;
                        };
                        rest = r;
                    }
                }
                rest.is_empty()
            }
        }
    }
}

/// A scanner: fills one span per capture group of its stock (empty for a group that does
/// not take part) and returns `true`, or returns `false` for the regex to decide.
type Scan = fn(&[u8], &mut [(usize, usize)]) -> bool;

/// A refuter: `true` when the stock text's regex cannot match the text at all, `false`
/// when it may.
type Refute = fn(&[u8]) -> bool;

/// A stock text, the field each of its capture groups carries and the scanner.
struct Stock {
    text: Text,
    /// The field of capture group 1, 2, ...: names are not part of the expanded text, so a
    /// copy of the pattern with its names on other groups must not get the scanner.
    groups: &'static [&'static str],
    scan: Scan,
    /// Proves no match, where the scanner declined.
    refute: Option<Refute>,
}

/// Every stock text with a scanner.
const STOCK: [Stock; 14] = [
    Stock {
        text: Text::Whole(NGINX_ACCESS),
        groups: &[
            "target_fqdn",
            "port",
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
            "request_length",
            "request_time",
            "proxy_upstream_name",
            "proxy_alternative_upstream_name",
        ],
        scan: nginx_access,
        refute: None,
    },
    // The `http-logs` enrichment: a request split into path and query string, and the
    // path into directory, file name and extension.
    Stock {
        text: Text::Whole(r"^(([^\?]*/)(?:([^/\?][^/\?]*?)((?:\.[^\.\?/]*)?))?)(?:\?(.*))?$"),
        groups: &["request", "file_dir", "file_frag", "file_ext", "http_args"],
        scan: http_request_path,
        refute: None,
    },
    // sshd-logs: SSHD_FAILED_ANY (garrison's).
    Stock {
        text: Text::AroundIp(
            r"(?:Failed ([^\t\n\f\r ]+) for (?:invalid user )?(.*?) ?from ",
            r"(?: port ((?:[\+\-]?(?:(?:[0-9]+(?:\.[0-9]+)?)|(?:\.[0-9]+)))))?(?: ((?-u:\b)[0-9A-Za-z_]+(?-u:\b)))?(?::|[\t\n\f\r ]*$))",
        ),
        groups: &[
            "sshd_auth_type",
            "sshd_invalid_user",
            "sshd_client_ip",
            "sshd_port",
            "sshd_protocol",
        ],
        scan: sshd_failed,
        refute: None,
    },
    // sshd-logs: the hub's SSHD_PREAUTH_AUTHENTICATING_USER_ALT.
    Stock {
        text: Text::AroundIp(
            r"(?:Disconnected from (?:authenticating|invalid) user ([a-zA-Z0-9\._\-]+) ",
            r" port [0-9]+ \[preauth\])",
        ),
        groups: &["sshd_invalid_user", "sshd_client_ip"],
        scan: sshd_disconnected_user,
        refute: None,
    },
    // sshd-logs: the hub's SSHD_PREAUTH_AUTHENTICATING_USER.
    Stock {
        text: Text::AroundIp(
            r"(?:Connection (?:closed|reset) by(?: (?:authenticating|invalid) user ([a-zA-Z0-9\._\-]+))? ",
            r" port [0-9]+ \[preauth\])",
        ),
        groups: &["sshd_invalid_user", "sshd_client_ip"],
        scan: sshd_connection_closed,
        refute: None,
    },
    // sshd-logs: the hub's SSHD_INVALID_USER.
    Stock {
        text: Text::AroundIp(
            r"(?:Invalid user[\t\n\f\r ]*([a-zA-Z0-9\._\-]+)? from ",
            r"(?: port [0-9]+)?)",
        ),
        groups: &["sshd_invalid_user", "sshd_client_ip"],
        scan: sshd_invalid_user,
        refute: None,
    },
    // sshd-logs: the hub's SSHD_AUTH_FAIL.
    Stock {
        text: Text::AroundIp(
            r"(?:pam_(.*?)\(sshd:auth\): authentication failure; logname= uid=((?:[\+\-]?(?:(?:[0-9]+(?:\.[0-9]+)?)|(?:\.[0-9]+))))? euid=((?:[\+\-]?(?:(?:[0-9]+(?:\.[0-9]+)?)|(?:\.[0-9]+))))? tty=ssh ruser= rhost=",
            r"(?: (?:[\t\n\f\r ]*)user=([a-zA-Z0-9\._\-]+))?)",
        ),
        groups: &[
            "pam_type",
            "uid",
            "euid",
            "sshd_client_ip",
            "sshd_invalid_user",
        ],
        scan: sshd_auth_failure,
        refute: None,
    },
    // sshd-logs: garrison's SSHD_DISCONNECT_PREAUTH.
    Stock {
        text: Text::AroundIp(
            r"(?:Received disconnect from ",
            r"(?: port [0-9]+)?:[\t\n\f\r ]*[0-9]+: (?:.*Auth fail.*|.*\[preauth\])$)",
        ),
        groups: &["sshd_client_ip"],
        scan: sshd_received_disconnect,
        refute: Some(sshd_received_disconnect_refuted),
    },
    // sshd-logs: the hub's SSHD_INVALID_BANNER.
    Stock {
        text: Text::AroundIp(
            r"(?:banner exchange: Connection from ",
            r" port [0-9]+: invalid format)",
        ),
        groups: &["sshd_client_ip"],
        scan: sshd_invalid_banner,
        refute: None,
    },
    // sshd-logs: the hub's SSHD_BAD_KEY_NEGOTIATION.
    Stock {
        text: Text::AroundIp(
            r"(?:Unable to negotiate with ",
            r" port [0-9]+: no matching (?:host key type|key exchange method|MAC) found.)",
        ),
        groups: &["sshd_client_ip"],
        scan: sshd_bad_key_negotiation,
        refute: None,
    },
    // sshd-logs: the hub's SSHD_AUTH_TIMEOUT.
    Stock {
        text: Text::AroundIp(
            r"(?:Timeout before authentication for ",
            r"(?: port [0-9]+)?)",
        ),
        groups: &["sshd_client_ip"],
        scan: sshd_auth_timeout,
        refute: None,
    },
    // sshd-logs: the hub's SSHD_DISC_PREAUTH. Its lines (`Disconnected from <ip> port N`)
    // are rare; what reaches it is mostly a session's end (`Disconnected from user x ...`),
    // which the refuter settles.
    Stock {
        text: Text::Whole(SSHD_DISC_PREAUTH),
        groups: &["sshd_client_ip", "sshd_port", "sshd_privsep"],
        scan: decline,
        refute: Some(sshd_disc_preauth_refuted),
    },
    // sshd-logs: garrison's SSHD_PROBE, three alternatives that each capture the address.
    Stock {
        text: Text::AroundIps(&[
            r"(?:(?:Did not receive identification string from ",
            r"|Connection closed by ",
            r" port [0-9]+$|ssh_dispatch_run_fatal: Connection from ",
            r" port [0-9]+: .*\[preauth\]))",
        ]),
        groups: &["sshd_client_ip", "sshd_client_ip", "sshd_client_ip"],
        scan: sshd_probe,
        refute: None,
    },
    // sshd-success-logs: an accepted login (it cancels time-based buckets).
    Stock {
        text: Text::AroundIp(
            r"Accepted (?:publickey|password|keyboard-interactive/pam|gssapi-with-mic|hostbased) for ([a-zA-Z0-9\._\-]+) from ",
            r" port ((?:[\+\-]?(?:(?:[0-9]+(?:\.[0-9]+)?)|(?:\.[0-9]+)))) ssh2(.*)",
        ),
        groups: &[
            "sshd_auth_user",
            "sshd_client_ip",
            "sshd_client_port",
            "sshd_trail",
        ],
        scan: sshd_accepted,
        refute: None,
    },
];

/// Most capture groups of a stock text.
pub(crate) const MAX_GROUPS: usize = 16;

/// A native scanner bound to one grok's field indices.
#[derive(Debug, Clone)]
pub(crate) struct Native {
    scan: Scan,
    refute: Option<Refute>,
    /// The grok's field index of each capture group (of each span the scanner fills).
    fields: Box<[usize]>,
}

impl Native {
    /// The scanner for a grok with this expanded text, these fields and this field index
    /// for each capture group (group 1 first), if there is one.
    pub(crate) fn for_pattern(
        expanded: &str,
        fields: &[Box<str>],
        group_fields: &[usize],
    ) -> Option<Native> {
        let stock = STOCK.iter().find(|s| s.text.is(expanded))?;
        let same_groups = group_fields.len() == stock.groups.len()
            && group_fields
                .iter()
                .zip(stock.groups)
                .all(|(&f, name)| fields.get(f).is_some_and(|f| **f == **name));
        (same_groups && group_fields.len() <= MAX_GROUPS).then(|| Native {
            scan: stock.scan,
            refute: stock.refute,
            fields: group_fields.into(),
        })
    }

    /// Scans `h`: on a line the scanner accepts, calls `out(field, start, end)` for every
    /// non-empty capture (as [`super::Grok::captures_into`] does) and returns `Some(true)`;
    /// returns `Some(false)` when the refuter proves the regex cannot match, and `None`,
    /// having called nothing, when the regex must decide.
    pub(crate) fn captures(
        &self,
        h: &str,
        out: &mut impl FnMut(usize, usize, usize),
    ) -> Option<bool> {
        let mut spans = [(0usize, 0usize); MAX_GROUPS];
        if !self.spans(h.as_bytes(), &mut spans)? {
            return Some(false);
        }
        for (&field, &(start, end)) in self.fields.iter().zip(spans.iter()) {
            if start < end {
                out(field, start, end);
            }
        }
        Some(true)
    }

    /// [`Native::captures`] without the callback: on an accepted line, `spans[i]` is the
    /// span of group `i + 1`, for the grok field [`Native::fields`]`[i]` (empty: no value).
    #[inline]
    pub(crate) fn spans(&self, h: &[u8], spans: &mut [(usize, usize); MAX_GROUPS]) -> Option<bool> {
        let spans = spans.get_mut(..self.fields.len())?;
        if !(self.scan)(h, spans) {
            return self.refute.is_some_and(|refute| refute(h)).then_some(false);
        }
        Some(true)
    }

    /// The grok field index of each span [`Native::spans`] fills.
    pub(crate) fn fields(&self) -> &[usize] {
        &self.fields
    }
}

/// Copies `found` into `spans` (same length by construction).
fn fill<const N: usize>(spans: &mut [(usize, usize)], found: Option<[(usize, usize); N]>) -> bool {
    match found {
        Some(f) if spans.len() == N => {
            spans.copy_from_slice(&f);
            true
        }
        _ => false,
    }
}

/// `b` at `i` starts with `lit`.
fn at(b: &[u8], i: usize, lit: &[u8]) -> bool {
    b.get(i..i + lit.len()) == Some(lit)
}

/// The first occurrence of `lit` (not empty) in `h`. For the short haystacks and literals
/// here, a search for the first byte beats building a `memmem` searcher per call.
fn find_lit(h: &[u8], lit: &[u8]) -> Option<usize> {
    let (&first, tail) = lit.split_first()?;
    crate::find_byte_where(first, h, |i| h.get(i + 1..i + lit.len()) == Some(tail))
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
/// On such a token `IPV6`, tried first (in `IP` and in sshd's `IP_WORKAROUND`), cannot
/// match: each of its alternatives starts with `:` or a hex group followed by `:`, and a
/// quad has a `.` after its first digits. The stock `IPV4` and the hub's dotted-quad
/// workaround then take every octet whole, whatever follows: for an octet of 0-255 without
/// leading zeros, the first of `25[0-5]`, `2[0-4][0-9]` and the greedy `[01]?[0-9][0-9]?`
/// that matches at all matches all of it. So the capture is the quad, even where the
/// pattern does not say what follows.
fn dotted_quad(b: &[u8], i: usize) -> Option<usize> {
    // The shared parser reads at most three digits an octet: a fourth (or any digit right
    // after the quad) means the last octet is not whole.
    let (_, n) = crate::parse::dotted_quad(b.get(i..)?)?;
    let end = i + n;
    (!b.get(end).is_some_and(u8::is_ascii_digit)).then_some(end)
}

/// A client address at `i` as the sshd patterns' `IP_WORKAROUND` takes it first: a
/// canonical dotted quad (see [`dotted_quad`]), or else the stock `IPV6`'s leftmost-first
/// match there ([`ipv6_first`]). Its end.
///
/// The scanner then checks what follows along the pattern's first choices and declines
/// when that fails, because the regex would go on to the address's later choices (shorter
/// `IPV6` matches, then the quad). So where it accepts, its address is the regex's, even
/// where `IPV6`'s first choice is not the whole token (`::ffff:1.2.3.4` is first taken as
/// `::ffff:1`).
fn address_first(b: &[u8], i: usize) -> Option<usize> {
    match dotted_quad(b, i) {
        Some(end) => Some(end),
        None => ipv6_first(b.get(i..)?).map(|n| i + n),
    }
}

/// The length of the stock `IPV6`'s leftmost-first match at the start of `b` (as the grok
/// expands it), if it matches there. A lazy DFA finds the end of
/// the match a backtracking engine would try first: where the full pattern's regex
/// spends ~17,000 instructions on an sshd line with an IPv6 address (its backtracker
/// clears a visited set the size of the `IPV6` alternation times the line), this costs a
/// few hundred.
fn ipv6_first(b: &[u8]) -> Option<usize> {
    static FIRST: std::sync::OnceLock<Option<regex::bytes::Regex>> = std::sync::OnceLock::new();
    // Only a hex digit or `:` can start an `IPV6` match.
    if !b
        .first()
        .is_some_and(|c| c.is_ascii_hexdigit() || *c == b':')
    {
        return None;
    }
    FIRST
        .get_or_init(|| {
            regex::bytes::Regex::new(&format!("^(?:{})", stock_ipv6_as_expanded())).ok()
        })
        .as_ref()?
        .find(b)
        .map(|m| m.end())
}

/// The stock `IPV6` as the grok expands it: `\d` as `[0-9]`.
fn stock_ipv6_as_expanded() -> String {
    super::STOCK_IPV6.replace(r"\d", "[0-9]")
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
        regex::bytes::Regex::new(&format!("^(?:{})$", stock_ipv6_as_expanded())).ok()
    })
    .as_ref()
    .is_some_and(|re| re.is_match(token))
}

/// `dd/Mon/yyyy:hh:mm:ss +zzzz` at `i`, every part in the range the stock `HTTPDATE`
/// matches whole: its end. (The capture is everything between `[` and `]`, which
/// `HTTPDATE` cannot contain, so only whether it matches matters, not how.)
///
/// Read as four overlapping words: one masked comparison checks the separators, one
/// carry-free sum the sixteen digits, instead of a test a byte.
fn httpdate(b: &[u8], i: usize) -> Option<usize> {
    let d: &[u8; 26] = b.get(i..i + 26)?.try_into().ok()?;
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&d[at..at + 8]);
        u64::from_le_bytes(w)
    };
    // Bytes 0-7, 8-15, 16-23 and 18-25: `dd/Mon/y`, `yyy:hh:m`, `m:ss +zz`, `ss +zzzz`.
    let words = [word(0), word(8), word(16), word(18)];
    // Per word: the digit bytes, and the separators with their values (the sign is
    // checked alone).
    const DIGITS: [u64; 4] = [
        0xff00_0000_0000_ffff,
        0xff00_ffff_00ff_ffff,
        0xffff_0000_ffff_00ff,
        0xffff_ffff_0000_0000,
    ];
    const SEPARATORS: [(u64, u64); 4] = [
        (0x00ff_0000_00ff_0000, 0x002f_0000_002f_0000),
        (0x00ff_0000_ff00_0000, 0x003a_0000_3a00_0000),
        (0x0000_00ff_0000_ff00, 0x0000_0020_0000_3a00),
        (0, 0),
    ];
    let mut bad = 0u64;
    for k in 0..4 {
        // A digit is `0x30 ^ c < 10`: bit 7 of `(t & 0x7f) + 0x76 | t` is clear exactly
        // then, and the sum cannot carry into the next byte.
        let t = words[k] ^ 0x3030_3030_3030_3030;
        let over = ((t & 0x7f7f_7f7f_7f7f_7f7f).wrapping_add(0x7676_7676_7676_7676) | t)
            & 0x8080_8080_8080_8080;
        bad |= over & DIGITS[k];
        let (mask, want) = SEPARATORS[k];
        bad |= (words[k] & mask) ^ want;
    }
    if bad != 0 || !matches!(d[21], b'+' | b'-') {
        return None;
    }
    let digit = |at: usize| u32::from(d[at].wrapping_sub(b'0'));
    let two = |at: usize| digit(at) * 10 + digit(at + 1);
    let month = [d[3], d[4], d[5]];
    let ok = (1..=31).contains(&two(0))
        && matches!(
            &month,
            b"Jan"
                | b"Feb"
                | b"Mar"
                | b"Apr"
                | b"May"
                | b"Jun"
                | b"Jul"
                | b"Aug"
                | b"Sep"
                | b"Oct"
                | b"Nov"
                | b"Dec"
        )
        && two(12) <= 23
        && two(15) <= 59
        && two(18) <= 59;
    ok.then_some(i + 26)
}

/// The nginx `combined` line: `IP - USER [DATE] "VERB REQUEST HTTP/V" STATUS BYTES "REF" "UA"`
/// with nothing after, as capture spans in the order of its [`STOCK`] groups.
///
/// Why each step is the regex's only choice:
/// - the address is a canonical dotted quad or a token of hex digits, `:` and `.` that the
///   stock `IPV6` matches whole (see [`address_before_space`]);
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
fn nginx_access(b: &[u8], spans: &mut [(usize, usize)]) -> bool {
    fill(spans, nginx_access_spans(b))
}

fn nginx_access_spans(b: &[u8]) -> Option<[(usize, usize); 16]> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let user =
        |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'@' | b'-' | b'+' | b'_' | b'%');
    let digits = |i: usize| {
        let end = run(b, i, |c| c.is_ascii_digit());
        (end > i).then_some(end)
    };

    let addr_end = address_before_space(b, 0)?;
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
    let req_end = req_start + find_lit(b.get(req_start..)?, b" HTTP/")?;
    // `.` (in the lazy request) does not match a newline; no other part the scanner
    // accepts can hold one but the quoted `[^"]*` fields, which match it too.
    if req_end == req_start || crate::find_byte(b'\n', &b[req_start..req_end]).is_some() {
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
    let ref_end = ref_start + crate::find_byte(b'"', b.get(ref_start..)?)?;
    if !at(b, ref_end, b"\" \"") {
        return None;
    }
    let ua_start = ref_end + 3;
    let ua_end = ua_start + crate::find_byte(b'"', b.get(ua_start..)?)?;
    if ua_end + 1 != b.len() {
        return None;
    }
    // The `$host[:port] ` prefix and the ingress tail take no part.
    let none = (0, 0);
    Some([
        none,
        none,
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
        none,
        none,
        none,
        none,
    ])
}

/// A request split as the `http-logs` pattern splits it, as capture spans in the order of
/// its [`STOCK`] groups; `None` when the path has no `/` (the regex fails
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
fn http_request_path(b: &[u8], spans: &mut [(usize, usize)]) -> bool {
    fill(spans, http_request_path_spans(b))
}

fn http_request_path_spans(b: &[u8]) -> Option<[(usize, usize); 5]> {
    // The first `?` and the newline check in one pass where there is no `?` (most
    // requests); past a `?`, the rest is checked for a newline.
    let q = match crate::find_either(b'\n', b'?', b) {
        None => b.len(),
        Some(i) if b[i] == b'\n' => return None,
        Some(i) => {
            if crate::find_byte(b'\n', &b[i + 1..]).is_some() {
                return None;
            }
            i
        }
    };
    let slash = crate::rfind_byte(b'/', &b[..q])?;
    let name = slash + 1;
    let dot = crate::rfind_byte(b'.', &b[name..q])
        .filter(|&d| d > 0)
        .map_or(q, |d| name + d);
    let args = if q < b.len() {
        (q + 1, b.len())
    } else {
        (q, q)
    };
    Some([(0, q), (0, name), (name, dot), (dot, q), args])
}

/// RE2's `\s`, as the grok translates it: `[\t\n\f\r ]`.
fn is_space(c: u8) -> bool {
    matches!(c, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// The sshd parser's `USERNAME`: `[a-zA-Z0-9._-]`.
fn is_username(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')
}

/// A non-empty run of ASCII digits at `i`: its end.
fn digit_run(b: &[u8], i: usize) -> Option<usize> {
    let end = run(b, i, |c| c.is_ascii_digit());
    (end > i).then_some(end)
}

/// A `NUMBER` that must be a plain digit run ending at a byte that cannot continue it (not
/// a digit or `.`): its end. Empty when there are no digits; `None` when the number goes
/// on in a way only the regex should judge.
fn plain_number(b: &[u8], i: usize) -> Option<usize> {
    let end = run(b, i, |c| c.is_ascii_digit());
    (b.get(end) != Some(&b'.')).then_some(end)
}

/// A client address at `i` that a space must follow: a canonical dotted quad (see
/// [`dotted_quad`]), or a token of hex digits, `:` and `.` that the stock `IPV6` matches
/// whole (see [`ipv6_token`]; the dotted-quad patterns cannot match a `:`). Its end.
fn address_before_space(b: &[u8], i: usize) -> Option<usize> {
    if let Some(end) = dotted_quad(b, i)
        && b.get(end) == Some(&b' ')
    {
        return Some(end);
    }
    let end = i + crate::find_byte(b' ', b.get(i..)?)?;
    let token = &b[i..end];
    let plausible = crate::find_byte(b':', token).is_some()
        && token
            .iter()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'));
    (plausible && ipv6_token(token)).then_some(end)
}

/// `Failed <method> for [invalid user ]<user> from <address>[ port N][ <word>](:...| *)`,
/// the address as [`address_first`] takes it.
///
/// The method is a greedy non-space run that ` for ` must follow: all of it. `(?:invalid
/// user )?` is greedy: taken when present. The user is lazy: it ends at the first
/// `from `, with the space before it when there is one (` ?` is tried with the space
/// first). From there the scanner checks the rest along the regex's first choices (port
/// group, then word group, then `:` or trailing blanks) and declines if they fail rather
/// than trying the regex's later choices. The port is a digit run: `NUMBER` would also
/// take a `.` and digits, so a `.` after it declines.
fn sshd_failed(b: &[u8], spans: &mut [(usize, usize)]) -> bool {
    fill(spans, sshd_failed_spans(b))
}

fn sshd_failed_spans(b: &[u8]) -> Option<[(usize, usize); 5]> {
    if !b.starts_with(b"Failed ") || crate::find_byte(b'\n', b).is_some() {
        return None;
    }
    let method_end = run(b, 7, |c| !is_space(c));
    if method_end == 7 || !at(b, method_end, b" for ") {
        return None;
    }
    let mut user_start = method_end + 5;
    if at(b, user_start, b"invalid user ") {
        user_start += 13;
    }
    let from = user_start + find_lit(b.get(user_start..)?, b"from ")?;
    let user_end = if from > user_start && b[from - 1] == b' ' {
        from - 1
    } else {
        from
    };
    let ip_start = from + 5;
    let ip_end = address_first(b, ip_start)?;
    let mut j = ip_end;
    let mut port = (j, j);
    if at(b, j, b" port ") {
        let end = plain_number(b, j + 6)?;
        if end == j + 6 {
            return None;
        }
        port = (j + 6, end);
        j = end;
    }
    let mut protocol = (j, j);
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if b.get(j) == Some(&b' ') && b.get(j + 1).is_some_and(|&c| word(c)) {
        let end = run(b, j + 1, word);
        protocol = (j + 1, end);
        j = end;
    }
    let rest_ok = b.get(j) == Some(&b':') || b[j..].iter().all(|&c| is_space(c));
    rest_ok.then_some([
        (7, method_end),
        (user_start, user_end),
        (ip_start, ip_end),
        port,
        protocol,
    ])
}

/// `Disconnected from (authenticating|invalid) user <user> <address> port N [preauth]`:
/// the user is a greedy run of a class without a space, which a space must follow; the
/// address must be followed by ` port`.
fn sshd_disconnected_user(b: &[u8], spans: &mut [(usize, usize)]) -> bool {
    fill(spans, sshd_disconnected_user_spans(b))
}

fn sshd_disconnected_user_spans(b: &[u8]) -> Option<[(usize, usize); 2]> {
    let rest = b.strip_prefix(b"Disconnected from ")?;
    let skip = if rest.starts_with(b"authenticating user ") {
        20
    } else if rest.starts_with(b"invalid user ") {
        13
    } else {
        return None;
    };
    let user_start = 18 + skip;
    let user_end = run(b, user_start, is_username);
    if user_end == user_start || b.get(user_end) != Some(&b' ') {
        return None;
    }
    let ip_end = address_before_space(b, user_end + 1)?;
    preauth_port(b, ip_end)?;
    Some([(user_start, user_end), (user_end + 1, ip_end)])
}

/// ` port N [preauth]` at `i` (digits, then the literal).
fn preauth_port(b: &[u8], i: usize) -> Option<()> {
    if !at(b, i, b" port ") {
        return None;
    }
    let end = digit_run(b, i + 6)?;
    at(b, end, b" [preauth]").then_some(())
}

/// `Connection (closed|reset) by[ (authenticating|invalid) user <user>] <address> port N
/// [preauth]`: the optional user group is greedy, taken when its words are there (the
/// scanner declines if the rest then fails); the user and address are as in
/// [`sshd_disconnected_user`].
fn sshd_connection_closed(b: &[u8], spans: &mut [(usize, usize)]) -> bool {
    fill(spans, sshd_connection_closed_spans(b))
}

fn sshd_connection_closed_spans(b: &[u8]) -> Option<[(usize, usize); 2]> {
    let i = if b.starts_with(b"Connection closed by") {
        20
    } else if b.starts_with(b"Connection reset by") {
        19
    } else {
        return None;
    };
    let mut user = (i, i);
    let mut j = i;
    let words = if at(b, i, b" authenticating user ") {
        21
    } else if at(b, i, b" invalid user ") {
        14
    } else {
        0
    };
    if words > 0 {
        let end = run(b, i + words, is_username);
        if end == i + words {
            return None;
        }
        user = (i + words, end);
        j = end;
    }
    if b.get(j) != Some(&b' ') {
        return None;
    }
    let ip_end = address_before_space(b, j + 1)?;
    preauth_port(b, ip_end)?;
    Some([user, (j + 1, ip_end)])
}

/// `Invalid user<blanks><user> from <address>...`: the blanks and the user are greedy runs of
/// disjoint classes, which ` from ` must follow; nothing after the address matters, so
/// it is the one [`address_first`] takes. A message without a user name declines.
fn sshd_invalid_user(b: &[u8], spans: &mut [(usize, usize)]) -> bool {
    fill(spans, sshd_invalid_user_spans(b))
}

fn sshd_invalid_user_spans(b: &[u8]) -> Option<[(usize, usize); 2]> {
    if !b.starts_with(b"Invalid user") {
        return None;
    }
    let user_start = run(b, 12, is_space);
    let user_end = run(b, user_start, is_username);
    if user_end == user_start || !at(b, user_end, b" from ") {
        return None;
    }
    let ip_start = user_end + 6;
    let ip_end = address_first(b, ip_start)?;
    Some([(user_start, user_end), (ip_start, ip_end)])
}

/// `pam_<type>(sshd:auth): authentication failure; logname= uid=N euid=N tty=ssh ruser=
/// rhost=<address>[ <blanks>user=<user>]`: the type is lazy, so it ends at the first
/// `(sshd:auth): ...` (the scanner declines if the rest fails there); the ids are optional
/// digit runs that a fixed literal must follow; the user group is greedy and its user run
/// ends the pattern, so it takes the whole run.
fn sshd_auth_failure(b: &[u8], spans: &mut [(usize, usize)]) -> bool {
    fill(spans, sshd_auth_failure_spans(b))
}

fn sshd_auth_failure_spans(b: &[u8]) -> Option<[(usize, usize); 5]> {
    const AFTER_TYPE: &[u8] = b"(sshd:auth): authentication failure; logname= uid=";
    if !b.starts_with(b"pam_") || crate::find_byte(b'\n', b).is_some() {
        return None;
    }
    let type_end = 4 + find_lit(&b[4..], AFTER_TYPE)?;
    let uid_start = type_end + AFTER_TYPE.len();
    let uid_end = plain_number(b, uid_start)?;
    if !at(b, uid_end, b" euid=") {
        return None;
    }
    let euid_start = uid_end + 6;
    let euid_end = plain_number(b, euid_start)?;
    if !at(b, euid_end, b" tty=ssh ruser= rhost=") {
        return None;
    }
    let ip_start = euid_end + 22;
    let ip_end = address_first(b, ip_start)?;
    let mut user = (ip_end, ip_end);
    if b.get(ip_end) == Some(&b' ') {
        let key = run(b, ip_end + 1, is_space);
        if at(b, key, b"user=") {
            let end = run(b, key + 5, is_username);
            if end > key + 5 {
                user = (key + 5, end);
            }
        }
    }
    Some([
        (4, type_end),
        (uid_start, uid_end),
        (euid_start, euid_end),
        (ip_start, ip_end),
        user,
    ])
}

/// `banner exchange: Connection from <address> port N: invalid format`: the pattern is all
/// fixed text around the address and a digit run that `:` ends, so the only match at the
/// start is this one (anything after it is outside the match).
fn sshd_invalid_banner(b: &[u8], spans: &mut [(usize, usize)]) -> bool {
    fill(spans, sshd_invalid_banner_spans(b))
}

fn sshd_invalid_banner_spans(b: &[u8]) -> Option<[(usize, usize); 1]> {
    const PREFIX: &[u8] = b"banner exchange: Connection from ";
    let (ip_end, port_end) = address_and_port_after(b, PREFIX)?;
    at(b, port_end, b": invalid format").then_some([(PREFIX.len(), ip_end)])
}

/// `<prefix><address> port N` at the start of `b` ([`address_first`]): the ends of the
/// address and of the port's digits.
fn address_and_port_after(b: &[u8], prefix: &[u8]) -> Option<(usize, usize)> {
    if !b.starts_with(prefix) {
        return None;
    }
    let ip_end = address_first(b, prefix.len())?;
    if !at(b, ip_end, b" port ") {
        return None;
    }
    Some((ip_end, digit_run(b, ip_end + 6)?))
}

/// `Unable to negotiate with <address> port N: no matching <what> found<c>`, where `<what>`
/// is one of the three listed and `<c>` any character but a newline (the pattern's `.`).
fn sshd_bad_key_negotiation(b: &[u8], spans: &mut [(usize, usize)]) -> bool {
    fill(spans, sshd_bad_key_negotiation_spans(b))
}

fn sshd_bad_key_negotiation_spans(b: &[u8]) -> Option<[(usize, usize); 1]> {
    const PREFIX: &[u8] = b"Unable to negotiate with ";
    let (ip_end, port_end) = address_and_port_after(b, PREFIX)?;
    let what = port_end + b": no matching ".len();
    if !at(b, port_end, b": no matching ") {
        return None;
    }
    let found = [&b"host key type"[..], b"key exchange method", b"MAC"]
        .iter()
        .find(|w| at(b, what, w))
        .map(|w| what + w.len())?;
    let any = found + b" found".len();
    let ok = at(b, found, b" found") && b.get(any).is_some_and(|&c| c != b'\n');
    ok.then_some([(PREFIX.len(), ip_end)])
}

/// `Timeout before authentication for <address>...`: the port group is optional and the
/// pattern ends there, so the address [`address_first`] takes is the match.
fn sshd_auth_timeout(b: &[u8], spans: &mut [(usize, usize)]) -> bool {
    fill(spans, sshd_auth_timeout_spans(b))
}

fn sshd_auth_timeout_spans(b: &[u8]) -> Option<[(usize, usize); 1]> {
    const PREFIX: &[u8] = b"Timeout before authentication for ";
    if !b.starts_with(PREFIX) {
        return None;
    }
    let ip_end = address_first(b, PREFIX.len())?;
    Some([(PREFIX.len(), ip_end)])
}

/// `Received disconnect from <address>[ port N]:<blanks>N: ...` ending in `[preauth]` or
/// holding `Auth fail`: the address ([`address_first`]) must be followed by ` port` or
/// `:`; the rest is only checked, along the regex's first choice (the port group when
/// it is there).
fn sshd_received_disconnect(b: &[u8], spans: &mut [(usize, usize)]) -> bool {
    fill(spans, sshd_received_disconnect_spans(b))
}

fn sshd_received_disconnect_spans(b: &[u8]) -> Option<[(usize, usize); 1]> {
    if !b.starts_with(b"Received disconnect from ") || crate::find_byte(b'\n', b).is_some() {
        return None;
    }
    let ip_end = address_first(b, 25)?;
    let mut j = ip_end;
    if at(b, j, b" port ") {
        j = digit_run(b, j + 6)?;
    }
    if b.get(j) != Some(&b':') {
        return None;
    }
    let code = run(b, j + 1, is_space);
    let code_end = digit_run(b, code)?;
    if !at(b, code_end, b": ") {
        return None;
    }
    let tail = &b[code_end + 2..];
    let ok = tail.ends_with(b"[preauth]") || find_lit(tail, b"Auth fail").is_some();
    ok.then_some([(25, ip_end)])
}

/// The scanner of a stock text that only has a refuter.
fn decline(_: &[u8], _: &mut [(usize, usize)]) -> bool {
    false
}

/// `SSHD_DISCONNECT_PREAUTH` cannot match a text holding neither `Auth fail` nor
/// `[preauth]`: its tail is `(?:.*Auth fail.*|.*\[preauth\])$`, and each branch needs its
/// literal. (A session's end, `...:11: disconnected by user`, is the common case.)
fn sshd_received_disconnect_refuted(b: &[u8]) -> bool {
    find_lit(b, b"[preauth]").is_none() && find_lit(b, b"Auth fail").is_none()
}

/// `SSHD_DISC_PREAUTH` cannot match a text in which every `Disconnected from ` is followed
/// by a byte that starts no address: each alternative of the stock `IPV6` starts with a
/// hex digit or `:`, and `IPV4` with a digit. (`Disconnected from user x <ip> port N`, a
/// session's end, is the common case.)
fn sshd_disc_preauth_refuted(b: &[u8]) -> bool {
    const LIT: &[u8] = b"Disconnected from ";
    let mut from = 0;
    while let Some(i) = b.get(from..).and_then(|rest| find_lit(rest, LIT)) {
        let next = from + i + LIT.len();
        if b.get(next)
            .is_some_and(|&c| c.is_ascii_hexdigit() || c == b':')
        {
            return false;
        }
        from = from + i + 1;
    }
    true
}

/// `SSHD_PROBE` on `Connection closed by <address> port N` and nothing after (no `[preauth]`:
/// the earlier alternatives took those). A match of the second alternative at 0 is the
/// leftmost, and the first and third cannot start there (they start with other letters),
/// so its captures are the regex's: the address ([`address_first`]) in the second group.
fn sshd_probe(b: &[u8], spans: &mut [(usize, usize)]) -> bool {
    fill(spans, sshd_probe_spans(b))
}

fn sshd_probe_spans(b: &[u8]) -> Option<[(usize, usize); 3]> {
    const PREFIX: &[u8] = b"Connection closed by ";
    let (ip_end, port_end) = address_and_port_after(b, PREFIX)?;
    (port_end == b.len()).then_some([(0, 0), (PREFIX.len(), ip_end), (0, 0)])
}

/// `Accepted <method> for <user> from <address> port N ssh2<trail>` from the start, with no
/// newline: the method is one of the five listed (none a prefix of another), the user
/// name class holds no space (its run before ` from ` is forced), the address is
/// [`address_first`]'s, the port a plain digit run before ` ssh2`, and the greedy trail is
/// the rest of the text.
fn sshd_accepted(b: &[u8], spans: &mut [(usize, usize)]) -> bool {
    fill(spans, sshd_accepted_spans(b))
}

fn sshd_accepted_spans(b: &[u8]) -> Option<[(usize, usize); 4]> {
    const PREFIX: &[u8] = b"Accepted ";
    if !b.starts_with(PREFIX) || crate::find_byte(b'\n', b).is_some() {
        return None;
    }
    let method_end = [
        &b"publickey"[..],
        b"password",
        b"keyboard-interactive/pam",
        b"gssapi-with-mic",
        b"hostbased",
    ]
    .iter()
    .find(|m| at(b, PREFIX.len(), m))
    .map(|m| PREFIX.len() + m.len())?;
    if !at(b, method_end, b" for ") {
        return None;
    }
    let user_start = method_end + 5;
    let user_end = run(b, user_start, is_username);
    if user_end == user_start || !at(b, user_end, b" from ") {
        return None;
    }
    let ip_start = user_end + 6;
    let ip_end = address_first(b, ip_start)?;
    if !at(b, ip_end, b" port ") {
        return None;
    }
    let port_start = ip_end + 6;
    let port_end = plain_number(b, port_start)?;
    if port_end == port_start || !at(b, port_end, b" ssh2") {
        return None;
    }
    let trail = port_end + 5;
    Some([
        (user_start, user_end),
        (ip_start, ip_end),
        (port_start, port_end),
        (trail, b.len()),
    ])
}
