//! The rule model: what the KDL files in `rules/` (and `rule-dirs`) contain.
//!
//! One file may hold any of the sections; the shipped tree keeps one kind per directory
//! (`patterns/`, `parsers/`, `scenarios/`, `profiles/`, `collections/`) and data lists
//! as plain text under `data/`.

use crate::config::model::Profile;
use crate::config::types::{Duration, List};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The contents of one rule file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleFile {
    /// Named grok patterns: `NAME "regex with %{OTHER:field} references"`.
    #[serde(default)]
    pub patterns: IndexMap<String, String>,
    /// Parsers.
    #[serde(default)]
    pub parsers: Vec<ParserRule>,
    /// Scenarios.
    #[serde(default)]
    pub scenarios: Vec<ScenarioRule>,
    /// Default profiles (used when the configuration has none).
    #[serde(default)]
    pub profiles: Vec<Profile>,
    /// Collections: named bundles of parsers, scenarios and other collections.
    #[serde(default)]
    pub collections: Vec<Collection>,
}

/// A parser stage. Every event goes through the stages in order; it must succeed in
/// `raw` and `parse` to go on (`enrich` parsers are optional).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Envelopes: syslog headers, container log wrappers, JSON lines.
    Raw,
    /// Service parsers: sshd, nginx, ...
    Parse,
    /// Enrichment: HTTP path splitting and the like.
    Enrich,
}

impl Stage {
    /// All stages in order.
    pub const ALL: [Stage; 3] = [Stage::Raw, Stage::Parse, Stage::Enrich];

    /// The stage's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Raw => "raw",
            Stage::Parse => "parse",
            Stage::Enrich => "enrich",
        }
    }
}

/// A native decoder for envelopes that a hand-written parser reads faster than a regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Decoder {
    /// Syslog headers (RFC 3164, RFC 5424, ISO 8601 prefixes, journal short formats):
    /// sets `Parsed.program`, `Parsed.pid`, `Parsed.logsource`, `Parsed.message`,
    /// `Parsed.timestamp` and `Meta.machine`.
    Syslog,
    /// The whole line: sets `Parsed.message` to the line and `Parsed.program` to the
    /// acquisition type, so service parsers dispatch the same way for files and syslog.
    Plain,
}

/// What happens after a parser succeeded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ParserOnSuccess {
    /// Go to the next stage (the usual case).
    #[default]
    NextStage,
    /// Let the following parsers of the same stage run too.
    Continue,
}

/// A parser: which events it applies to, the patterns it tries, and the fields it sets.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ParserRule {
    /// Unique name (`sshd-logs`).
    pub name: String,
    /// What it parses.
    #[serde(default)]
    pub description: Option<String>,
    /// The stage it runs in.
    pub stage: Stage,
    /// Acquisition types it applies to (`syslog`, `nginx`); empty = all.
    #[serde(default)]
    pub types: List<String>,
    /// Programs it applies to (`Parsed.program`: `sshd`, `sshd-session`); empty = all.
    /// Checked before anything else, so a line is only offered to its service's parsers.
    #[serde(default)]
    pub programs: List<String>,
    /// An extra condition over the event.
    #[serde(default)]
    pub filter: Option<String>,
    /// A native decoder instead of patterns.
    #[serde(default)]
    pub decoder: Option<Decoder>,
    /// The field patterns apply to by default: `message` (a `Parsed` field) or `line`.
    #[serde(default = "default_apply_on")]
    pub apply_on: String,
    /// Patterns local to this parser.
    #[serde(default)]
    pub patterns: IndexMap<String, String>,
    /// Grok alternatives, tried in order; the first that matches wins. The parser
    /// succeeds if one matches (or, with none given, if its filter passed).
    #[serde(default)]
    pub grok: List<GrokRule>,
    /// Fields set when the parser succeeded.
    #[serde(default)]
    pub statics: List<Static>,
    /// The `Parsed` field holding the event's timestamp; it sets the event time.
    #[serde(default)]
    pub time: Option<String>,
    /// What to do after success.
    #[serde(default)]
    pub on_success: ParserOnSuccess,
    /// Sample lines, run as tests.
    #[serde(default)]
    pub samples: List<Sample>,
}

fn default_apply_on() -> String {
    "message".into()
}

/// One grok alternative.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GrokRule {
    /// The pattern: a regex with `%{NAME}` and `%{NAME:field}` references.
    pub pattern: String,
    /// The field to match against, when not the parser's `apply-on`.
    #[serde(default)]
    pub apply_on: Option<String>,
    /// Fields set when this alternative matched.
    #[serde(default)]
    pub statics: List<Static>,
}

/// Sets one field: give one target (`meta`, `parsed` or `enriched`) and one of `value` or
/// `expression`. An empty result sets nothing.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Static {
    /// Target `evt.Meta.<name>`.
    #[serde(default)]
    pub meta: Option<String>,
    /// Target `evt.Parsed.<name>`.
    #[serde(default)]
    pub parsed: Option<String>,
    /// Target `evt.Enriched.<name>`.
    #[serde(default)]
    pub enriched: Option<String>,
    /// A constant.
    #[serde(default)]
    pub value: Option<String>,
    /// An expression over `evt`.
    #[serde(default)]
    pub expression: Option<String>,
}

/// A sample line for a parser or scenario, checked by the test suite.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Sample {
    /// The log line.
    pub line: String,
    /// Its acquisition type.
    #[serde(rename = "type", default = "default_sample_type")]
    pub log_type: String,
    /// Whether the line must parse (`#false` for negative samples).
    #[serde(default = "yes")]
    pub parses: bool,
    /// `Meta` fields the parsed event must have.
    #[serde(default)]
    pub meta: IndexMap<String, String>,
}

fn default_sample_type() -> String {
    "syslog".into()
}

fn yes() -> bool {
    true
}

/// The kind of bucket a scenario uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioKind {
    /// Overflows on the `capacity + 1`-th event of a burst; leaks one event per `leakspeed`.
    Leaky,
    /// Overflows on every matching event.
    Trigger,
    /// Counts events for `duration`, then overflows.
    Counter,
    /// Overflows when `condition` becomes true over the bucket's queue.
    Conditional,
}

/// What an alert's source is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioScope {
    /// The event's `Meta.source_ip`.
    #[default]
    Ip,
    /// A range: `Meta.source_range`, or the `scope-expression`.
    Range,
}

/// A scenario: a filter over events, grouped into buckets that overflow into alerts.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScenarioRule {
    /// Unique name; the hub's name without the author prefix (`ssh-bf`).
    pub name: String,
    /// What it detects.
    #[serde(default)]
    pub description: Option<String>,
    /// The bucket kind.
    #[serde(rename = "type")]
    pub kind: ScenarioKind,
    /// Which events pour into the scenario (an expression over `evt`).
    pub filter: String,
    /// The bucket key (an expression over `evt`); default `evt.Meta.source_ip`.
    #[serde(default)]
    pub groupby: Option<String>,
    /// Events whose value of this expression was already seen by the bucket are ignored.
    #[serde(default)]
    pub distinct: Option<String>,
    /// Leaky: events a bucket holds before overflowing.
    #[serde(default)]
    pub capacity: Option<i64>,
    /// Leaky and conditional: how fast the bucket leaks one event.
    #[serde(default)]
    pub leakspeed: Option<Duration>,
    /// Counter: how long to count.
    #[serde(default)]
    pub duration: Option<Duration>,
    /// Conditional: an expression over `queue` that overflows the bucket when true.
    #[serde(default)]
    pub condition: Option<String>,
    /// Kills the bucket without an alert when true for a poured event.
    #[serde(default)]
    pub cancel_on: Option<String>,
    /// After an overflow, further overflows of the same key are suppressed this long.
    #[serde(default)]
    pub blackhole: Option<Duration>,
    /// How many events an alert keeps as a sample (default: capacity).
    #[serde(default)]
    pub cache_size: Option<u32>,
    /// The alert's source scope.
    #[serde(default)]
    pub scope: ScenarioScope,
    /// For `range` scope: an expression giving the range.
    #[serde(default)]
    pub scope_expression: Option<String>,
    /// Labels carried by alerts; `remediation #true` makes the default profiles ban.
    #[serde(default)]
    pub labels: IndexMap<String, serde_json::Value>,
    /// Links about the attack.
    #[serde(default)]
    pub references: List<String>,
}

/// A named bundle of rules.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Collection {
    /// Its name (`sshd`).
    pub name: String,
    /// What it covers.
    #[serde(default)]
    pub description: Option<String>,
    /// Parsers it enables.
    #[serde(default)]
    pub parsers: List<String>,
    /// Scenarios it enables.
    #[serde(default)]
    pub scenarios: List<String>,
    /// Other collections it includes.
    #[serde(default)]
    pub collections: List<String>,
}
