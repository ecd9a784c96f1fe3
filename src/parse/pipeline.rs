//! The stage runner: a raw line through `raw` → `parse` → `enrich`, then the whitelists.

use super::normalize_ip;
use super::plan::StagePlans;
use super::timefmt::{TimeContext, format_rfc3339, parse_timestamp_with_offset};
use crate::compile::{
    CompiledGrok, CompiledParser, CompiledStatic, CompiledWhitelist, MatchTarget, Ruleset,
    StaticValue,
};
use crate::event::{Event, FieldId, FieldValue, Timestamp};
use crate::expr::{EvalCtx, MemoText, ValueMemo, VerdictMemo};
use crate::grok::{NativeSpans, PairSet};
use crate::rules::model::{Decoder, ParserOnSuccess, Stage};
use std::hash::BuildHasher;
use std::sync::Arc;

/// What happened to a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Parsed and not whitelisted: ready to pour.
    Parsed,
    /// Parsed, but whitelisted (with the reason).
    Whitelisted(Arc<str>),
    /// No parser of this stage accepted the line.
    Unparsed(Stage),
}

/// One parser's verdict on a line, for `explain`.
#[derive(Debug, Clone)]
pub struct TraceStep {
    /// The stage.
    pub stage: Stage,
    /// The parser.
    pub parser: Arc<str>,
    /// Whether it succeeded.
    pub success: bool,
}

/// The last timestamp read, with what it was read as: lines of the same second share it,
/// and most logs write many lines per second.
#[derive(Debug)]
struct LastTime {
    text: String,
    context: TimeContext,
    time: Timestamp,
    /// The offset the text was read at.
    offset: jiff::tz::Offset,
    /// `evt.Meta.timestamp`: RFC 3339, shared by every line of that second; empty until
    /// a line needs it (replay without alert events reads it nowhere).
    rendered: String,
}

/// Parses lines with a ruleset. Keeps scratch state so parsing allocates little per line.
pub struct Pipeline {
    ruleset: Arc<Ruleset>,
    /// How timestamps in lines are read (year inference, default offset).
    pub time: TimeContext,
    /// Skip the whitelists (hub fixtures attack from private addresses).
    pub no_whitelist: bool,
    /// Per-line state, apart from the ruleset so that a line borrows the ruleset instead of
    /// taking a reference count on it (an atomic add and sub a line).
    scratch: Scratch,
    /// Per stage, the nodes a line goes through by its type and program.
    plans: StagePlans,
    /// When enabled (see [`Pipeline::count_parsers`]): (accepted, refused) lines per
    /// parser node, by its index in the stages flattened in order.
    pub parser_counts: Option<Vec<(u64, u64)>>,
}

/// What the pipeline reuses from line to line.
struct Scratch {
    /// Per grok, its capture locations once a search needed them.
    locs: Vec<Option<regex::CaptureLocations>>,
    grok_index: Vec<Vec<usize>>,
    /// Per grok (as `locs`), the fields its native scanner's spans set, each with its
    /// span (none where the grok has no field or no rule reads it): see
    /// [`native_field_maps`].
    native_fields: Vec<Box<[NativeField]>>,
    /// Per parser node, whether all its grok alternatives match the same target (then one
    /// pair set of it rules alternatives out before anything else is looked at).
    one_target: Vec<bool>,
    last_time: Option<LastTime>,
    /// A match's captures as (field, range of the line), set on the event in one call.
    captures: Vec<(FieldId, u32, u32)>,
    /// Per parser node, its filter's last verdict, when the filter is a function of a
    /// few fields' values ([`VerdictMemo`]).
    filter_memos: Vec<Option<VerdictMemo>>,
    /// Per field, whether no rule reads it, so captures and statics skip it (see
    /// [`Pipeline::skip_unread_fields`]); empty: every field is written.
    unread: Vec<bool>,
    /// The syslog envelope's fields some rule reads, each with the part it takes: set
    /// with `unread`, so that a line does not test each of them.
    syslog_fields: Vec<(FieldId, SyslogPart)>,
    /// The last common-shape syslog header, for the next line's to be compared with.
    syslog_memo: super::syslog::HeaderMemo,
    whitelist: WhitelistMemo,
    /// Per parser node, the memos of its expression statics ([`ValueMemo`]).
    static_memos: Vec<StaticMemos>,
}

/// A parser node's [`ValueMemo`]s: per static, of its own statics and of each grok
/// alternative's (`None` where the static is no expression a few fields decide).
struct StaticMemos {
    own: Box<[Option<ValueMemo>]>,
    groks: Box<[Box<[Option<ValueMemo>]>]>,
}

impl StaticMemos {
    fn of(p: &CompiledParser) -> Self {
        let memos = |statics: &[CompiledStatic]| -> Box<[Option<ValueMemo>]> {
            statics
                .iter()
                .map(|st| match &st.value {
                    StaticValue::Expr(e) => ValueMemo::of(e),
                    _ => None,
                })
                .collect()
        };
        StaticMemos {
            own: memos(&p.statics),
            groks: p.groks.iter().map(|g| memos(&g.statics)).collect(),
        }
    }
}

/// The CIDR whitelist's verdicts by the source address text they were given for. Reading
/// the address again (the scanner read it once) and walking the ranges cost ~300
/// instructions a line; sources repeat, an attacker's line after line. Direct-mapped by a
/// seeded hash, fixed size: new addresses (an attacker's) only evict. The pipeline, and
/// so this memo, is rebuilt with each ruleset.
struct WhitelistMemo {
    /// Per slot: the text, and the reason it is whitelisted (`None`: it is not, or it is
    /// not an address). Empty text: the slot is free.
    entries: Vec<(String, Option<Arc<str>>)>,
    keys: crate::FastState,
}

impl WhitelistMemo {
    /// Slots (a power of two).
    const SLOTS: usize = 512;
    /// Longer texts are not addresses worth keeping (an IPv6 address is at most 45 bytes).
    const MAX_LEN: usize = 64;

    fn new() -> Self {
        WhitelistMemo {
            entries: Vec::new(),
            keys: crate::FastState::default(),
        }
    }

    /// Why `whitelist` covers the address `text` (normalised as [`normalize_ip`] does),
    /// if it does.
    fn covers(&mut self, whitelist: &CompiledWhitelist, text: &str) -> Option<Arc<str>> {
        let judge = || normalize_ip(text).and_then(|ip| whitelist.covers(&ip).cloned());
        if text.is_empty() || text.len() > Self::MAX_LEN {
            return judge();
        }
        if self.entries.is_empty() {
            self.entries.resize(Self::SLOTS, (String::new(), None));
        }
        let at = self.keys.hash_one(text.as_bytes()) as usize & (Self::SLOTS - 1);
        let (known, reason) = &mut self.entries[at];
        if !crate::same_text(known, text) {
            *reason = judge();
            known.clear();
            known.push_str(text);
        }
        reason.clone()
    }
}

impl Pipeline {
    /// A pipeline for a ruleset.
    pub fn new(ruleset: Arc<Ruleset>, time: TimeContext) -> Self {
        let mut locs = Vec::new();
        let mut grok_index = Vec::new();
        let mut one_target = Vec::new();
        let mut filter_memos = Vec::new();
        let mut static_memos = Vec::new();
        for stage in &ruleset.stages {
            for p in stage {
                static_memos.push(StaticMemos::of(p));
                filter_memos.push(p.filter.as_ref().and_then(VerdictMemo::of));
                one_target.push(p.groks.windows(2).all(|w| w[0].target == w[1].target));
                grok_index.push((locs.len()..locs.len() + p.groks.len()).collect());
                locs.resize_with(locs.len() + p.groks.len(), || None);
            }
        }
        Pipeline {
            time,
            no_whitelist: false,
            scratch: Scratch {
                locs,
                grok_index,
                native_fields: native_field_maps(&ruleset, &[]),
                one_target,
                last_time: None,
                captures: Vec::new(),
                filter_memos,
                unread: Vec::new(),
                syslog_fields: syslog_fields(&ruleset, &[]),
                syslog_memo: Default::default(),
                whitelist: WhitelistMemo::new(),
                static_memos,
            },
            plans: StagePlans::new(&ruleset),
            ruleset,
            parser_counts: None,
        }
    }

    /// Starts counting, per parser node, the lines it was tried on (it applied to their
    /// type and program) and accepted: the daemon's per-parser metrics.
    pub fn count_parsers(&mut self) {
        let n = self.ruleset.stages.iter().map(Vec::len).sum();
        self.parser_counts = Some(vec![(0, 0); n]);
    }

    /// From now on, captures and statics skip the fields no rule reads
    /// ([`Ruleset::fields_read`]): for a caller that shows nothing of its events but what
    /// rules make of them (replay without alert events). `evt.Meta.http_args_len` and
    /// `evt.Parsed.impact_completion`, two expressions on each HTTP line, are read by no
    /// shipped scenario. Nothing is skipped when a rule reads whole events.
    pub fn skip_unread_fields(&mut self) {
        self.scratch.unread = self
            .ruleset
            .fields_read()
            .map(|read| read.iter().map(|r| !r).collect())
            .unwrap_or_default();
        self.scratch.syslog_fields = syslog_fields(&self.ruleset, &self.scratch.unread);
        self.scratch.native_fields = native_field_maps(&self.ruleset, &self.scratch.unread);
    }

    /// The ruleset.
    pub fn ruleset(&self) -> &Arc<Ruleset> {
        &self.ruleset
    }

    /// Parses `event` (already holding its line, time and labels) through every stage.
    /// `trace`, when given, records each parser tried.
    pub fn parse(
        &mut self,
        event: &mut Event,
        log_type: &'static str,
        mut trace: Option<&mut Vec<TraceStep>>,
    ) -> Outcome {
        let rs: &Ruleset = &self.ruleset;
        let wk = rs.well_known;
        if !is_unread(&self.scratch.unread, wk.label_type) {
            event.set(wk.label_type, FieldValue::Static(log_type));
        }
        let mut base = 0usize;
        for stage in Stage::ALL {
            let parsers = &rs.stages[stage as usize];
            let stage_base = base;
            base += parsers.len();
            let steps = self.plans.steps(rs, stage as usize, log_type, event);
            let mut any = false;
            for step in steps {
                let Some(p) = parsers.get(usize::from(step.node)) else {
                    continue;
                };
                if step.check_program && !applies_to_program(p, event, wk.program) {
                    continue;
                }
                let this = stage_base + usize::from(step.node);
                let ok = !step.refused
                    && self.scratch.run_parser(
                        rs,
                        self.time,
                        (p, this, step.run_filter),
                        event,
                        log_type,
                    );
                if let Some(c) = self.parser_counts.as_mut().and_then(|c| c.get_mut(this)) {
                    if ok {
                        c.0 += 1;
                    } else {
                        c.1 += 1;
                    }
                }
                if let Some(t) = trace.as_deref_mut() {
                    t.push(TraceStep {
                        stage,
                        parser: p.name.clone(),
                        success: ok,
                    });
                }
                if ok {
                    any = true;
                    if p.on_success == ParserOnSuccess::NextStage {
                        break;
                    }
                }
            }
            if !any && stage != Stage::Enrich {
                return Outcome::Unparsed(stage);
            }
        }
        if self.no_whitelist {
            return Outcome::Parsed;
        }
        if let Some(reason) = self
            .scratch
            .whitelist
            .covers(&rs.whitelist, event.get(wk.source_ip))
        {
            event.whitelisted = true;
            event.whitelist_reason = Some(reason.clone());
            return Outcome::Whitelisted(reason);
        }
        if !rs.whitelist.expressions.is_empty() {
            let ctx = EvalCtx::for_event(event, &rs.data);
            if rs.whitelist.expressions.iter().any(|e| e.eval_bool(&ctx)) {
                let reason: Arc<str> = Arc::from("whitelists.expressions");
                event.whitelisted = true;
                event.whitelist_reason = Some(reason.clone());
                return Outcome::Whitelisted(reason);
            }
        }
        Outcome::Parsed
    }
}

impl Scratch {
    /// Runs parser node `p` (number `index` in the stages flattened in order) on `event`,
    /// its filter first when `run_filter`; whether it succeeded. Inlined into its one
    /// caller, the stage loop: a build where it was not cost ~1.7 % more an sshd line.
    #[inline(always)]
    fn run_parser(
        &mut self,
        rs: &Ruleset,
        time: TimeContext,
        (p, index, run_filter): (&CompiledParser, usize, bool),
        event: &mut Event,
        log_type: &'static str,
    ) -> bool {
        if run_filter && let Some(f) = &p.filter {
            let judge = || f.eval_bool(&EvalCtx::for_event(event, &rs.data));
            let ok = match self.filter_memos.get_mut(index) {
                Some(Some(memo)) => memo.verdict(event, judge),
                _ => judge(),
            };
            if !ok {
                return false;
            }
        }
        let matched_statics: Option<usize> = match p.decoder {
            Some(Decoder::Syslog) => {
                if !decode_syslog(event, &self.syslog_fields, &mut self.syslog_memo) {
                    return false;
                }
                None
            }
            Some(Decoder::Plain) => {
                let len = event.line.len() as u32;
                event.set(
                    rs.well_known.message,
                    FieldValue::Line { start: 0, end: len },
                );
                event.set(rs.well_known.program, FieldValue::Static(log_type));
                None
            }
            None if p.groks.is_empty() => None,
            None => {
                let mut hit = None;
                let mut scans = Scans::default();
                let one_target = self.one_target.get(index).copied().unwrap_or(false);
                for (gi, g) in p.groks.iter().enumerate() {
                    if one_target
                        && let Some(pairs) = scans.pairs
                        && !g.prefilter_pairs.admits(pairs)
                    {
                        continue;
                    }
                    let loc = self.grok_index[index][gi];
                    if scans.may_match(g, event)
                        && run_grok_matched(
                            GrokRun {
                                g,
                                native_fields: &self.native_fields[loc],
                                range: scans.range(g),
                            },
                            event,
                            &mut self.locs[loc],
                            &mut self.captures,
                            &self.unread,
                        )
                    {
                        hit = Some(gi);
                        break;
                    }
                }
                match hit {
                    Some(gi) => Some(gi),
                    None => return false,
                }
            }
        };
        if let Some(gi) = matched_statics {
            let memos = (&mut self.static_memos[..], index, Some(gi));
            apply_statics(&p.groks[gi].statics, memos, event, rs, &self.unread);
        }
        let memos = (&mut self.static_memos[..], index, None);
        apply_statics(&p.statics, memos, event, rs, &self.unread);
        if let Some(tf) = p.time {
            let rendered = rs.well_known.meta_timestamp;
            let rendered = (!is_unread(&self.unread, rendered)).then_some(rendered);
            // A line whose time does not read keeps the time it was received at.
            let _ = self.set_time(event, tf, time, rendered);
        }
        true
    }

    /// Sets the event's time from the text of `field` (and its RFC 3339 rendering in
    /// `rendered_field`, when given); `None` when the field is empty or does not read as
    /// a time.
    fn set_time(
        &mut self,
        event: &mut Event,
        field: FieldId,
        context: TimeContext,
        rendered_field: Option<FieldId>,
    ) -> Option<()> {
        let text = event.get(field);
        if text.is_empty() {
            return None;
        }
        let last = match &mut self.last_time {
            Some(last) if crate::same_text(&last.text, text) && last.context == context => last,
            Some(last) => {
                // A new second: the same buffers, refilled.
                let (time, offset) = parse_timestamp_with_offset(text, &context)?;
                last.text.clear();
                last.text.push_str(text);
                last.context = context;
                last.time = time;
                last.offset = offset;
                last.rendered.clear();
                last
            }
            slot => {
                let (time, offset) = parse_timestamp_with_offset(text, &context)?;
                slot.insert(LastTime {
                    text: text.to_owned(),
                    context,
                    time,
                    offset,
                    rendered: String::new(),
                })
            }
        };
        event.time = last.time;
        event.has_line_time = true;
        let Some(rendered_field) = rendered_field else {
            return Some(());
        };
        if last.rendered.is_empty() {
            last.rendered = format_rfc3339(last.time, last.offset);
        }
        // A copy into a recycled buffer: cheaper than sharing it by reference count.
        let mut rendered = event.take_buffer();
        rendered.push_str(&last.rendered);
        event.set(rendered_field, FieldValue::Owned(rendered));
        Some(())
    }
}

/// Whether `p`'s `types` (if any) admit acquisition type `log_type`.
pub(super) fn applies_to_type(p: &CompiledParser, log_type: &str) -> bool {
    p.types.is_empty() || p.types.iter().any(|t| &**t == log_type)
}

/// Whether `p`'s `programs` (if any) admit the event's program.
pub(super) fn applies_to_program(p: &CompiledParser, event: &Event, program: FieldId) -> bool {
    if !p.programs.is_empty() {
        let prog = event.get(program);
        if !p.programs.iter().any(|t| crate::same_text(t, prog)) {
            return false;
        }
    }
    true
}

/// Byte range of `part` inside `whole`, when `part` is a sub-slice of it.
fn range_in(whole: &str, part: &str) -> Option<(u32, u32)> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some((start as u32, end as u32))
}

/// A part of a syslog envelope a field takes.
#[derive(Debug, Clone, Copy)]
enum SyslogPart {
    Timestamp,
    Program,
    Message,
    Pid,
    Host,
}

/// The syslog envelope's fields, each with its part, but those `unread` (see
/// [`Scratch::unread`]) says no rule reads.
fn syslog_fields(rs: &Ruleset, unread: &[bool]) -> Vec<(FieldId, SyslogPart)> {
    let wk = rs.well_known;
    [
        (wk.timestamp, SyslogPart::Timestamp),
        (wk.program, SyslogPart::Program),
        (wk.message, SyslogPart::Message),
        (wk.pid, SyslogPart::Pid),
        (wk.logsource, SyslogPart::Host),
        (wk.machine, SyslogPart::Host),
    ]
    .into_iter()
    .filter(|(id, _)| !is_unread(unread, *id))
    .collect()
}

/// Sets the syslog envelope's `fields` ([`syslog_fields`]), or returns false when the
/// line is not syslog. `memo` remembers the last common-shape header
/// ([`super::syslog::common_spans`]).
fn decode_syslog(
    event: &mut Event,
    fields: &[(FieldId, SyslogPart)],
    memo: &mut super::syslog::HeaderMemo,
) -> bool {
    // Each part's span, in `SyslogPart` order.
    let parts: [Option<(u32, u32)>; 5] = match super::syslog::common_spans(&event.line, memo) {
        Some(h) => [Some(h.timestamp), h.program, Some(h.message), h.pid, h.host],
        None => {
            let Some(h) = super::syslog::parse_syslog(&event.line) else {
                return false;
            };
            let line = &event.line;
            [
                range_in(line, h.timestamp),
                range_in(line, h.program),
                range_in(line, h.message),
                h.pid.and_then(|t| range_in(line, t)),
                h.host.and_then(|t| range_in(line, t)),
            ]
        }
    };
    for &(id, part) in fields {
        if let Some((start, end)) = parts[part as usize] {
            event.set(id, FieldValue::Line { start, end });
        }
    }
    true
}

/// The literal scans of one parser's alternatives over one line. Most alternatives fail on
/// most lines: the literal every match of one contains rules it out with a memmem scan
/// instead of a regex search. From the second scan on, the text's byte pairs rule most
/// literals out first (the first alternative matches most lines of many parsers, which
/// then never build the set).
#[derive(Default)]
struct Scans {
    done: u32,
    /// The target of the last alternative and its byte range in the line (when it is one:
    /// the next alternative with that target reads it without another slot look-up).
    target: Option<(MatchTarget, u32, u32)>,
    /// That target's pairs, once built.
    pairs: Option<PairSet>,
}

impl Scans {
    /// `g`'s target as a range of the line, when the last scan read it there.
    fn range(&self, g: &CompiledGrok) -> Option<(u32, u32)> {
        self.target
            .filter(|&(target, _, _)| target == g.target)
            .map(|(_, start, end)| (start, end))
    }

    /// Whether `g` may match `event`: its target is set and holds its literal.
    fn may_match(&mut self, g: &CompiledGrok, event: &Event) -> bool {
        let text: &[u8] = match self.target {
            Some((target, start, end)) if target == g.target => event
                .line
                .as_bytes()
                .get(start as usize..end as usize)
                .unwrap_or_default(),
            _ => {
                let Some((base, text)) = target_text(g, event) else {
                    return false;
                };
                self.pairs = None;
                self.target =
                    (base != u32::MAX).then(|| (g.target, base, base + text.len() as u32));
                text.as_bytes()
            }
        };
        let Some(finder) = &g.prefilter else {
            return true;
        };
        self.done += 1;
        if self.done > 1 {
            let pairs = *self.pairs.get_or_insert_with(|| PairSet::of(text));
            if !g.prefilter_pairs.admits(pairs) {
                return false;
            }
        }
        finder.is_in(text)
    }
}

/// Bytes `start..end` of `event`'s line.
fn line_bytes(event: &Event, start: u32, end: u32) -> Option<&[u8]> {
    event.line.as_bytes().get(start as usize..end as usize)
}

/// The text a grok matches and its offset in the line (`u32::MAX` when it is not a range of
/// the line), or `None` when the target field is unset.
fn target_text<'e>(g: &CompiledGrok, event: &'e Event) -> Option<(u32, &'e str)> {
    Some(match g.target {
        MatchTarget::Line => (0, event.line.as_str()),
        MatchTarget::Field(id) => match event.slot(id) {
            Some(FieldValue::Line { start, end }) => (
                *start,
                event.line.get(*start as usize..*end as usize).unwrap_or(""),
            ),
            Some(FieldValue::Unset) | None => return None,
            Some(_) => (u32::MAX, event.get(id)),
        },
    })
}

/// Whether `unread` (see [`Scratch::unread`]) says no rule reads `id`.
fn is_unread(unread: &[bool], id: FieldId) -> bool {
    unread.get(usize::from(id.0)).copied().unwrap_or(false)
}

/// Per grok, in the order of [`Scratch::locs`], the fields its native scanner's spans set,
/// each with its span, but those no rule reads (per `unread`; empty: all are read).
fn native_field_maps(rs: &Ruleset, unread: &[bool]) -> Vec<Box<[NativeField]>> {
    rs.stages
        .iter()
        .flatten()
        .flat_map(|p| &p.groks)
        .map(|g| {
            g.grok
                .native_fields()
                .iter()
                .enumerate()
                .filter_map(|(span, &fi)| {
                    let id = g.fields.get(fi).copied()?;
                    let span = u8::try_from(span).ok()?;
                    (!is_unread(unread, id)).then_some(NativeField { span, id })
                })
                .collect()
        })
        .collect()
}

/// A field a native scanner's span sets (only those some rule reads).
#[derive(Debug, Clone, Copy)]
struct NativeField {
    /// The span's index in [`NativeSpans`] (below [`NATIVE_SPANS`]).
    span: u8,
    /// The field it sets.
    id: FieldId,
}

/// Spans a native scanner fills at most (the length of [`NativeSpans`], a power of two).
const NATIVE_SPANS: usize =
    std::mem::size_of::<NativeSpans>() / std::mem::size_of::<(usize, usize)>();
const _: () = assert!(NATIVE_SPANS.is_power_of_two());

/// A grok alternative to run on a line, with what the pipeline knows of it.
struct GrokRun<'a> {
    g: &'a CompiledGrok,
    /// Its [`native_field_maps`] entry: a line its native scanner reads sets them directly.
    native_fields: &'a [NativeField],
    /// Its target's range of the line, when the literal scan found it there.
    range: Option<(u32, u32)>,
}

/// Runs a grok on its target in `event`, setting the captures of a match.
fn run_grok_matched(
    GrokRun {
        g,
        native_fields,
        range,
    }: GrokRun<'_>,
    event: &mut Event,
    locs: &mut Option<regex::CaptureLocations>,
    captures: &mut Vec<(FieldId, u32, u32)>,
    unread: &[bool],
) -> bool {
    if g.grok.has_native() {
        // The scanner reads bytes: no field look-up when the range is known, and no check
        // that the range starts and ends on character boundaries.
        let target = match range {
            Some((start, end)) => line_bytes(event, start, end).map(|t| (start, t)),
            None => target_text(g, event)
                .filter(|&(base, _)| base != u32::MAX)
                .map(|(base, t)| (base, t.as_bytes())),
        };
        if let Some((base, text)) = target {
            let mut spans: NativeSpans = Default::default();
            match g.grok.native_spans(text, &mut spans) {
                Some(true) => {
                    for &NativeField { span, id } in native_fields {
                        // Masked, not bounds-checked: the index is below the length.
                        let (start, end) = spans[usize::from(span) & (NATIVE_SPANS - 1)];
                        if start < end {
                            let (start, end) = (base + start as u32, base + end as u32);
                            event.set(id, FieldValue::Line { start, end });
                        }
                    }
                    return true;
                }
                Some(false) => return false,
                None => {}
            }
        }
    }
    let Some((base, haystack)) = target_text(g, event) else {
        return false;
    };
    if base == u32::MAX {
        // The target is not a range of the line: captures must be copied out.
        let text = haystack.to_owned();
        let mut caps: Vec<(usize, String)> = Vec::new();
        let ok = g.grok.captures_into(&text, locs, &mut |fi, s, e| {
            if let Some(v) = text.get(s..e) {
                caps.push((fi, v.to_owned()));
            }
        });
        if ok {
            for (fi, v) in caps {
                if let Some(&id) = g.fields.get(fi)
                    && !is_unread(unread, id)
                {
                    event.set_owned(id, v);
                }
            }
        }
        return ok;
    }
    captures.clear();
    let ok = g.grok.regex_captures(haystack, locs, &mut |fi, s, e| {
        if let Some(&id) = g.fields.get(fi)
            && !is_unread(unread, id)
        {
            captures.push((id, base + s as u32, base + e as u32));
        }
    });
    if ok {
        event.set_ranges(captures.iter().copied());
    }
    ok
}

/// Sets `statics` on `event`: parser node `node`'s own, or those of its grok alternative
/// `grok`; `memos` (per parser node) keep the values of expression statics.
fn apply_statics(
    statics: &[CompiledStatic],
    (memos, node, grok): (&mut [StaticMemos], usize, Option<usize>),
    event: &mut Event,
    rs: &Ruleset,
    unread: &[bool],
) {
    for (k, st) in statics.iter().enumerate() {
        if is_unread(unread, st.target) {
            continue;
        }
        let value = match &st.value {
            StaticValue::Const("") => continue,
            StaticValue::Const(c) => FieldValue::Static(c),
            // Most copies are of captures (ranges of the line) or constants.
            StaticValue::Copy(id) => match event.slot(*id) {
                Some(&FieldValue::Line { start, end }) => FieldValue::Line { start, end },
                Some(FieldValue::Static("")) | Some(FieldValue::Unset) | None => continue,
                Some(&FieldValue::Static(c)) => FieldValue::Static(c),
                Some(FieldValue::Owned(v)) => FieldValue::Owned(v.clone()),
            },
            StaticValue::Line => FieldValue::Line {
                start: 0,
                end: event.line.len() as u32,
            },
            StaticValue::Join(ids) => match joined_range(event, ids) {
                Some(Some(range)) => range,
                // Every part empty: as an empty expression result, nothing is set.
                Some(None) => continue,
                None => {
                    let mut buf = event.take_buffer();
                    ids.iter().for_each(|id| buf.push_str(event.get(*id)));
                    FieldValue::Owned(buf)
                }
            },
            StaticValue::Expr(p) => {
                match expr_value(p, memos.get_mut(node), (grok, k), event, rs) {
                    Some(value) => value,
                    None => continue,
                }
            }
        };
        event.set(st.target, value);
    }
}

/// The value of expression static `p` (static `k` of grok alternative `grok`, or of the
/// parser, whose memos are `memos`) on `event`; `None` when it is empty. Out of line:
/// most statics copy a field, and the expression's registers would cost them.
#[inline(never)]
fn expr_value(
    p: &crate::expr::Program,
    memos: Option<&mut StaticMemos>,
    (grok, k): (Option<usize>, usize),
    event: &mut Event,
    rs: &Ruleset,
) -> Option<FieldValue> {
    let memo = memos.and_then(|m| match grok {
        Some(g) => m.groks.get_mut(g)?.get_mut(k)?.as_mut(),
        None => m.own.get_mut(k)?.as_mut(),
    });
    Some(match memo.and_then(|memo| memo.value(p, event, &rs.data)) {
        Some(MemoText::Literal("") | MemoText::Text("")) => return None,
        Some(MemoText::Literal(l)) => FieldValue::Static(l),
        Some(MemoText::Text(t)) => {
            let mut buf = event.take_buffer();
            buf.push_str(t);
            FieldValue::Owned(buf)
        }
        None => {
            let mut buf = event.take_buffer();
            p.eval_string_into(&EvalCtx::for_event(event, &rs.data), &mut buf);
            if buf.is_empty() {
                event.recycle(buf);
                return None;
            }
            FieldValue::Owned(buf)
        }
    })
}

/// The fields `ids` joined, when their non-empty values are adjacent ranges of the line in
/// order: `Some(Some(range))`, or `Some(None)` when all are empty; `None` when they must be
/// copied (apart, out of order, or not ranges of the line).
fn joined_range(event: &Event, ids: &[FieldId]) -> Option<Option<FieldValue>> {
    let mut joined: Option<(u32, u32)> = None;
    for &id in ids {
        match event.slot(id) {
            None | Some(FieldValue::Unset) => {}
            Some(FieldValue::Line { start, end }) if start == end => {}
            Some(&FieldValue::Line { start, end }) => match &mut joined {
                None => joined = Some((start, end)),
                Some((_, at)) if *at == start => *at = end,
                Some(_) => return None,
            },
            // A computed value.
            Some(_) if event.get(id).is_empty() => {}
            Some(_) => return None,
        }
    }
    Some(joined.map(|(start, end)| FieldValue::Line { start, end }))
}

/// The current time, as the pipeline's default event time.
pub fn now() -> Timestamp {
    Timestamp::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line of `sshd`, as syslog writes it without a year.
    const LINE: &str = "Nov 18 09:48:53 web01 sshd[1]: Invalid user pi from 1.2.3.4 port 22";

    fn parse(pipeline: &mut Pipeline, log_type: &'static str) -> (Timestamp, String) {
        let rs = pipeline.ruleset().clone();
        let mut event = Event::new(LINE.into(), Timestamp::UNIX_EPOCH, rs.fields.len());
        assert_eq!(pipeline.parse(&mut event, log_type, None), Outcome::Parsed);
        let rendered = event.get(rs.well_known.meta_timestamp).to_owned();
        (event.time, rendered)
    }

    #[test]
    fn syslog_envelopes_set_each_part_they_have() {
        let rs = crate::compile::compile_path(None)
            .expect("the default configuration compiles")
            .ruleset;
        let wk = rs.well_known;
        let mut pipeline = Pipeline::new(rs.clone(), TimeContext::default());
        // (line, pid, host): a part a line lacks must not shift the parts after it.
        let lines = [
            (
                "Nov 18 09:46:41 web01 sshd[20510]: Connection closed",
                "20510",
                "web01",
            ),
            (
                "Nov 18 09:46:41 web01 kernel: Connection closed",
                "",
                "web01",
            ),
            ("Nov 18 09:46:41 sshd[7]: Connection closed", "7", ""),
        ];
        for (line, pid, host) in lines {
            let mut e = Event::new(line.into(), Timestamp::UNIX_EPOCH, rs.fields.len());
            pipeline.parse(&mut e, "syslog", None);
            assert_eq!(e.get(wk.message), "Connection closed", "{line}");
            assert_eq!(e.get(wk.timestamp), "Nov 18 09:46:41", "{line}");
            assert_eq!(e.get(wk.pid), pid, "{line}");
            assert_eq!(e.get(wk.machine), host, "{line}");
        }
    }

    #[test]
    fn skipping_unread_fields_keeps_every_field_a_rule_reads() {
        let options = crate::compile::CompileOptions { all_rules: true };
        let rs = crate::compile::compile_path_with(None, options)
            .expect("every shipped rule compiles")
            .ruleset;
        let read = rs
            .fields_read()
            .expect("no shipped rule reads whole events");
        let mut full = Pipeline::new(rs.clone(), TimeContext::default());
        let mut lean = Pipeline::new(rs.clone(), TimeContext::default());
        lean.skip_unread_fields();
        let (mut lines, mut skipped) = (0, 0);
        for p in rs.stages.iter().flatten() {
            for sample in &p.samples {
                let log_type = crate::event::intern(&sample.log_type);
                let parse = |pipeline: &mut Pipeline| {
                    let mut e =
                        Event::new(sample.line.clone(), Timestamp::UNIX_EPOCH, rs.fields.len());
                    (pipeline.parse(&mut e, log_type, None), e)
                };
                let ((full_outcome, all), (lean_outcome, some)) =
                    (parse(&mut full), parse(&mut lean));
                assert_eq!(full_outcome, lean_outcome, "{}", sample.line);
                assert_eq!(all.time, some.time, "{}", sample.line);
                for (i, is_read) in read.iter().enumerate() {
                    let id = FieldId(i as u16);
                    if *is_read {
                        assert_eq!(
                            all.get(id),
                            some.get(id),
                            "{:?} of {}",
                            rs.fields.name(id),
                            sample.line
                        );
                    } else {
                        assert_eq!(some.get(id), "", "{:?} written", rs.fields.name(id));
                        skipped += usize::from(!all.get(id).is_empty());
                    }
                }
                lines += 1;
            }
        }
        assert!(
            lines > 200 && skipped > 100,
            "{lines} lines, {skipped} fields skipped"
        );
        let meta = |n: &str| {
            rs.fields
                .get(crate::event::Namespace::Meta, n)
                .map(|id| read[usize::from(id.0)])
        };
        assert_eq!(meta("http_args_len"), Some(false));
        assert_eq!(meta("http_user_agent"), Some(true));
    }

    #[test]
    fn stage_plans_run_what_testing_every_node_runs() {
        let options = crate::compile::CompileOptions { all_rules: true };
        let rs = crate::compile::compile_path_with(None, options)
            .expect("every shipped rule compiles")
            .ruleset;
        let mut planned = Pipeline::new(rs.clone(), TimeContext::default());
        assert_eq!(planned.plans.keys(), ["type", "program", "type"]);
        let mut unplanned = Pipeline::new(rs.clone(), TimeContext::default());
        unplanned.plans = StagePlans::unplanned(&rs);
        planned.count_parsers();
        unplanned.count_parsers();
        // Every sample, twice (the second time from kept plans), interleaving types and
        // programs; and lines whose program is too long to be a plan's key.
        let mut lines: Vec<(String, &'static str)> = Vec::new();
        for p in rs.stages.iter().flatten() {
            for sample in &p.samples {
                lines.push((sample.line.clone(), crate::event::intern(&sample.log_type)));
            }
        }
        let long = "p".repeat(80);
        lines.push((
            format!("Nov 18 09:48:53 web01 {long}[1]: Invalid user pi from 1.2.3.4"),
            "syslog",
        ));
        lines.push((format!("Nov 18 09:48:53 web01 sshd{long}: x"), "syslog"));
        let mut probe = StagePlans::new(&rs);
        let (mut parsed, mut refused) = (0, 0);
        for (line, log_type) in lines.iter().chain(lines.iter().rev()) {
            let parse = |pipeline: &mut Pipeline| {
                let mut e = Event::new(line.clone(), Timestamp::UNIX_EPOCH, rs.fields.len());
                let mut trace = Vec::new();
                let outcome = pipeline.parse(&mut e, log_type, Some(&mut trace));
                let steps: Vec<(Stage, Arc<str>, bool)> = trace
                    .into_iter()
                    .map(|t| (t.stage, t.parser, t.success))
                    .collect();
                (outcome, e, steps)
            };
            let (plan_outcome, plan_event, plan_steps) = parse(&mut planned);
            let (outcome, event, steps) = parse(&mut unplanned);
            assert_eq!(plan_outcome, outcome, "{line}");
            assert_eq!(plan_steps, steps, "{line}");
            assert_eq!(plan_event.time, event.time, "{line}");
            for i in 0..rs.fields.len() {
                let id = FieldId(i as u16);
                assert_eq!(
                    plan_event.get(id),
                    event.get(id),
                    "{:?} of {line}",
                    rs.fields.name(id)
                );
            }
            parsed += usize::from(outcome != Outcome::Unparsed(Stage::Raw));
            // The parse stage's plan for the line's final program (no shipped parser
            // rewrites it).
            let steps = probe.steps(&rs, Stage::Parse as usize, log_type, &plan_event);
            refused += steps.iter().filter(|s| s.refused).count();
        }
        assert_eq!(planned.parser_counts, unplanned.parser_counts);
        assert!(parsed > 400, "{parsed} lines parsed");
        assert!(refused > 1000, "{refused} filters decided by the program");
    }

    #[test]
    fn parser_filters_judged_by_value_follow_the_value() {
        let rs = crate::compile::compile_path(None)
            .expect("the default configuration compiles")
            .ruleset;
        let log_type = rs.fields.get(crate::event::Namespace::Meta, "log_type");
        let log_type = log_type.expect("a log_type field");
        // `nginx-logs` takes lines whose program starts with `nginx`: programs alternate,
        // and the same program comes back after another. (An sshd line first: a verdict
        // wrongly kept from it would refuse the nginx line.)
        let nginx = r#"Nov 18 09:48:53 web01 nginx: 192.0.2.7 - - [18/Nov/2026:09:48:53 +0000] "GET /a HTTP/1.1" 404 10 "-" "curl""#;
        let lines = [(LINE, "ssh_failed-auth"), (nginx, "http_access-log")];
        let mut pipeline = Pipeline::new(rs.clone(), TimeContext::default());
        for (line, expected) in lines.iter().chain(&lines).chain(lines.iter().rev()) {
            let mut event = Event::new((*line).into(), Timestamp::UNIX_EPOCH, rs.fields.len());
            assert_eq!(
                pipeline.parse(&mut event, "syslog", None),
                Outcome::Parsed,
                "{line}"
            );
            assert_eq!(event.get(log_type), *expected, "{line}");
        }
    }

    #[test]
    fn joined_fields_are_their_values_concatenated() {
        let rs = crate::compile::compile_path(None)
            .expect("the default configuration compiles")
            .ruleset;
        // The shipped `file_name` static is a join, not an expression.
        let name = rs.fields.get(crate::event::Namespace::Parsed, "file_name");
        let joins = rs.stages.iter().flatten().flat_map(|p| {
            p.statics
                .iter()
                .chain(p.groks.iter().flat_map(|g| &g.statics))
        });
        let joins: Vec<&CompiledStatic> = joins
            .filter(|st| matches!(st.value, StaticValue::Join(_)))
            .collect();
        assert!(joins.iter().any(|st| Some(st.target) == name), "{joins:?}");
        let mut reg = crate::event::FieldRegistry::new();
        let [a, b, c, out] =
            ["a", "b", "c", "out"].map(|n| reg.intern(crate::event::Namespace::Parsed, n));
        let statics = [CompiledStatic {
            target: out,
            value: StaticValue::Join(Box::new([a, b, c])),
        }];
        let line = "GET /wp-admin/setup-config.php?step=1";
        let range = |s: u32, e: u32| FieldValue::Line { start: s, end: e };
        let owned = |v: &str| FieldValue::Owned(v.into());
        // Adjacent ranges (the path's parts), with empty and unset parts between; apart;
        // out of order; computed values; all empty.
        let cases: Vec<[FieldValue; 3]> = vec![
            [range(4, 14), range(14, 26), range(26, 30)],
            [range(4, 14), FieldValue::Unset, range(14, 26)],
            [range(4, 14), range(20, 20), range(14, 26)],
            [FieldValue::Unset, range(15, 27), FieldValue::Unset],
            [range(4, 9), range(15, 26), FieldValue::Unset],
            [range(14, 26), range(4, 14), FieldValue::Unset],
            [range(4, 14), owned("x"), range(14, 26)],
            [range(4, 14), owned(""), range(14, 26)],
            [FieldValue::Static("a"), FieldValue::Unset, owned("b")],
            [FieldValue::Unset, range(3, 3), owned("")],
        ];
        for (n, values) in cases.into_iter().enumerate() {
            let mut e = Event::new(line.into(), Timestamp::UNIX_EPOCH, reg.len());
            for (id, v) in [a, b, c].into_iter().zip(values) {
                if !matches!(v, FieldValue::Unset) {
                    e.set(id, v);
                }
            }
            let want: String = [a, b, c].iter().map(|id| e.get(*id)).collect();
            apply_statics(&statics, (&mut [], 0, None), &mut e, &rs, &[]);
            assert_eq!(e.get(out), want, "case {n}");
            assert_eq!(
                e.slot(out).is_some_and(|v| matches!(v, FieldValue::Unset))
                    || e.slot(out).is_none(),
                want.is_empty(),
                "case {n}"
            );
            // Adjacent parts stay a range of the line: nothing is copied.
            if n < 4 {
                assert!(
                    matches!(e.slot(out), Some(FieldValue::Line { .. })),
                    "case {n}"
                );
            }
        }
    }

    #[test]
    fn whitelist_verdicts_follow_the_address() {
        let rs = crate::compile::compile_path(None)
            .expect("the default configuration compiles")
            .ruleset;
        let mut pipeline = Pipeline::new(rs.clone(), TimeContext::default());
        // Whitelisted and not, alternating, written both ways (IPv4-mapped IPv6 is the
        // same address), then a thousand more: every slot is evicted and refilled, and
        // the first addresses come back after that.
        let mut addrs: Vec<String> = ["127.0.0.1", "1.2.3.4", "10.0.0.1", "::ffff:10.0.0.1"]
            .into_iter()
            .chain(["::ffff:1.2.3.4", "::1", "2001:db8::1", "192.168.1.1"])
            .map(String::from)
            .collect();
        addrs.extend((0..1000).map(|i| format!("{}.{}.0.{}", [10, 11][i % 2], i / 250, i % 250)));
        addrs.extend_from_within(..8);
        addrs.extend_from_within(..);
        let (mut whitelisted, mut not) = (0, 0);
        for addr in &addrs {
            let line =
                format!("Nov 18 09:48:53 web01 sshd[1]: Invalid user pi from {addr} port 22");
            let mut event = Event::new(line.clone(), Timestamp::UNIX_EPOCH, rs.fields.len());
            let got = pipeline.parse(&mut event, "syslog", None);
            let source = event.get(rs.well_known.source_ip);
            let want = match normalize_ip(source).and_then(|ip| rs.whitelist.covers(&ip).cloned()) {
                Some(reason) => Outcome::Whitelisted(reason),
                None => Outcome::Parsed,
            };
            match &want {
                Outcome::Whitelisted(_) => whitelisted += 1,
                _ if source == addr => not += 1,
                _ => {}
            }
            assert_eq!(got, want, "{line}");
        }
        assert!(whitelisted > 1000 && not > 1000, "{whitelisted} {not}");
    }

    #[test]
    fn the_last_timestamp_is_reused_only_under_the_same_context() {
        let rs = crate::compile::compile_path(None)
            .expect("the default configuration compiles")
            .ruleset;
        let at = |y: &str| y.parse::<Timestamp>().expect("a timestamp");
        let mut pipeline = Pipeline::new(rs, TimeContext::new(at("2026-11-20T00:00:00Z")));
        let log_type = "syslog";
        let first = parse(&mut pipeline, log_type);
        assert_eq!(
            first,
            (at("2026-11-18T09:48:53Z"), "2026-11-18T09:48:53Z".into())
        );
        // The same text again: the same answer (from the cache).
        assert_eq!(parse(&mut pipeline, log_type), first);
        // A context with another year: the year-less date is read again.
        pipeline.time.now = at("2025-11-20T00:00:00Z");
        let again = parse(&mut pipeline, log_type);
        assert_eq!(
            again,
            (at("2025-11-18T09:48:53Z"), "2025-11-18T09:48:53Z".into())
        );
    }
}
