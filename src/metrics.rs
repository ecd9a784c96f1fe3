//! Metrics: one Prometheus registry shared by every stage, served on `metrics.listen`.
//!
//! Hot paths do not touch it per line: the engine counts locally and adds its counts here
//! once per batch. Gauges that summarise state (active decisions) are computed at scrape
//! time by collectors the daemon registers.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};

/// Labels of a log source.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// The acquisition name.
    pub source: String,
    /// Its type label.
    pub log_type: String,
}

/// Labels of skipped lines.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabels {
    /// The acquisition name.
    pub source: String,
    /// Why (`not_utf8`, `too_long`).
    pub reason: String,
}

/// Labels of a parser node, per source (CrowdSec's "Parser Metrics").
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ParserLabels {
    /// The acquisition name.
    pub source: String,
    /// The stage (`raw`, `parse`, `enrich`).
    pub stage: String,
    /// The parser's name.
    pub parser: String,
}

/// Labels of active decisions.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// Where they come from (`crowdsec`, `cscli`, `lists:<name>`, `CAPI`).
    pub origin: String,
    /// What they ask for (`ban`, `captcha`).
    pub action: String,
}

/// Labels of a Local API request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// The matched route template (`/v1/decisions/{decision_id}`), `unmatched` for a 404.
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// The status code.
    pub code: String,
}

/// Labels of a scenario.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScenarioLabels {
    /// The scenario name.
    pub scenario: String,
}

/// Every metric garrison exports.
pub struct Metrics {
    /// The registry (collectors may be added to it).
    pub registry: Mutex<Registry>,
    /// Lines read per source.
    pub lines_read: Family<SourceLabels, Counter>,
    /// Lines a parser accepted.
    pub lines_parsed: Family<SourceLabels, Counter>,
    /// Lines no parser accepted.
    pub lines_unparsed: Family<SourceLabels, Counter>,
    /// Lines a parser node was tried on (it applies to their type and program; its filter
    /// is part of the try), per source and parser.
    pub parser_hits: Family<ParserLabels, Counter>,
    /// Lines a parser node accepted.
    pub parser_parsed: Family<ParserLabels, Counter>,
    /// Lines a parser node was tried on and rejected.
    pub parser_unparsed: Family<ParserLabels, Counter>,
    /// Lines from whitelisted sources.
    pub lines_whitelisted: Family<SourceLabels, Counter>,
    /// Lines skipped before parsing.
    pub lines_skipped: Family<SkipLabels, Counter>,
    /// Events poured into a scenario's buckets.
    pub pours: Family<ScenarioLabels, Counter>,
    /// Overflows (alerts) per scenario.
    pub overflows: Family<ScenarioLabels, Counter>,
    /// Decisions made by local scenarios.
    pub decisions_made: Counter,
    /// Time from a line's arrival to its decision being stored (seconds).
    pub detection_latency: Histogram,
    /// Local API requests (TCP and the admin socket).
    pub api_requests: Family<ApiLabels, Counter>,
    /// Time from a ban reaching the enforcer to the kernel acknowledging its element
    /// (seconds), one observation per transaction (its oldest ban).
    pub enforcement_latency: Histogram,
}

/// Buckets of the latency histograms (seconds): sub-millisecond to a second.
const LATENCY_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 1.0,
];

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Arc<Metrics> {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("garrison")),
            lines_read: Family::default(),
            lines_parsed: Family::default(),
            lines_unparsed: Family::default(),
            parser_hits: Family::default(),
            parser_parsed: Family::default(),
            parser_unparsed: Family::default(),
            lines_whitelisted: Family::default(),
            lines_skipped: Family::default(),
            pours: Family::default(),
            overflows: Family::default(),
            decisions_made: Counter::default(),
            detection_latency: Histogram::new(LATENCY_BUCKETS),
            api_requests: Family::default(),
            enforcement_latency: Histogram::new(LATENCY_BUCKETS),
        };
        {
            let mut r = m
                .registry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            r.register("lines_read", "Lines read, per source", m.lines_read.clone());
            r.register(
                "lines_parsed",
                "Lines a parser accepted, per source",
                m.lines_parsed.clone(),
            );
            r.register(
                "lines_unparsed",
                "Lines no parser accepted, per source",
                m.lines_unparsed.clone(),
            );
            r.register(
                "parser_hits",
                "Lines a parser node was tried on (its filter included), per source and parser",
                m.parser_hits.clone(),
            );
            r.register(
                "parser_parsed",
                "Lines a parser node accepted, per source and parser",
                m.parser_parsed.clone(),
            );
            r.register(
                "parser_unparsed",
                "Lines a parser node rejected, per source and parser",
                m.parser_unparsed.clone(),
            );
            r.register(
                "lines_whitelisted",
                "Lines from whitelisted sources, per source",
                m.lines_whitelisted.clone(),
            );
            r.register(
                "lines_skipped",
                "Lines skipped before parsing (not UTF-8, too long)",
                m.lines_skipped.clone(),
            );
            r.register(
                "bucket_pours",
                "Events poured into buckets, per scenario",
                m.pours.clone(),
            );
            r.register(
                "bucket_overflows",
                "Bucket overflows (alerts), per scenario",
                m.overflows.clone(),
            );
            r.register(
                "decisions_made",
                "Decisions made by local scenarios",
                m.decisions_made.clone(),
            );
            r.register(
                "detection_latency_seconds",
                "From a line's arrival to its decision being stored",
                m.detection_latency.clone(),
            );
            r.register(
                "api_requests",
                "Local API requests, per route template, method and status code",
                m.api_requests.clone(),
            );
            r.register(
                "enforcement_latency_seconds",
                "From a ban reaching the enforcer to its element being in the kernel set",
                m.enforcement_latency.clone(),
            );
        }
        Arc::new(m)
    }

    /// Exports `garrison_active_decisions{origin, action}`, counted from the store's
    /// in-memory index at each scrape (so it can never drift from the decisions served).
    pub fn register_active_decisions(&self, store: crate::store::Store) {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register_collector(Box::new(ActiveDecisions(store)));
    }

    /// Exports `garrison_blocklist_entries`, `garrison_blocklist_last_success_timestamp_seconds`
    /// and `garrison_blocklist_failing` per list, read from `lists` at each scrape.
    pub fn register_lists(&self, lists: impl Fn() -> Vec<ListGauge> + Send + Sync + 'static) {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register_collector(Box::new(ListStates(Box::new(lists))));
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &r) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}

/// One blocklist's state, as the `garrison_blocklist_*` gauges show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListGauge {
    /// The list's name (`community` for the Central API's own list).
    pub list: String,
    /// Where it is configured: `config` (a `blocklists` entry) or `central` (the Central
    /// API's community list and the lists it links to).
    pub source: &'static str,
    /// Entries with an active decision.
    pub entries: i64,
    /// When it was last applied or found unchanged (ms since the epoch).
    pub last_success: Option<i64>,
    /// Whether its last refresh failed (the previous content stays in force).
    pub failing: bool,
}

/// Labels of a blocklist gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListLabels {
    list: String,
    source: String,
}

/// The scrape-time collector of blocklist states.
struct ListStates(Box<dyn Fn() -> Vec<ListGauge> + Send + Sync>);

impl std::fmt::Debug for ListStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListStates")
    }
}

impl Collector for ListStates {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let lists = (self.0)();
        let entries = Family::<ListLabels, Gauge>::default();
        let success = Family::<ListLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let failing = Family::<ListLabels, Gauge>::default();
        for l in &lists {
            let labels = ListLabels {
                list: l.list.clone(),
                source: l.source.to_string(),
            };
            entries.get_or_create(&labels).set(l.entries);
            if let Some(ms) = l.last_success {
                success.get_or_create(&labels).set(ms as f64 / 1000.0);
            }
            failing.get_or_create(&labels).set(i64::from(l.failing));
        }
        let m = encoder.encode_descriptor(
            "blocklist_entries",
            "Entries of each blocklist with an active decision",
            None,
            Family::<ListLabels, Gauge>::TYPE,
        )?;
        entries.encode(m)?;
        let m = encoder.encode_descriptor(
            "blocklist_last_success_timestamp_seconds",
            "When each blocklist was last applied or found unchanged",
            None,
            Family::<ListLabels, Gauge>::TYPE,
        )?;
        success.encode(m)?;
        let m = encoder.encode_descriptor(
            "blocklist_failing",
            "1 when the last refresh of a blocklist failed (its previous content stays in force)",
            None,
            Family::<ListLabels, Gauge>::TYPE,
        )?;
        failing.encode(m)
    }
}

/// The scrape-time collector of active decisions.
#[derive(Debug)]
struct ActiveDecisions(crate::store::Store);

impl Collector for ActiveDecisions {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Counted by interned ids under the read lock; strings resolved once per group.
        let mut counts: std::collections::HashMap<(u32, u32), i64> = Default::default();
        let labels: Vec<(DecisionLabels, i64)> = {
            let index = self.0.read();
            for d in index.active(crate::store::now_millis()) {
                *counts.entry((d.origin, d.decision_type)).or_default() += 1;
            }
            counts
                .into_iter()
                .map(|((o, t), n)| {
                    let l = DecisionLabels {
                        origin: index.strings.get(o).to_string(),
                        action: index.strings.get(t).to_string(),
                    };
                    (l, n)
                })
                .collect()
        };
        let family = Family::<DecisionLabels, Gauge>::default();
        for (l, n) in labels {
            family.get_or_create(&l).set(n);
        }
        let metric = encoder.encode_descriptor(
            "active_decisions",
            "Active decisions, per origin and action",
            None,
            Family::<DecisionLabels, Gauge>::TYPE,
        )?;
        family.encode(metric)
    }
}

/// Serves `GET /metrics` on `listen` until `shutdown` resolves.
pub async fn serve(
    listen: &str,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "metrics on http://{listen}/metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// One sample of the text format: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with its `_total` suffix for counters).
    pub name: String,
    /// Labels in order.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

/// Reads the samples of an OpenMetrics / Prometheus text exposition (for `garrison metrics`).
pub fn parse_text(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
            None => (head, Vec::new()),
        };
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').trim().to_owned(), value));
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_metrics_read_back() {
        let m = Metrics::new();
        m.lines_read
            .get_or_create(&SourceLabels {
                source: "ssh".into(),
                log_type: "syslog".into(),
            })
            .inc_by(7);
        let samples = parse_text(&m.encode());
        let s = samples
            .iter()
            .find(|s| s.name == "garrison_lines_read_total")
            .expect("sample");
        assert_eq!(s.value, 7.0);
        assert_eq!(
            s.labels,
            vec![
                ("source".to_owned(), "ssh".to_owned()),
                ("log_type".to_owned(), "syslog".to_owned())
            ]
        );
    }
}
