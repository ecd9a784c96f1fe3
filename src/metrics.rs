//! Metrics: one Prometheus registry shared by every stage, served on `metrics.listen`.
//!
//! Hot paths do not touch it per line: the engine counts locally and adds its counts here
//! once per batch. Gauges that summarise state (active decisions) are computed at scrape
//! time by collectors the daemon registers.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Arc<Metrics> {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("garrison")),
            lines_read: Family::default(),
            lines_parsed: Family::default(),
            lines_unparsed: Family::default(),
            lines_whitelisted: Family::default(),
            lines_skipped: Family::default(),
            pours: Family::default(),
            overflows: Family::default(),
            decisions_made: Counter::default(),
            detection_latency: Histogram::new([0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 1.0]),
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
        }
        Arc::new(m)
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
