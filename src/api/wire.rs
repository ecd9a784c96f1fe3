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
    out.extend_from_slice(crate::decimal(n, &mut [0; 20]).as_bytes());
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

/// Decision UUIDs, derived instead of stored: SHA-256 over a random per-database namespace,
/// the decision's id and its creation time, shaped as an RFC 9562 version-8 UUID.
///
/// The id and creation time are what the database keeps for every decision, so a decision
/// has the same UUID in the stream, in its alert and after a restart, and no schema change
/// or per-decision memory is needed. The creation time keeps a UUID unique even if an id is
/// handed out again after the newest rows were pruned. The namespace makes UUIDs differ
/// between databases, as CrowdSec's random ones do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionUuids {
    namespace: [u8; 16],
}

impl DecisionUuids {
    /// UUIDs in `namespace` (16 random bytes kept with the database).
    pub fn new(namespace: [u8; 16]) -> DecisionUuids {
        DecisionUuids { namespace }
    }

    /// The UUID of the decision with this id and creation time.
    pub fn of(&self, id: i64, created_at: Millis) -> uuid::Uuid {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(self.namespace);
        h.update(id.to_be_bytes());
        h.update(created_at.to_be_bytes());
        let digest = h.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    /// Appends the UUID of `d` as a JSON string.
    fn push(&self, out: &mut Vec<u8>, d: &Decision) {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        out.push(b'"');
        out.extend_from_slice(
            self.of(d.id, d.created_at)
                .hyphenated()
                .encode_lower(&mut buf)
                .as_bytes(),
        );
        out.push(b'"');
    }
}

/// Appends a decision as CrowdSec's models.Decision, fields in Go's (alphabetical) order:
/// `duration, id, origin, scenario, scope, [simulated], type, [uuid], value`. The stream
/// carries `uuid`; `GET /v1/decisions` does not (`uuids` is `None`), as in CrowdSec.
pub fn push_decision(
    out: &mut Vec<u8>,
    d: &Decision,
    index: &DecisionIndex,
    now: Millis,
    uuids: Option<&DecisionUuids>,
) {
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
    if let Some(u) = uuids {
        out.extend_from_slice(b",\"uuid\":");
        u.push(out, d);
    }
    out.extend_from_slice(b",\"value\":");
    match &d.target {
        crate::store::Target::Ip(ip) => {
            let _ = write!(out, "\"{ip}\"");
        }
        crate::store::Target::Range(net) => {
            let _ = write!(out, "\"{net}\"");
        }
        crate::store::Target::Other(o) => push_json_str(out, &o.value),
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
    fn decision_uuids_are_stable_version_8_and_distinct() {
        let a = DecisionUuids::new([7; 16]);
        let u = a.of(42, 1_700_000_000_000);
        // Same inputs, same UUID (what keeps it stable across restarts).
        assert_eq!(u, DecisionUuids::new([7; 16]).of(42, 1_700_000_000_000));
        assert_eq!(u.get_version_num(), 8);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        // Any input changed: another UUID.
        for other in [
            a.of(43, 1_700_000_000_000),
            a.of(42, 1_700_000_000_001),
            DecisionUuids::new([8; 16]).of(42, 1_700_000_000_000),
        ] {
            assert_ne!(u, other);
        }
        let many: std::collections::HashSet<_> = (0..10_000).map(|id| a.of(id, 0)).collect();
        assert_eq!(many.len(), 10_000);
    }

    #[test]
    fn strings_are_escaped() {
        let mut v = Vec::new();
        push_json_str(&mut v, "manual 'ban' from \"x\"\n");
        assert_eq!(v, br#""manual 'ban' from \"x\"\n""#);
    }
}
