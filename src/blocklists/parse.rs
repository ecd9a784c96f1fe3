//! Reading a list's payload: plain text (FireHOL style) or JSON. Bad entries are counted,
//! not fatal; a payload that does not look like a list at all is rejected.

use crate::config::model::BlocklistFormat;
use crate::store::Target;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};

/// How many invalid entries a refresh keeps as a sample for its log line.
const SAMPLE: usize = 5;

/// A parsed list. Single IPv4 addresses, nearly all of a big list, are kept as 4-byte
/// integers (a million of them: 4 MB, where `Target`s would take 40 MB).
#[derive(Debug, Default)]
pub struct Parsed {
    /// The single IPv4 addresses, in order (duplicates included).
    pub v4: Vec<u32>,
    /// The other addresses and the ranges, in order (duplicates included).
    pub other: Vec<Target>,
    /// Entries that are neither an address nor a CIDR range.
    pub invalid: usize,
    /// A few of them, for the log.
    pub sample: Vec<String>,
}

impl Parsed {
    /// Valid entries (duplicates included).
    pub fn len(&self) -> usize {
        self.v4.len() + self.other.len()
    }

    /// True when there is no valid entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every valid entry as a [`Target`]: the IPv4 addresses first, then the others.
    pub fn entries(&self) -> impl Iterator<Item = Target> + '_ {
        self.v4
            .iter()
            .map(|a| Target::Ip(IpAddr::V4(Ipv4Addr::from(*a))))
            .chain(self.other.iter().cloned())
    }

    fn push(&mut self, raw: &str) {
        // The common case first: a plain IPv4 address, parsed without building a Target.
        if let Ok(a) = raw.parse::<Ipv4Addr>() {
            self.v4.push(u32::from(a));
            return;
        }
        match entry(raw) {
            Some(Target::Ip(IpAddr::V4(a))) => self.v4.push(u32::from(a)),
            Some(t) => self.other.push(t),
            None => self.bad(raw),
        }
    }

    fn bad(&mut self, raw: &str) {
        self.invalid += 1;
        if self.sample.len() < SAMPLE {
            self.sample.push(raw.chars().take(80).collect());
        }
    }

    /// Rejects what is more garbage than list (an HTML error page, a binary file).
    fn check(self) -> Result<Parsed, String> {
        if self.invalid > 0 && self.invalid > self.len() {
            return Err(format!(
                "not a list: {} invalid entries for {} valid (first: {:?})",
                self.invalid,
                self.len(),
                self.sample
            ));
        }
        Ok(self)
    }
}

/// One address (`192.0.2.1`, `::ffff:192.0.2.1`) or range (`192.0.2.0/24`); a full-length
/// prefix is an address, a range is truncated to its network.
pub fn entry(raw: &str) -> Option<Target> {
    let raw = raw.trim();
    if raw.contains('/') {
        let net: IpNet = raw.parse().ok()?;
        let net = net.trunc();
        if net.prefix_len() == net.max_prefix_len() {
            return crate::parse::normalize_ip(&net.addr().to_string()).map(Target::Ip);
        }
        return Some(Target::Range(net));
    }
    crate::parse::normalize_ip(raw).map(Target::Ip)
}

/// Parses a payload in `format`. `Err` when the payload is not a list (not UTF-8 text,
/// invalid or truncated JSON, mostly garbage, or empty).
pub fn parse(bytes: &[u8], format: BlocklistFormat) -> Result<Parsed, String> {
    if bytes.is_empty() {
        return Err("empty payload".into());
    }
    match format {
        BlocklistFormat::Text => parse_text(bytes),
        BlocklistFormat::Json => parse_json(bytes),
    }
}

/// Payloads from this size on are parsed in parallel chunks (a million-entry list, 14 MB,
/// takes tens of ms on one core; smaller ones are not worth a thread).
const PARALLEL_MIN: usize = 1 << 20;

fn parse_text(bytes: &[u8]) -> Result<Parsed, String> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let chunks = if bytes.len() < PARALLEL_MIN {
        vec![bytes]
    } else {
        line_chunks(bytes, workers)
    };
    // Each chunk with its offset in the payload (to report an encoding error where it is)
    // and its output. The outputs are allocated here, with room for every address the chunk
    // can hold (an address line takes 8 bytes at least), so the workers do not allocate:
    // memory a short-lived thread allocates stays in its own malloc arena, ~10 MB resident
    // for good after a million-entry list. The first output has room for the whole list,
    // which the others are appended to.
    let mut offset = 0;
    let mut jobs: Vec<(&[u8], usize, Parsed)> = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let room = if i == 0 { bytes.len() } else { chunk.len() } / 8 + 1;
        let out = Parsed {
            v4: Vec::with_capacity(room),
            ..Parsed::default()
        };
        jobs.push((chunk, offset, out));
        offset += chunk.len();
    }
    let parse_chunk = |(chunk, offset, mut out): (&[u8], usize, Parsed)| {
        let text = std::str::from_utf8(chunk)
            .map_err(|e| format!("not UTF-8 text (at byte {})", offset + e.valid_up_to()))?;
        parse_lines(text, &mut out);
        Ok::<Parsed, String>(out)
    };
    let mut jobs = jobs.into_iter();
    let first = jobs.next();
    let (first, rest) = std::thread::scope(|s| {
        let handles: Vec<_> = jobs.map(|job| s.spawn(move || parse_chunk(job))).collect();
        let first = first.map(parse_chunk);
        let rest: Vec<Result<Parsed, String>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        (first, rest)
    });
    let mut out = first.unwrap_or_else(|| Ok(Parsed::default()))?;
    for part in rest {
        let part = part?;
        out.v4.extend_from_slice(&part.v4);
        out.other.extend(part.other);
        out.invalid += part.invalid;
        let room = SAMPLE.saturating_sub(out.sample.len());
        out.sample.extend(part.sample.into_iter().take(room));
    }
    out.check()
}

/// `bytes` cut into about `n` chunks of whole lines (a newline byte is never part of a
/// multi-byte UTF-8 character, so each chunk can be decoded on its own).
fn line_chunks(bytes: &[u8], n: usize) -> Vec<&[u8]> {
    let mut chunks = Vec::with_capacity(n);
    let mut rest = bytes;
    for left in (2..=n).rev() {
        let cut = rest.len() / left;
        match rest[cut..].iter().position(|c| *c == b'\n') {
            Some(i) => {
                let (chunk, tail) = rest.split_at(cut + i + 1);
                chunks.push(chunk);
                rest = tail;
            }
            None => break,
        }
    }
    if !rest.is_empty() || chunks.is_empty() {
        chunks.push(rest);
    }
    chunks
}

/// Parses the lines of `text` into `out`.
fn parse_lines(text: &str, out: &mut Parsed) {
    let mut rest = text;
    while !rest.is_empty() {
        // Fast path for the usual line, a bare IPv4 address (a million of them in a
        // community list): parsed where it stands, its end found by the parse rather than
        // by a search for the newline.
        if let Some((addr, n)) = crate::parse::dotted_quad(rest.as_bytes()) {
            let eol = match &rest.as_bytes()[n..] {
                [] => Some(n),
                [b'\n', ..] => Some(n + 1),
                [b'\r', b'\n', ..] => Some(n + 2),
                _ => None,
            };
            if let Some(eol) = eol {
                out.v4.push(addr);
                rest = &rest[eol..];
                continue;
            }
        }
        let (line, tail) = rest.split_once('\n').unwrap_or((rest, ""));
        rest = tail;
        // An address after indentation, or followed by a comment.
        let t = line.trim_start().as_bytes();
        if let Some((addr, n)) = crate::parse::dotted_quad(t)
            && t.get(n)
                .is_none_or(|c| c.is_ascii_whitespace() || *c == b'#' || *c == b';')
        {
            out.v4.push(addr);
            continue;
        }
        let line = match line.find(['#', ';']) {
            Some(i) => &line[..i],
            None => line,
        };
        // The first field; FireHOL and others put comments after whitespace.
        let Some(field) = line.split_whitespace().next() else {
            continue;
        };
        out.push(field);
    }
}

fn parse_json(bytes: &[u8]) -> Result<Parsed, String> {
    let items: Vec<serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON array: {e}"))?;
    let mut out = Parsed::default();
    for item in &items {
        let s = match item {
            serde_json::Value::String(s) => Some(s.as_str()),
            serde_json::Value::Object(o) => o
                .get("value")
                .or_else(|| o.get("ip"))
                .and_then(serde_json::Value::as_str),
            _ => None,
        };
        match s {
            Some(s) => out.push(s),
            None => out.bad(&item.to_string()),
        }
    }
    out.check()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(p: &Parsed) -> Vec<String> {
        p.entries().map(|t| t.value()).collect()
    }

    #[test]
    fn text_lists_in_firehol_style() {
        let text = "# FireHOL level1\n; another comment\n\n192.0.2.1\n198.51.100.0/24 # a net\n\
                    203.0.113.7\tsome trailing words\n2001:db8::/32\n::ffff:192.0.2.9\n\
                    10.0.0.5/32\n192.0.2.1\n  192.0.2.77 ;x\nnot-an-ip\n";
        let p = parse(text.as_bytes(), BlocklistFormat::Text).expect("a list");
        // IPv4 addresses (including mapped and /32 forms) first, in order, then the rest.
        assert_eq!(
            values(&p),
            [
                "192.0.2.1",
                "203.0.113.7",
                "192.0.2.9",
                "10.0.0.5",
                "192.0.2.1",
                "192.0.2.77",
                "198.51.100.0/24",
                "2001:db8::/32",
            ]
        );
        assert_eq!(p.invalid, 1);
        assert_eq!(p.sample, ["not-an-ip"]);
    }

    #[test]
    fn json_lists_of_strings_or_objects() {
        let json =
            r#"["192.0.2.1", {"value": "198.51.100.0/24"}, {"ip": "203.0.113.7"}, 42, "bad"]"#;
        let p = parse(json.as_bytes(), BlocklistFormat::Json).expect("a list");
        assert_eq!(values(&p), ["192.0.2.1", "203.0.113.7", "198.51.100.0/24"]);
        assert_eq!(p.invalid, 2);
    }

    #[test]
    fn the_fast_path_accepts_what_the_address_parser_accepts() {
        for ok in ["0.0.0.0", "255.255.255.255", "10.0.0.1", "192.168.100.200"] {
            let std: std::net::Ipv4Addr = ok.parse().expect("valid");
            assert_eq!(
                crate::parse::dotted_quad(ok.as_bytes()),
                Some((u32::from(std), ok.len())),
                "{ok}"
            );
        }
        for bad in [
            "256.0.0.1",
            "1.2.3",
            "01.2.3.4",
            "1..2.3",
            "1.2.3.1000",
            "a.b.c.d",
            "",
        ] {
            let whole =
                crate::parse::dotted_quad(bad.as_bytes()).is_some_and(|(_, n)| n == bad.len());
            assert!(!whole, "{bad}");
            assert!(bad.parse::<std::net::Ipv4Addr>().is_err(), "{bad}");
        }
        // A longer last octet is not a shorter address followed by junk.
        let text = b"1.2.3.1000\n1.2.3.4x\n5.6.7.8\n9.9.9.9 # x\n10.0.0.1;y\n";
        let p = parse(text, BlocklistFormat::Text).expect("list");
        assert_eq!(values(&p), ["5.6.7.8", "9.9.9.9", "10.0.0.1"]);
        assert_eq!(p.invalid, 2);
    }

    #[test]
    fn a_large_payload_parses_in_chunks_like_in_one_piece() {
        // Every kind of line, repeated past the parallel threshold, with CRLF endings on
        // some and no final newline.
        let kinds = [
            "192.0.2.1\n",
            "198.51.100.7\r\n",
            "  203.0.113.9 # indented\n",
            "# comment\n",
            "10.0.0.0/8\n",
            "2001:db8::1\n",
            "not-an-ip\r\n",
            "\n",
        ];
        let mut text = String::new();
        let mut i = 0u32;
        while text.len() < 3 * PARALLEL_MIN {
            text.push_str(kinds[i as usize % kinds.len()]);
            // Distinct addresses, so an entry lost or moved at a cut shows.
            text.push_str(&format!(
                "{}.{}.{}.{}\n",
                11 + i % 200,
                (i >> 8) & 255,
                i & 255,
                7
            ));
            i += 1;
        }
        text.push_str("192.0.2.200");
        let whole = parse(text.as_bytes(), BlocklistFormat::Text).expect("a list");
        let mut one = Parsed::default();
        parse_lines(&text, &mut one);
        assert!(line_chunks(text.as_bytes(), 4).len() > 1);
        assert_eq!(whole.v4, one.v4);
        assert_eq!(values(&whole), values(&one));
        assert_eq!(whole.invalid, one.invalid);
        assert_eq!(whole.sample.len(), SAMPLE);
        assert_eq!(whole.v4.last(), Some(&0xc000_02c8));
        // An encoding error past the first chunk is reported at its offset in the payload.
        let mut bytes = text.into_bytes();
        let at = bytes.len() - 100;
        bytes[at] = 0xff;
        let err = parse(&bytes, BlocklistFormat::Text).expect_err("not UTF-8");
        assert!(err.contains(&format!("at byte {at}")), "{err}");
    }

    #[test]
    fn chunks_hold_whole_lines() {
        let text = b"1.1.1.1\n2.2.2.2\n3.3.3.3\n4.4.4.4\n";
        for n in 1..6 {
            let chunks = line_chunks(text, n);
            assert_eq!(chunks.concat(), text, "{n}");
            assert!(chunks.iter().all(|c| c.ends_with(b"\n")), "{n}");
        }
        assert_eq!(line_chunks(b"1.1.1.1", 4), [b"1.1.1.1"]);
    }

    #[test]
    fn garbage_is_rejected() {
        let html = "<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>\n";
        assert!(parse(html.as_bytes(), BlocklistFormat::Text).is_err());
        assert!(parse(b"[\"192.0.2.1\", \"192.0", BlocklistFormat::Json).is_err());
        assert!(parse(b"{\"a\": 1}", BlocklistFormat::Json).is_err());
        assert!(parse(b"", BlocklistFormat::Text).is_err());
        assert!(parse(&[0xff, 0xfe, 0x00, 0x01], BlocklistFormat::Text).is_err());
        // Comments only: a valid, empty list.
        let p = parse(b"# nothing today\n", BlocklistFormat::Text).expect("empty list");
        assert!(p.is_empty());
    }
}
