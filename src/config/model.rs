//! The configuration model: what an operator writes in `garrison.kdl` or `garrison.json`.
//!
//! Every type derives serde and schemars, so `schemas/garrison.schema.json` is generated from
//! these definitions and their doc comments; field names are kebab-case in both formats.

use super::types::{Cidr, Duration, List};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A garrison configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "garrison configuration")]
pub struct Config {
    /// Daemon-wide settings: state directory and logging.
    #[serde(default)]
    pub daemon: Daemon,
    /// Where log lines come from: files, the journal, or a syslog listener. Each source has a
    /// `type` label that selects the parsers (`syslog`, `nginx`, `apache2`, ...).
    #[serde(default)]
    pub acquisitions: Vec<Acquisition>,
    /// Rule collections to enable, by name (`sshd`, `linux`, `nginx`, `apache2`,
    /// `base-http-scenarios`, ...). A collection enables its parsers and scenarios.
    #[serde(default)]
    pub collections: List<String>,
    /// Extra directories of rule files (`*.kdl`, and data lists under `data/`), loaded after
    /// the shipped rules. Their parsers and scenarios are always enabled; a rule with the same
    /// name as a shipped one replaces it. Relative paths are relative to this file.
    #[serde(default)]
    pub rule_dirs: List<String>,
    /// Sources that must never be banned.
    #[serde(default)]
    pub whitelists: Whitelists,
    /// Profiles turn alerts into decisions, first match wins. When empty, the shipped
    /// default profiles apply (ban 4h for every alert with `remediation`).
    #[serde(default)]
    pub profiles: Vec<Profile>,
    /// How decisions are enforced in the kernel.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// The CrowdSec-compatible Local API, for bouncers, agents and the CLI.
    #[serde(default)]
    pub lapi: Lapi,
    /// Third-party blocklists turned into decisions.
    #[serde(default)]
    pub blocklists: Vec<Blocklist>,
    /// CrowdSec's Central API: community blocklist and signal sharing. Off by default.
    #[serde(default)]
    pub central: Central,
    /// The Prometheus metrics endpoint.
    #[serde(default)]
    pub metrics: Metrics,
}

/// Daemon-wide settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Daemon {
    /// Directory for the database and file cursors.
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    /// Log level.
    #[serde(default)]
    pub log_level: LogLevel,
    /// Log format on stderr (the journal always gets structured fields).
    #[serde(default)]
    pub log_format: LogFormat,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon {
            state_dir: default_state_dir(),
            log_level: LogLevel::default(),
            log_format: LogFormat::default(),
        }
    }
}

fn default_state_dir() -> String {
    "/var/lib/garrison".into()
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Normal operation.
    #[default]
    Info,
    /// Details for troubleshooting.
    Debug,
    /// Everything.
    Trace,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// One source of log lines. Give exactly one of `files`, `journald` or `syslog`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Acquisition {
    /// A name for metrics and messages; defaults to the type and source.
    #[serde(default)]
    pub name: Option<String>,
    /// The log type label, which selects the parsers: `syslog` (syslog or journal lines,
    /// dispatched by program), `nginx`, `apache2`, `caddy`, `traefik`, ...
    #[serde(rename = "type")]
    pub log_type: String,
    /// File paths or globs to tail (`/var/log/nginx/*.log`). New files matching a glob are
    /// picked up while running.
    #[serde(default)]
    pub files: List<String>,
    /// journald matches (`_SYSTEMD_UNIT=sshd.service`, `SYSLOG_IDENTIFIER=sshd-session`);
    /// entries matching any of them are read.
    #[serde(default)]
    pub journald: List<String>,
    /// A syslog listener (RFC 3164 and 5424).
    #[serde(default)]
    pub syslog: Option<SyslogListener>,
    /// Extra labels attached to every line (`evt.Line.Labels.*`).
    #[serde(default)]
    pub labels: IndexMap<String, String>,
}

/// A syslog listener.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SyslogListener {
    /// Address and port to listen on.
    #[serde(default = "default_syslog_listen")]
    pub listen: String,
    /// Transport.
    #[serde(default)]
    pub protocol: SyslogProtocol,
}

fn default_syslog_listen() -> String {
    "127.0.0.1:5514".into()
}

/// Syslog transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SyslogProtocol {
    /// UDP datagrams.
    #[default]
    Udp,
    /// TCP, newline or octet-count framed.
    Tcp,
}

/// Sources that are never banned: their events never pour into a bucket, and decisions
/// covering them are refused whatever their origin.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Whitelists {
    /// Whitelist loopback, RFC 1918, CGNAT, link-local and IPv6 unique-local ranges.
    #[serde(default = "yes")]
    pub private_ranges: bool,
    /// Addresses and ranges to whitelist.
    #[serde(default)]
    pub cidrs: List<Cidr>,
    /// Filter expressions over the event (`evt.Meta.http_user_agent == "health-check"`);
    /// an event for which any is true is whitelisted.
    #[serde(default)]
    pub expressions: List<String>,
}

impl Default for Whitelists {
    fn default() -> Self {
        Whitelists {
            private_ranges: true,
            cidrs: List::default(),
            expressions: List::default(),
        }
    }
}

fn yes() -> bool {
    true
}

/// A profile: which alerts it applies to, and the decisions it makes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    /// The profile's name.
    pub name: String,
    /// Expressions over `Alert`; the profile applies when any is true
    /// (`Alert.Remediation == true && Alert.GetScope() == "Ip"`).
    pub filters: List<String>,
    /// The decisions to make.
    #[serde(default)]
    pub decisions: List<DecisionSpec>,
    /// Longer bans for repeat offenders.
    #[serde(default)]
    pub escalation: Option<Escalation>,
    /// After this profile applied: stop (`break`) or try the next profiles too (`continue`).
    #[serde(default)]
    pub on_success: OnSuccess,
}

/// What a profile does after it applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnSuccess {
    /// Stop at this profile.
    #[default]
    Break,
    /// Evaluate the following profiles too.
    Continue,
}

/// A decision a profile makes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DecisionSpec {
    /// The remediation: `ban` (enforced in nftables), or another type (`captcha`, ...)
    /// passed to bouncers.
    #[serde(rename = "type", default = "default_decision_type")]
    pub decision_type: String,
    /// How long it lasts.
    #[serde(default = "default_ban_duration")]
    pub duration: Duration,
    /// The scope: the alert's own (default), or `range` to ban the source's network.
    #[serde(default)]
    pub scope: Option<DecisionScope>,
    /// Record the decision without enforcing it.
    #[serde(default)]
    pub simulated: bool,
}

fn default_decision_type() -> String {
    "ban".into()
}

fn default_ban_duration() -> Duration {
    Duration::from_secs(4 * 3600)
}

/// A decision scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionScope {
    /// One address.
    Ip,
    /// A CIDR range.
    Range,
}

/// Escalation for repeat offenders: each earlier decision for the same source multiplies
/// the duration by `factor`, up to `max`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Escalation {
    /// Multiplier per earlier decision.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// The longest a decision may become.
    #[serde(default = "default_escalation_max")]
    pub max: Duration,
    /// How far back earlier decisions count.
    #[serde(default = "default_escalation_window")]
    pub window: Duration,
}

fn default_factor() -> f64 {
    2.0
}
fn default_escalation_max() -> Duration {
    Duration::from_secs(7 * 86400)
}
fn default_escalation_window() -> Duration {
    Duration::from_secs(30 * 86400)
}

/// Kernel enforcement.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Enforcement {
    /// Enforce decisions in nftables.
    #[serde(default = "yes")]
    pub enable: bool,
    /// Log what would be enforced without touching the kernel.
    #[serde(default)]
    pub dry_run: bool,
    /// The nftables table garrison owns.
    #[serde(default)]
    pub nftables: Nftables,
    /// Addresses of the operators: a decision covering any of them is refused and logged.
    #[serde(default)]
    pub admin_cidrs: List<Cidr>,
}

impl Default for Enforcement {
    fn default() -> Self {
        Enforcement {
            enable: true,
            dry_run: false,
            nftables: Nftables::default(),
            admin_cidrs: List::default(),
        }
    }
}

/// The nftables table, its hooks and what it does to banned traffic.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Nftables {
    /// Table name (family `inet`, so one table covers IPv4 and IPv6).
    #[serde(default = "default_table")]
    pub table: String,
    /// Hooks to filter at: `input`, and optionally `forward` (for routers and containers).
    #[serde(default = "default_hooks")]
    pub hooks: List<Hook>,
    /// Chain priority; lower runs earlier. The default runs before NixOS's `nixos-fw`
    /// and most distribution firewalls (priority `filter` = 0).
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// What happens to banned traffic.
    #[serde(default)]
    pub action: NftAction,
    /// Keep bans in the kernel when garrison stops (they still expire by their timeouts).
    #[serde(default = "yes")]
    pub keep_on_stop: bool,
}

impl Default for Nftables {
    fn default() -> Self {
        Nftables {
            table: default_table(),
            hooks: default_hooks(),
            priority: default_priority(),
            action: NftAction::default(),
            keep_on_stop: true,
        }
    }
}

fn default_table() -> String {
    "garrison".into()
}
fn default_hooks() -> List<Hook> {
    List(vec![Hook::Input])
}
fn default_priority() -> i32 {
    -10
}

/// An nftables hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// Traffic to this host.
    Input,
    /// Traffic routed through this host.
    Forward,
}

/// What nftables does with banned packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NftAction {
    /// Silently drop.
    #[default]
    Drop,
    /// Reject (TCP reset / ICMP unreachable).
    Reject,
}

/// The Local API.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Lapi {
    /// Serve the Local API.
    #[serde(default = "yes")]
    pub enable: bool,
    /// Address and port.
    #[serde(default = "default_lapi_listen")]
    pub listen: String,
    /// Also listen on this Unix socket (the CLI uses it when present).
    #[serde(default)]
    pub unix_socket: Option<String>,
    /// TLS certificate and key (PEM files); plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Bouncer API keys read from files (name → path), for systemd credentials and Nix.
    #[serde(default)]
    pub bouncer_key_files: IndexMap<String, String>,
    /// Machines connecting from these ranges are validated on registration.
    #[serde(default)]
    pub auto_register_cidrs: List<Cidr>,
    /// Push alerts to, and pull decisions from, another garrison or CrowdSec LAPI instead.
    #[serde(default)]
    pub url: Option<String>,
}

impl Default for Lapi {
    fn default() -> Self {
        Lapi {
            enable: true,
            listen: default_lapi_listen(),
            unix_socket: None,
            tls: None,
            bouncer_key_files: IndexMap::new(),
            auto_register_cidrs: List::default(),
            url: None,
        }
    }
}

fn default_lapi_listen() -> String {
    "127.0.0.1:8080".into()
}

/// TLS files.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Tls {
    /// Certificate chain (PEM).
    pub cert: String,
    /// Private key (PEM).
    pub key: String,
}

/// A third-party blocklist. Give exactly one of `url` or `file`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Blocklist {
    /// The list's name; its decisions have origin `lists:<name>`.
    pub name: String,
    /// Where to download it.
    #[serde(default)]
    pub url: Option<String>,
    /// Or a local file (for lists managed by Nix or cron).
    #[serde(default)]
    pub file: Option<String>,
    /// How to read it.
    #[serde(default)]
    pub format: BlocklistFormat,
    /// The decision type for its entries.
    #[serde(rename = "type", default = "default_decision_type")]
    pub decision_type: String,
    /// How long its decisions last after the last refresh that still listed them.
    #[serde(default = "default_list_duration")]
    pub duration: Duration,
    /// How often to refresh.
    #[serde(default = "default_list_refresh")]
    pub refresh: Duration,
}

fn default_list_duration() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_list_refresh() -> Duration {
    Duration::from_secs(6 * 3600)
}

/// Blocklist file format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BlocklistFormat {
    /// One address or CIDR per line, `#` comments (FireHOL style).
    #[default]
    Text,
    /// A JSON array of addresses, or of objects with a `value` (or `ip`) field.
    Json,
}

/// CrowdSec Central API settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Central {
    /// Talk to the Central API. A fresh install makes no outbound call.
    #[serde(default)]
    pub enable: bool,
    /// Share anonymised signals (scenario, source, times; never log content).
    #[serde(default = "yes")]
    pub share_signals: bool,
    /// How often to pull the community blocklist.
    #[serde(default = "default_central_pull")]
    pub pull_interval: Duration,
    /// The Central API's URL.
    #[serde(default = "default_central_url")]
    pub url: String,
}

impl Default for Central {
    fn default() -> Self {
        Central {
            enable: false,
            share_signals: true,
            pull_interval: default_central_pull(),
            url: default_central_url(),
        }
    }
}

fn default_central_url() -> String {
    "https://api.crowdsec.net/".into()
}

fn default_central_pull() -> Duration {
    Duration::from_secs(2 * 3600)
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Metrics {
    /// Serve metrics.
    #[serde(default = "yes")]
    pub enable: bool,
    /// Address and port.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enable: true,
            listen: default_metrics_listen(),
        }
    }
}

fn default_metrics_listen() -> String {
    "127.0.0.1:6060".into()
}
