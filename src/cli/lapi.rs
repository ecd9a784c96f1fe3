//! `garrison decisions|alerts|bouncers|machines|lapi`: management commands that talk to the
//! running daemon over its Unix socket (so the daemon stays the database's only writer).

use crate::api::client::{Reply, request_blocking};
use clap::{Args, Subcommand, ValueEnum};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

/// How to reach the daemon, and how to print.
#[derive(Debug, Args)]
pub struct Conn {
    /// The daemon's Unix socket (default: from the configuration).
    #[arg(long, env = "GARRISON_SOCKET", global = true)]
    pub socket: Option<PathBuf>,
    /// Configuration file, to find the socket (`lapi.unix-socket` or
    /// `<daemon.state-dir>/garrison.sock`).
    #[arg(long, short, env = "GARRISON_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table for people.
    Table,
    /// JSON for programs.
    Json,
    /// Only the essential value (a new key).
    Raw,
}

/// `garrison decisions ...`.
#[derive(Debug, Args)]
pub struct DecisionsArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: DecisionsCmd,
}

/// Selects decisions by address or value.
#[derive(Debug, Args, Default)]
struct Select {
    /// An IP address (decisions on ranges containing it too).
    #[arg(long, short)]
    ip: Option<String>,
    /// A CIDR range.
    #[arg(long, short)]
    range: Option<String>,
    /// Scope (`ip`, `range`, `country`, ...).
    #[arg(long)]
    scope: Option<String>,
    /// Exact value.
    #[arg(long, short = 'v')]
    value: Option<String>,
    /// Decision type (`ban`, `captcha`).
    #[arg(long, short = 't', name = "type")]
    decision_type: Option<String>,
    /// Origin (`crowdsec`, `cscli`, `lists:NAME`, `CAPI`).
    #[arg(long)]
    origin: Option<String>,
    /// Scenario (or reason).
    #[arg(long, short)]
    scenario: Option<String>,
}

impl Select {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        for (k, v) in [
            ("ip", &self.ip),
            ("range", &self.range),
            ("scope", &self.scope),
            ("value", &self.value),
            ("type", &self.decision_type),
            ("origin", &self.origin),
            ("scenario", &self.scenario),
        ] {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        }
        q
    }
}

#[derive(Debug, Subcommand)]
enum DecisionsCmd {
    /// List decisions with their provenance.
    List {
        #[command(flatten)]
        select: Select,
        /// Include expired decisions still retained.
        #[arg(long, short)]
        all: bool,
        /// At most this many (0: all).
        #[arg(long, short, default_value_t = 100)]
        limit: usize,
    },
    /// Add a decision by hand (origin `cscli`, like `cscli decisions add`).
    Add {
        /// An IP address.
        #[arg(long, short, conflicts_with_all = ["range", "value"])]
        ip: Option<String>,
        /// A CIDR range.
        #[arg(long, short, conflicts_with = "value")]
        range: Option<String>,
        /// Scope for `--value` (`country`, `as`, ...).
        #[arg(long, requires = "value")]
        scope: Option<String>,
        /// Value for `--scope`.
        #[arg(long, short = 'v', requires = "scope")]
        value: Option<String>,
        /// How long (`4h`, `30m`, `7d`).
        #[arg(long, short, default_value = "4h")]
        duration: String,
        /// Why (shown as the decision's scenario).
        #[arg(long, short = 'R')]
        reason: Option<String>,
        /// Decision type.
        #[arg(long = "type", short = 't', default_value = "ban")]
        decision_type: String,
    },
    /// Delete decisions (they are expired, so bouncers see them go).
    Delete {
        /// An IP address (decisions on ranges containing it too).
        #[arg(long, short)]
        ip: Option<String>,
        /// A CIDR range.
        #[arg(long, short)]
        range: Option<String>,
        /// A decision id.
        #[arg(long)]
        id: Option<i64>,
        /// Every active decision.
        #[arg(long)]
        all: bool,
        /// Only this type.
        #[arg(long = "type", short = 't')]
        decision_type: Option<String>,
        /// Only this origin.
        #[arg(long)]
        origin: Option<String>,
        /// Only this scenario.
        #[arg(long, short)]
        scenario: Option<String>,
    },
    /// Import decisions from a file, like `cscli decisions import` (origin `cscli-import`).
    Import {
        /// The file (`-` for standard input).
        #[arg(long, short)]
        input: PathBuf,
        /// `csv` (header with `value` and optionally `duration,reason,scope,type`), `json`
        /// (an array of such objects), or `values` (one value per line). Guessed from the
        /// extension when absent.
        #[arg(long, value_parser = ["csv", "json", "values"])]
        format: Option<String>,
        /// Duration for entries without one.
        #[arg(long, short, default_value = "4h")]
        duration: String,
        /// Reason for entries without one.
        #[arg(long, short = 'R')]
        reason: Option<String>,
        /// Type for entries without one.
        #[arg(long = "type", short = 't', default_value = "ban")]
        decision_type: String,
        /// Scope for entries without one.
        #[arg(long, default_value = "ip")]
        scope: String,
    },
}

/// `garrison alerts ...`.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: AlertsCmd,
}

#[derive(Debug, Subcommand)]
enum AlertsCmd {
    /// List alerts, newest first.
    List {
        /// Source address (or ranges containing it).
        #[arg(long, short)]
        ip: Option<String>,
        /// Source range.
        #[arg(long, short)]
        range: Option<String>,
        /// Scenario.
        #[arg(long, short)]
        scenario: Option<String>,
        /// Only those since (`4h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// Only those with an active decision.
        #[arg(long)]
        active: bool,
        /// At most this many (0: all).
        #[arg(long, short, default_value_t = 50)]
        limit: usize,
    },
    /// Show one alert and its decisions.
    Inspect {
        /// The alert id.
        id: i64,
        /// Also show its events.
        #[arg(long, short)]
        details: bool,
    },
}

/// `garrison bouncers ...`.
#[derive(Debug, Args)]
pub struct BouncersArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: BouncersCmd,
}

#[derive(Debug, Subcommand)]
enum BouncersCmd {
    /// List bouncers and their last pull.
    List,
    /// Add a bouncer; prints its API key once.
    Add {
        /// Its name.
        name: String,
        /// Use this key instead of a random one.
        #[arg(long, short)]
        key: Option<String>,
    },
    /// Delete a bouncer (and the per-address copies of its key).
    Delete {
        /// Its name.
        name: String,
    },
}

/// `garrison machines ...`.
#[derive(Debug, Args)]
pub struct MachinesArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: MachinesCmd,
}

#[derive(Debug, Subcommand)]
enum MachinesCmd {
    /// List machines (agents).
    List,
    /// Add a validated machine; prints its password when generated.
    Add {
        /// Its login.
        name: String,
        /// Its password (random when absent).
        #[arg(long, short)]
        password: Option<String>,
    },
    /// Validate a machine that registered itself.
    Validate {
        /// Its login.
        name: String,
    },
    /// Delete a machine.
    Delete {
        /// Its login.
        name: String,
    },
}

/// `garrison lapi ...`.
#[derive(Debug, Args)]
pub struct LapiArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: LapiCmd,
}

#[derive(Debug, Subcommand)]
enum LapiCmd {
    /// Is the daemon up, where does it listen, how many decisions, bouncers, machines.
    Status,
}

/// A connection to the daemon's socket and the output format (shared by the management
/// commands).
pub(crate) struct Ctx {
    socket: PathBuf,
    pub(crate) output: Output,
}

impl Ctx {
    /// Finds the socket.
    pub(crate) fn new(conn: &Conn) -> Result<Ctx, String> {
        let socket = match &conn.socket {
            Some(s) => s.clone(),
            None => {
                let loaded = crate::config::load(conn.config.as_deref()).map_err(|d| {
                    format!("cannot read the configuration to find the socket:\n{d}")
                })?;
                crate::api::socket_path(&loaded.config)
            }
        };
        Ok(Ctx {
            socket,
            output: conn.output,
        })
    }

    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Reply, String> {
        let body = body.map(|b| b.to_string().into_bytes());
        request_blocking(&self.socket, method, path, body).map_err(|e| e.to_string())
    }

    /// Calls and expects a 2xx JSON answer.
    pub(crate) fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let r = self.call(method, path, body)?;
        if !r.status.is_success() {
            return Err(match r.status {
                StatusCode::NOT_FOUND if r.body.is_empty() => {
                    "the daemon does not know this command (is it an older garrison?)".into()
                }
                s => format!("{}: {}", s.as_u16(), r.error_text()),
            });
        }
        Ok(r.json())
    }

    /// Prints JSON, pretty.
    pub(crate) fn json(&self, v: &Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
        );
    }
}

pub(crate) fn query(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let enc: String = serde_urlencoded::to_string(pairs).unwrap_or_default();
    format!("?{enc}")
}

pub(crate) fn table(headers: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(headers.to_vec());
    t
}

pub(crate) fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(x) => x.to_string(),
    }
}

pub(crate) fn finish(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `garrison decisions`.
pub fn decisions(args: &DecisionsArgs) -> ExitCode {
    finish(Ctx::new(&args.conn).and_then(|c| decisions_in(&c, &args.cmd)))
}

fn decisions_in(c: &Ctx, cmd: &DecisionsCmd) -> Result<(), String> {
    match cmd {
        DecisionsCmd::List { select, all, limit } => {
            let mut q = select.query();
            if *all {
                q.push(("all", "true".into()));
            }
            q.push(("limit", limit.to_string()));
            let v = c.ok(
                Method::GET,
                &format!("/v1/garrison/decisions{}", query(&q)),
                None,
            )?;
            if c.output != Output::Table {
                c.json(&v);
                return Ok(());
            }
            let rows = v
                .get("decisions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if rows.is_empty() {
                println!("No active decisions.");
                return Ok(());
            }
            let mut t = table(&[
                "ID",
                "Source",
                "Scope:Value",
                "Reason",
                "Action",
                "Expiration",
                "Alert ID",
                "Machine",
            ]);
            for d in &rows {
                t.add_row(vec![
                    s(d, "id"),
                    s(d, "origin"),
                    format!("{}:{}", s(d, "scope"), s(d, "value")),
                    s(d, "scenario"),
                    s(d, "type"),
                    s(d, "duration"),
                    s(d, "alert_id"),
                    s(d, "machine_id"),
                ]);
            }
            println!("{t}");
            let total = v.get("total").and_then(Value::as_u64).unwrap_or(0);
            if total > rows.len() as u64 {
                println!("{} of {total} shown; --limit 0 shows all.", rows.len());
            }
            Ok(())
        }
        DecisionsCmd::Add {
            ip,
            range,
            scope,
            value,
            duration,
            reason,
            decision_type,
        } => {
            let (scope, value) = match (ip, range, scope, value) {
                (Some(ip), _, _, _) => ("Ip".to_owned(), ip.clone()),
                (_, Some(r), _, _) => ("Range".to_owned(), r.clone()),
                (_, _, Some(s), Some(v)) => (s.clone(), v.clone()),
                _ => return Err("give --ip, --range, or --scope with --value".into()),
            };
            let mut body = json!({"scope": scope, "value": value, "duration": duration, "type": decision_type});
            if let Some(r) = reason {
                body["reason"] = r.clone().into();
            }
            let v = c.ok(Method::POST, "/v1/garrison/decisions", Some(body))?;
            if c.output != Output::Table {
                c.json(&v);
            } else {
                println!("Decision successfully added");
                for r in v
                    .get("refused")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    println!("refused: {} ({})", s(r, "value"), s(r, "reason"));
                }
            }
            Ok(())
        }
        DecisionsCmd::Delete {
            ip,
            range,
            id,
            all,
            decision_type,
            origin,
            scenario,
        } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            for (k, v) in [
                ("ip", ip),
                ("range", range),
                ("type", decision_type),
                ("origin", origin),
                ("scenario", scenario),
            ] {
                if let Some(v) = v {
                    q.push((k, v.clone()));
                }
            }
            if let Some(i) = id {
                q.push(("id", i.to_string()));
            }
            if *all {
                q.push(("all", "true".into()));
            }
            if q.is_empty() {
                return Err("say what to delete: --ip, --range, --id or --all".into());
            }
            let v = c.ok(
                Method::DELETE,
                &format!("/v1/garrison/decisions{}", query(&q)),
                None,
            )?;
            if c.output != Output::Table {
                c.json(&v);
            } else {
                println!("{} decision(s) deleted", s(&v, "deleted"));
            }
            Ok(())
        }
        DecisionsCmd::Import {
            input,
            format,
            duration,
            reason,
            decision_type,
            scope,
        } => {
            let text = if input.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))?
            } else {
                std::fs::read_to_string(input).map_err(|e| format!("{}: {e}", input.display()))?
            };
            let format = format.clone().unwrap_or_else(|| {
                match input.extension().and_then(|e| e.to_str()) {
                    Some("csv") => "csv".into(),
                    Some("json") => "json".into(),
                    _ => "values".into(),
                }
            });
            let mut decisions = parse_import(&text, &format)?;
            for d in &mut decisions {
                if let Value::Object(o) = d {
                    o.entry("scope").or_insert_with(|| scope.clone().into());
                    o.entry("type")
                        .or_insert_with(|| decision_type.clone().into());
                }
            }
            let n = decisions.len();
            let mut body = json!({"decisions": decisions, "duration": duration});
            if let Some(r) = reason {
                body["reason"] = r.clone().into();
            }
            let v = c.ok(Method::POST, "/v1/garrison/decisions/import", Some(body))?;
            if c.output != Output::Table {
                c.json(&v);
            } else {
                println!("Imported {} of {n} decisions", s(&v, "added"));
            }
            Ok(())
        }
    }
}

/// Reads an import file into `{value, duration?, reason?, scope?, type?}` objects, like
/// `cscli decisions import` (CSV with a header, a JSON array, or one value per line).
pub fn parse_import(text: &str, format: &str) -> Result<Vec<Value>, String> {
    const FIELDS: [&str; 5] = ["value", "duration", "reason", "scope", "type"];
    let mut out = Vec::new();
    match format {
        "values" => {
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                out.push(json!({ "value": line }));
            }
        }
        "csv" => {
            let mut r = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(text.as_bytes());
            let headers = r.headers().map_err(|e| format!("CSV header: {e}"))?.clone();
            if !headers.iter().any(|h| h == "value") {
                return Err("the CSV header must have a `value` column (and optionally duration, reason, scope, type)".into());
            }
            for (i, rec) in r.records().enumerate() {
                let rec = rec.map_err(|e| format!("CSV line {}: {e}", i + 2))?;
                let mut o = serde_json::Map::new();
                for (h, v) in headers.iter().zip(rec.iter()) {
                    if FIELDS.contains(&h) && !v.is_empty() {
                        o.insert(h.to_owned(), v.into());
                    }
                }
                if !o.contains_key("value") {
                    return Err(format!("CSV line {}: no value", i + 2));
                }
                out.push(Value::Object(o));
            }
        }
        "json" => {
            let v: Value = serde_json::from_str(text).map_err(|e| format!("JSON: {e}"))?;
            let Value::Array(items) = v else {
                return Err("JSON: expected an array of {\"value\", ...} objects".into());
            };
            for (i, item) in items.into_iter().enumerate() {
                let Value::Object(o) = item else {
                    return Err(format!("JSON item {i}: not an object"));
                };
                let o: serde_json::Map<String, Value> = o
                    .into_iter()
                    .filter(|(k, v)| FIELDS.contains(&k.as_str()) && !v.is_null())
                    .map(|(k, v)| (k, v.as_str().map_or(v.clone(), |s| s.into())))
                    .collect();
                if !o.get("value").is_some_and(Value::is_string) {
                    return Err(format!("JSON item {i}: no string `value`"));
                }
                out.push(Value::Object(o));
            }
        }
        other => return Err(format!("unknown format `{other}`: csv, json or values")),
    }
    if out.is_empty() {
        return Err("no decisions in the input".into());
    }
    Ok(out)
}

/// Runs `garrison alerts`.
pub fn alerts(args: &AlertsArgs) -> ExitCode {
    finish(Ctx::new(&args.conn).and_then(|c| alerts_in(&c, &args.cmd)))
}

fn alerts_in(c: &Ctx, cmd: &AlertsCmd) -> Result<(), String> {
    match cmd {
        AlertsCmd::List {
            ip,
            range,
            scenario,
            since,
            active,
            limit,
        } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            for (k, v) in [
                ("ip", ip),
                ("range", range),
                ("scenario", scenario),
                ("since", since),
            ] {
                if let Some(v) = v {
                    q.push((k, v.clone()));
                }
            }
            if *active {
                q.push(("has_active_decision", "true".into()));
            }
            q.push(("limit", limit.to_string()));
            let v = c.ok(
                Method::GET,
                &format!("/v1/garrison/alerts{}", query(&q)),
                None,
            )?;
            if c.output != Output::Table {
                c.json(&v);
                return Ok(());
            }
            let rows = v.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                println!("No alerts.");
                return Ok(());
            }
            let mut t = table(&[
                "ID",
                "Value",
                "Reason",
                "Country",
                "AS",
                "Decisions",
                "Created at",
                "Machine",
            ]);
            for a in &rows {
                let src = a.get("source").cloned().unwrap_or(Value::Null);
                let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
                for d in a
                    .get("decisions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    *counts.entry(s(d, "type")).or_default() += 1;
                }
                let decisions: Vec<String> =
                    counts.iter().map(|(k, n)| format!("{k}:{n}")).collect();
                t.add_row(vec![
                    s(a, "id"),
                    format!("{}:{}", s(&src, "scope"), s(&src, "value")),
                    s(a, "scenario"),
                    s(&src, "cn"),
                    format!("{} {}", s(&src, "as_number"), s(&src, "as_name"))
                        .trim()
                        .to_owned(),
                    decisions.join(" "),
                    s(a, "created_at"),
                    s(a, "machine_id"),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        AlertsCmd::Inspect { id, details } => {
            let a = c.ok(Method::GET, &format!("/v1/garrison/alerts/{id}"), None)?;
            if c.output != Output::Table {
                c.json(&a);
                return Ok(());
            }
            let src = a.get("source").cloned().unwrap_or(Value::Null);
            println!(" - ID           : {}", s(&a, "id"));
            println!(" - Date         : {}", s(&a, "created_at"));
            println!(" - Machine      : {}", s(&a, "machine_id"));
            println!(" - Simulation   : {}", s(&a, "simulated"));
            println!(" - Reason       : {}", s(&a, "scenario"));
            println!(" - Events Count : {}", s(&a, "events_count"));
            println!(
                " - Scope:Value  : {}:{}",
                s(&src, "scope"),
                s(&src, "value")
            );
            println!(" - Country      : {}", s(&src, "cn"));
            println!(" - AS           : {}", s(&src, "as_name"));
            println!(" - Begin        : {}", s(&a, "start_at"));
            println!(" - End          : {}", s(&a, "stop_at"));
            println!(" - UUID         : {}", s(&a, "uuid"));
            let ds = a
                .get("decisions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !ds.is_empty() {
                println!("\nDecisions:");
                let mut t = table(&["ID", "scope:value", "action", "expiration", "origin"]);
                for d in &ds {
                    t.add_row(vec![
                        s(d, "id"),
                        format!("{}:{}", s(d, "scope"), s(d, "value")),
                        s(d, "type"),
                        s(d, "duration"),
                        s(d, "origin"),
                    ]);
                }
                println!("{t}");
            }
            if *details {
                for (i, e) in a
                    .get("events")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    println!("\nEvent {i} ({})", s(e, "timestamp"));
                    let mut t = table(&["Key", "Value"]);
                    for m in e
                        .get("meta")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        t.add_row(vec![s(m, "key"), s(m, "value")]);
                    }
                    println!("{t}");
                }
            }
            Ok(())
        }
    }
}

/// Runs `garrison bouncers`.
pub fn bouncers(args: &BouncersArgs) -> ExitCode {
    finish(Ctx::new(&args.conn).and_then(|c| bouncers_in(&c, &args.cmd)))
}

fn bouncers_in(c: &Ctx, cmd: &BouncersCmd) -> Result<(), String> {
    match cmd {
        BouncersCmd::List => {
            let v = c.ok(Method::GET, "/v1/garrison/bouncers", None)?;
            print_list(
                c,
                &v,
                &[
                    "Name",
                    "IP Address",
                    "Last API pull",
                    "Type",
                    "Version",
                    "Key file",
                ],
                |b| {
                    [
                        "name",
                        "ip_address",
                        "last_pull",
                        "type",
                        "version",
                        "key_file",
                    ]
                    .iter()
                    .map(|k| s(b, k))
                    .collect()
                },
            );
            Ok(())
        }
        BouncersCmd::Add { name, key } => {
            let mut body = json!({ "name": name });
            if let Some(k) = key {
                body["key"] = k.clone().into();
            }
            let v = c.ok(Method::POST, "/v1/garrison/bouncers", Some(body))?;
            match c.output {
                Output::Json => c.json(&v),
                Output::Raw => println!("{}", s(&v, "key")),
                Output::Table => println!(
                    "API key for '{name}':\n\n   {}\n\nPlease keep this key since you will not be able to retrieve it!",
                    s(&v, "key")
                ),
            }
            Ok(())
        }
        BouncersCmd::Delete { name } => {
            let v = c.ok(
                Method::DELETE,
                &format!("/v1/garrison/bouncers/{}", path_seg(name)),
                None,
            )?;
            if c.output == Output::Table {
                println!("bouncer '{name}' deleted");
            } else {
                c.json(&v);
            }
            Ok(())
        }
    }
}

/// Prints a list answer: as JSON unless the output is a table, else one row per element
/// of the array, made by `row`.
fn print_list(c: &Ctx, v: &Value, headers: &[&str], row: impl Fn(&Value) -> Vec<String>) {
    if c.output != Output::Table {
        c.json(v);
        return;
    }
    let mut t = table(headers);
    for item in v.as_array().into_iter().flatten() {
        t.add_row(row(item));
    }
    println!("{t}");
}

fn path_seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs `garrison machines`.
pub fn machines(args: &MachinesArgs) -> ExitCode {
    finish(Ctx::new(&args.conn).and_then(|c| machines_in(&c, &args.cmd)))
}

fn machines_in(c: &Ctx, cmd: &MachinesCmd) -> Result<(), String> {
    match cmd {
        MachinesCmd::List => {
            let v = c.ok(Method::GET, "/v1/garrison/machines", None)?;
            print_list(
                c,
                &v,
                &[
                    "Name",
                    "IP Address",
                    "Status",
                    "Version",
                    "Last push",
                    "Last Heartbeat",
                ],
                |m| {
                    let ok = m
                        .get("is_validated")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    vec![
                        s(m, "machine_id"),
                        s(m, "ip_address"),
                        if ok { "validated" } else { "pending" }.to_owned(),
                        s(m, "version"),
                        s(m, "last_push"),
                        s(m, "last_heartbeat"),
                    ]
                },
            );
            Ok(())
        }
        MachinesCmd::Add { name, password } => {
            let mut body = json!({ "machine_id": name });
            if let Some(p) = password {
                body["password"] = p.clone().into();
            }
            let v = c.ok(Method::POST, "/v1/garrison/machines", Some(body))?;
            match c.output {
                Output::Json => c.json(&v),
                Output::Raw => println!("{}", s(&v, "password")),
                Output::Table => {
                    println!("Machine '{name}' added and validated.");
                    if password.is_none() {
                        println!("Password (shown once): {}", s(&v, "password"));
                    }
                }
            }
            Ok(())
        }
        MachinesCmd::Validate { name } => {
            let v = c.ok(
                Method::POST,
                &format!("/v1/garrison/machines/{}/validate", path_seg(name)),
                None,
            )?;
            if c.output == Output::Table {
                println!("machine '{name}' validated");
            } else {
                c.json(&v);
            }
            Ok(())
        }
        MachinesCmd::Delete { name } => {
            let v = c.ok(
                Method::DELETE,
                &format!("/v1/garrison/machines/{}", path_seg(name)),
                None,
            )?;
            if c.output == Output::Table {
                println!("machine '{name}' deleted");
            } else {
                c.json(&v);
            }
            Ok(())
        }
    }
}

/// Runs `garrison lapi`.
pub fn lapi(args: &LapiArgs) -> ExitCode {
    finish(Ctx::new(&args.conn).and_then(|c| match args.cmd {
        LapiCmd::Status => {
            let v = c.ok(Method::GET, "/v1/garrison/lapi/status", None)?;
            if c.output != Output::Table {
                c.json(&v);
                return Ok(());
            }
            println!(
                "garrison {} is up ({} s)",
                s(&v, "version"),
                s(&v, "uptime_seconds")
            );
            for l in v
                .get("listen")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!("  listening on {}", l.as_str().unwrap_or_default());
            }
            println!("  database: {}", s(&v, "database"));
            println!(
                "  decisions: {} active, {} retained",
                s(&v, "decisions_active"),
                s(&v, "decisions_retained")
            );
            println!(
                "  bouncers: {}, machines: {}",
                s(&v, "bouncers"),
                s(&v, "machines")
            );
            println!(
                "  requests: {}, failed authentications: {}",
                s(&v, "requests"),
                s(&v, "failed_authentications")
            );
            Ok(())
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_read_csv_json_and_values() {
        let csv = "duration,scope,value\n24h,ip,192.0.2.1\n,range,198.51.100.0/24\n";
        let v = parse_import(csv, "csv").expect("csv");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["duration"], "24h");
        assert!(v[1].get("duration").is_none());
        let j = r#"[{"value":"192.0.2.9","type":"captcha","extra":1}]"#;
        let v = parse_import(j, "json").expect("json");
        assert_eq!(v[0], json!({"value":"192.0.2.9","type":"captcha"}));
        assert_eq!(
            parse_import("# c\n192.0.2.1\n\n", "values")
                .expect("values")
                .len(),
            1
        );
        assert!(parse_import("a,b\n1,2\n", "csv").is_err());
    }
}
