//! `garrison metrics`: the daemon's Prometheus metrics as readable tables, like
//! `cscli metrics`.

use crate::metrics::{Sample, parse_text};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `garrison metrics`.
#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// Configuration file (for `metrics.listen`); the embedded default when absent.
    #[arg(long, short, env = "GARRISON_CONFIG")]
    pub config: Option<PathBuf>,
    /// The metrics URL (overrides the configuration).
    #[arg(long)]
    pub url: Option<String>,
    /// Print the raw OpenMetrics text.
    #[arg(long)]
    pub raw: bool,
}

/// Runs `garrison metrics`.
pub fn run(args: &MetricsArgs) -> ExitCode {
    let url = match &args.url {
        Some(u) => u.clone(),
        None => match crate::config::load(args.config.as_deref()) {
            Ok(cfg) => format!("http://{}/metrics", cfg.config.metrics.listen),
            Err(d) => {
                eprint!("{d}");
                return ExitCode::FAILURE;
            }
        },
    };
    let text = match ureq::get(&url).call() {
        Ok(mut r) => match r.body_mut().read_to_string() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("cannot read {url}: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!(
                "cannot reach the metrics endpoint {url}: {e}\nis garrison running, with metrics enabled?"
            );
            return ExitCode::FAILURE;
        }
    };
    if args.raw {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    print!("{}", render(&parse_text(&text)));
    ExitCode::SUCCESS
}

/// Groups samples named `garrison_<metric>_total` by one label into a table.
fn table(
    samples: &[Sample],
    key_label: &str,
    columns: &[(&str, &str)],
) -> Option<comfy_table::Table> {
    let mut rows: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (i, (metric, _)) in columns.iter().enumerate() {
        for s in samples.iter().filter(|s| s.name == *metric) {
            let key = s
                .labels
                .iter()
                .find(|(k, _)| k == key_label)
                .map_or_else(String::new, |(_, v)| v.clone());
            rows.entry(key).or_insert_with(|| vec![0.0; columns.len()])[i] += s.value;
        }
    }
    if rows.is_empty() {
        return None;
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    let mut header = vec![key_label.to_owned()];
    header.extend(columns.iter().map(|(_, h)| (*h).to_owned()));
    t.set_header(header);
    for (k, vals) in rows {
        let mut row = vec![k];
        row.extend(vals.iter().map(|v| format!("{v}")));
        t.add_row(row);
    }
    Some(t)
}

/// A table: title, the label rows are keyed by, and (metric, column header) pairs.
type Section = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Every table of the metrics.
pub fn render(samples: &[Sample]) -> String {
    let mut out = String::new();
    let sections: [Section; 3] = [
        (
            "Acquisition",
            "source",
            &[
                ("garrison_lines_read_total", "read"),
                ("garrison_lines_parsed_total", "parsed"),
                ("garrison_lines_unparsed_total", "unparsed"),
                ("garrison_lines_whitelisted_total", "whitelisted"),
                ("garrison_lines_skipped_total", "skipped"),
            ],
        ),
        (
            "Scenarios",
            "scenario",
            &[
                ("garrison_bucket_pours_total", "pours"),
                ("garrison_bucket_overflows_total", "overflows"),
            ],
        ),
        (
            "Decisions",
            "origin",
            &[("garrison_active_decisions", "active")],
        ),
    ];
    for (title, key, cols) in sections {
        if let Some(t) = table(samples, key, cols) {
            out.push_str(&format!("{title}:\n{t}\n\n"));
        }
    }
    let latency: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name.starts_with("garrison_detection_latency_seconds"))
        .collect();
    let count = latency
        .iter()
        .find(|s| s.name.ends_with("_count"))
        .map_or(0.0, |s| s.value);
    if count > 0.0 {
        let sum = latency
            .iter()
            .find(|s| s.name.ends_with("_sum"))
            .map_or(0.0, |s| s.value);
        out.push_str(&format!(
            "Detection: {count} decisions, mean {:.2} ms from line to stored decision\n",
            sum / count * 1000.0
        ));
    }
    if out.is_empty() {
        out.push_str("no activity yet\n");
    }
    out
}
