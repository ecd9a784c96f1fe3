//! The parse stage: raw lines into events.

pub mod pipeline;
mod plan;
pub mod syslog;
pub mod timefmt;

pub use pipeline::{Outcome, Pipeline, TraceStep};

/// Parses an address as garrison stores it: IPv4-mapped IPv6 (`::ffff:192.0.2.1`) becomes
/// IPv4, so one attacker is one key whatever the log wrote.
pub fn normalize_ip(s: &str) -> Option<std::net::IpAddr> {
    let s = s.trim();
    // Every new source goes through here (the whitelist check, on a miss of its memo):
    // most are plain quads, read in one pass instead of through the standard parser's
    // combinators.
    if let Some(v4) = plain_quad(s.as_bytes()) {
        return Some(std::net::IpAddr::V4(v4));
    }
    let ip: std::net::IpAddr = s.parse().ok()?;
    Some(match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    })
}

/// [`normalize_ip`]'s address as text, as it displays. A plain dotted quad (most sources)
/// already reads that way: it is copied instead of formatted again, which costs over a
/// thousand instructions an alert.
pub fn normalized_ip_text(s: &str) -> Option<String> {
    let s = s.trim();
    if plain_quad(s.as_bytes()).is_some() {
        return Some(s.to_owned());
    }
    normalize_ip(s).map(|ip| ip.to_string())
}

/// `s` as an IPv4 address when it is exactly a [`dotted_quad`]; `None` leaves everything
/// else to the standard parser.
fn plain_quad(s: &[u8]) -> Option<std::net::Ipv4Addr> {
    let (addr, len) = dotted_quad(s)?;
    (len == s.len()).then(|| std::net::Ipv4Addr::from(addr))
}

/// A dotted-quad IPv4 address at the start of `b` and its length in bytes; `None` for
/// anything else, including octets with a leading zero (which `Ipv4Addr`'s parser refuses
/// too, so both paths accept the same addresses).
pub(crate) fn dotted_quad(b: &[u8]) -> Option<(u32, usize)> {
    // Every parsed line's source comes through here (its scanner). A quad and the byte
    // after it fit in 16 bytes: read from a copy of them, each digit test is one load
    // with no end of the text to check (~150 instructions a quad read byte by byte).
    match b.first_chunk::<16>() {
        Some(window) => quad_in(window),
        None => quad_in(b),
    }
}

/// [`dotted_quad`] over any byte source: the text, or a 16-byte window of it (where
/// indices masked to 0-15 need no bounds check and every octet ends inside it).
#[inline(always)]
fn quad_in<B: QuadBytes + ?Sized>(b: &B) -> Option<(u32, usize)> {
    let dot = |i: usize| (b.byte(i) == Some(b'.')).then_some(i + 1);
    let (a, i) = octet(b, 0)?;
    let (c, i) = octet(b, dot(i)?)?;
    let (d, i) = octet(b, dot(i)?)?;
    let (e, i) = octet(b, dot(i)?)?;
    Some((a << 24 | c << 16 | d << 8 | e, i))
}

/// Bytes [`quad_in`] reads by index.
trait QuadBytes {
    fn byte(&self, i: usize) -> Option<u8>;
}

impl QuadBytes for [u8] {
    #[inline(always)]
    fn byte(&self, i: usize) -> Option<u8> {
        self.get(i).copied()
    }
}

impl QuadBytes for [u8; 16] {
    /// Octets of at most three digits and the dots between them end by index 15.
    #[inline(always)]
    fn byte(&self, i: usize) -> Option<u8> {
        Some(self[i & 15])
    }
}

/// An octet at `i`: one to three digits (a fourth is left unread), 0-255, no leading zero.
#[inline(always)]
fn octet<B: QuadBytes + ?Sized>(b: &B, i: usize) -> Option<(u32, usize)> {
    let digit = |k: usize| {
        b.byte(k)
            .map(|c| c.wrapping_sub(b'0'))
            .filter(|d| *d <= 9)
            .map(u32::from)
    };
    let d0 = digit(i)?;
    let Some(d1) = digit(i + 1) else {
        return Some((d0, i + 1));
    };
    if d0 == 0 {
        return None;
    }
    let Some(d2) = digit(i + 2) else {
        return Some((d0 * 10 + d1, i + 2));
    };
    let v = d0 * 100 + d1 * 10 + d2;
    (v <= 255).then_some((v, i + 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_quads_read_as_the_standard_parser_reads_them() {
        let seeds = [
            "192.0.2.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.6",
            "1.2.3.4",
            "01.2.3.4",
            "1.2.3.256",
            "1.2.3",
            "1.2.3.4.5",
            "1..3.4",
            "1.2.3.4 ",
            "1.2.3.0004",
            "999.1.1.1",
            "::ffff:1.2.3.4",
            "2001:db8::1",
            "a.b.c.d",
            "",
            ".1.2.3",
            "1.2.3.",
        ];
        let alphabet = b"0123456789.:af ";
        let mut n = 0;
        for seed in seeds {
            let mut cases = vec![seed.to_owned()];
            // Every single-byte substitution, deletion and insertion.
            for i in 0..=seed.len() {
                for &c in alphabet {
                    let mut ins = seed.as_bytes().to_vec();
                    ins.insert(i, c);
                    cases.push(String::from_utf8(ins).unwrap_or_default());
                    if i < seed.len() {
                        let mut sub = seed.as_bytes().to_vec();
                        sub[i] = c;
                        cases.push(String::from_utf8(sub).unwrap_or_default());
                    }
                }
                if i < seed.len() {
                    let mut del = seed.as_bytes().to_vec();
                    del.remove(i);
                    cases.push(String::from_utf8(del).unwrap_or_default());
                }
            }
            for case in cases {
                let std = case.parse::<std::net::Ipv4Addr>().ok();
                let fast = plain_quad(case.as_bytes());
                if fast.is_some() {
                    assert_eq!(fast, std, "{case:?}");
                    n += 1;
                }
                // Whatever path it takes, the answer is the standard one.
                let want = case
                    .trim()
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .map(|ip| match ip {
                        std::net::IpAddr::V6(v6) => {
                            v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4)
                        }
                        v4 => v4,
                    });
                assert_eq!(normalize_ip(&case), want, "{case:?}");
                // And its text is the address displayed, copied or formatted.
                assert_eq!(
                    normalized_ip_text(&case),
                    want.map(|ip| ip.to_string()),
                    "{case:?}"
                );
            }
        }
        assert!(n > 300, "quads read in one pass: {n}");
    }

    #[test]
    fn quads_read_from_a_window_read_as_from_the_text() {
        let seeds = [
            "192.0.2.1",
            "255.255.255.255",
            "255.255.255.2555",
            "1.2.3.4",
            "01.2.3.4",
            "1.2.3.256",
            "1.2.3",
            "1..3.4",
            "100.200.250.199.",
            "::ffff:1.2.3.4",
            "a.b.c.d",
            "",
        ];
        // What follows the address in the 16 bytes, and past them.
        let tails = [
            "",
            " port 22 ssh2",
            "0000000000000000",
            "................",
            ":",
            "9 x",
        ];
        let mut windowed = 0;
        for seed in seeds {
            for cut in 0..=seed.len() {
                for tail in tails {
                    let text = format!("{}{tail}", &seed[..cut]);
                    let b = text.as_bytes();
                    windowed += usize::from(b.len() >= 16);
                    assert_eq!(dotted_quad(b), quad_in(b), "{text:?}");
                }
            }
        }
        assert!(windowed > 100, "texts read through the window: {windowed}");
    }
}
