//! Alerts: what a scenario emits when a bucket overflows, before profiles turn it into decisions.

use crate::detect::Sample;
use crate::event::{Event, FieldId, Timestamp};
use std::sync::{Arc, OnceLock};

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
    pub events: AlertEvents,
    /// The scenario's labels, flattened to strings (shared with the scenario).
    pub labels: Arc<[(Arc<str>, String)]>,
    /// The human-readable summary when it is not the standard one ([`Alert::message`]): an
    /// alert read back from the API keeps the text it came with.
    pub custom_message: Option<String>,
}

impl Alert {
    /// The human-readable summary, CrowdSec style: `Ip 1.2.3.4 performed 'ssh-bf' (6 events
    /// over 3s) at <time>`. A scenario's alerts are summarised when read, not when made:
    /// replay reads none of them.
    pub fn message(&self) -> std::borrow::Cow<'_, str> {
        if let Some(text) = &self.custom_message {
            return std::borrow::Cow::Borrowed(text);
        }
        let span = self.stop_at.duration_since(self.start_at);
        std::borrow::Cow::Owned(format!(
            "{} {} performed '{}' ({} events over {}) at {}",
            self.scope.as_str(),
            self.value,
            self.scenario,
            self.events_count,
            crate::parse::timefmt::format_go_duration(span.unsigned_abs()),
            self.stop_at
        ))
    }
}

/// The events an alert carries. A bucket's queue holds compact samples shared between
/// buckets; most alerts are decided and stored without anyone reading their events as
/// [`Event`]s (replay drops them, the default profiles read only the alert's own fields), so
/// the samples become events only when first read.
#[derive(Debug, Clone, Default)]
pub struct AlertEvents {
    samples: Vec<Sample>,
    events: OnceLock<Vec<Event>>,
}

impl AlertEvents {
    /// A bucket's samples, turned into events when first read.
    pub(crate) fn from_samples(samples: Vec<Sample>) -> Self {
        AlertEvents {
            samples,
            events: OnceLock::new(),
        }
    }

    /// How many events the alert carries.
    pub fn len(&self) -> usize {
        match self.events.get() {
            Some(e) => e.len(),
            None => self.samples.len(),
        }
    }

    /// True when the alert carries no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events (built from the samples on the first call).
    pub fn as_slice(&self) -> &[Event] {
        self.events
            .get_or_init(|| self.samples.iter().map(|s| s.to_event()).collect())
    }

    /// The first non-empty value of a field among the events (`Alert.Meta.<name>`), read
    /// without building the events.
    pub fn first_value(&self, id: FieldId) -> &str {
        let found = match self.events.get() {
            Some(events) => events.iter().map(|e| e.get(id)).find(|v| !v.is_empty()),
            None => self
                .samples
                .iter()
                .map(|s| s.get(id))
                .find(|v| !v.is_empty()),
        };
        found.unwrap_or("")
    }
}

impl From<Vec<Event>> for AlertEvents {
    fn from(events: Vec<Event>) -> Self {
        AlertEvents {
            samples: Vec::new(),
            events: OnceLock::from(events),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_rendered_from_the_alert_unless_it_came_with_one() {
        let start: Timestamp = "2026-11-18T09:46:40Z".parse().expect("a timestamp");
        let stop: Timestamp = "2026-11-18T09:48:43.5Z".parse().expect("a timestamp");
        let mut alert = Alert {
            scenario: Arc::from("ssh-bf"),
            scope: Scope::Ip,
            value: "192.0.2.7".into(),
            events_count: 6,
            start_at: start,
            stop_at: stop,
            remediation: true,
            events: AlertEvents::default(),
            labels: Arc::from([]),
            custom_message: None,
        };
        assert_eq!(
            alert.message(),
            "Ip 192.0.2.7 performed 'ssh-bf' (6 events over 2m3.5s) at 2026-11-18T09:48:43.5Z"
        );
        alert.custom_message = Some("as stored".into());
        assert_eq!(alert.message(), "as stored");
    }
}
