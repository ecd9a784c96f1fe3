//! Decide: profiles turn alerts into decisions, with escalation for repeat offenders and the
//! admin-range guard.

use crate::alert::{Alert, Scope};
use crate::compile::Ruleset;
use crate::config::model::{DecisionScope, OnSuccess};
use crate::event::Timestamp;
use crate::expr::{DecisionHistory, EvalCtx};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A decision to make about a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The remediation (`ban`).
    pub decision_type: String,
    /// How long.
    pub duration: Duration,
    /// Scope of the value.
    pub scope: Scope,
    /// An address or a CIDR.
    pub value: String,
    /// The scenario that caused it.
    pub scenario: Arc<str>,
    /// The profile that made it.
    pub profile: Arc<str>,
    /// Recorded but not enforced.
    pub simulated: bool,
}

/// Past decisions per value, for escalation and `GetDecisionsCount` (in-memory; the daemon
/// backs it with its store).
#[derive(Debug, Default)]
pub struct History {
    by_value: HashMap<String, Vec<Timestamp>>,
}

impl History {
    /// Records a decision for `value` at `at`.
    pub fn record(&mut self, value: &str, at: Timestamp) {
        self.by_value.entry(value.to_owned()).or_default().push(at);
    }

    /// Decisions for `value` since `since`.
    pub fn count_since(&self, value: &str, since: Timestamp) -> usize {
        self.by_value
            .get(value)
            .map_or(0, |v| v.iter().filter(|t| **t >= since).count())
    }
}

impl DecisionHistory for History {
    fn decisions_count(&self, value: &str) -> i64 {
        self.by_value.get(value).map_or(0, |v| v.len() as i64)
    }
}

/// Runs the profiles over an alert. `now` is the alert time (replay) or the wall clock.
pub fn decide(rs: &Ruleset, alert: &Alert, history: &mut History, now: Timestamp) -> Vec<Decision> {
    let mut out = Vec::new();
    for p in &rs.profiles {
        let ctx = EvalCtx {
            event: None,
            alert: Some(alert),
            queue: None,
            data: &rs.data,
            decisions: Some(&*history),
            writes: Default::default(),
            queue_prefiltered: false,
        };
        // Each filter that holds applies the decisions again (CrowdSec semantics), but a
        // repeated identical decision adds nothing, so one application is kept.
        if !p.filters.iter().any(|f| f.eval_bool(&ctx)) {
            continue;
        }
        for d in &p.decisions {
            let (scope, value) = match (d.scope, alert.scope) {
                (Some(DecisionScope::Range), Scope::Ip) => match range_of(&alert.value) {
                    Some(r) => (Scope::Range, r),
                    None => continue,
                },
                _ => (alert.scope, alert.value.clone()),
            };
            let mut duration = d.duration.0;
            if let Some(e) = &p.escalation {
                let window = jiff::SignedDuration::try_from(e.window.0)
                    .unwrap_or(jiff::SignedDuration::ZERO);
                let since = now.checked_sub(window).unwrap_or(Timestamp::MIN);
                let earlier = history.count_since(&value, since);
                let factor = e.factor.powi(i32::try_from(earlier).unwrap_or(i32::MAX));
                duration = Duration::from_secs_f64(
                    (duration.as_secs_f64() * factor).min(e.max.0.as_secs_f64()),
                );
            }
            out.push(Decision {
                decision_type: d.decision_type.clone(),
                duration,
                scope,
                value,
                scenario: alert.scenario.clone(),
                profile: p.name.clone(),
                simulated: d.simulated,
            });
        }
        if p.on_success == OnSuccess::Break {
            break;
        }
    }
    for d in &out {
        history.record(&d.value, now);
    }
    out
}

/// The /24 (IPv4) or /64 (IPv6) around an address.
fn range_of(ip: &str) -> Option<String> {
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let prefix = if ip.is_ipv4() { 24 } else { 64 };
    ipnet::IpNet::new(ip, prefix)
        .ok()
        .map(|n| n.trunc().to_string())
}
