//! The parse stage: raw lines into events.

pub mod pipeline;
pub mod syslog;
pub mod timefmt;

pub use pipeline::{Outcome, Pipeline, TraceStep};

/// Parses an address as garrison stores it: IPv4-mapped IPv6 (`::ffff:192.0.2.1`) becomes
/// IPv4, so one attacker is one key whatever the log wrote.
pub fn normalize_ip(s: &str) -> Option<std::net::IpAddr> {
    let ip: std::net::IpAddr = s.trim().parse().ok()?;
    Some(match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    })
}
