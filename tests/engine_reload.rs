//! Live reload keeps the buckets of unchanged scenarios (issue: The daemon, item 5): an
//! attacker halfway to a ban stays halfway across a SIGHUP, while a scenario whose
//! definition changed starts over.

use garrison::alert::Alert;
use garrison::compile::{CompileOptions, Ruleset, compile_path_with};
use garrison::engine::{Clock, Engine, LineSource};
use garrison::event::Namespace;
use std::sync::Arc;

fn ruleset(all_rules: bool) -> Arc<Ruleset> {
    compile_path_with(None, CompileOptions { all_rules })
        .unwrap_or_else(|d| panic!("the embedded default must compile:\n{d}"))
        .ruleset
}

/// An sshd failed password from a TEST-NET address (not whitelisted), `n` seconds in.
fn failed(n: u32) -> String {
    format!(
        "Nov 18 09:46:{n:02} web01 sshd[2001]: Failed password for root from 203.0.113.7 port 4{n:04} ssh2"
    )
}

fn feed(engine: &mut Engine, from: u32, to: u32) -> Vec<Alert> {
    let source = LineSource::new(engine.ruleset(), "syslog", []);
    for n in from..to {
        engine.process(&failed(n), &source);
    }
    engine.take_alerts()
}

fn ssh_bf(alerts: &[Alert]) -> Vec<&Alert> {
    alerts.iter().filter(|a| &*a.scenario == "ssh-bf").collect()
}

#[test]
fn unchanged_scenarios_keep_their_buckets_across_a_reload() {
    let mut engine = Engine::new(ruleset(false), Clock::EventTime);
    // ssh-bf: capacity 5, so the sixth failure of a burst overflows.
    assert!(ssh_bf(&feed(&mut engine, 0, 5)).is_empty());

    // All rule files: more parsers, so fields are numbered differently and kept bucket
    // contents must be translated.
    let next = ruleset(true);
    let kept = engine.reload(next.clone());
    assert!(
        kept.iter().any(|k| &**k == "ssh-bf"),
        "ssh-bf is unchanged and keeps its buckets: {kept:?}"
    );
    let alerts = feed(&mut engine, 5, 6);
    let bf = ssh_bf(&alerts);
    assert_eq!(bf.len(), 1, "the sixth failure overflows after the reload");
    assert_eq!(bf[0].value, "203.0.113.7");
    assert_eq!(bf[0].events_count, 6, "the five earlier events were kept");
    let ip = next
        .fields
        .get(Namespace::Meta, "source_ip")
        .expect("Meta.source_ip exists");
    assert!(
        bf[0]
            .events
            .as_slice()
            .iter()
            .all(|e| e.get(ip) == "203.0.113.7"),
        "kept samples read the new ruleset's field ids"
    );
}

#[test]
fn a_changed_scenario_starts_over_after_a_reload() {
    let mut engine = Engine::new(ruleset(false), Clock::EventTime);
    assert!(ssh_bf(&feed(&mut engine, 0, 5)).is_empty());

    let mut changed = ruleset(false);
    let rs = Arc::get_mut(&mut changed).expect("a fresh ruleset has one owner");
    let sc = rs
        .scenarios
        .iter_mut()
        .find(|s| &*s.name == "ssh-bf")
        .expect("ssh-bf is a default scenario");
    sc.capacity = 4;
    let kept = engine.reload(changed);
    assert!(!kept.iter().any(|k| &**k == "ssh-bf"), "{kept:?}");
    assert!(
        kept.iter().any(|k| &**k == "ssh-slow-bf"),
        "other scenarios keep theirs: {kept:?}"
    );
    // A fresh bucket of capacity 4 needs five events: one more is not enough.
    assert!(ssh_bf(&feed(&mut engine, 5, 6)).is_empty());
    assert_eq!(ssh_bf(&feed(&mut engine, 6, 10)).len(), 1);
}
