//! `garrison explain`: why a line was (or was not) detected.

use super::replay::{Output, meta_of};
use crate::acquire::lines::{ReadStats, for_each_line};
use crate::compile::{CompileOptions, compile_path_with};
use crate::detect::Detector;
use crate::event::{Event, Namespace};
use crate::parse::timefmt::TimeContext;
use crate::parse::{Outcome, Pipeline, TraceStep};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `garrison explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Configuration file; the embedded default when absent.
    #[arg(long, short, env = "GARRISON_CONFIG")]
    pub config: Option<PathBuf>,
    /// The acquisition type of the lines.
    #[arg(long = "type", short = 't')]
    pub log_type: String,
    /// One line to explain.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    pub line: Option<String>,
    /// A file whose every line is explained.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Disable the whitelists.
    #[arg(long)]
    pub no_whitelist: bool,
    /// Consider every shipped rule, not only the enabled collections.
    #[arg(long)]
    pub all_rules: bool,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Runs `garrison explain`.
pub fn run(args: &ExplainArgs) -> ExitCode {
    let compiled = match compile_path_with(
        args.config.as_deref(),
        CompileOptions {
            all_rules: args.all_rules,
        },
    ) {
        Ok(c) => c,
        Err(d) => {
            eprint!("{d}");
            return ExitCode::FAILURE;
        }
    };
    let rs = compiled.ruleset;
    let detector = Detector::new(rs.clone());
    let mut pipeline = Pipeline::new(rs.clone(), TimeContext::new(jiff::Timestamp::now()));
    pipeline.no_whitelist = args.no_whitelist;
    let log_type = crate::event::intern(&args.log_type);
    let bytes = match (&args.line, &args.file) {
        (Some(l), _) => l.clone().into_bytes(),
        (None, Some(f)) => match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("cannot read {}: {e}", f.display());
                return ExitCode::FAILURE;
            }
        },
        (None, None) => return ExitCode::FAILURE,
    };
    let mut stats = ReadStats::default();
    let mut out = super::records::Records::stdout();
    let mut n = 0u64;
    let mut event = Event::new(String::new(), jiff::Timestamp::now(), rs.fields.len());
    for_each_line(&bytes, &mut stats, |line| {
        n += 1;
        event.reset(line, jiff::Timestamp::now());
        let mut trace: Vec<TraceStep> = Vec::new();
        let outcome = pipeline.parse(&mut event, log_type, Some(&mut trace));
        let parsed = !matches!(outcome, Outcome::Unparsed(_));
        let poured: Vec<&str> = if outcome == Outcome::Parsed {
            detector
                .matching(&event)
                .into_iter()
                .map(|i| &*rs.scenarios[i].name)
                .collect()
        } else {
            Vec::new()
        };
        let meta = meta_of(&rs, &event);
        match args.output {
            Output::Json => {
                let v = serde_json::json!({
                    "line": n,
                    "parsed": parsed,
                    "meta": meta,
                    "whitelisted": event.whitelisted,
                    "poured": poured,
                    "parsers": trace.iter().map(|t| serde_json::json!({"stage": t.stage.as_str(), "parser": &*t.parser, "success": t.success})).collect::<Vec<_>>(),
                });
                let _ = writeln!(out, "{v}");
            }
            Output::Table => {
                let _ = writeln!(out, "line {n}: {line}");
                for t in &trace {
                    let _ = writeln!(
                        out,
                        "  {:<7} {:<28} {}",
                        t.stage.as_str(),
                        t.parser,
                        if t.success { "ok" } else { "no match" }
                    );
                }
                match &outcome {
                    Outcome::Unparsed(stage) => {
                        let _ = writeln!(
                            out,
                            "  => not parsed: no {} parser accepted the line",
                            stage.as_str()
                        );
                    }
                    Outcome::Whitelisted(r) => {
                        let _ =
                            writeln!(out, "  => whitelisted ({r}); it never pours into a bucket");
                    }
                    Outcome::Parsed => {}
                }
                for (k, v) in &meta {
                    let _ = writeln!(out, "  meta.{k} = {}", v.as_str().unwrap_or_default());
                }
                for i in 0..rs.fields.len() {
                    let id = crate::event::FieldId(i as u16);
                    let (ns, name) = rs.fields.name(id);
                    if ns == Namespace::Parsed && event.is_set(id) {
                        let _ = writeln!(out, "  parsed.{name} = {}", event.get(id));
                    }
                }
                if outcome == Outcome::Parsed {
                    if poured.is_empty() {
                        let _ = writeln!(out, "  => parsed; no enabled scenario's filter matches");
                    } else {
                        let _ = writeln!(out, "  => pours into: {}", poured.join(", "));
                    }
                }
            }
        }
        let _ = out.end_record();
    });
    let _ = out.flush();
    ExitCode::SUCCESS
}
