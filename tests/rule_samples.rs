//! Every parser's `samples` run as tests: a positive sample must be accepted by its parser and
//! end with the listed `Meta` fields; a negative one (`parses=#false`) must not be accepted by it.
//! Every parsed sample also pours into exactly the scenarios whose filters, run in full, accept
//! it: the detector's `log_type` index and filter guards may skip filters, never change a verdict.

use garrison::compile::{CompileOptions, compile_path_with};
use garrison::data::DataKind;
use garrison::detect::Detector;
use garrison::event::Event;
use garrison::parse::timefmt::TimeContext;
use garrison::parse::{Pipeline, TraceStep};

#[test]
fn parser_samples_hold() {
    let compiled = compile_path_with(None, CompileOptions { all_rules: true })
        .unwrap_or_else(|d| panic!("shipped rules must compile:\n{d}"));
    let rs = compiled.ruleset;
    let mut pipeline = Pipeline::new(rs.clone(), TimeContext::new(jiff::Timestamp::now()));
    pipeline.no_whitelist = true;
    let mut detector = Detector::new(rs.clone());
    let (mut checked, mut failures) = (0, Vec::new());
    let mut poured_samples = 0;
    for stage in &rs.stages {
        for parser in stage {
            for (i, sample) in parser.samples.iter().enumerate() {
                checked += 1;
                let mut event = Event::new(String::new(), jiff::Timestamp::now(), rs.fields.len());
                event.reset(&sample.line, jiff::Timestamp::now());
                let mut trace: Vec<TraceStep> = Vec::new();
                let log_type = garrison::event::intern(&sample.log_type);
                let _ = pipeline.parse(&mut event, log_type, Some(&mut trace));
                let accepted = trace.iter().any(|t| t.parser == parser.name && t.success);
                let at = format!("parser {} sample {i} ({})", parser.name, sample.line);
                if accepted != sample.parses {
                    let tried: Vec<String> = trace
                        .iter()
                        .map(|t| format!("{}:{}", t.parser, t.success))
                        .collect();
                    failures.push(format!(
                        "{at}: accepted={accepted}, expected {} (tried {tried:?})",
                        sample.parses
                    ));
                    continue;
                }
                if accepted {
                    let full = detector.matching(&event);
                    let mut alerts = Vec::new();
                    let poured = detector.pour(&event, event.time, &mut alerts);
                    if poured != full {
                        failures.push(format!(
                            "{at}: poured into {poured:?}, but the filters accept {full:?}"
                        ));
                    }
                    poured_samples += usize::from(!poured.is_empty());
                }
                for (k, want) in &sample.meta {
                    let have = rs
                        .fields
                        .get(garrison::event::Namespace::Meta, k)
                        .map(|id| event.get(id).to_owned())
                        .unwrap_or_default();
                    if &have != want {
                        failures.push(format!("{at}: meta.{k} = {have:?}, expected {want:?}"));
                    }
                }
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} samples: every parser should carry several"
    );
    assert!(
        poured_samples >= 20,
        "only {poured_samples} samples pour anywhere: the index check needs more"
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} samples fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Shipped regex lists are built by the first value an expression tests against one (a
/// syslog replay never builds the web lists): this builds each, so that a line the regex
/// crate refuses fails here and not in some user's running daemon.
#[test]
fn every_shipped_regex_list_builds() {
    let compiled = compile_path_with(None, CompileOptions { all_rules: true })
        .unwrap_or_else(|d| panic!("shipped rules must compile:\n{d}"));
    let data = &compiled.ruleset.data;
    let mut built = 0;
    for name in data.names() {
        let list = data.get(data.id(name).expect("a listed name has an id"));
        if list.kind == DataKind::Regexes {
            assert!(list.shipped, "{name}");
            if let Err(e) = list.regex_set() {
                panic!("{e}");
            }
            built += 1;
        }
    }
    assert!(built > 0, "no shipped regex list");
}

/// The shipped rules' regexes are built on first use, not when the rules compile: this
/// builds every one, so that a shipped pattern the regex crate refuses fails here and not
/// on some user's first matching line.
#[test]
fn every_shipped_grok_builds() {
    let compiled = compile_path_with(None, CompileOptions { all_rules: true })
        .unwrap_or_else(|d| panic!("shipped rules must compile:\n{d}"));
    let mut built = 0;
    let mut failures = Vec::new();
    for parser in compiled.ruleset.stages.iter().flatten() {
        for (i, g) in parser.groks.iter().enumerate() {
            match g.grok.regex() {
                Some(_) => built += 1,
                None => failures.push(format!("{} grok {i}: {}", parser.name, g.grok.as_str())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        built > 100,
        "only {built} groks: the shipped rules have shrunk"
    );
}
