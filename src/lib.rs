//! garrison: a declarative, CrowdSec-compatible intrusion-prevention appliance.
//!
//! The daemon is a pipeline, one module per stage:
//! acquire → parse → detect → decide → store → enforce / serve,
//! with the configuration compiler (`config`, `rules`, `compile`, `expr`) in front.

pub mod acquire;
pub mod alert;
pub mod allocator;
pub mod api;
pub mod blocklists;
pub mod capi;
pub mod cli;
pub mod compile;
pub mod config;
pub mod daemon;
pub mod data;
pub mod decide;
pub mod detect;
pub mod enforce;
pub mod engine;
pub mod event;
pub mod expr;
pub mod grok;
pub mod metrics;
pub mod parse;
pub mod rules;
pub mod schema;
pub mod store;

/// Hashes values looked up in tables built from the rules (data lists, the verdict cache,
/// the scenario index): lookups cannot grow or reshape them, so a fast seeded hash is
/// enough. Keys an attacker inserts (bucket keys, `distinct` values) use SipHash, see
/// `detect`.
pub(crate) type FastState = foldhash::fast::RandomState;

/// `n` in decimal, written at the end of `buf` (no formatting machinery: the decision
/// stream writes millions of numbers, the parser statics one or two a line).
pub(crate) fn decimal(n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    let mut rest = n;
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}
