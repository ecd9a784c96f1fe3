//! The engine thread: batches of lines in, alerts turned into decisions in the store.

use crate::acquire::Batch;
use crate::acquire::lines::{ReadStats, for_each_line};
use crate::alert::Alert;
use crate::compile::Ruleset;
use crate::config::model::Acquisition;
use crate::decide::{History, decide};
use crate::engine::{Clock, Engine, EngineStats, LineSource};
use crate::metrics::{Metrics, ParserLabels, ScenarioLabels, SkipLabels, SourceLabels};
use crate::parse::timefmt::format_go_duration;
use crate::store::{NewAlert, NewDecision, Store, Target};
use crossbeam_channel::{Receiver, select};
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages to the engine thread.
pub enum Control {
    /// Swap in a freshly compiled ruleset.
    Reload(Arc<Ruleset>),
}

/// A source as the engine sees it.
struct Source {
    line: LineSource,
    labels: SourceLabels,
}

fn sources_of(rs: &Ruleset, acquisitions: &[Acquisition]) -> Vec<Source> {
    acquisitions
        .iter()
        .enumerate()
        .map(|(i, a)| Source {
            line: LineSource::new(
                rs,
                &a.log_type,
                a.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ),
            labels: SourceLabels {
                source: a
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}-{i}", a.log_type)),
                log_type: a.log_type.clone(),
            },
        })
        .collect()
}

/// The engine thread's state.
pub struct Worker {
    ruleset: Arc<Ruleset>,
    engine: Engine,
    sources: Vec<Source>,
    store: Store,
    metrics: Arc<Metrics>,
    pours_seen: Vec<u64>,
    /// Per-parser counters by (source, parser index), created on first use so that each
    /// batch only adds to them (no label strings built per batch).
    parser_counters: HashMap<(usize, usize), [Counter; 3]>,
    watchdog: Option<Duration>,
    upstream: Option<crate::api::upstream::Upstream>,
    /// Signals for the Central API (a no-op unless it runs and shares signals).
    signals: crate::capi::SignalSink,
}

impl Worker {
    /// A worker for a ruleset.
    pub fn new(
        ruleset: Arc<Ruleset>,
        store: Store,
        metrics: Arc<Metrics>,
        upstream: Option<crate::api::upstream::Upstream>,
    ) -> Self {
        let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
        let mut engine = Engine::new(ruleset.clone(), Clock::Wall);
        engine.count_parsers();
        Worker {
            engine,
            parser_counters: HashMap::new(),
            sources: sources_of(&ruleset, &ruleset.config.acquisitions),
            pours_seen: vec![0; ruleset.scenarios.len()],
            ruleset,
            store,
            metrics,
            watchdog,
            upstream,
            signals: crate::capi::SignalSink::default(),
        }
    }

    /// Hands the signals of local alerts to the Central API thread through `sink`.
    pub fn with_signals(mut self, sink: crate::capi::SignalSink) -> Self {
        self.signals = sink;
        self
    }

    /// Runs until the batch channel closes; then processes what is left and returns.
    pub fn run(mut self, batches: Receiver<Batch>, control: Receiver<Control>) {
        let tick = crossbeam_channel::tick(Duration::from_secs(1));
        let mut last_ping = Instant::now();
        loop {
            select! {
                recv(batches) -> b => match b {
                    Ok(b) => self.handle(b),
                    Err(_) => break,
                },
                recv(control) -> c => {
                    if let Ok(Control::Reload(rs)) = c {
                        self.reload(rs);
                    }
                },
                recv(tick) -> _ => {
                    self.engine.tick();
                    let alerts = self.engine.take_alerts();
                    self.emit(alerts, None);
                    self.sync_pours();
                }
            }
            // The watchdog is fed from this loop, so a stuck engine gets the service restarted.
            if let Some(every) = self.watchdog
                && last_ping.elapsed() >= every
            {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                last_ping = Instant::now();
            }
        }
        self.sync_pours();
    }

    fn handle(&mut self, batch: Batch) {
        let Some(src) = self.sources.get(batch.source) else {
            return;
        };
        let before = self.engine.stats;
        let mut read = ReadStats::default();
        self.store.begin_group();
        let engine = &mut self.engine;
        for_each_line(&batch.data, &mut read, |line| {
            engine.process(line, &src.line);
        });
        let after = self.engine.stats;
        count_lines(&self.metrics, src, &read, batch.too_long, &before, &after);
        self.count_parsers(batch.source);
        if self.engine.has_alerts() {
            let alerts = self.engine.take_alerts();
            self.emit(alerts, Some(batch.read_at));
        }
        // The batch's decisions and its cursor are committed together.
        self.store.end_group(batch.cursor);
    }

    fn reload(&mut self, rs: Arc<Ruleset>) {
        let alerts = self.engine.take_alerts();
        self.emit(alerts, None);
        self.sync_pours();
        // Unchanged scenarios keep their buckets: a reload must not reset an attacker's
        // progress towards a ban.
        let kept = self.engine.reload(rs.clone());
        self.engine.count_parsers();
        // Parser indices and sources change with the rules: counters are looked up again.
        self.parser_counters.clear();
        self.sources = sources_of(&rs, &rs.config.acquisitions);
        self.pours_seen = vec![0; rs.scenarios.len()];
        self.ruleset = rs;
        tracing::info!(
            scenarios = self.ruleset.scenarios.len(),
            kept_buckets = kept.len(),
            "new rules in force"
        );
    }

    /// Adds the engine's per-parser counts (one batch of one source) to the metrics.
    fn count_parsers(&mut self, source: usize) {
        let (metrics, ruleset, sources, cache) = (
            &self.metrics,
            &self.ruleset,
            &self.sources,
            &mut self.parser_counters,
        );
        self.engine.take_parser_counts(|i, parsed, unparsed| {
            let counters = cache.entry((source, i)).or_insert_with(|| {
                let labels = parser_labels(ruleset, sources, source, i);
                [
                    metrics.parser_hits.get_or_create(&labels).clone(),
                    metrics.parser_parsed.get_or_create(&labels).clone(),
                    metrics.parser_unparsed.get_or_create(&labels).clone(),
                ]
            });
            counters[0].inc_by(parsed + unparsed);
            counters[1].inc_by(parsed);
            counters[2].inc_by(unparsed);
        });
    }

    fn sync_pours(&mut self) {
        let stats = &self.engine.detector_mut().stats;
        for (i, sc) in self.ruleset.scenarios.iter().enumerate() {
            let now = stats.pours.get(i).copied().unwrap_or(0);
            let seen = self.pours_seen.get(i).copied().unwrap_or(0);
            if now > seen {
                self.metrics
                    .pours
                    .get_or_create(&ScenarioLabels {
                        scenario: sc.name.to_string(),
                    })
                    .inc_by(now - seen);
            }
            if let Some(s) = self.pours_seen.get_mut(i) {
                *s = now;
            }
        }
    }

    /// Alerts → profiles → decisions in the store.
    fn emit(&mut self, alerts: Vec<Alert>, read_at: Option<Instant>) {
        for alert in alerts {
            self.metrics
                .overflows
                .get_or_create(&ScenarioLabels {
                    scenario: alert.scenario.to_string(),
                })
                .inc();
            let now = jiff::Timestamp::now();
            let target = match Target::parse(alert.scope.as_str(), &alert.value) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(scenario = %alert.scenario, error = %e, "alert with an unusable source");
                    continue;
                }
            };
            let mut history = History::default();
            for d in self.store.read().on_target(&target) {
                if let Ok(t) = jiff::Timestamp::from_millisecond(d.created_at) {
                    history.record(&alert.value, t);
                }
            }
            let decisions = decide(&self.ruleset, &alert, &mut history, now);
            let new: Vec<NewDecision> = decisions
                .iter()
                .filter_map(|d| {
                    let target = Target::parse(d.scope.as_str(), &d.value).ok()?;
                    Some(NewDecision {
                        origin: "crowdsec".into(),
                        scenario: d.scenario.to_string(),
                        decision_type: d.decision_type.clone(),
                        target,
                        until: now.as_millisecond() + d.duration.as_millis() as i64,
                        simulated: d.simulated,
                    })
                })
                .collect();
            let payload = alert_payload(&self.ruleset, &alert);
            if let Some(up) = &self.upstream {
                // The upstream applies its own profiles: the alert goes without decisions.
                let mut a = payload.clone();
                if let Some(o) = a.as_object_mut() {
                    o.insert("scenario".into(), alert.scenario.to_string().into());
                    o.insert("message".into(), alert.message().into_owned().into());
                    o.insert("events_count".into(), alert.events_count.into());
                    o.insert("start_at".into(), alert.start_at.to_string().into());
                    o.insert("stop_at".into(), alert.stop_at.to_string().into());
                    o.insert("simulated".into(), false.into());
                    o.insert("decisions".into(), serde_json::Value::Array(Vec::new()));
                }
                up.push(a);
            }
            // Only the scenario, source, times and decisions are shared, never the events.
            let shared = self.signals.active().then(|| new.clone());
            let added = self.store.add(
                Some(NewAlert {
                    machine_id: "garrison".into(),
                    scenario: alert.scenario.to_string(),
                    message: alert.message().into_owned(),
                    events_count: alert.events_count as i64,
                    start_at: alert.start_at.as_millisecond(),
                    stop_at: alert.stop_at.as_millisecond(),
                    source_scope: alert.scope.as_str().into(),
                    source_value: alert.value.clone(),
                    remediation: alert.remediation,
                    simulated: false,
                    payload,
                }),
                new,
            );
            if let Some(made) = shared
                && let Some(signal) =
                    crate::capi::Signal::from_alert(&alert, &made, &added, now.as_millisecond())
            {
                self.signals.push(signal);
            }
            self.metrics
                .decisions_made
                .inc_by(added.decision_ids.len() as u64);
            if let Some(t) = read_at {
                self.metrics
                    .detection_latency
                    .observe(t.elapsed().as_secs_f64());
            }
            let durations: Vec<String> = decisions
                .iter()
                .map(|d| format!("{} {}", d.decision_type, format_go_duration(d.duration)))
                .collect();
            tracing::info!(
                scenario = %alert.scenario,
                source_ip = %alert.value,
                events = alert.events_count,
                alert_id = added.alert_id,
                decision_ids = ?added.decision_ids,
                decisions = %durations.join(", "),
                "{}",
                alert.message()
            );
        }
    }
}

/// The labels of parser `index` (stages flattened in order) for lines of `source`.
fn parser_labels(rs: &Ruleset, sources: &[Source], source: usize, index: usize) -> ParserLabels {
    let mut i = index;
    let mut found = None;
    for (stage, parsers) in crate::rules::model::Stage::ALL.iter().zip(&rs.stages) {
        if let Some(p) = parsers.get(i) {
            found = Some((stage.as_str(), p.name.to_string()));
            break;
        }
        i -= parsers.len();
    }
    let (stage, parser) = found.unwrap_or(("?", String::new()));
    ParserLabels {
        source: sources
            .get(source)
            .map(|s| s.labels.source.clone())
            .unwrap_or_default(),
        stage: stage.to_owned(),
        parser,
    }
}

fn count_lines(
    m: &Metrics,
    src: &Source,
    read: &ReadStats,
    too_long_at_source: u64,
    before: &EngineStats,
    after: &EngineStats,
) {
    m.lines_read
        .get_or_create(&src.labels)
        .inc_by(read.lines + read.not_utf8 + read.too_long + too_long_at_source);
    m.lines_parsed
        .get_or_create(&src.labels)
        .inc_by(after.parsed - before.parsed);
    m.lines_unparsed
        .get_or_create(&src.labels)
        .inc_by(after.unparsed - before.unparsed);
    if after.whitelisted > before.whitelisted {
        m.lines_whitelisted
            .get_or_create(&src.labels)
            .inc_by(after.whitelisted - before.whitelisted);
    }
    for (reason, n) in [
        ("not_utf8", read.not_utf8),
        ("too_long", read.too_long + too_long_at_source),
    ] {
        if n > 0 {
            m.lines_skipped
                .get_or_create(&SkipLabels {
                    source: src.labels.source.clone(),
                    reason: reason.into(),
                })
                .inc_by(n);
        }
    }
}

/// The alert as CrowdSec's API shows it (what `GET /v1/alerts` and `garrison alerts inspect`
/// return beyond the indexed columns).
fn alert_payload(rs: &Ruleset, alert: &Alert) -> serde_json::Value {
    let scenario = rs.scenarios.iter().find(|s| s.name == alert.scenario);
    let events: Vec<serde_json::Value> = alert
        .events
        .as_slice()
        .iter()
        .map(|e| {
            let meta: Vec<serde_json::Value> = crate::cli::replay::meta_of(rs, e)
                .into_iter()
                .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                .collect();
            serde_json::json!({"timestamp": e.time.to_string(), "meta": meta})
        })
        .collect();
    let labels: serde_json::Map<String, serde_json::Value> = alert
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "kind": "crowdsec",
        "capacity": scenario.map_or(0, |s| s.capacity),
        "leakspeed": scenario
            .and_then(|s| s.leakspeed)
            .map(|d| format_go_duration(d.0))
            .unwrap_or_default(),
        "scenario_hash": "",
        "scenario_version": "",
        "remediation": alert.remediation,
        "labels": labels,
        "events": events,
        "source": {
            "scope": alert.scope.as_str(),
            "value": alert.value,
            "ip": if alert.scope == crate::alert::Scope::Ip { alert.value.as_str() } else { "" },
            "range": if alert.scope == crate::alert::Scope::Range { alert.value.as_str() } else { "" },
        },
    })
}
