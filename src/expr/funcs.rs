//! Helper functions shared by the checker and the evaluator (CrowdSec `exprhelpers` semantics).

use super::{List, SignedDuration, Value};
use crate::event::Timestamp;
use std::net::IpAddr;

/// Formats a value like Go's `fmt.Sprint`.
pub(crate) fn go_sprint(v: &Value<'_>) -> String {
    match v {
        Value::Nil => "<nil>".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => go_float(*f),
        Value::Str(s) => s.to_string(),
        Value::Duration(d) => go_duration_string(*d),
        Value::Time(t) => t.to_string(),
        Value::List(l) => {
            let mut out = String::from("[");
            for i in 0..l.len() {
                if i > 0 {
                    out.push(' ');
                }
                if let Some(v) = l.get(i) {
                    out.push_str(&go_sprint(&v));
                }
            }
            out.push(']');
            out
        }
        Value::Event(_) => "<event>".to_owned(),
        Value::Alert(a) => format!("<alert {}>", a.scenario),
    }
}

/// Formats a float like Go's `%v` (shortest repr, exponent outside 1e-4..1e21).
pub(crate) fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e21).contains(&a) {
        let s = format!("{f:e}");
        if let Some((mant, exp)) = s.split_once('e') {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            let digits = if digits.len() < 2 {
                format!("0{digits}")
            } else {
                digits.to_owned()
            };
            return format!("{mant}e{sign}{digits}");
        }
        return s;
    }
    format!("{f}")
}

/// Formats a duration like Go's `time.Duration.String` (`1h30m0s`, `1.5s`, `0s`).
pub(crate) fn go_duration_string(d: SignedDuration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 {
            ("ns", 1u128)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&frac(u, div));
        out.push_str(unit);
        return out;
    }
    let h = u / 3_600_000_000_000;
    let rem = u % 3_600_000_000_000;
    let m = rem / 60_000_000_000;
    let s_ns = rem % 60_000_000_000;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&frac(s_ns, 1_000_000_000));
    out.push('s');
    out
}

fn frac(v: u128, div: u128) -> String {
    let whole = v / div;
    let rest = v % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let f = format!("{rest:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// Go's `strings.ToUpper`, rune by rune (characters without a one-rune upper case stay).
pub(crate) fn go_upper(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    s.chars()
        .map(|c| {
            let mut u = c.to_uppercase();
            match (u.next(), u.next()) {
                (Some(x), None) => x,
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.ToLower`, rune by rune.
pub(crate) fn go_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars()
        .map(|c| {
            let mut u = c.to_lowercase();
            match (u.next(), u.next()) {
                (Some(x), None) => x,
                _ => c,
            }
        })
        .collect()
}

/// Go's `time.ParseDuration`.
pub(crate) fn parse_go_duration(s: &str) -> Option<SignedDuration> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." {
            return None;
        }
        let v: f64 = num.parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let mult: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += v * mult;
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return None;
    }
    let nanos = total.round() as i64;
    Some(SignedDuration::from_nanos(if neg { -nanos } else { nanos }))
}

/// CrowdSec's `JsonExtract`: a dotted path (`a.b`, `a.[0]`); strings unquoted, other values as JSON.
pub(crate) fn json_extract(blob: &str, path: &str) -> String {
    let Ok(root) = serde_json::from_str::<serde_json::Value>(blob) else {
        return String::new();
    };
    let mut cur = &root;
    if !path.is_empty() {
        for part in path.split('.') {
            let next = if let Some(idx) = part.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
                idx.parse::<usize>().ok().and_then(|i| cur.get(i))
            } else {
                cur.get(part)
            };
            match next {
                Some(n) => cur = n,
                None => return String::new(),
            }
        }
    }
    match cur {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Go's `strconv.ParseFloat`, 0 on error (CrowdSec's `Atof`).
pub(crate) fn atof(s: &str) -> f64 {
    s.trim().parse::<f64>().unwrap_or(0.0)
}

/// Parses an IP the way Go's `net.ParseIP` does (no zone, no brackets).
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok()
}

/// CrowdSec's `IpInRange(ip, cidr)`.
pub(crate) fn ip_in_range(ip: &str, cidr: &str) -> bool {
    let (Some(ip), Ok(net)) = (parse_ip(ip), cidr.parse::<ipnet::IpNet>()) else {
        return false;
    };
    net_contains(&net, ip)
}

/// True when `net` contains `ip` (IPv4-mapped IPv6 addresses match IPv4 networks).
pub(crate) fn net_contains(net: &ipnet::IpNet, ip: IpAddr) -> bool {
    if net.contains(&ip) {
        return true;
    }
    match (net, ip) {
        (ipnet::IpNet::V4(n), IpAddr::V6(v6)) => {
            v6.to_ipv4_mapped().is_some_and(|v4| n.contains(&v4))
        }
        _ => false,
    }
}

/// CrowdSec's `IpToRange(ip, "/64")`: the network of `ip` with that prefix, `""` on error.
pub(crate) fn ip_to_range(ip: &str, mask: &str) -> String {
    let Some(addr) = parse_ip(ip) else {
        return String::new();
    };
    let Ok(len) = mask.trim_start_matches('/').parse::<u8>() else {
        return String::new();
    };
    match ipnet::IpNet::new(addr, len) {
        Ok(n) => n.trunc().to_string(),
        Err(_) => String::new(),
    }
}

/// Go's `strings.Split`.
pub(crate) fn go_split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        return s.chars().map(String::from).collect();
    }
    s.split(sep).map(str::to_owned).collect()
}

/// Percent-decoding (`PathUnescape`; with `plus`, `+` is a space as in `QueryUnescape`).
pub(crate) fn unescape(s: &str, plus: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// CrowdSec's `MedianInterval` of the intervals `iv` (reordered) between successive
/// times, clamped to a duration.
fn median_of_intervals(iv: &mut [i128]) -> SignedDuration {
    let med = match *iv {
        [] => 0,
        [a] => a,
        [a, b] => (a + b) / 2,
        // The hub's conditions take the median of the last four times: three intervals,
        // whose median needs no sort.
        [a, b, c] => a.min(b).max(c.min(a.max(b))),
        _ => {
            iv.sort_unstable();
            let n = iv.len();
            if n % 2 == 1 {
                iv[n / 2]
            } else {
                (iv[n / 2 - 1] + iv[n / 2]) / 2
            }
        }
    };
    let med = med.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    SignedDuration::from_nanos(med)
}

/// CrowdSec's `ParseUnix`: a Unix time (seconds, fractional, or milliseconds) as RFC 3339.
pub(crate) fn parse_unix(s: &str) -> String {
    let s = s.trim();
    let ts = if !s.contains('.') && s.len() > 10 {
        s.parse::<i64>()
            .ok()
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
    } else {
        s.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(|f| {
                let secs = f.trunc();
                if secs.abs() > 1e15 {
                    return None;
                }
                let nanos = ((f - secs) * 1e9).round() as i32;
                Timestamp::new(secs as i64, nanos.clamp(-999_999_999, 999_999_999)).ok()
            })
    };
    ts.map(rfc3339).unwrap_or_default()
}

/// RFC 3339 in UTC, whole seconds (Go's `time.RFC3339`).
pub(crate) fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A small `fmt.Sprintf`: `%s %d %v %f %q %x %t %%`, width/precision for `%f` and `%d`.
pub(crate) fn sprintf(fmt: &str, args: &[Value<'_>]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut argi = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&d) = it.peek() {
            if d.is_ascii_digit() || d == '.' || d == '-' || d == '+' {
                spec.push(d);
                it.next();
            } else {
                break;
            }
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        argi += 1;
        let (width, prec) = match spec.split_once('.') {
            Some((w, p)) => (w.parse::<usize>().ok(), p.parse::<usize>().ok()),
            None => (
                spec.trim_start_matches(['-', '+']).parse::<usize>().ok(),
                None,
            ),
        };
        let s = match (verb, arg) {
            ('d', Value::Int(i)) => i.to_string(),
            ('f', Value::Float(f)) => format!("{:.*}", prec.unwrap_or(6), f),
            ('f', Value::Int(i)) => format!("%!f(int={i})"),
            ('x', Value::Int(i)) => format!("{i:x}"),
            ('x', Value::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('q', Value::Str(s)) => format!("{s:?}"),
            ('s' | 'v' | 't', v) => go_sprint(v),
            ('d', v) => format!("%!d({})", go_sprint(v)),
            (_, v) => format!("%!{verb}({})", go_sprint(v)),
        };
        match width {
            Some(w) if s.chars().count() < w => {
                let pad = " ".repeat(w - s.chars().count());
                if spec.starts_with('-') {
                    out.push_str(&s);
                    out.push_str(&pad);
                } else {
                    out.push_str(&pad);
                    out.push_str(&s);
                }
            }
            _ => out.push_str(&s),
        }
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA");
        for a in &args[argi..] {
            out.push(' ');
            out.push_str(&go_sprint(a));
        }
        out.push(')');
    }
    out
}

/// Go's `strings.Trim(s, cutset)` family.
pub(crate) fn trim_set<'s>(s: &'s str, cutset: &str, left: bool, right: bool) -> &'s str {
    let f = |c: char| cutset.contains(c);
    match (left, right) {
        (true, true) => s.trim_matches(f),
        (true, false) => s.trim_start_matches(f),
        (false, true) => s.trim_end_matches(f),
        _ => s,
    }
}

/// The times in a list value, if every element is one.
/// Lists of at most this many times are handled on the stack.
const INLINE_TIMES: usize = 32;

/// Times a median is most often taken of (the hub's conditions read four).
const FEW_TIMES: usize = 8;

/// `MedianInterval` of a list of times (`Time` values or events); `None` if an element is
/// neither.
pub(crate) fn median_interval_of(l: &List<'_>) -> Option<SignedDuration> {
    median_interval_by(l.len(), |i| match l.get(i)? {
        Value::Time(t) => Some(t.as_nanosecond()),
        Value::Event(e) => Some(e.time.as_nanosecond()),
        _ => None,
    })
}

/// CrowdSec's `MedianInterval` (the median of successive differences) of `n` times, read
/// in order by index as Unix nanoseconds (`None` when one cannot be read). The intervals
/// of the few times a condition reads stay on the stack: no allocation, and for up to
/// [`FEW_TIMES`] no 32-slot array to clear.
pub(crate) fn median_interval_by(
    n: usize,
    nanos: impl Fn(usize) -> Option<i128>,
) -> Option<SignedDuration> {
    fn intervals(iv: &mut [i128], nanos: impl Fn(usize) -> Option<i128>) -> Option<SignedDuration> {
        let mut prev = nanos(0)?;
        for (i, d) in iv.iter_mut().enumerate() {
            let t = nanos(i + 1)?;
            *d = t - prev;
            prev = t;
        }
        Some(median_of_intervals(iv))
    }
    match n {
        0 => Some(SignedDuration::ZERO),
        _ if n <= FEW_TIMES => intervals(&mut [0; FEW_TIMES][..n - 1], nanos),
        _ if n <= INLINE_TIMES => intervals(&mut [0; INLINE_TIMES][..n - 1], nanos),
        _ => intervals(&mut vec![0; n - 1], nanos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn median_interval(times: &[Timestamp]) -> SignedDuration {
        median_interval_by(times.len(), |i| times.get(i).map(|t| t.as_nanosecond()))
            .expect("every element is a time")
    }

    #[test]
    fn median_intervals_of_every_length_match_a_sorted_reference() {
        // Irregular gaps, some negative (times need not be in order), some equal.
        let mut t = Timestamp::UNIX_EPOCH;
        let mut times = Vec::new();
        for k in 0..70i64 {
            times.push(t);
            let gap = (k * 7919) % 97 - 20;
            t = t
                .checked_add(SignedDuration::from_millis(gap * 1_000 + k))
                .expect("in range");
        }
        for n in 0..times.len() {
            let slice = &times[..n];
            let mut iv: Vec<i128> = slice
                .windows(2)
                .map(|w| w[1].as_nanosecond() - w[0].as_nanosecond())
                .collect();
            iv.sort_unstable();
            let want = match iv.len() {
                0 => 0,
                m if m % 2 == 1 => iv[m / 2],
                m => (iv[m / 2 - 1] + iv[m / 2]) / 2,
            };
            assert_eq!(
                median_interval(slice),
                SignedDuration::from_nanos(want as i64),
                "{n} times"
            );
        }
        // Three intervals in every order, with and without ties.
        for gaps in [[-5i64, 2, 9], [3, 3, 1], [4, 4, 4], [0, -7, 0]] {
            for order in [
                [0, 1, 2],
                [0, 2, 1],
                [1, 0, 2],
                [1, 2, 0],
                [2, 0, 1],
                [2, 1, 0],
            ] {
                let mut t = Timestamp::UNIX_EPOCH;
                let mut times = vec![t];
                for &k in &order {
                    t = t
                        .checked_add(SignedDuration::from_secs(gaps[k]))
                        .expect("in range");
                    times.push(t);
                }
                let mut sorted = gaps;
                sorted.sort_unstable();
                assert_eq!(
                    median_interval(&times),
                    SignedDuration::from_secs(sorted[1]),
                    "{gaps:?} in order {order:?}"
                );
            }
        }
    }
}
