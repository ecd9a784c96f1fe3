//! `garrison replay`: forensic mode. Buckets run on the time written in the lines.

use crate::acquire::lines::{ReadStats, for_each_line_in};
use crate::alert::{Alert, AlertEvents};
use crate::compile::{CompileOptions, compile_path_with};
use crate::decide::{Decision, History, decide};
use crate::engine::{Clock, Engine, EngineStats, LineSource};
use crate::event::{Event, Namespace, Timestamp};
use crate::parse::timefmt::format_go_duration;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `garrison replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Configuration file; the embedded default when absent.
    #[arg(long, short, env = "GARRISON_CONFIG")]
    pub config: Option<PathBuf>,
    /// The acquisition type of the files (`syslog`, `nginx`, `apache2`, ...).
    #[arg(long = "type", short = 't')]
    pub log_type: String,
    /// Extra labels, `key=value` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Enable only these scenarios, from every shipped rule (repeatable).
    #[arg(long = "scenario")]
    pub scenarios: Vec<String>,
    /// Disable the whitelists (hub fixtures attack from private addresses).
    #[arg(long)]
    pub no_whitelist: bool,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Log files to replay.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A table on a terminal.
    Table,
    /// One JSON object per line.
    Json,
}

/// Parses `key=value`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

/// An alert with the decisions the profiles made.
#[derive(Debug)]
pub struct Finding {
    /// The alert.
    pub alert: Alert,
    /// Its decisions.
    pub decisions: Vec<Decision>,
}

/// Counters of a replay.
#[derive(Debug, Default)]
pub struct ReplayStats {
    /// Reading.
    pub read: ReadStats,
    /// Parsing.
    pub engine: EngineStats,
}

/// Replays files through a compiled ruleset and collects the findings (the tests' entry
/// point; see [`replay_each`] to stream them).
pub fn replay_files(
    args: &ReplayArgs,
    progress: bool,
) -> Result<(Vec<Finding>, ReplayStats), String> {
    let mut findings = Vec::new();
    let stats = replay_each(args, progress, |f| findings.push(f))?;
    Ok((findings, stats))
}

/// Replays files through a compiled ruleset, handing each finding to `on_finding` as soon
/// as its alert is decided: a replay of a huge log holds no finding longer than it takes to
/// print it.
pub fn replay_each(
    args: &ReplayArgs,
    progress: bool,
    mut on_finding: impl FnMut(Finding),
) -> Result<ReplayStats, String> {
    let options = CompileOptions {
        all_rules: !args.scenarios.is_empty(),
    };
    let compiled = compile_path_with(args.config.as_deref(), options).map_err(|d| d.to_string())?;
    let rs = compiled.ruleset;
    let mut engine = Engine::new(rs.clone(), Clock::EventTime);
    // Replay prints alert summaries: unless a profile reads their events, neither alert
    // events nor fields no rule reads are kept.
    let _ = engine.summaries_only();
    if !args.scenarios.is_empty() {
        let unknown = engine.detector_mut().only(&args.scenarios);
        if !unknown.is_empty() {
            return Err(format!("unknown scenario(s): {}", unknown.join(", ")));
        }
    }
    engine.set_no_whitelist(args.no_whitelist);
    let source = LineSource::new(
        &rs,
        &args.log_type,
        args.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let mut read = ReadStats::default();
    let mut history = History::default();
    // Alerts are decided as they come: replay prints summaries, so the sampled events are
    // dropped at once instead of being held until the end of the input.
    let mut drain = |engine: &mut Engine| {
        for mut alert in engine.take_alerts() {
            let decisions = decide(&rs, &alert, &mut history, alert.stop_at);
            alert.events = AlertEvents::default();
            on_finding(Finding { alert, decisions });
        }
    };
    for path in &args.files {
        // Streamed: memory stays bounded whatever the file size.
        let mut file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let bar = progress_bar(progress, len as usize);
        for_each_line_in(
            &mut file,
            &mut read,
            |done| {
                if let Some(b) = &bar {
                    b.set_position(done);
                }
            },
            |line| {
                engine.process(line, &source);
                if engine.has_alerts() {
                    drain(&mut engine);
                }
            },
        )
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    }
    engine.finish();
    drain(&mut engine);
    Ok(ReplayStats {
        read,
        engine: engine.stats,
    })
}

fn progress_bar(enabled: bool, len: usize) -> Option<indicatif::ProgressBar> {
    (enabled && len > 8 << 20).then(|| {
        let b = indicatif::ProgressBar::new(len as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    })
}

/// A finding as one `-o json` line: `{"scenario","source":{"scope","value"},"events_count",
/// "start_at","stop_at","decisions":[{"type","duration","scope","value"}]}`, serialized
/// from borrowed fields straight into the output (no JSON tree built per alert).
#[derive(serde::Serialize)]
pub struct FindingJson<'a> {
    scenario: &'a str,
    source: SourceJson<'a>,
    events_count: u64,
    #[serde(serialize_with = "displayed")]
    start_at: Timestamp,
    #[serde(serialize_with = "displayed")]
    stop_at: Timestamp,
    decisions: Vec<DecisionJson<'a>>,
}

/// The alert's source in a [`FindingJson`].
#[derive(serde::Serialize)]
struct SourceJson<'a> {
    scope: &'static str,
    value: &'a str,
}

/// One decision in a [`FindingJson`].
#[derive(serde::Serialize)]
struct DecisionJson<'a> {
    #[serde(rename = "type")]
    decision_type: &'a str,
    duration: String,
    scope: &'static str,
    value: &'a str,
}

impl<'a> FindingJson<'a> {
    /// The line of `f`.
    pub fn of(f: &'a Finding) -> Self {
        FindingJson {
            scenario: &f.alert.scenario,
            source: SourceJson {
                scope: f.alert.scope.as_str(),
                value: &f.alert.value,
            },
            events_count: f.alert.events_count,
            start_at: f.alert.start_at,
            stop_at: f.alert.stop_at,
            decisions: f
                .decisions
                .iter()
                .map(|d| DecisionJson {
                    decision_type: &d.decision_type,
                    duration: format_go_duration(d.duration),
                    scope: d.scope.as_str(),
                    value: &d.value,
                })
                .collect(),
        }
    }
}

/// A value serialized as its `Display` text.
fn displayed<S: serde::Serializer>(v: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Runs `garrison replay`.
pub fn run(args: &ReplayArgs) -> ExitCode {
    let tty = std::io::stderr().is_terminal();
    let mut out = super::records::Records::stdout();
    let mut count = 0u64;
    // JSON lines are printed as alerts come; the table needs them all, as rows only.
    let mut table = (args.output == Output::Table).then(|| {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        t.set_header(["scenario", "source", "events", "first", "last", "decisions"]);
        t
    });
    let stats = replay_each(args, tty, |f| {
        count += 1;
        match table.as_mut() {
            None => {
                let _ = serde_json::to_writer(&mut out, &FindingJson::of(&f));
                let _ = out.write_all(b"\n");
                let _ = out.end_record();
            }
            Some(t) => {
                let ds: Vec<String> = f
                    .decisions
                    .iter()
                    .map(|d| {
                        format!(
                            "{} {} {}",
                            d.decision_type,
                            format_go_duration(d.duration),
                            d.value
                        )
                    })
                    .collect();
                t.add_row([
                    f.alert.scenario.to_string(),
                    format!("{} {}", f.alert.scope.as_str(), f.alert.value),
                    f.alert.events_count.to_string(),
                    f.alert.start_at.to_string(),
                    f.alert.stop_at.to_string(),
                    ds.join("\n"),
                ]);
            }
        }
    });
    let stats = match stats {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(t) = table {
        let _ = writeln!(out, "{t}");
    }
    let _ = out.flush();
    eprintln!(
        "{} lines: {} parsed ({} whitelisted, {} without a timestamp), {} unparsed, {} not UTF-8, {} too long; {count} alerts",
        stats.read.lines,
        stats.engine.parsed,
        stats.engine.whitelisted,
        stats.engine.no_time,
        stats.engine.unparsed,
        stats.read.not_utf8,
        stats.read.too_long,
    );
    ExitCode::SUCCESS
}

/// Used by `explain` too.
pub(crate) fn meta_of(
    rs: &crate::compile::Ruleset,
    event: &Event,
) -> serde_json::Map<String, serde_json::Value> {
    let mut meta = serde_json::Map::new();
    for i in 0..rs.fields.len() {
        let id = crate::event::FieldId(i as u16);
        let (ns, name) = rs.fields.name(id);
        if ns == Namespace::Meta && event.is_set(id) {
            meta.insert(
                name.to_owned(),
                serde_json::Value::String(event.get(id).to_owned()),
            );
        }
    }
    meta
}
