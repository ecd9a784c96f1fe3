//! Every parser's `samples` run as tests: a positive sample must be accepted by its parser and
//! end with the listed `Meta` fields; a negative one (`parses=#false`) must not be accepted by it.

use garrison::compile::{CompileOptions, compile_path_with};
use garrison::event::Event;
use garrison::parse::timefmt::TimeContext;
use garrison::parse::{Pipeline, TraceStep};
use std::sync::Arc;

#[test]
fn parser_samples_hold() {
    let compiled = compile_path_with(None, CompileOptions { all_rules: true })
        .unwrap_or_else(|d| panic!("shipped rules must compile:\n{d}"));
    let rs = compiled.ruleset;
    let mut pipeline = Pipeline::new(rs.clone(), TimeContext::new(jiff::Timestamp::now()));
    pipeline.no_whitelist = true;
    let (mut checked, mut failures) = (0, Vec::new());
    for stage in &rs.stages {
        for parser in stage {
            for (i, sample) in parser.samples.iter().enumerate() {
                checked += 1;
                let mut event = Event::new(String::new(), jiff::Timestamp::now(), rs.fields.len());
                event.reset(&sample.line, jiff::Timestamp::now());
                let mut trace: Vec<TraceStep> = Vec::new();
                let log_type: Arc<str> = Arc::from(sample.log_type.as_str());
                let _ = pipeline.parse(&mut event, &log_type, Some(&mut trace));
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
        failures.is_empty(),
        "{} of {checked} samples fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
