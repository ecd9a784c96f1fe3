//! The engine: one line through parse → detect, collecting alerts. The same engine drives
//! `garrison replay` (buckets on the lines' own time) and the daemon (buckets on the wall
//! clock); only the clock and the sink differ.

use crate::alert::Alert;
use crate::compile::Ruleset;
use crate::detect::Detector;
use crate::event::{Event, FieldId, FieldValue, Namespace, Timestamp};
use crate::parse::timefmt::TimeContext;
use crate::parse::{Outcome, Pipeline};
use std::sync::Arc;

/// Which time the buckets run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The time written in each line (forensic replay). Lines without one are not poured.
    EventTime,
    /// The wall clock (live mode), as CrowdSec does outside its time-machine mode.
    Wall,
}

/// Where lines come from: the acquisition `type` and its labels, resolved once per source.
#[derive(Debug, Clone)]
pub struct LineSource {
    /// The `type` label that selects the parsers ([`crate::event::intern`]ed).
    pub log_type: &'static str,
    /// Labels as field slots (labels no rule reads are dropped), values interned.
    labels: Vec<(FieldId, &'static str)>,
}

impl LineSource {
    /// A source of `log_type` with `labels` (`evt.Line.Labels.*`).
    pub fn new<'a>(
        rs: &Ruleset,
        log_type: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let labels = labels
            .into_iter()
            .filter_map(|(k, v)| {
                rs.fields
                    .get(Namespace::Labels, k)
                    .map(|id| (id, crate::event::intern(v)))
            })
            .collect();
        LineSource {
            log_type: crate::event::intern(log_type),
            labels,
        }
    }
}

/// Line counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct EngineStats {
    /// Lines given to the engine.
    pub lines: u64,
    /// Lines a parser accepted (whitelisted ones included).
    pub parsed: u64,
    /// Lines no parser accepted.
    pub unparsed: u64,
    /// Parsed lines from a whitelisted source.
    pub whitelisted: u64,
    /// Parsed lines without a timestamp (replay cannot place them in time).
    pub no_time: u64,
}

/// Parse and detect, with scratch state reused across lines.
pub struct Engine {
    pipeline: Pipeline,
    detector: Detector,
    clock: Clock,
    event: Event,
    /// The latest bucket time seen: the event time in replay, the wall clock live.
    now: Timestamp,
    alerts: Vec<Alert>,
    /// Set by [`Engine::summaries_only`].
    summaries_only: bool,
    /// Counters.
    pub stats: EngineStats,
}

impl Engine {
    /// An engine for a compiled ruleset.
    pub fn new(ruleset: Arc<Ruleset>, clock: Clock) -> Self {
        let now = jiff::Timestamp::now();
        Engine {
            pipeline: Pipeline::new(ruleset.clone(), TimeContext::new(now)),
            event: Event::new(String::new(), now, ruleset.fields.len()),
            detector: Detector::new(ruleset),
            clock,
            now: match clock {
                Clock::EventTime => jiff::Timestamp::UNIX_EPOCH,
                Clock::Wall => now,
            },
            alerts: Vec::new(),
            summaries_only: false,
            stats: EngineStats::default(),
        }
    }

    /// The engine's alerts will be read for their summaries only (scenario, source,
    /// count, times: what replay prints). Unless a profile reads their events
    /// ([`Ruleset::profiles_read_alert_events`]), buckets then keep no event samples
    /// ([`Detector::without_alert_events`]) and parsers write only the fields some rule
    /// reads ([`Pipeline::skip_unread_fields`]). Returns whether they do; a reload
    /// decides again for its rules.
    pub fn summaries_only(&mut self) -> bool {
        self.summaries_only = true;
        if self.ruleset().profiles_read_alert_events() {
            return false;
        }
        self.detector.without_alert_events();
        self.pipeline.skip_unread_fields();
        true
    }

    /// Counts, per parser node, the lines it was tried on and accepted (the daemon's
    /// per-parser metrics); off by default, as replay does not report them.
    pub fn count_parsers(&mut self) {
        self.pipeline.count_parsers();
    }

    /// Calls `f(parser index, parsed, unparsed)` for every parser that saw lines since the
    /// last call, and resets the counts. Indices follow the ruleset's stages in order.
    pub fn take_parser_counts(&mut self, mut f: impl FnMut(usize, u64, u64)) {
        if let Some(counts) = self.pipeline.parser_counts.as_mut() {
            for (i, c) in counts.iter_mut().enumerate() {
                if *c != (0, 0) {
                    f(i, c.0, c.1);
                    *c = (0, 0);
                }
            }
        }
    }

    /// Swaps in a new ruleset (live reload). Buckets of scenarios whose definition did not
    /// change are kept, as are the clock, the whitelist switch and the counters; pending
    /// alerts must have been taken first. Returns the names of the scenarios that kept
    /// their buckets.
    pub fn reload(&mut self, ruleset: Arc<Ruleset>) -> Vec<Arc<str>> {
        let mut next = Engine::new(ruleset, self.clock);
        next.pipeline.no_whitelist = self.pipeline.no_whitelist;
        next.now = self.now;
        next.stats = self.stats;
        next.alerts = std::mem::take(&mut self.alerts);
        if self.summaries_only {
            let _ = next.summaries_only();
        }
        let old = std::mem::replace(self, next);
        self.detector.adopt(old.detector)
    }

    /// The ruleset.
    pub fn ruleset(&self) -> &Arc<Ruleset> {
        self.pipeline.ruleset()
    }

    /// The detector, to restrict scenarios or read its counters.
    pub fn detector_mut(&mut self) -> &mut Detector {
        &mut self.detector
    }

    /// Disables the whitelists (hub fixtures attack from private addresses).
    pub fn set_no_whitelist(&mut self, no_whitelist: bool) {
        self.pipeline.no_whitelist = no_whitelist;
    }

    /// Runs one line; alerts accumulate until [`Engine::take_alerts`].
    pub fn process(&mut self, line: &str, source: &LineSource) -> Outcome {
        self.stats.lines += 1;
        let received = match self.clock {
            Clock::Wall => jiff::Timestamp::now(),
            Clock::EventTime => self.now,
        };
        self.event.reset(line, received);
        for (id, v) in &source.labels {
            self.event.set(*id, FieldValue::Static(v));
        }
        let outcome = self.pipeline.parse(&mut self.event, source.log_type, None);
        match &outcome {
            Outcome::Parsed => {
                self.stats.parsed += 1;
                let at = match self.clock {
                    Clock::Wall => received,
                    Clock::EventTime if self.event.has_line_time => self.event.time,
                    Clock::EventTime => {
                        self.stats.no_time += 1;
                        return outcome;
                    }
                };
                self.now = self.now.max(at);
                self.detector.pour_quiet(&self.event, at, &mut self.alerts);
                // Buckets idle past their lifetime are gone: free them as new keys
                // come.
                if self.detector.expiry_due() {
                    self.detector.expire(self.now);
                }
            }
            Outcome::Whitelisted(_) => {
                self.stats.parsed += 1;
                self.stats.whitelisted += 1;
            }
            Outcome::Unparsed(_) => self.stats.unparsed += 1,
        }
        outcome
    }

    /// Live mode: moves the clock to now, so counter and conditional buckets that are due
    /// overflow and idle buckets are freed even when no line arrives.
    pub fn tick(&mut self) {
        if self.clock == Clock::Wall {
            self.now = jiff::Timestamp::now();
            // Year-less dates (RFC 3164 syslog) take the current year: a daemon running
            // across New Year must not stamp January lines with the year it started in.
            self.pipeline.time.now = self.now;
            self.detector.flush(self.now, &mut self.alerts);
            self.detector.expire(self.now);
        }
    }

    /// End of input (replay): buckets due by the last event time overflow.
    pub fn finish(&mut self) {
        self.detector.flush(self.now, &mut self.alerts);
    }

    /// Alerts emitted since the last call.
    pub fn take_alerts(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.alerts)
    }

    /// Whether alerts are waiting.
    pub fn has_alerts(&self) -> bool {
        !self.alerts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_tick_moves_the_year_of_year_less_dates_to_now() {
        let rs = crate::compile::compile_path(None)
            .expect("the default configuration compiles")
            .ruleset;
        let mut engine = Engine::new(rs, Clock::Wall);
        let long_ago: Timestamp = "2001-06-01T00:00:00Z".parse().expect("a timestamp");
        engine.pipeline.time.now = long_ago;
        engine.tick();
        assert!(engine.pipeline.time.now > long_ago);
        assert_eq!(engine.pipeline.time.now, engine.now);
        // Replay keeps the year it started with.
        let rs = engine.ruleset().clone();
        let mut replay = Engine::new(rs, Clock::EventTime);
        replay.pipeline.time.now = long_ago;
        replay.tick();
        assert_eq!(replay.pipeline.time.now, long_ago);
    }

    #[test]
    fn a_replay_frees_the_buckets_of_addresses_gone_quiet() {
        let rs = crate::compile::compile_path(None)
            .expect("the default configuration compiles")
            .ruleset;
        let source = LineSource::new(&rs, "syslog", std::iter::empty());
        let mut engine = Engine::new(rs, Clock::EventTime);
        // 20,000 addresses failing once each, 10 s apart: at most 720 of them (2 h, the
        // longest ssh bucket lifetime) have live buckets at any time.
        for n in 0..20_000u32 {
            let secs = n * 10;
            let (d, h, m, s) = (
                18 + secs / 86_400,
                secs / 3_600 % 24,
                secs / 60 % 60,
                secs % 60,
            );
            let line = format!(
                "Nov {d} {h:02}:{m:02}:{s:02} web01 sshd[7]: Failed password for root from 198.18.{}.{} port 22 ssh2",
                n >> 8,
                n & 255
            );
            assert!(matches!(engine.process(&line, &source), Outcome::Parsed));
        }
        let buckets = engine.detector_mut().bucket_count();
        // Six ssh scenarios pour a failed login; sweeps are due from 1,024 live groups.
        assert!(
            buckets > 0 && buckets <= 6 * 2 * 1024,
            "{buckets} live buckets"
        );
    }

    /// Beside the default rules: a counter (it overflows at a deadline after its last
    /// event) and a leaky bucket, both with a range scope read by an expression.
    const RANGE_RULES: &str = r#"
scenarios {
    - "test-counter-range" {
        description "failed logins of a /24 over a minute"
        type counter
        filter "evt.Meta.log_type == 'ssh_failed-auth'"
        groupby "IpToRange(evt.Meta.source_ip, '/24')"
        duration "60s"
        scope range
        scope-expression "IpToRange(evt.Meta.source_ip, '/24')"
    }
    - "test-leaky-range" {
        description "failed logins of a /16"
        type leaky
        filter "evt.Meta.log_type == 'ssh_failed-auth'"
        groupby "IpToRange(evt.Meta.source_ip, '/16')"
        capacity 4
        leakspeed "20s"
        scope range
        scope-expression "IpToRange(evt.Meta.source_ip, '/16') + ''"
    }
}
"#;

    #[test]
    fn a_profile_reading_alert_events_keeps_them() {
        let dir = std::env::temp_dir().join(format!("garrison-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let config = dir.join("garrison.kdl");
        std::fs::write(
            &config,
            r#"collections "sshd" "linux"
profiles {
    - "by-user" {
        filters "Alert.GetMeta('target_user') == 'root'"
        decisions { - type=ban duration="4h"; }
    }
}
"#,
        )
        .expect("config written");
        let compiled = crate::compile::compile_path(Some(&config));
        let _ = std::fs::remove_dir_all(&dir);
        let rs = compiled.expect("the configuration compiles").ruleset;
        let mut engine = Engine::new(rs, Clock::EventTime);
        assert!(!engine.summaries_only());
    }

    /// What replay prints of an alert.
    fn summary(a: &Alert) -> String {
        format!(
            "{} {} {} {} {} {} {}",
            a.scenario,
            a.scope.as_str(),
            a.value,
            a.events_count,
            a.start_at,
            a.stop_at,
            a.message()
        )
    }

    #[test]
    fn alerts_without_events_say_what_alerts_with_events_say() {
        let rs = crate::compile::ruleset_with_local_rules(RANGE_RULES);

        let mut with_events = Engine::new(rs.clone(), Clock::EventTime);
        let mut without = Engine::new(rs.clone(), Clock::EventTime);
        assert!(
            without.summaries_only(),
            "no default profile reads alert events"
        );
        let source = LineSource::new(&rs, "syslog", std::iter::empty());
        // Attempts from a few networks and users, some bursts and some pauses, so that
        // every kind of bucket overflows, restarts and is blackholed along the way.
        let mut lines = Vec::new();
        for n in 0..3_000u32 {
            // Bursts of 20 attempts from an address, 2 s apart.
            let k = n / 20;
            // And a slow one, 800 s apart (the time-based scenarios).
            let ip = match n % 400 {
                0 => "203.0.113.77".to_owned(),
                _ => format!("198.{}.{}.{}", 18 + k % 2, k % 3, 1 + k % 5),
            };
            let (ip, user) = (
                ip,
                [
                    "root", "admin", "pi", "oracle", "git", "ubuntu", "test", "ftp",
                ][(n % 8) as usize],
            );
            let secs = n * 2 + (n / 200) * 1_200;
            let (h, m, s) = (secs / 3_600 % 24, secs / 60 % 60, secs % 60);
            lines.push(match n % 3 {
                0 => format!(
                    "Nov 18 {h:02}:{m:02}:{s:02} web01 sshd[7]: Failed password for {user} from {ip} port 22 ssh2"
                ),
                1 => format!(
                    "Nov 18 {h:02}:{m:02}:{s:02} web01 sshd[7]: Invalid user {user} from {ip} port 22"
                ),
                _ => format!(
                    "Nov 18 {h:02}:{m:02}:{s:02} web01 sshd[7]: Disconnected from authenticating user {user} {ip} port 22 [preauth]"
                ),
            });
        }
        let run = |engine: &mut Engine| {
            let mut alerts = Vec::new();
            for line in &lines {
                engine.process(line, &source);
                alerts.extend(engine.take_alerts());
            }
            engine.finish();
            alerts.extend(engine.take_alerts());
            alerts
        };
        let (full, summaries) = (run(&mut with_events), run(&mut without));
        let of =
            |alerts: &[Alert], name: &str| alerts.iter().filter(|a| &*a.scenario == name).count();
        for name in [
            "ssh-bf",
            "ssh-bf_user-enum",
            "ssh-time-based-bf",
            "test-counter-range",
            "test-leaky-range",
        ] {
            assert!(
                of(&full, name) > 0,
                "no {name} alert: the test misses a kind of bucket"
            );
        }
        assert!(full.iter().any(|a| a.value.ends_with(".0/24")));
        let (full_summaries, summaries_only): (Vec<_>, Vec<_>) = (
            full.iter().map(summary).collect(),
            summaries.iter().map(summary).collect(),
        );
        assert_eq!(full_summaries.len(), summaries_only.len());
        for (a, b) in full_summaries.iter().zip(&summaries_only) {
            assert_eq!(a, b);
        }
        // Only the counter's alerts still carry events.
        for a in &summaries {
            assert_eq!(
                a.events.is_empty(),
                &*a.scenario != "test-counter-range",
                "{}",
                a.scenario
            );
        }
        assert!(full.iter().all(|a| !a.events.is_empty()));
    }
}
