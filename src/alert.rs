//! Alerts: what a scenario emits when a bucket overflows, before profiles turn it into decisions.

use crate::event::{Event, Timestamp};
use std::sync::Arc;

/// The scope of a source or decision (CrowdSec's `Ip`, `Range`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A single address.
    Ip,
    /// A CIDR range.
    Range,
}

impl Scope {
    /// The wire name (`Ip`, `Range`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "Ip",
            Scope::Range => "Range",
        }
    }
}

/// An overflow of a scenario for one source.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The scenario name (`ssh-bf`).
    pub scenario: Arc<str>,
    /// Scope of the source.
    pub scope: Scope,
    /// The source value: an address or a CIDR.
    pub value: String,
    /// Every event poured into the bucket since it was created.
    pub events_count: u64,
    /// Time of the first event.
    pub start_at: Timestamp,
    /// Time of the overflow.
    pub stop_at: Timestamp,
    /// The scenario's `remediation` label: only such alerts get decisions by default.
    pub remediation: bool,
    /// A bounded sample of the events (the bucket's queue).
    pub events: Vec<Event>,
    /// The scenario's labels, flattened to strings.
    pub labels: Vec<(Arc<str>, String)>,
    /// Human-readable summary, CrowdSec style.
    pub message: String,
}
