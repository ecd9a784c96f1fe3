//! Wire formats shared by the server, the CLI and the upstream client: Go duration strings,
//! decision JSON written straight into a buffer, and RFC 3339 times.

use crate::store::{Decision, DecisionIndex, Millis};
use std::io::Write as _;

/// Appends `until - now` as Go's `time.Duration.String()` after `Round(time.Second)`:
/// `4h0m0s`, `59m59s`, `45s`, `0s`, `-1m5s` (no day unit), as CrowdSec computes a
/// decision's `duration` at response time.
pub fn push_go_duration(out: &mut Vec<u8>, ms: i64) {
    // Round half away from zero, like Go's Duration.Round.
    let secs = if ms >= 0 {
        (ms + 500) / 1000
    } else {
        -((-ms + 500) / 1000)
    };
    if secs == 0 {
        out.extend_from_slice(b"0s");
        return;
    }
    if secs < 0 {
        out.push(b'-');
    }
    let s = secs.unsigned_abs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        push_int(out, h);
        out.push(b'h');
    }
    if h > 0 || m > 0 {
        push_int(out, m);
        out.push(b'm');
    }
    push_int(out, s);
    out.push(b's');
}

/// Appends an integer in decimal (no formatting machinery: the stream writes millions).
pub fn push_int(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// [`push_go_duration`] as a `String`.
pub fn go_duration(ms: i64) -> String {
    let mut v = Vec::with_capacity(16);
    push_go_duration(&mut v, ms);
    String::from_utf8(v).unwrap_or_default()
}

/// Appends a JSON string literal.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Appends a decision as CrowdSec's models.Decision, fields in Go's (alphabetical) order:
/// `duration, id, origin, scenario, scope, [simulated], type, value`.
pub fn push_decision(out: &mut Vec<u8>, d: &Decision, index: &DecisionIndex, now: Millis) {
    out.extend_from_slice(b"{\"duration\":\"");
    push_go_duration(out, d.until - now);
    out.extend_from_slice(b"\",\"id\":");
    if d.id < 0 {
        out.push(b'-');
    }
    push_int(out, d.id.unsigned_abs());
    out.extend_from_slice(b",\"origin\":");
    push_json_str(out, index.strings.get(d.origin));
    out.extend_from_slice(b",\"scenario\":");
    push_json_str(out, index.strings.get(d.scenario));
    out.extend_from_slice(b",\"scope\":");
    push_json_str(out, d.target.scope());
    if d.simulated {
        out.extend_from_slice(b",\"simulated\":true");
    }
    out.extend_from_slice(b",\"type\":");
    push_json_str(out, index.strings.get(d.decision_type));
    out.extend_from_slice(b",\"value\":");
    match &d.target {
        crate::store::Target::Ip(ip) => {
            let _ = write!(out, "\"{ip}\"");
        }
        crate::store::Target::Range(net) => {
            let _ = write!(out, "\"{net}\"");
        }
        crate::store::Target::Other { value, .. } => push_json_str(out, value),
    }
    out.push(b'}');
}

/// A time in RFC 3339 (UTC, `Z`), as Go's `time.Time` marshals.
pub fn rfc3339(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Parses an RFC 3339 time (`2020-10-02T17:09:08.1Z`, offsets accepted) to [`Millis`].
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    s.trim()
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_go_strings_rounded_to_the_second() {
        for (ms, want) in [
            (4 * 3_600_000, "4h0m0s"),
            (3_599_400, "59m59s"),
            (3_599_500, "1h0m0s"),
            (45_000, "45s"),
            (0, "0s"),
            (499, "0s"),
            (-499, "0s"),
            (-500, "-1s"),
            (-65_000, "-1m5s"),
            (168 * 3_600_000 - 1000, "167h59m59s"),
        ] {
            assert_eq!(go_duration(ms), want, "{ms} ms");
        }
    }

    #[test]
    fn strings_are_escaped() {
        let mut v = Vec::new();
        push_json_str(&mut v, "manual 'ban' from \"x\"\n");
        assert_eq!(v, br#""manual 'ban' from \"x\"\n""#);
    }
}
