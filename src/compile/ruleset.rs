//! The compiled, immutable ruleset the engine runs.

use crate::config::model::{Config, DecisionSpec, Escalation, OnSuccess};
use crate::config::types::{Cidr, Duration};
use crate::data::DataLists;
use crate::event::{FieldId, FieldRegistry, Namespace};
use crate::expr::Program;
use crate::rules::model::{Decoder, ParserOnSuccess, Sample, ScenarioKind, ScenarioScope, Stage};
use std::sync::Arc;

/// Fields the pipeline itself reads or writes, interned up front.
#[derive(Debug, Clone, Copy)]
pub struct WellKnown {
    /// `evt.Line.Labels.type`: the acquisition type.
    pub label_type: FieldId,
    /// `evt.Line.Labels.program`.
    pub label_program: FieldId,
    /// `evt.Parsed.program`.
    pub program: FieldId,
    /// `evt.Parsed.message`.
    pub message: FieldId,
    /// `evt.Parsed.pid`.
    pub pid: FieldId,
    /// `evt.Parsed.logsource`.
    pub logsource: FieldId,
    /// `evt.Parsed.timestamp`: the syslog header's time text.
    pub timestamp: FieldId,
    /// `evt.Meta.machine`.
    pub machine: FieldId,
    /// `evt.Meta.source_ip`.
    pub source_ip: FieldId,
    /// `evt.Meta.source_range`.
    pub source_range: FieldId,
    /// `evt.Meta.timestamp`: the event time in RFC 3339 with the line's offset.
    pub meta_timestamp: FieldId,
    /// `evt.Meta.log_type`.
    pub log_type: FieldId,
    /// `evt.Meta.service`.
    pub service: FieldId,
}

impl WellKnown {
    /// Interns the well-known fields.
    pub fn register(fields: &mut FieldRegistry) -> Self {
        // Interned in this order, so the fields scenario conditions read most get the
        // lowest ids: the compact events a conditional bucket queues have one slot per id
        // up to the highest one its condition reads.
        WellKnown {
            log_type: fields.intern(Namespace::Meta, "log_type"),
            service: fields.intern(Namespace::Meta, "service"),
            source_ip: fields.intern(Namespace::Meta, "source_ip"),
            label_type: fields.intern(Namespace::Labels, "type"),
            // Every rule may read the acquisition's `program` label (CRI lines carry none).
            label_program: fields.intern(Namespace::Labels, "program"),
            program: fields.intern(Namespace::Parsed, "program"),
            message: fields.intern(Namespace::Parsed, "message"),
            pid: fields.intern(Namespace::Parsed, "pid"),
            logsource: fields.intern(Namespace::Parsed, "logsource"),
            timestamp: fields.intern(Namespace::Parsed, "timestamp"),
            machine: fields.intern(Namespace::Meta, "machine"),
            source_range: fields.intern(Namespace::Meta, "source_range"),
            meta_timestamp: fields.intern(Namespace::Meta, "timestamp"),
        }
    }

    /// The well-known fields the engine itself reads: a parser's `programs` match the
    /// program, whitelists and the default `groupby` read the source address, and
    /// range-scoped alerts the source range. The others it only writes (the syslog
    /// envelope, the acquisition type, the rendered time), for the rules that name them.
    pub fn read_by_engine(&self) -> [FieldId; 3] {
        [self.program, self.source_ip, self.source_range]
    }
}

/// What a pattern is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchTarget {
    /// The raw line.
    Line,
    /// A field (usually `Parsed.message`).
    Field(FieldId),
}

/// How a static computes its value.
#[derive(Debug)]
pub enum StaticValue {
    /// A constant ([`crate::event::intern`]ed).
    Const(&'static str),
    /// A copy of another field (no allocation: ranges of the line stay ranges).
    Copy(FieldId),
    /// The whole raw line.
    Line,
    /// Fields joined (`evt.Parsed.file_frag + evt.Parsed.file_ext`): adjacent ranges of
    /// the line, as a path's parts are, join into one range without a copy.
    Join(Box<[FieldId]>),
    /// An expression.
    Expr(Program),
}

/// A compiled static.
#[derive(Debug)]
pub struct CompiledStatic {
    /// The field it sets.
    pub target: FieldId,
    /// Its value.
    pub value: StaticValue,
}

/// A compiled grok alternative.
#[derive(Debug)]
pub struct CompiledGrok {
    /// The pattern.
    pub grok: crate::grok::Grok,
    /// What it matches.
    pub target: MatchTarget,
    /// The `Parsed` field of each of the pattern's capture fields, by index.
    pub fields: Vec<FieldId>,
    /// Statics of this alternative.
    pub statics: Vec<CompiledStatic>,
    /// A searcher for a literal every match contains: lines without it skip the regex.
    pub prefilter: Option<crate::grok::LiteralFinder>,
    /// The byte pairs of every literal a match contains (that one and the others): a text
    /// lacking one cannot match (no scan needed).
    pub prefilter_pairs: crate::grok::PairGate,
}

/// A compiled parser.
#[derive(Debug)]
pub struct CompiledParser {
    /// Its name.
    pub name: Arc<str>,
    /// Its stage.
    pub stage: Stage,
    /// Acquisition types it applies to (empty: all).
    pub types: Vec<Box<str>>,
    /// Programs it applies to (empty: all).
    pub programs: Vec<Box<str>>,
    /// Extra condition.
    pub filter: Option<Program>,
    /// A native decoder.
    pub decoder: Option<Decoder>,
    /// Grok alternatives.
    pub groks: Vec<CompiledGrok>,
    /// Statics on success.
    pub statics: Vec<CompiledStatic>,
    /// The field giving the event time.
    pub time: Option<FieldId>,
    /// After success.
    pub on_success: ParserOnSuccess,
    /// Samples for tests.
    pub samples: Vec<Sample>,
}

/// A compiled scenario.
#[derive(Debug)]
pub struct CompiledScenario {
    /// Its name.
    pub name: Arc<str>,
    /// What it detects.
    pub description: Option<String>,
    /// Bucket kind.
    pub kind: ScenarioKind,
    /// Event filter.
    pub filter: Program,
    /// Bucket key (None: `Meta.source_ip`).
    pub groupby: Option<Program>,
    /// Distinct key.
    pub distinct: Option<Program>,
    /// Capacity (leaky), -1 for counter/conditional, 0 for trigger.
    pub capacity: i64,
    /// Leak speed.
    pub leakspeed: Option<Duration>,
    /// Counter duration.
    pub duration: Option<Duration>,
    /// Conditional overflow expression.
    pub condition: Option<Program>,
    /// Cancel expression.
    pub cancel_on: Option<Program>,
    /// Blackhole after overflow.
    pub blackhole: Option<Duration>,
    /// Events kept in an alert.
    pub cache_size: Option<u32>,
    /// Source scope.
    pub scope: ScenarioScope,
    /// Range expression for `range` scope.
    pub scope_expression: Option<Program>,
    /// Labels, flattened.
    pub labels: Arc<[(Arc<str>, String)]>,
    /// The `remediation` label.
    pub remediation: bool,
}

/// The compiled whitelist.
#[derive(Debug, Default)]
pub struct CompiledWhitelist {
    /// Ranges and why they are whitelisted.
    pub cidrs: Vec<(Cidr, Arc<str>)>,
    /// Expressions over the event.
    pub expressions: Vec<Program>,
}

impl CompiledWhitelist {
    /// The reason an address is whitelisted, if it is.
    pub fn covers(&self, ip: &std::net::IpAddr) -> Option<&Arc<str>> {
        self.cidrs
            .iter()
            .find(|(c, _)| c.contains(ip))
            .map(|(_, r)| r)
    }
}

/// A compiled profile.
#[derive(Debug)]
pub struct CompiledProfile {
    /// Its name.
    pub name: Arc<str>,
    /// Filters over `Alert` (OR).
    pub filters: Vec<Program>,
    /// Decisions it makes.
    pub decisions: Vec<DecisionSpec>,
    /// Escalation for repeat offenders.
    pub escalation: Option<Escalation>,
    /// After it applied.
    pub on_success: OnSuccess,
}

/// Everything the engine needs, compiled once and shared read-only.
#[derive(Debug)]
pub struct Ruleset {
    /// The configuration it was compiled from.
    pub config: Config,
    /// The configuration's file name (for messages).
    pub config_name: String,
    /// Every field.
    pub fields: FieldRegistry,
    /// Fields the pipeline uses directly.
    pub well_known: WellKnown,
    /// Data lists.
    pub data: DataLists,
    /// Parsers of each stage, in order.
    pub stages: [Vec<CompiledParser>; 3],
    /// Enabled scenarios.
    pub scenarios: Vec<CompiledScenario>,
    /// Profiles, in order.
    pub profiles: Vec<CompiledProfile>,
    /// Whitelists.
    pub whitelist: CompiledWhitelist,
    /// Enabled collections (with those they include).
    pub collections: Vec<String>,
}

impl Ruleset {
    /// Per field (by id), whether a rule reads it: a parser (filter, match target, time,
    /// static), a scenario, a whitelist or a profile program, or the engine itself
    /// ([`WellKnown::read_by_engine`]). `None` when some program reads whole events
    /// ([`Program::reads_whole_event`]): then every field may be read. What an alert's
    /// samples keep is not counted: with samples, every `Meta` field is read.
    pub fn fields_read(&self) -> Option<Vec<bool>> {
        let mut read = vec![false; self.fields.len()];
        let mut mark = |id: FieldId| {
            if let Some(r) = read.get_mut(usize::from(id.0)) {
                *r = true;
            }
        };
        self.well_known
            .read_by_engine()
            .into_iter()
            .for_each(&mut mark);
        let mut programs: Vec<&Program> = Vec::new();
        for p in self.stages.iter().flatten() {
            programs.extend(&p.filter);
            if let Some(t) = p.time {
                mark(t);
            }
            for g in &p.groks {
                if let MatchTarget::Field(id) = g.target {
                    mark(id);
                }
            }
            for st in p.groks.iter().flat_map(|g| &g.statics).chain(&p.statics) {
                match &st.value {
                    StaticValue::Copy(id) => mark(*id),
                    StaticValue::Join(ids) => ids.iter().for_each(|id| mark(*id)),
                    StaticValue::Expr(e) => programs.push(e),
                    StaticValue::Const(_) | StaticValue::Line => {}
                }
            }
        }
        for sc in &self.scenarios {
            programs.push(&sc.filter);
            programs.extend(
                [
                    &sc.groupby,
                    &sc.distinct,
                    &sc.condition,
                    &sc.cancel_on,
                    &sc.scope_expression,
                ]
                .into_iter()
                .flatten(),
            );
        }
        programs.extend(&self.whitelist.expressions);
        programs.extend(self.profiles.iter().flat_map(|p| &p.filters));
        for p in programs {
            if p.reads_whole_event() {
                return None;
            }
            p.referenced_fields().into_iter().for_each(&mut mark);
        }
        Some(read)
    }

    /// Whether a profile reads the events an alert carries (`Alert.Events`,
    /// `Alert.Meta.<name>`): without one, deciding needs only the alert's summary.
    pub fn profiles_read_alert_events(&self) -> bool {
        self.profiles
            .iter()
            .flat_map(|p| &p.filters)
            .any(Program::reads_alert_events)
    }
}
