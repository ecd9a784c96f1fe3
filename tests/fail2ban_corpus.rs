//! fail2ban's annotated sample logs (`../shared/corpora/fail2ban-logs`, GPL: read at test time,
//! never copied into the repository) replayed through garrison's shipped rules.
//!
//! Every file in `logs/` is mapped below to the garrison scenarios that play the part of its
//! fail2ban jail. Each annotated line (`# failJSON: {...}` before it, see the corpus's
//! MANIFEST.md) is parsed, with whitelists off (the corpus attacks from private and
//! documentation addresses), and checked against the scenarios' filters, as
//! `garrison explain` does:
//!
//! - `"match": true` with an IP `host`: the line must pour into one of the file's scenarios
//!   with that source address (IPv4-mapped IPv6 compared as IPv4) — counted in the recall;
//! - `"match": false` and unannotated lines: the line must pour into none of them with a source
//!   address (without one no decision can follow) — such a pour is a false positive unless
//!   `tests/fail2ban_exceptions.txt` lists it with its reason.
//!
//! Not scored (reported): `match: true` lines whose host is a DNS name, missing, or not
//! written in the line (fail2ban resolves names, and takes the host of a multi-line failure from
//! an earlier line of the same connection; garrison bans the address a line carries), and lines fail2ban itself annotates both ways in the same
//! file under different filter modes (e.g. a `normal` and an `aggressive` block): one garrison
//! rule set cannot agree with both. `filterOptions`, `fileOptions`, `test.condition` and
//! `constraint` are honoured: an annotation counts when it applies to at least one variant.
//!
//! How a line is read: sample files mix syslog-framed lines (from syslog or the journal) and
//! the service's own log format. Each line is read the way a deployment would receive it:
//! as acquisition type `syslog` when the syslog decoder and a service parser accept it,
//! otherwise as the file's own acquisition type (`nginx`, `mysql`, ...).
//!
//! The test fails when the total recall is under 98 %, when an unlisted false positive
//! occurs, when an exception no longer matches a false positive, or when a file has no
//! mapping. Run `cargo test --test fail2ban_corpus -- --nocapture` for the report table.

use garrison::compile::{CompileOptions, compile_path_with};
use garrison::detect::Detector;
use garrison::event::{Event, Namespace};
use garrison::expr::EvalCtx;
use garrison::parse::timefmt::TimeContext;
use garrison::parse::{Outcome, Pipeline, normalize_ip};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A fail2ban sample file and its garrison counterpart.
struct Jail {
    /// The sample file (and fail2ban filter) name.
    file: &'static str,
    /// Acquisition type of the lines that carry no syslog framing.
    acquisition: &'static str,
    /// The scenarios that play the part of the jail; `None`: no garrison counterpart, with why.
    scenarios: Result<&'static [&'static str], &'static str>,
}

const HTTP_AUTH: &[&str] = &["http-generic-bf"];
const SSH: &[&str] = &[
    "ssh-bf",
    "ssh-cve-2024-6387",
    "ssh-refused-conn",
    "ssh-bad-keyexchange-bf",
    "ssh-probing",
];

/// Every sample file fail2ban ships, including the ones withheld from this corpus.
const JAILS: &[Jail] = &[
    Jail {
        file: "apache-auth",
        acquisition: "apache2",
        scenarios: Ok(&[
            "http-generic-bf",
            "http-forbidden-probing",
            "http-invalid-request",
        ]),
    },
    Jail {
        file: "apache-badbots",
        acquisition: "apache2",
        scenarios: Ok(&["http-bad-user-agent"]),
    },
    Jail {
        file: "apache-botsearch",
        acquisition: "apache2",
        scenarios: Ok(&["http-probing", "http-admin-interface-probing"]),
    },
    Jail {
        file: "apache-nohome",
        acquisition: "apache2",
        scenarios: Ok(&["http-probing"]),
    },
    Jail {
        file: "apache-noscript",
        acquisition: "apache2",
        scenarios: Ok(&["http-probing"]),
    },
    Jail {
        file: "apache-overflows",
        acquisition: "apache2",
        scenarios: Ok(&["http-invalid-request"]),
    },
    Jail {
        file: "apache-shellshock",
        acquisition: "apache2",
        scenarios: Ok(&["http-shellshock"]),
    },
    Jail {
        file: "bitwarden",
        acquisition: "bitwarden",
        scenarios: Ok(&["bitwarden-bf"]),
    },
    Jail {
        file: "dovecot",
        acquisition: "dovecot",
        scenarios: Ok(&["dovecot-spam", "pam-bf"]),
    },
    Jail {
        file: "dropbear",
        acquisition: "dropbear",
        scenarios: Ok(SSH),
    },
    Jail {
        file: "exim",
        acquisition: "exim",
        scenarios: Ok(&["exim-bf", "exim-spam"]),
    },
    Jail {
        file: "gitlab",
        acquisition: "gitlab",
        scenarios: Ok(&["gitlab-bf"]),
    },
    Jail {
        file: "grafana",
        acquisition: "grafana",
        scenarios: Ok(&["grafana-bf"]),
    },
    Jail {
        file: "haproxy-http-auth",
        acquisition: "haproxy",
        scenarios: Ok(HTTP_AUTH),
    },
    Jail {
        file: "mysqld-auth",
        acquisition: "mysql",
        scenarios: Ok(&["mysql-bf"]),
    },
    Jail {
        file: "nginx-bad-request",
        acquisition: "nginx",
        scenarios: Ok(&["http-invalid-request"]),
    },
    Jail {
        file: "nginx-botsearch",
        acquisition: "nginx",
        scenarios: Ok(&["http-probing", "http-admin-interface-probing"]),
    },
    Jail {
        file: "nginx-forbidden",
        acquisition: "nginx",
        scenarios: Ok(&["http-forbidden-probing"]),
    },
    Jail {
        file: "nginx-http-auth",
        acquisition: "nginx",
        scenarios: Ok(&["http-generic-bf", "http-tls-probing"]),
    },
    Jail {
        file: "nginx-limit-req",
        acquisition: "nginx",
        scenarios: Ok(&["nginx-req-limit-exceeded"]),
    },
    Jail {
        file: "pam-generic",
        acquisition: "syslog",
        scenarios: Ok(&["pam-bf", "ssh-bf", "vsftpd-bf", "proftpd-bf", "pureftpd-bf"]),
    },
    Jail {
        file: "postfix",
        acquisition: "postfix",
        scenarios: Ok(&[
            "postfix-spam",
            "postfix-relay-denied",
            "postfix-helo-rejected",
            "postfix-non-smtp-command",
            "postscreen-rbl",
            "postfix-sasl-bf",
        ]),
    },
    Jail {
        file: "proftpd",
        acquisition: "proftpd",
        scenarios: Ok(&["proftpd-bf"]),
    },
    Jail {
        file: "pure-ftpd",
        acquisition: "pure-ftpd",
        scenarios: Ok(&["pureftpd-bf"]),
    },
    Jail {
        file: "recidive",
        acquisition: "fail2ban",
        scenarios: Err(
            "fail2ban's own ban log: garrison escalates repeat offenders in its profiles, it does not read fail2ban's log",
        ),
    },
    Jail {
        file: "roundcube-auth",
        acquisition: "roundcube",
        scenarios: Ok(&["roundcube-bf"]),
    },
    Jail {
        file: "sshd",
        acquisition: "sshd",
        scenarios: Ok(SSH),
    },
    Jail {
        file: "sshd-journal",
        acquisition: "sshd",
        scenarios: Ok(SSH),
    },
    Jail {
        file: "traefik-auth",
        acquisition: "traefik",
        scenarios: Ok(HTTP_AUTH),
    },
    Jail {
        file: "vaultwarden",
        acquisition: "vaultwarden",
        scenarios: Ok(&["vaultwarden-bf"]),
    },
    Jail {
        file: "vsftpd",
        acquisition: "vsftpd",
        scenarios: Ok(&["vsftpd-bf", "pam-bf"]),
    },
    Jail {
        file: "zzz-generic-example",
        acquisition: "syslog",
        scenarios: Err(
            "fail2ban's synthetic test filter for a made-up `test-demo` daemon, not a real service",
        ),
    },
    Jail {
        file: "zzz-sshd-obsolete-multiline",
        acquisition: "sshd",
        scenarios: Ok(SSH),
    },
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/fail2ban-logs")
}

/// The filter options a line is tested with (fail2ban builds one filter per variant).
type Variant = serde_json::Map<String, Value>;

/// One log line of a sample file with its expectation.
struct Sample {
    line_no: usize,
    text: String,
    annotation: Option<serde_json::Map<String, Value>>,
    variants: Vec<Variant>,
}

/// Reads a sample file the way fail2ban's `samplestestcase.py` does.
fn read_samples(path: &Path) -> Vec<Sample> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut pending: Option<serde_json::Map<String, Value>> = None;
    let mut file_options = Variant::new();
    let mut variants: Vec<Variant> = vec![Variant::new()];
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(annotation) = pending.take() {
            out.push(Sample {
                line_no: i + 1,
                text: line.to_owned(),
                annotation: Some(annotation),
                variants: variants.clone(),
            });
            continue;
        }
        if let Some((key, json)) = annotation_of(line) {
            let value: Value = serde_json::from_str(json.trim())
                .unwrap_or_else(|e| panic!("{}:{}: bad {key} JSON: {e}", path.display(), i + 1));
            match key {
                "failJSON" => {
                    pending = Some(value.as_object().cloned().unwrap_or_else(|| {
                        panic!("{}:{}: failJSON is not an object", path.display(), i + 1)
                    }))
                }
                "fileOptions" => file_options = value.as_object().cloned().unwrap_or_default(),
                "filterOptions" => {
                    let list = match value {
                        Value::Array(a) => a,
                        v => vec![v],
                    };
                    variants = list
                        .into_iter()
                        .map(|v| {
                            let mut merged = file_options.clone();
                            merged.extend(v.as_object().cloned().unwrap_or_default());
                            merged
                        })
                        .collect();
                }
                // The added file is a sample file of its own here, mapped in JAILS.
                _ => {}
            }
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(Sample {
            line_no: i + 1,
            text: line.to_owned(),
            annotation: None,
            variants: variants.clone(),
        });
    }
    out
}

/// `# failJSON: {...}` and friends: one or more `#`, an optional space, keyword, colon.
fn annotation_of(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start_matches('#');
    if rest.len() == line.len() {
        return None;
    }
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    ["failJSON", "fileOptions", "filterOptions", "addFILE"]
        .into_iter()
        .find_map(|k| Some((k, rest.strip_prefix(k)?.strip_prefix(':')?)))
}

/// Evaluates the corpus's Python conditions (`name == 'sshd'`,
/// `opts.get('mode') != 'aggressive'`) for one variant; anything else fails the test loudly.
fn condition_holds(expr: &str, filter: &str, variant: &Variant) -> bool {
    let (lhs, rhs, equal) = if let Some((l, r)) = expr.split_once("==") {
        (l, r, true)
    } else if let Some((l, r)) = expr.split_once("!=") {
        (l, r, false)
    } else {
        panic!("unsupported fail2ban condition `{expr}`: teach condition_holds about it")
    };
    let value = rhs.trim().trim_matches(|c| c == '\'' || c == '"');
    let lhs = lhs.trim();
    let actual = if lhs == "name" {
        filter.to_owned()
    } else if let Some(key) = lhs
        .strip_prefix("opts.get(")
        .and_then(|k| k.strip_suffix(')'))
    {
        let key = key.trim_matches(|c| c == '\'' || c == '"');
        variant
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    } else {
        panic!("unsupported fail2ban condition `{expr}`: teach condition_holds about it")
    };
    (actual == value) == equal
}

/// Whether fail2ban checks the line's annotation for at least one of its variants.
fn applies(sample: &Sample, filter: &str) -> bool {
    let constraint = sample
        .annotation
        .as_ref()
        .and_then(|a| a.get("constraint"))
        .and_then(Value::as_str);
    sample.variants.iter().any(|v| {
        let cond = v.get("test.condition").and_then(Value::as_str);
        cond.is_none_or(|c| condition_holds(c, filter, v))
            && constraint.is_none_or(|c| condition_holds(c, filter, v))
    })
}

/// `file:line` → reason, from `tests/fail2ban_exceptions.txt`.
fn exceptions() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fail2ban_exceptions.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        assert!(
            !reason.trim().is_empty(),
            "exception `{key}` has no reason: every exception says why"
        );
        out.insert(key.to_owned(), reason.trim().to_owned());
    }
    out
}

#[derive(Default)]
struct Row {
    lines: usize,
    expected: usize,
    detected: usize,
    false_positives: usize,
    excepted: usize,
    unscored: usize,
}

#[test]
fn fail2ban_samples_are_detected_without_false_positives() {
    let logs = corpus().join("logs");
    let mut files: Vec<String> = std::fs::read_dir(&logs)
        .unwrap_or_else(|e| {
            panic!(
                "{} must exist (the shared corpora beside the checkout): {e}",
                logs.display()
            )
        })
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "only {} sample files in {}",
        files.len(),
        logs.display()
    );

    let compiled = compile_path_with(None, CompileOptions { all_rules: true })
        .unwrap_or_else(|d| panic!("shipped rules must compile:\n{d}"));
    let rs = compiled.ruleset;
    let source_ip = rs
        .fields
        .get(Namespace::Meta, "source_ip")
        .expect("parsers set Meta.source_ip");
    // fail2ban's harness pins "now" to 2005-08-14 10:00 UTC; year-less dates follow it.
    let now: jiff::Timestamp = "2005-08-14T10:00:00Z".parse().expect("a valid instant");
    let mut pipeline = Pipeline::new(rs.clone(), TimeContext::new(now));
    pipeline.no_whitelist = true;
    let mut event = Event::new(String::new(), now, rs.fields.len());
    let syslog: &'static str = "syslog";

    let exceptions = exceptions();
    let mut used_exceptions: Vec<String> = Vec::new();
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();
    let mut misses: Vec<String> = Vec::new();
    let mut not_applicable: Vec<String> = Vec::new();
    let mut unscored: Vec<String> = Vec::new();

    for file in &files {
        let Some(jail) = JAILS.iter().find(|j| j.file == *file) else {
            problems.push(format!(
                "{file}: no mapping to garrison scenarios; add it to JAILS in tests/fail2ban_corpus.rs"
            ));
            continue;
        };
        let scenarios = match jail.scenarios {
            Ok(s) => s,
            Err(why) => {
                not_applicable.push(format!("{file}: {why}"));
                continue;
            }
        };
        let mut detector = Detector::new(rs.clone());
        let unknown = detector.only(&scenarios.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(unknown.is_empty(), "{file}: unknown scenarios {unknown:?}");
        let acquisition = jail.acquisition;
        let samples = read_samples(&logs.join(file));

        // Lines fail2ban annotates both ways (one text, several filter modes) are not scored.
        let mut verdicts: HashMap<&str, (bool, bool)> = HashMap::new();
        for s in samples.iter().filter(|s| applies(s, jail.file)) {
            let want =
                s.annotation.as_ref().and_then(|a| a.get("match")) == Some(&Value::Bool(true));
            let v = verdicts.entry(s.text.as_str()).or_default();
            if want {
                v.0 = true;
            } else {
                v.1 = true;
            }
        }

        let row = rows.entry(file.clone()).or_default();
        for s in &samples {
            if !applies(s, jail.file) {
                continue;
            }
            row.lines += 1;
            let want =
                s.annotation.as_ref().and_then(|a| a.get("match")) == Some(&Value::Bool(true));
            if verdicts.get(s.text.as_str()) == Some(&(true, true)) {
                row.unscored += 1;
                unscored.push(format!(
                    "{file}:{} (annotated both ways): {}",
                    s.line_no, s.text
                ));
                continue;
            }
            let raw_host = s
                .annotation
                .as_ref()
                .and_then(|a| a.get("host"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let host = normalize_ip(raw_host);
            // A line-based detector bans the address written in the line: a DNS name, or an
            // address fail2ban took from an earlier line of the same connection, is not scored.
            if want && (host.is_none() || !s.text.contains(raw_host)) {
                row.unscored += 1;
                unscored.push(format!(
                    "{file}:{} (host {raw_host:?}): {}",
                    s.line_no, s.text
                ));
                continue;
            }

            // Syslog framing first, then the service's own format.
            let mut parsed = false;
            for log_type in [syslog, acquisition] {
                event.reset(&s.text, now);
                if pipeline.parse(&mut event, log_type, None) == Outcome::Parsed {
                    parsed = true;
                    break;
                }
            }
            let poured: Vec<(&str, Option<IpAddr>)> = if parsed {
                detector
                    .matching(&event)
                    .into_iter()
                    .map(|i| &rs.scenarios[i])
                    .filter(|sc| !cancels(sc, &event, &rs))
                    .map(|sc| (&*sc.name, normalize_ip(event.get(source_ip))))
                    .collect()
            } else {
                Vec::new()
            };

            let at = format!("{file}:{}", s.line_no);
            if want {
                row.expected += 1;
                if poured.iter().any(|(_, ip)| *ip == host) {
                    row.detected += 1;
                } else {
                    misses.push(format!("{at}: {} (poured: {poured:?})", s.text));
                }
            } else if poured.iter().any(|(_, ip)| ip.is_some()) {
                if exceptions.contains_key(&at) {
                    row.excepted += 1;
                    used_exceptions.push(at);
                } else {
                    row.false_positives += 1;
                    let names: Vec<&str> = poured.iter().map(|(n, _)| *n).collect();
                    problems.push(format!("false positive {at}: {} -> {names:?}", s.text));
                }
            }
        }
    }

    for key in exceptions.keys() {
        if !used_exceptions.contains(key) {
            problems.push(format!(
                "stale exception {key}: no longer a false positive; remove it from tests/fail2ban_exceptions.txt"
            ));
        }
    }

    let total = rows.values().fold(Row::default(), |mut t, r| {
        t.lines += r.lines;
        t.expected += r.expected;
        t.detected += r.detected;
        t.false_positives += r.false_positives;
        t.excepted += r.excepted;
        t.unscored += r.unscored;
        t
    });
    let pct = |r: &Row| {
        if r.expected == 0 {
            100.0
        } else {
            100.0 * r.detected as f64 / r.expected as f64
        }
    };
    println!(
        "{:<28} {:>6} {:>9} {:>9} {:>8} {:>4} {:>9} {:>9}",
        "file", "lines", "expected", "detected", "recall", "FP", "excepted", "unscored"
    );
    for (file, r) in rows
        .iter()
        .chain(std::iter::once((&"TOTAL".to_owned(), &total)))
    {
        println!(
            "{:<28} {:>6} {:>9} {:>9} {:>7.1}% {:>4} {:>9} {:>9}",
            file,
            r.lines,
            r.expected,
            r.detected,
            pct(r),
            r.false_positives,
            r.excepted,
            r.unscored
        );
    }
    for n in &not_applicable {
        println!("not applicable: {n}");
    }
    for u in &unscored {
        println!("not scored {u}");
    }
    for m in &misses {
        println!("missed {m}");
    }

    let recall = pct(&total);
    if recall < 98.0 {
        problems.push(format!(
            "total recall {recall:.1}% ({} of {}) is under 98%",
            total.detected, total.expected
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// An event that cancels a bucket (a successful login) is no evidence against its source.
fn cancels(
    sc: &garrison::compile::CompiledScenario,
    event: &Event,
    rs: &garrison::compile::Ruleset,
) -> bool {
    sc.cancel_on
        .as_ref()
        .is_some_and(|c| c.eval_bool(&EvalCtx::for_event(event, &rs.data)))
}
