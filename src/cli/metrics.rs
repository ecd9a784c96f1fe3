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

/// Groups the samples of `columns`' metrics by the values of `key_labels` into a table.
fn table(
    samples: &[Sample],
    key_labels: &[&str],
    columns: &[(&str, &str)],
) -> Option<comfy_table::Table> {
    let mut rows: BTreeMap<Vec<String>, Vec<f64>> = BTreeMap::new();
    for (i, (metric, _)) in columns.iter().enumerate() {
        for s in samples.iter().filter(|s| s.name == *metric) {
            let key = key_labels
                .iter()
                .map(|k| {
                    s.labels
                        .iter()
                        .find(|(l, _)| l == k)
                        .map_or_else(String::new, |(_, v)| v.clone())
                })
                .collect();
            rows.entry(key).or_insert_with(|| vec![0.0; columns.len()])[i] += s.value;
        }
    }
    if rows.is_empty() {
        return None;
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    let mut header: Vec<String> = key_labels.iter().map(|k| (*k).to_owned()).collect();
    header.extend(columns.iter().map(|(_, h)| (*h).to_owned()));
    t.set_header(header);
    for (k, vals) in rows {
        let mut row = k;
        row.extend(vals.iter().map(|v| format!("{v}")));
        t.add_row(row);
    }
    Some(t)
}

/// A table: title, the labels rows are keyed by, and (metric, column header) pairs.
type Section = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

/// A histogram's count, mean and bucket-bound quantiles, from its `_bucket`, `_sum` and
/// `_count` samples.
struct HistogramSummary {
    count: f64,
    mean: f64,
    /// Upper bounds of the buckets holding the 50th and 99th percentiles (`inf` when past
    /// the last bucket).
    p50: f64,
    p99: f64,
}

fn histogram(samples: &[Sample], name: &str) -> Option<HistogramSummary> {
    let value = |suffix: &str| {
        samples
            .iter()
            .find(|s| s.name.strip_prefix(name) == Some(suffix))
            .map(|s| s.value)
    };
    let count = value("_count")?;
    if count <= 0.0 {
        return None;
    }
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.name.strip_prefix(name) == Some("_bucket"))
        .filter_map(|s| {
            let le = s.labels.iter().find(|(k, _)| k == "le")?;
            let bound = if le.1 == "+Inf" {
                f64::INFINITY
            } else {
                le.1.parse().ok()?
            };
            Some((bound, s.value))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let quantile = |q: f64| {
        buckets
            .iter()
            .find(|(_, cumulative)| *cumulative >= q * count)
            .map_or(f64::INFINITY, |(bound, _)| *bound)
    };
    Some(HistogramSummary {
        count,
        mean: value("_sum").unwrap_or(0.0) / count,
        p50: quantile(0.5),
        p99: quantile(0.99),
    })
}

fn ms(seconds: f64) -> String {
    if seconds.is_finite() {
        format!("{} ms", seconds * 1000.0)
    } else {
        "> 1000 ms".into()
    }
}

/// Every table of the metrics.
pub fn render(samples: &[Sample]) -> String {
    let mut out = String::new();
    let sections: [Section; 6] = [
        (
            "Acquisition",
            &["source"],
            &[
                ("garrison_lines_read_total", "read"),
                ("garrison_lines_parsed_total", "parsed"),
                ("garrison_lines_unparsed_total", "unparsed"),
                ("garrison_lines_whitelisted_total", "whitelisted"),
                ("garrison_lines_skipped_total", "skipped"),
            ],
        ),
        (
            "Parsers",
            &["source", "parser"],
            &[
                ("garrison_parser_hits_total", "hits"),
                ("garrison_parser_parsed_total", "parsed"),
                ("garrison_parser_unparsed_total", "unparsed"),
            ],
        ),
        (
            "Scenarios",
            &["scenario"],
            &[
                ("garrison_bucket_pours_total", "pours"),
                ("garrison_bucket_overflows_total", "overflows"),
            ],
        ),
        (
            "Active decisions",
            &["origin", "action"],
            &[("garrison_active_decisions", "active")],
        ),
        (
            "Blocklists",
            &["list", "source"],
            &[
                ("garrison_blocklist_entries", "entries"),
                ("garrison_blocklist_failing", "failing"),
            ],
        ),
        (
            "Local API requests",
            &["route", "method", "code"],
            &[("garrison_api_requests_total", "requests")],
        ),
    ];
    for (title, keys, cols) in sections {
        if let Some(t) = table(samples, keys, cols) {
            out.push_str(&format!("{title}:\n{t}\n"));
            if title == "Parsers" {
                // CrowdSec counts a hit only once a node's filter passed; here a line
                // counts as soon as the parser applies to its type and program.
                out.push_str("(hits: lines a parser was tried on, its filter included)\n");
            }
            out.push('\n');
        }
    }
    let latencies = [
        (
            "detection (line read → decision stored)",
            "garrison_detection_latency_seconds",
            "decisions",
        ),
        (
            "enforcement (decision stored → element in the kernel set)",
            "garrison_enforcement_latency_seconds",
            "transactions",
        ),
    ];
    let mut lat = comfy_table::Table::new();
    lat.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    lat.set_header(["latency", "count", "mean", "p50 ≤", "p99 ≤"]);
    let mut any = false;
    for (what, name, unit) in latencies {
        if let Some(h) = histogram(samples, name) {
            any = true;
            lat.add_row([
                what.to_owned(),
                format!("{} {unit}", h.count),
                format!("{:.3} ms", h.mean * 1000.0),
                ms(h.p50),
                ms(h.p99),
            ]);
        }
    }
    if any {
        out.push_str(&format!(
            "Latency (percentiles are bucket bounds):\n{lat}\n\n"
        ));
    }
    if out.is_empty() {
        out.push_str("no activity yet\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ApiLabels, Metrics, ParserLabels};

    /// The rendered line that mentions `needle`.
    fn row_with(text: &str, needle: &str) -> String {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no row with {needle} in\n{text}"))
            .to_owned()
    }

    #[test]
    fn tables_show_parsers_requests_and_latency() {
        let m = Metrics::new();
        let p = ParserLabels {
            source: "auth".into(),
            stage: "parse".into(),
            parser: "crowdsecurity/sshd-logs".into(),
        };
        m.parser_hits.get_or_create(&p).inc_by(10);
        m.parser_parsed.get_or_create(&p).inc_by(7);
        m.parser_unparsed.get_or_create(&p).inc_by(3);
        m.api_requests
            .get_or_create(&ApiLabels {
                route: "/v1/decisions/stream".into(),
                method: "GET".into(),
                code: "200".into(),
            })
            .inc_by(4);
        for v in [0.0004, 0.0004, 0.003] {
            m.enforcement_latency.observe(v);
        }
        let text = render(&parse_text(&m.encode()));
        let row = |needle: &str| row_with(&text, needle);
        let parser = row("crowdsecurity/sshd-logs");
        assert!(
            parser.contains("auth") && parser.contains(" 10 ") && parser.contains(" 7 "),
            "{parser}"
        );
        let api = row("/v1/decisions/stream");
        assert!(
            api.contains("GET") && api.contains("200") && api.contains(" 4 "),
            "{api}"
        );
        let enforcement = row("enforcement");
        // Two of three under 0.5 ms, the third in the 5 ms bucket.
        assert!(
            enforcement.contains("3 transactions")
                && enforcement.contains("0.5 ms")
                && enforcement.contains("5 ms"),
            "{enforcement}"
        );
    }

    #[test]
    fn tables_show_every_blocklist() {
        let m = Metrics::new();
        m.register_lists(|| {
            vec![
                crate::metrics::ListGauge {
                    list: "firehol_level1".into(),
                    source: "config",
                    entries: 4521,
                    last_success: Some(1_700_000_000_000),
                    failing: false,
                },
                crate::metrics::ListGauge {
                    list: "community".into(),
                    source: "central",
                    entries: 0,
                    last_success: None,
                    failing: true,
                },
            ]
        });
        let text = render(&parse_text(&m.encode()));
        let row = |needle: &str| row_with(&text, needle);
        let firehol = row("firehol_level1");
        assert!(
            firehol.contains("config") && firehol.contains(" 4521 "),
            "{firehol}"
        );
        let community = row("community");
        assert!(
            community.contains("central") && community.contains(" 1 "),
            "{community}"
        );
    }
}
