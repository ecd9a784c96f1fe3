//! Parity with CrowdSec's hub: every hub test in `../shared/corpora/crowdsec-hub/.tests` with a
//! non-empty `scenario.assert` is replayed through garrison's rules (only the scenarios its
//! `config.yaml` names, whitelists off, as `cscli hubtest` runs them), and the alerts must match
//! in number, scenario name, source and events count.
//!
//! The test reads each test's own `config.yaml` and `scenario.assert`, so hub tests we have not
//! seen run the same way. Known, reasoned exceptions are listed in `tests/hub_exceptions.txt`.

use garrison::cli::replay::{Output, ReplayArgs, replay_files};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn hub() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/crowdsec-hub")
}

/// The bits of a hub test's `config.yaml` we need (a flat YAML subset).
#[derive(Debug, Default)]
struct HubConfig {
    scenarios: Vec<String>,
    log_file: String,
    log_type: String,
    labels: Vec<(String, String)>,
}

fn parse_config(text: &str) -> HubConfig {
    let mut c = HubConfig::default();
    let mut section = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let unquote = |s: &str| s.trim().trim_matches('"').trim_matches('\'').to_owned();
        if let Some(item) = t.strip_prefix("- ") {
            if section == "scenarios" && !unquote(item).is_empty() {
                c.scenarios.push(unquote(item));
            }
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        let Some((k, v)) = t.split_once(':') else {
            continue;
        };
        if indented && section == "labels" {
            c.labels.push((k.trim().to_owned(), unquote(v)));
            continue;
        }
        section = k.trim().to_owned();
        match section.as_str() {
            "log_file" => c.log_file = unquote(v),
            "log_type" => c.log_type = unquote(v),
            _ => {}
        }
    }
    c
}

/// The scenario names (full hub names) a config entry refers to: a hub name
/// (`crowdsecurity/ssh-bf`), a bare name, or a relative path; a file may define several.
fn hub_scenario_names(entry: &str) -> Vec<String> {
    let root = hub().join("scenarios");
    let path = if entry.ends_with(".yaml") {
        hub().join(entry.trim_start_matches("./"))
    } else if let Some((author, name)) = entry.split_once('/') {
        root.join(author).join(format!("{name}.yaml"))
    } else {
        std::fs::read_dir(&root)
            .into_iter()
            .flatten()
            .filter_map(|a| a.ok())
            .map(|a| a.path().join(format!("{entry}.yaml")))
            .find(|p| p.exists())
            .unwrap_or_default()
    };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("name:"))
        .map(|n| n.trim().trim_matches('"').trim_matches('\'').to_owned())
        .collect()
}

fn short(name: &str) -> &str {
    name.rsplit_once('/').map_or(name, |(_, n)| n)
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Expected {
    scenario: String,
    sources: Vec<String>,
    events: Option<u64>,
    scope: Option<String>,
    value: Option<String>,
}

fn parse_assert(text: &str) -> (Option<usize>, BTreeMap<usize, Expected>) {
    let mut count = None;
    let mut by_index: BTreeMap<usize, Expected> = BTreeMap::new();
    let idx =
        |s: &str| -> Option<usize> { s.split("results[").nth(1)?.split(']').next()?.parse().ok() };
    let quoted = |s: &str| -> Option<String> { s.rsplit('"').nth(1).map(str::to_owned) };
    for line in text.lines().map(str::trim) {
        if let Some(n) = line.strip_prefix("len(results) == ") {
            count = n.trim().parse().ok();
            continue;
        }
        let Some(i) = idx(line) else { continue };
        if line.contains(".Events[") {
            continue;
        }
        let e = by_index.entry(i).or_default();
        if line.contains("GetScenario() == ") {
            e.scenario = quoted(line).unwrap_or_default();
        } else if line.contains("in results[") && line.contains("GetSources()") {
            if let Some(ip) = line.split('"').nth(1) {
                e.sources.push(ip.to_owned());
            }
        } else if let Some(n) = line.split("GetEventsCount() == ").nth(1) {
            e.events = n.trim().parse().ok();
        } else if line.contains(".GetScope() == ") {
            e.scope = quoted(line);
        } else if line.contains(".GetValue() == ") {
            e.value = quoted(line);
        }
    }
    (count, by_index)
}

fn exceptions() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hub_exceptions.txt");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn hub_scenario_tests_replay_to_the_same_alerts() {
    let tests_dir = hub().join(".tests");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&tests_dir)
        .unwrap_or_else(|e| {
            panic!(
                "{} must exist (shared/ beside the checkout): {e}",
                tests_dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let skip = exceptions();
    let (mut ran, mut failures) = (0, Vec::new());
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let assert = std::fs::read_to_string(dir.join("scenario.assert")).unwrap_or_default();
        if assert.trim().is_empty() || skip.contains(&name) {
            continue;
        }
        let cfg =
            parse_config(&std::fs::read_to_string(dir.join("config.yaml")).unwrap_or_default());
        let hub_names: Vec<String> = cfg
            .scenarios
            .iter()
            .flat_map(|s| hub_scenario_names(s))
            .collect();
        let args = ReplayArgs {
            config: None,
            log_type: cfg.log_type.clone(),
            labels: cfg.labels.clone(),
            scenarios: hub_names.iter().map(|n| short(n).to_owned()).collect(),
            no_whitelist: true,
            output: Output::Json,
            files: vec![dir.join(&cfg.log_file)],
        };
        ran += 1;
        let (findings, _) = match replay_files(&args, false) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: replay failed: {e}"));
                continue;
            }
        };
        // CrowdSec sorts results by full scenario name + sources, descending.
        let full = |short_name: &str| {
            hub_names
                .iter()
                .find(|h| short(h) == short_name)
                .cloned()
                .unwrap_or_else(|| short_name.to_owned())
        };
        let mut got: Vec<Expected> = findings
            .iter()
            .map(|f| Expected {
                scenario: full(&f.alert.scenario),
                sources: vec![f.alert.value.clone()],
                events: Some(f.alert.events_count),
                scope: Some(f.alert.scope.as_str().to_owned()),
                value: Some(f.alert.value.clone()),
            })
            .collect();
        got.sort_by(|a, b| {
            (b.scenario.clone() + &b.sources.join(","))
                .cmp(&(a.scenario.clone() + &a.sources.join(",")))
        });
        let (count, expected) = parse_assert(&assert);
        let mut problems = Vec::new();
        if let Some(n) = count
            && got.len() != n
        {
            problems.push(format!("{} alerts, expected {n}", got.len()));
        }
        for (i, want) in &expected {
            let Some(have) = got.get(*i) else {
                problems.push(format!(
                    "alert {i} missing (expected {} from {:?})",
                    want.scenario, want.sources
                ));
                continue;
            };
            if short(&have.scenario) != short(&want.scenario) {
                problems.push(format!(
                    "alert {i}: scenario {}, expected {}",
                    have.scenario, want.scenario
                ));
            }
            if let Some(e) = want.events
                && have.events != Some(e)
            {
                problems.push(format!(
                    "alert {i} ({}): {:?} events, expected {e}",
                    want.scenario, have.events
                ));
            }
            let value_ok = match (&want.value, &want.scope) {
                (Some(v), _) => have.value.as_deref() == Some(v.as_str()),
                (None, _) => want.sources.iter().all(|s| have.sources.contains(s)),
            };
            if !value_ok {
                problems.push(format!(
                    "alert {i} ({}): source {:?}, expected {:?} / {:?}",
                    want.scenario, have.value, want.value, want.sources
                ));
            }
            if let Some(s) = &want.scope
                && have.scope.as_deref() != Some(s.as_str())
            {
                problems.push(format!("alert {i}: scope {:?}, expected {s}", have.scope));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{name}:\n    {}", problems.join("\n    ")));
        }
    }
    assert!(
        ran >= 10,
        "only {ran} hub tests ran; is ../shared/corpora/crowdsec-hub complete?"
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} hub tests differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
