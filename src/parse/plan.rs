//! Stage plans: the parser nodes of a stage a line goes through, worked out once per
//! acquisition type and program instead of at every line.
//!
//! Each of the two dozen nodes of the `parse` stage is for one program. A line tested
//! every node's `types`, `programs` and filter in turn (the filters through a memo of
//! their verdict) to run one or two of them. Those tests read nothing but the acquisition
//! type and the program, so their outcome is kept per (type, program) and replayed: a
//! look-up a stage instead of a test a node (sshd: ~90 instructions a line fewer, of
//! ~6,900).

use super::pipeline::{applies_to_program, applies_to_type};
use crate::compile::{CompiledParser, Ruleset};
use crate::event::{Event, FieldId};
use crate::expr::EvalCtx;
use std::hash::BuildHasher;

/// What a line does at one parser node of a stage, in the stage's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Step {
    /// The node, by its position in its stage.
    pub node: u16,
    /// The node's `programs` are tested at the line (an earlier node of the stage may
    /// change the program).
    pub check_program: bool,
    /// The node's filter runs at the line (it reads more than the type and program).
    pub run_filter: bool,
    /// The node's filter refuses the line's type and program: the node is tried and fails
    /// without running (as a filter that fails does).
    pub refused: bool,
}

/// The steps of one stage for one acquisition type and program.
#[derive(Debug, Default)]
struct Plan {
    /// The acquisition type's key ([`crate::event::static_text_key`]); `None`: free slot.
    type_key: Option<(usize, usize)>,
    program: String,
    steps: Vec<Step>,
}

/// What a stage's plans are kept by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StageKey {
    /// The acquisition type: the stage's nodes test `types` only at plan time, and every
    /// `programs` and filter at the line (a node writes the program or the type label
    /// before a later node reads it).
    Unplanned,
    /// The acquisition type, which decides each node's `types` and its filter when that
    /// reads nothing but the type label (no node reads the program).
    Type,
    /// The acquisition type and the program a line has at the start of the stage, which
    /// decide each node's `types`, `programs`, and its filter when that reads nothing but
    /// the type label and the program.
    Program,
}

/// The plans of every stage, per acquisition type and program.
pub(super) struct StagePlans {
    by_program: [StageKey; 3],
    /// Per stage and node: whether the node's filter reads only the type label and the
    /// program.
    key_decided: [Vec<bool>; 3],
    /// Per stage, [`StagePlans::SLOTS`] plans by type (and program), direct-mapped by a
    /// hash (seeded for programs: they come from logs, and a stream of new ones only
    /// evicts), then the one plan for a program too long to be a key.
    slots: [Vec<Plan>; 3],
    keys: crate::FastState,
}

impl StagePlans {
    /// Plans kept per stage, by program (a power of two).
    const SLOTS: usize = 32;
    /// Longer programs are planned at each line.
    const MAX_PROGRAM: usize = 64;

    /// The plans of `rs` (none worked out yet).
    pub fn new(rs: &Ruleset) -> Self {
        let wk = rs.well_known;
        let key_fields = [wk.program, wk.label_type];
        let filter_reads = |p: &CompiledParser| -> Option<Vec<FieldId>> {
            p.filter
                .as_ref()
                .and_then(|f| f.value_fields(0))
                .filter(|fields| fields.iter().all(|id| key_fields.contains(id)))
        };
        let key_decided = rs
            .stages
            .each_ref()
            .map(|parsers| parsers.iter().map(|p| filter_reads(p).is_some()).collect());
        let by_program = rs.stages.each_ref().map(|parsers| {
            let mut written: Vec<FieldId> = Vec::new();
            let mut reads_program = false;
            for p in parsers {
                let mut reads = filter_reads(p).unwrap_or_default();
                if !p.programs.is_empty() {
                    reads.push(wk.program);
                }
                if reads.iter().any(|id| written.contains(id)) {
                    return StageKey::Unplanned;
                }
                reads_program |= reads.contains(&wk.program);
                written.extend(key_fields.into_iter().filter(|&id| writes(p, id)));
            }
            if reads_program {
                StageKey::Program
            } else {
                StageKey::Type
            }
        });
        StagePlans {
            by_program,
            key_decided,
            slots: std::array::from_fn(|_| {
                std::iter::repeat_with(Plan::default)
                    .take(Self::SLOTS + 1)
                    .collect()
            }),
            keys: crate::FastState::default(),
        }
    }

    /// Plans that decide nothing: every node's `programs` and filter are tested at each
    /// line (what the plans must agree with).
    #[cfg(test)]
    pub fn unplanned(rs: &Ruleset) -> Self {
        StagePlans {
            by_program: [StageKey::Unplanned; 3],
            ..Self::new(rs)
        }
    }

    /// How each stage's plans are kept.
    #[cfg(test)]
    pub fn keys(&self) -> [&'static str; 3] {
        self.by_program.map(|k| match k {
            StageKey::Unplanned => "unplanned",
            StageKey::Type => "type",
            StageKey::Program => "program",
        })
    }

    /// The steps of stage `stage` for `event` (holding its type label) of acquisition type
    /// `log_type`: kept, or worked out now. Types are interned per source, so a type is
    /// known by the address of its text.
    pub fn steps(
        &mut self,
        rs: &Ruleset,
        stage: usize,
        log_type: &'static str,
        event: &Event,
    ) -> &[Step] {
        let type_key = crate::event::static_text_key(log_type);
        // Where the plan is kept, and whether it may decide what the type and program
        // decide: by type and program when the stage's nodes read the program, else by
        // type (a daemon's sources interleave a few types).
        let by_type = (type_key.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let slot_of = |h: u64| h as usize & (Self::SLOTS - 1);
        let (at, program, decide) = match self.by_program[stage] {
            StageKey::Unplanned => (slot_of(by_type), None, false),
            StageKey::Type => (slot_of(by_type), None, true),
            StageKey::Program => {
                let program = event.get(rs.well_known.program);
                if program.len() > Self::MAX_PROGRAM {
                    (Self::SLOTS, None, false)
                } else {
                    let h = self.keys.hash_one(program.as_bytes()) ^ by_type;
                    (slot_of(h), Some(program), true)
                }
            }
        };
        let key_decided = &self.key_decided[stage];
        let plan = &mut self.slots[stage][at];
        let known = plan.type_key == Some(type_key)
            && program.is_none_or(|program| crate::same_text(&plan.program, program));
        if !known {
            plan.type_key = Some(type_key);
            plan.program.clear();
            plan.program.push_str(program.unwrap_or_default());
            plan.steps.clear();
            let program_id = rs.well_known.program;
            for (n, p) in rs.stages[stage].iter().enumerate() {
                if !applies_to_type(p, log_type) {
                    continue;
                }
                if decide && !applies_to_program(p, event, program_id) {
                    continue;
                }
                let decided = decide && key_decided.get(n).copied().unwrap_or(false);
                plan.steps.push(Step {
                    node: n as u16,
                    check_program: !decide && !p.programs.is_empty(),
                    run_filter: p.filter.is_some() && !decided,
                    refused: decided && !filter_admits(p, rs, event),
                });
            }
        }
        &plan.steps
    }
}

/// Whether `p`'s filter admits `event`.
fn filter_admits(p: &CompiledParser, rs: &Ruleset, event: &Event) -> bool {
    p.filter
        .as_ref()
        .is_none_or(|f| f.eval_bool(&EvalCtx::for_event(event, &rs.data)))
}

/// Whether `p` may write field `id` of a line: a decoder, a grok capture or a static.
fn writes(p: &CompiledParser, id: FieldId) -> bool {
    p.decoder.is_some()
        || p.statics.iter().any(|s| s.target == id)
        || p.groks
            .iter()
            .any(|g| g.fields.contains(&id) || g.statics.iter().any(|s| s.target == id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Timestamp;
    use crate::parse::pipeline::Pipeline;
    use crate::parse::timefmt::TimeContext;

    /// Local rules (before the shipped ones in their stage): one renames the program for a
    /// later one.
    const RULES: &str = r#"
parsers {
    - "rename" {
        stage parse
        filter "evt.Parsed.program == 'relay'"
        on-success continue
        statics {
            - parsed=program value=sshd
        }
    }
    - "renamed" {
        stage parse
        programs "sshd"
        on-success continue
    }
}
"#;

    #[test]
    fn stages_where_a_node_writes_what_a_later_one_reads_are_not_planned() {
        let rs = crate::compile::ruleset_with_local_rules(RULES);
        assert_eq!(StagePlans::new(&rs).keys(), ["type", "unplanned", "type"]);

        // The renamed line reaches the node for its new program.
        let mut pipeline = Pipeline::new(rs.clone(), TimeContext::default());
        let line = "Nov 18 09:48:53 web01 relay[1]: Invalid user pi from 1.2.3.4 port 22";
        let mut event = Event::new(line.into(), Timestamp::UNIX_EPOCH, rs.fields.len());
        let mut trace = Vec::new();
        pipeline.parse(&mut event, "syslog", Some(&mut trace));
        let ran: Vec<(&str, bool)> = trace.iter().map(|t| (&*t.parser, t.success)).collect();
        assert!(ran.contains(&("renamed", true)), "{ran:?}");
    }
}
