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

fn parse_text(bytes: &[u8]) -> Result<Parsed, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("not UTF-8 text (at byte {})", e.valid_up_to()))?;
    let mut out = Parsed::default();
    for line in text.lines() {
        // Fast path for the usual line, a bare IPv4 address (a million of them in a
        // community list): no search for comments, no UTF-8 field splitting.
        let t = line.trim_start().as_bytes();
        if let Some((addr, n)) = dotted_quad(t)
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
    out.check()
}

/// A dotted-quad IPv4 address at the start of `b` and its length in bytes; `None` for
/// anything else, including octets with a leading zero (which `Ipv4Addr`'s parser refuses
/// too, so both paths accept the same addresses).
fn dotted_quad(b: &[u8]) -> Option<(u32, usize)> {
    let mut addr: u32 = 0;
    let mut i = 0;
    for part in 0..4 {
        if part > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u32 = 0;
        while i - start < 3
            && let Some(d) = b.get(i).filter(|c| c.is_ascii_digit())
        {
            v = v * 10 + u32::from(d - b'0');
            i += 1;
        }
        let len = i - start;
        if len == 0 || v > 255 || (len > 1 && b[start] == b'0') {
            return None;
        }
        addr = addr << 8 | v;
    }
    Some((addr, i))
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
                dotted_quad(ok.as_bytes()),
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
            let whole = dotted_quad(bad.as_bytes()).is_some_and(|(_, n)| n == bad.len());
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
