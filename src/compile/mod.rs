//! The compiler: configuration + rules → an immutable [`Ruleset`].
//!
//! Every problem is collected (not only the first) and reported with its location: the
//! configuration file for config errors, the rule file for rule errors, and the exact
//! spot inside a filter expression or pattern.

mod locate;
pub mod ruleset;
mod summary;
mod timings;

pub use ruleset::*;
pub use timings::Timings;

use crate::config::diag::{Diagnostic, Diagnostics, SourceFile, did_you_mean};
use crate::config::model::{Config, Profile};
use crate::config::{self, LoadedConfig};
use crate::data::{DataList, DataLists};
use crate::event::{FieldRegistry, Namespace};
use crate::expr::{self, CompileEnv, Roots, Type};
use crate::grok::{self, PatternLibrary};
use crate::rules::model::{ParserRule, ScenarioKind, ScenarioRule, ScenarioScope, Stage, Static};
use crate::rules::{self, LoadedRules};
use locate::Locator;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Options that widen what a compilation enables.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompileOptions {
    /// Enable every parser and scenario of every rule file, whatever the collections say
    /// (`replay --scenario` picks among them, as a hub test's `config.yaml` does).
    pub all_rules: bool,
}

/// Loads the configuration at `path` (or the embedded default) and compiles it.
pub fn compile_path(path: Option<&Path>) -> Result<Compiled, Diagnostics> {
    compile_path_with(path, CompileOptions::default())
}

/// [`compile_path`] with options.
pub fn compile_path_with(
    path: Option<&Path>,
    options: CompileOptions,
) -> Result<Compiled, Diagnostics> {
    let mut timings = Timings::default();
    let t = Instant::now();
    let loaded = config::load(path)?;
    timings.record("read and decode configuration", t);
    compile_loaded_with(loaded, timings, options)
}

/// Compiles a configuration given as text (tests, the NixOS build check).
pub fn compile_source(file: Arc<SourceFile>) -> Result<Compiled, Diagnostics> {
    let mut timings = Timings::default();
    let t = Instant::now();
    let loaded = config::load_source(file)?;
    timings.record("read and decode configuration", t);
    compile_loaded(loaded, timings)
}

/// A compiled configuration with its timings.
#[derive(Debug)]
pub struct Compiled {
    /// The ruleset the engine runs.
    pub ruleset: Arc<Ruleset>,
    /// How long each step took.
    pub timings: Timings,
}

/// Which rules the enabled collections select.
struct Selection {
    parsers: BTreeSet<String>,
    scenarios: BTreeSet<String>,
    collections: Vec<String>,
}

/// Compiles a decoded configuration with the shipped rules and its `rule-dirs`.
pub fn compile_loaded(loaded: LoadedConfig, timings: Timings) -> Result<Compiled, Diagnostics> {
    compile_loaded_with(loaded, timings, CompileOptions::default())
}

/// [`compile_loaded`] with options.
pub fn compile_loaded_with(
    loaded: LoadedConfig,
    mut timings: Timings,
    options: CompileOptions,
) -> Result<Compiled, Diagnostics> {
    let total = Instant::now();
    let mut diags = Diagnostics::default();
    let cfg_loc = Locator::new(&loaded.file, &loaded.tree);

    let t = Instant::now();
    // Relative rule directories are relative to the configuration file, not to wherever
    // the daemon happens to be started from.
    let base = Path::new(&loaded.file.name)
        .parent()
        .filter(|_| loaded.file.name != config::DEFAULT_CONFIG_NAME);
    let rule_dirs: Vec<String> = loaded
        .config
        .rule_dirs
        .iter()
        .map(|d| match base {
            Some(b) if Path::new(d).is_relative() => b.join(d).display().to_string(),
            _ => d.clone(),
        })
        .collect();
    let rules = rules::load(&rule_dirs)?;
    timings.record("load rule files", t);

    validate_config(&loaded.config, &cfg_loc, &mut diags);

    // Index every rule by name; later definitions (rule-dirs) replace shipped ones.
    let t = Instant::now();
    let index = RuleIndex::build(&rules, &mut diags);
    let mut selection = select(&loaded.config, &index, &cfg_loc, &mut diags);
    // Local rules are written to be used: enable every parser and scenario of rule-dirs.
    for f in rules.files.iter().filter(|f| !f.shipped) {
        selection
            .parsers
            .extend(f.rules.parsers.iter().map(|p| p.name.clone()));
        selection
            .scenarios
            .extend(f.rules.scenarios.iter().map(|s| s.name.clone()));
    }
    if options.all_rules {
        selection
            .parsers
            .extend(index.parsers.keys().map(|k| k.to_string()));
        selection
            .scenarios
            .extend(index.scenarios.keys().map(|k| k.to_string()));
    }
    timings.record("resolve collections", t);

    let t = Instant::now();
    let mut library = PatternLibrary::new();
    for f in &rules.files {
        let loc = Locator::new(&f.file, &f.tree);
        for (name, pattern) in &f.rules.patterns {
            if let Err(e) = library.add(name, pattern) {
                diags.push(loc.at(
                    &format!("/patterns/{}", crate::config::tree::pointer_segment(name)),
                    e.to_string(),
                ));
            }
        }
    }
    timings.record("pattern library", t);

    // Data lists: strings are cheap; regex lists compile only when an enabled rule uses them.
    let t = Instant::now();
    let mut data = DataLists::new();
    for d in &rules.data {
        match DataList::from_text_lazy(&d.name, d.kind, &d.text) {
            Ok(mut list) => {
                list.shipped = d.shipped;
                data.insert(list);
            }
            Err(e) => diags.push(Diagnostic::global(format!("{}: {e}", d.origin))),
        }
    }
    timings.record("data lists", t);

    // Fields: labels, decoders, grok captures and statics of the enabled parsers.
    let t = Instant::now();
    let mut fields = FieldRegistry::new();
    let well_known = WellKnown::register(&mut fields);
    for (k, _) in loaded
        .config
        .acquisitions
        .iter()
        .flat_map(|a| a.labels.iter())
    {
        fields.intern(Namespace::Labels, k);
    }
    // A shipped parser's regexes are built on first use: a test builds every one, and a
    // run needs few (a syslog replay none of the web parsers'). Its patterns stay shipped
    // unless a local rule file adds to the pattern library: then it is built at once,
    // so that what the local patterns do to it is reported now.
    let local_patterns = rules
        .files
        .iter()
        .any(|f| !f.shipped && !f.rules.patterns.is_empty());
    let enabled_parsers: Vec<(&ParserRule, Locator<'_>, String, grok::Build)> = selection
        .parsers
        .iter()
        .filter_map(|name| index.parsers.get(name.as_str()))
        .map(|(rule, file, ptr)| {
            let build = if file.shipped && !local_patterns {
                grok::Build::OnFirstUse
            } else {
                grok::Build::Now
            };
            let loc = Locator::new(&file.file, &file.tree);
            (*rule, loc, ptr.clone(), build)
        })
        .collect();
    // Each parser's own patterns layer over the shared library.
    let mut owns: Vec<PatternLibrary> = Vec::with_capacity(enabled_parsers.len());
    for (rule, loc, ptr, _) in &enabled_parsers {
        let mut own = PatternLibrary::new();
        for (name, pattern) in &rule.patterns {
            if let Err(e) = own.add(name, pattern) {
                diags.push(loc.at(
                    &format!(
                        "{ptr}/patterns/{}",
                        crate::config::tree::pointer_segment(name)
                    ),
                    e.to_string(),
                ));
            }
        }
        owns.push(own);
    }
    // Building the regexes is most of the compile time: spread it over the cores.
    let jobs: Vec<(usize, usize)> = enabled_parsers
        .iter()
        .enumerate()
        .flat_map(|(p, (rule, _, _, _))| (0..rule.grok.len()).map(move |g| (p, g)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let mut results: Vec<((usize, usize), Result<grok::Grok, grok::GrokError>)> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (jobs, owns, library, enabled) = (&jobs, &owns, &library, &enabled_parsers);
                    scope.spawn(move || {
                        jobs.iter()
                            .skip(t)
                            .step_by(threads)
                            .map(|&(p, g)| {
                                let local = library.with_local(&owns[p]);
                                let (rule, _, _, build) = &enabled[p];
                                let pattern = &rule.grok.0[g].pattern;
                                ((p, g), grok::compile_with(pattern, &local, *build))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
    results.sort_by_key(|(k, _)| *k);
    let mut groks: HashMap<(String, usize), grok::Grok> = HashMap::new();
    for ((p, i), result) in results {
        let (rule, loc, ptr, _) = &enabled_parsers[p];
        match result {
            Ok(compiled) => {
                for f in compiled.fields() {
                    fields.intern(Namespace::Parsed, f);
                }
                groks.insert((rule.name.clone(), i), compiled);
            }
            Err(e) => {
                let gptr = format!(
                    "{}/pattern",
                    loc.item(&format!("{ptr}/grok"), i, rule.grok.len())
                );
                diags.push(
                    loc.in_string(&gptr, e.offset.clone(), e.message.clone())
                        .with_opt_hint(e.hint.clone()),
                );
            }
        }
    }
    for (rule, _, _, _) in &enabled_parsers {
        for st in rule
            .statics
            .iter()
            .chain(rule.grok.iter().flat_map(|g| g.statics.iter()))
        {
            if let Some((ns, name)) = static_target(st) {
                fields.intern(ns, name);
            }
        }
        if let Some(tf) = &rule.time {
            fields.intern(Namespace::Parsed, tf);
        }
    }
    timings.record("compile patterns", t);

    let t = Instant::now();
    let mut stages: [Vec<CompiledParser>; 3] = Default::default();
    for (rule, loc, ptr, _) in &enabled_parsers {
        if let Some(p) = compile_parser(rule, loc, ptr, &mut groks, &mut fields, &data, &mut diags)
        {
            stages[rule.stage as usize].push(p);
        }
    }
    if stages[Stage::Raw as usize].is_empty() && diags.is_empty() {
        diags.push(
            cfg_loc
                .at(
                    "/collections",
                    "no raw-stage parser is enabled, so no line can be parsed",
                )
                .with_hint(
                    "enable the `linux` collection, which decodes syslog and plain log lines",
                ),
        );
    }

    let mut scenarios = Vec::new();
    for name in &selection.scenarios {
        let Some((rule, file, ptr)) = index.scenarios.get(name.as_str()) else {
            continue;
        };
        let loc = Locator::new(&file.file, &file.tree);
        if let Some(s) = compile_scenario(rule, &loc, ptr, &mut fields, &data, &mut diags) {
            scenarios.push(s);
        }
    }

    let whitelist = compile_whitelist(&loaded.config, &cfg_loc, &mut fields, &data, &mut diags);

    let (profile_src, profile_loc, profile_base): (&[Profile], Locator<'_>, String) =
        if loaded.config.profiles.is_empty() {
            match index.default_profiles {
                Some((file, profiles)) => (
                    profiles,
                    Locator::new(&file.file, &file.tree),
                    "/profiles".into(),
                ),
                None => (&[], cfg_loc.clone(), "/profiles".into()),
            }
        } else {
            (&loaded.config.profiles, cfg_loc.clone(), "/profiles".into())
        };
    let profiles = compile_profiles(
        profile_src,
        &profile_loc,
        &profile_base,
        &mut fields,
        &data,
        &mut diags,
    );
    timings.record("compile parsers, scenarios, profiles", t);

    if !diags.is_empty() {
        return Err(diags);
    }
    timings.record("total compile (after configuration)", total);
    let ruleset = Ruleset {
        config: loaded.config,
        config_name: loaded.file.name.clone(),
        fields,
        well_known,
        data,
        stages,
        scenarios,
        profiles,
        whitelist,
        collections: selection.collections,
    };
    Ok(Compiled {
        ruleset: Arc::new(ruleset),
        timings,
    })
}

/// Every rule by name, with the file and JSON pointer it was defined at.
struct RuleIndex<'a> {
    parsers: HashMap<&'a str, (&'a ParserRule, &'a rules::LoadedRuleFile, String)>,
    scenarios: HashMap<&'a str, (&'a ScenarioRule, &'a rules::LoadedRuleFile, String)>,
    collections: HashMap<
        &'a str,
        (
            &'a crate::rules::model::Collection,
            &'a rules::LoadedRuleFile,
            String,
        ),
    >,
    default_profiles: Option<(&'a rules::LoadedRuleFile, &'a [Profile])>,
}

impl<'a> RuleIndex<'a> {
    fn build(rules: &'a LoadedRules, diags: &mut Diagnostics) -> Self {
        let mut idx = RuleIndex {
            parsers: HashMap::new(),
            scenarios: HashMap::new(),
            collections: HashMap::new(),
            default_profiles: None,
        };
        for f in &rules.files {
            let loc = Locator::new(&f.file, &f.tree);
            for (i, p) in f.rules.parsers.iter().enumerate() {
                let ptr = format!("/parsers/{i}");
                if let Some((_, other, _)) = idx.parsers.get(p.name.as_str())
                    && other.file.name == f.file.name
                {
                    diags.push(loc.at(
                        &format!("{ptr}/name"),
                        format!("parser `{}` is defined twice in this file", p.name),
                    ));
                    continue;
                }
                idx.parsers.insert(&p.name, (p, f, ptr));
            }
            for (i, s) in f.rules.scenarios.iter().enumerate() {
                let ptr = format!("/scenarios/{i}");
                if let Some((_, other, _)) = idx.scenarios.get(s.name.as_str())
                    && other.file.name == f.file.name
                {
                    diags.push(loc.at(
                        &format!("{ptr}/name"),
                        format!("scenario `{}` is defined twice in this file", s.name),
                    ));
                    continue;
                }
                idx.scenarios.insert(&s.name, (s, f, ptr));
            }
            for (i, c) in f.rules.collections.iter().enumerate() {
                idx.collections
                    .insert(&c.name, (c, f, format!("/collections/{i}")));
            }
            if !f.rules.profiles.is_empty() {
                idx.default_profiles = Some((f, &f.rules.profiles));
            }
        }
        idx
    }
}

/// Resolves the enabled collections (recursively) into parser and scenario names.
fn select(
    cfg: &Config,
    index: &RuleIndex<'_>,
    loc: &Locator<'_>,
    diags: &mut Diagnostics,
) -> Selection {
    let mut sel = Selection {
        parsers: BTreeSet::new(),
        scenarios: BTreeSet::new(),
        collections: Vec::new(),
    };
    let mut seen = HashSet::new();
    let mut stack: Vec<(String, Option<(Locator<'_>, String)>)> = Vec::new();
    for (i, name) in cfg.collections.iter().enumerate().rev() {
        stack.push((name.clone(), Some((loc.clone(), collection_ptr(cfg, i)))));
    }
    while let Some((name, origin)) = stack.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some((c, file, ptr)) = index.collections.get(name.as_str()) else {
            let hint = did_you_mean(&name, index.collections.keys().copied())
                .map(|b| format!("did you mean `{b}`?"))
                .unwrap_or_else(|| {
                    format!(
                        "known collections: {}",
                        sorted(index.collections.keys().copied())
                    )
                });
            let d = match &origin {
                Some((l, p)) => l.at(p, format!("unknown collection `{name}`")),
                None => Diagnostic::global(format!("unknown collection `{name}`")),
            };
            diags.push(d.with_hint(hint));
            continue;
        };
        sel.collections.push(name.clone());
        let cloc = Locator::new(&file.file, &file.tree);
        for (i, p) in c.parsers.iter().enumerate() {
            if index.parsers.contains_key(p.as_str()) {
                sel.parsers.insert(p.clone());
            } else {
                let hint = did_you_mean(p, index.parsers.keys().copied())
                    .map(|b| format!("did you mean `{b}`?"));
                diags.push(
                    cloc.at(
                        &list_ptr(&format!("{ptr}/parsers"), i, c.parsers.len()),
                        format!("collection `{name}` names unknown parser `{p}`"),
                    )
                    .with_opt_hint(hint),
                );
            }
        }
        for (i, s) in c.scenarios.iter().enumerate() {
            if index.scenarios.contains_key(s.as_str()) {
                sel.scenarios.insert(s.clone());
            } else {
                let hint = did_you_mean(s, index.scenarios.keys().copied())
                    .map(|b| format!("did you mean `{b}`?"));
                diags.push(
                    cloc.at(
                        &list_ptr(&format!("{ptr}/scenarios"), i, c.scenarios.len()),
                        format!("collection `{name}` names unknown scenario `{s}`"),
                    )
                    .with_opt_hint(hint),
                );
            }
        }
        for (i, sub) in c.collections.iter().enumerate().rev() {
            stack.push((
                sub.clone(),
                Some((
                    cloc.clone(),
                    list_ptr(&format!("{ptr}/collections"), i, c.collections.len()),
                )),
            ));
        }
    }
    sel
}

fn sorted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut v: Vec<&str> = names.collect();
    v.sort_unstable();
    v.iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pointer of item `i` of a [`crate::config::types::List`] written either as one value or a list.
fn list_ptr(base: &str, i: usize, len: usize) -> String {
    if len == 1 {
        base.to_owned()
    } else {
        format!("{base}/{i}")
    }
}

fn collection_ptr(cfg: &Config, i: usize) -> String {
    list_ptr("/collections", i, cfg.collections.len())
}

/// Checks that need the whole configuration (serde checked types and names already).
fn validate_config(cfg: &Config, loc: &Locator<'_>, diags: &mut Diagnostics) {
    for (i, a) in cfg.acquisitions.iter().enumerate() {
        let ptr = format!("/acquisitions/{i}");
        let sources = usize::from(!a.files.is_empty())
            + usize::from(!a.journald.is_empty())
            + usize::from(a.syslog.is_some());
        if sources != 1 {
            diags.push(
                loc.at(
                    &ptr,
                    if sources == 0 {
                        "this acquisition has no source"
                    } else {
                        "this acquisition has several sources"
                    },
                )
                .with_hint("give exactly one of `files`, `journald` or `syslog`"),
            );
        }
        if a.log_type.trim().is_empty() {
            diags.push(
                loc.at(&format!("{ptr}/type"), "the acquisition type is empty")
                    .with_hint(
                        "use `syslog` for syslog and journal lines, or the service name (`nginx`)",
                    ),
            );
        }
        for (j, m) in a.journald.iter().enumerate() {
            if !m.contains('=') {
                diags.push(
                    loc.at(
                        &list_ptr(&format!("{ptr}/journald"), j, a.journald.len()),
                        format!("`{m}` is not a journald match"),
                    )
                    .with_hint("write FIELD=value, like `_SYSTEMD_UNIT=sshd.service`"),
                );
            }
        }
        if let Some(s) = &a.syslog
            && s.listen.parse::<std::net::SocketAddr>().is_err()
        {
            diags.push(
                loc.at(
                    &format!("{ptr}/syslog/listen"),
                    format!("`{}` is not an address:port", s.listen),
                )
                .with_hint("for example 127.0.0.1:5514"),
            );
        }
    }
    for (ptr, addr) in [
        ("/lapi/listen", &cfg.lapi.listen),
        ("/metrics/listen", &cfg.metrics.listen),
    ] {
        if addr.parse::<std::net::SocketAddr>().is_err() {
            diags.push(
                loc.at(ptr, format!("`{addr}` is not an address:port"))
                    .with_hint("for example 127.0.0.1:8080 or [::1]:8080"),
            );
        }
    }
    if let Some(problem) = crate::enforce::table_name_problem(&cfg.enforcement.nftables.table) {
        diags.push(
            loc.at("/enforcement/nftables/table", problem)
                .with_hint("for example `garrison` (the default) or `garrison_web`"),
        );
    }
    let mut names = HashSet::new();
    for (i, p) in cfg.profiles.iter().enumerate() {
        if !names.insert(&p.name) {
            diags.push(loc.at(
                &format!("/profiles/{i}/name"),
                format!("profile `{}` is defined twice", p.name),
            ));
        }
        if let Some(e) = &p.escalation
            && !(e.factor >= 1.0 && e.factor <= 100.0)
        {
            diags.push(loc.at(
                &format!("/profiles/{i}/escalation/factor"),
                "the escalation factor must be between 1 and 100",
            ));
        }
    }
    let mut names = HashSet::new();
    for (i, b) in cfg.blocklists.iter().enumerate() {
        let ptr = format!("/blocklists/{i}");
        if !names.insert(&b.name) {
            diags.push(loc.at(
                &format!("{ptr}/name"),
                format!("blocklist `{}` is defined twice", b.name),
            ));
        }
        if b.url.is_some() == b.file.is_some() {
            diags.push(loc.at(&ptr, "a blocklist needs exactly one of `url` or `file`"));
        }
        if let Some(u) = &b.url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            diags.push(loc.at(
                &format!("{ptr}/url"),
                format!("`{u}` is not an http(s) URL"),
            ));
        }
        if b.refresh.0 < std::time::Duration::from_secs(60) {
            diags.push(
                loc.at(
                    &format!("{ptr}/refresh"),
                    "refreshing more often than every minute is abusive to list providers",
                )
                .with_hint("use at least \"1m\""),
            );
        }
    }
}

fn static_target(st: &Static) -> Option<(Namespace, &str)> {
    match (&st.meta, &st.parsed, &st.enriched) {
        (Some(m), None, None) => Some((Namespace::Meta, m)),
        (None, Some(p), None) => Some((Namespace::Parsed, p)),
        (None, None, Some(e)) => Some((Namespace::Enriched, e)),
        _ => None,
    }
}

/// Compiles one expression, reporting errors inside the expression text.
#[allow(clippy::too_many_arguments)]
fn compile_expr(
    src: &str,
    roots: Roots,
    expect: Option<Type>,
    loc: &Locator<'_>,
    ptr: &str,
    fields: &mut FieldRegistry,
    data: &DataLists,
    diags: &mut Diagnostics,
) -> Option<expr::Program> {
    let mut env = CompileEnv {
        fields,
        data,
        roots,
    };
    match expr::compile(src, &mut env, expect) {
        Ok(p) => Some(p),
        Err(e) => {
            diags.push(
                loc.in_string(ptr, Some(e.span.clone()), e.message.clone())
                    .with_opt_hint(e.hint.clone()),
            );
            None
        }
    }
}

/// A static's value: plain field references copy without evaluating an expression.
fn static_value(
    st: &Static,
    loc: &Locator<'_>,
    ptr: &str,
    fields: &mut FieldRegistry,
    data: &DataLists,
    diags: &mut Diagnostics,
) -> Option<StaticValue> {
    match (&st.value, &st.expression) {
        (Some(v), None) => Some(StaticValue::Const(crate::event::intern(v))),
        (None, Some(e)) => {
            let t = e.trim();
            if t == "evt.Line.Raw" {
                return Some(StaticValue::Line);
            }
            if let Some((ns, name)) = plain_field_ref(t)
                && let Some(id) = fields.get(ns, name)
            {
                return Some(StaticValue::Copy(id));
            }
            let parts: Option<Vec<crate::event::FieldId>> = t
                .split('+')
                .map(|p| plain_field_ref(p.trim()).and_then(|(ns, name)| fields.get(ns, name)))
                .collect();
            if let Some(parts) = parts.filter(|p| p.len() > 1) {
                return Some(StaticValue::Join(parts.into()));
            }
            compile_expr(
                e,
                Roots::EVT,
                None,
                loc,
                &format!("{ptr}/expression"),
                fields,
                data,
                diags,
            )
            .map(StaticValue::Expr)
        }
        _ => {
            diags.push(loc.at(ptr, "a static needs exactly one of `value` or `expression`"));
            None
        }
    }
}

/// `evt.Meta.x` / `evt.Parsed.x` / `evt.Enriched.x` / `evt.Line.Labels.x`, if that is all `s` is.
fn plain_field_ref(s: &str) -> Option<(Namespace, &str)> {
    let rest = s.strip_prefix("evt.")?;
    let (ns, name) = if let Some(n) = rest.strip_prefix("Line.Labels.") {
        (Namespace::Labels, n)
    } else {
        let (ns, n) = rest.split_once('.')?;
        (Namespace::from_name(ns)?, n)
    };
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some((ns, name))
}

fn compile_statics(
    statics: &crate::config::types::List<Static>,
    loc: &Locator<'_>,
    base: &str,
    fields: &mut FieldRegistry,
    data: &DataLists,
    diags: &mut Diagnostics,
) -> Vec<CompiledStatic> {
    let mut out = Vec::new();
    for (i, st) in statics.iter().enumerate() {
        let ptr = loc.item(base, i, statics.len());
        let Some((ns, name)) = static_target(st) else {
            diags.push(loc.at(
                &ptr,
                "a static needs exactly one target: `meta`, `parsed` or `enriched`",
            ));
            continue;
        };
        let target = fields.intern(ns, name);
        if let Some(value) = static_value(st, loc, &ptr, fields, data, diags) {
            out.push(CompiledStatic { target, value });
        }
    }
    out
}

fn match_target(apply_on: &str, fields: &mut FieldRegistry) -> MatchTarget {
    if apply_on == "line" {
        MatchTarget::Line
    } else {
        MatchTarget::Field(fields.intern(Namespace::Parsed, apply_on))
    }
}

#[allow(clippy::too_many_arguments)]
fn compile_parser(
    rule: &ParserRule,
    loc: &Locator<'_>,
    ptr: &str,
    groks: &mut HashMap<(String, usize), grok::Grok>,
    fields: &mut FieldRegistry,
    data: &DataLists,
    diags: &mut Diagnostics,
) -> Option<CompiledParser> {
    let before = diags.len();
    let filter = rule.filter.as_ref().and_then(|f| {
        compile_expr(
            f,
            Roots::EVT,
            Some(Type::Bool),
            loc,
            &format!("{ptr}/filter"),
            fields,
            data,
            diags,
        )
    });
    if rule.decoder.is_some() && !rule.grok.is_empty() {
        diags.push(loc.at(
            &format!("{ptr}/decoder"),
            "a parser has either a `decoder` or `grok` patterns, not both",
        ));
    }
    if rule.decoder.is_some() && rule.stage != Stage::Raw {
        diags.push(
            loc.at(&format!("{ptr}/decoder"), "decoders run in the `raw` stage")
                .with_hint("set `stage raw`"),
        );
    }
    let default_target = match_target(&rule.apply_on, fields);
    let mut compiled_groks = Vec::new();
    for (i, g) in rule.grok.iter().enumerate() {
        let gptr = loc.item(&format!("{ptr}/grok"), i, rule.grok.len());
        let Some(grok) = groks.remove(&(rule.name.clone(), i)) else {
            continue;
        };
        let target = g
            .apply_on
            .as_deref()
            .map_or(default_target, |a| match_target(a, fields));
        let field_ids = grok
            .fields()
            .iter()
            .map(|f| fields.intern(Namespace::Parsed, f))
            .collect();
        let statics = compile_statics(
            &g.statics,
            loc,
            &format!("{gptr}/statics"),
            fields,
            data,
            diags,
        );
        let prefilter_pairs = grok.required_pairs().clone();
        let prefilter = grok
            .required_literal()
            .map(|lit| crate::grok::LiteralFinder::new(lit.as_bytes()));
        compiled_groks.push(CompiledGrok {
            prefilter,
            prefilter_pairs,
            grok,
            target,
            fields: field_ids,
            statics,
        });
    }
    let statics = compile_statics(
        &rule.statics,
        loc,
        &format!("{ptr}/statics"),
        fields,
        data,
        diags,
    );
    let time = rule
        .time
        .as_ref()
        .map(|t| fields.intern(Namespace::Parsed, t));
    if diags.len() > before {
        return None;
    }
    Some(CompiledParser {
        name: Arc::from(rule.name.as_str()),
        stage: rule.stage,
        types: rule.types.iter().map(|t| Box::from(t.as_str())).collect(),
        programs: rule
            .programs
            .iter()
            .map(|t| Box::from(t.as_str()))
            .collect(),
        filter,
        decoder: rule.decoder,
        groks: compiled_groks,
        statics,
        time,
        on_success: rule.on_success,
        samples: rule.samples.0.clone(),
    })
}

fn compile_scenario(
    rule: &ScenarioRule,
    loc: &Locator<'_>,
    ptr: &str,
    fields: &mut FieldRegistry,
    data: &DataLists,
    diags: &mut Diagnostics,
) -> Option<CompiledScenario> {
    let before = diags.len();
    let p = |k: &str| format!("{ptr}/{k}");
    let filter = compile_expr(
        &rule.filter,
        Roots::EVT,
        Some(Type::Bool),
        loc,
        &p("filter"),
        fields,
        data,
        diags,
    );
    let groupby = rule.groupby.as_ref().and_then(|g| {
        compile_expr(
            g,
            Roots::EVT,
            Some(Type::Str),
            loc,
            &p("groupby"),
            fields,
            data,
            diags,
        )
    });
    let distinct = rule.distinct.as_ref().and_then(|g| {
        compile_expr(
            g,
            Roots::EVT,
            None,
            loc,
            &p("distinct"),
            fields,
            data,
            diags,
        )
    });
    let condition = rule.condition.as_ref().and_then(|g| {
        compile_expr(
            g,
            Roots::EVT | Roots::QUEUE,
            Some(Type::Bool),
            loc,
            &p("condition"),
            fields,
            data,
            diags,
        )
    });
    let cancel_on = rule.cancel_on.as_ref().and_then(|g| {
        compile_expr(
            g,
            Roots::EVT,
            Some(Type::Bool),
            loc,
            &p("cancel-on"),
            fields,
            data,
            diags,
        )
    });
    let scope_expression = rule.scope_expression.as_ref().and_then(|g| {
        compile_expr(
            g,
            Roots::EVT,
            Some(Type::Str),
            loc,
            &p("scope-expression"),
            fields,
            data,
            diags,
        )
    });

    let positive = |d: Option<crate::config::types::Duration>| d.is_some_and(|d| !d.0.is_zero());
    let capacity = match rule.kind {
        ScenarioKind::Leaky => {
            match rule.capacity {
                Some(c) if c > 0 => {}
                _ => diags.push(
                    loc.at(
                        &p(if rule.capacity.is_some() {
                            "capacity"
                        } else {
                            "name"
                        }),
                        "a leaky scenario needs a capacity above 0",
                    )
                    .with_hint("the bucket overflows on the capacity+1-th event: `capacity 5`"),
                ),
            }
            if !positive(rule.leakspeed) {
                diags.push(
                    loc.at(&p("name"), "a leaky scenario needs a `leakspeed`")
                        .with_hint("for example `leakspeed \"10s\"`"),
                );
            }
            rule.capacity.unwrap_or(1)
        }
        ScenarioKind::Trigger => {
            if rule.capacity.is_some_and(|c| c != 0) {
                diags.push(
                    loc.at(
                        &p("capacity"),
                        "a trigger scenario overflows on every event; it takes no capacity",
                    )
                    .with_hint("remove `capacity`, or use `type leaky`"),
                );
            }
            0
        }
        ScenarioKind::Counter => {
            if rule.capacity.is_some_and(|c| c != -1) {
                diags.push(
                    loc.at(&p("capacity"), "a counter scenario takes no capacity")
                        .with_hint("remove `capacity`"),
                );
            }
            if !positive(rule.duration) {
                diags.push(
                    loc.at(&p("name"), "a counter scenario needs a `duration`")
                        .with_hint("for example `duration \"1h\"`"),
                );
            }
            -1
        }
        ScenarioKind::Conditional => {
            if rule.condition.is_none() {
                diags.push(loc.at(&p("name"), "a conditional scenario needs a `condition`"));
            }
            if !positive(rule.leakspeed) {
                diags.push(loc.at(
                    &p("name"),
                    "a conditional scenario needs a `leakspeed` (how long its bucket lives)",
                ));
            }
            -1
        }
    };
    if rule.kind != ScenarioKind::Conditional && rule.condition.is_some() {
        diags.push(
            loc.at(
                &p("condition"),
                "only conditional scenarios take a `condition`",
            )
            .with_hint("set `type conditional`"),
        );
    }
    if rule.kind != ScenarioKind::Counter && rule.duration.is_some() {
        diags.push(loc.at(&p("duration"), "only counter scenarios take a `duration`"));
    }
    if rule.scope == ScenarioScope::Ip && rule.scope_expression.is_some() {
        diags.push(
            loc.at(&p("scope-expression"), "an `ip` scope takes no expression")
                .with_hint("set `scope range`"),
        );
    }
    let mut remediation = false;
    let mut labels = Vec::new();
    for (k, v) in &rule.labels {
        if k == "remediation" {
            match v {
                serde_json::Value::Bool(b) => remediation = *b,
                _ => diags.push(loc.at(
                    &format!("{ptr}/labels/remediation"),
                    "`remediation` is #true or #false",
                )),
            }
        }
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        labels.push((Arc::from(k.as_str()), text));
    }
    if diags.len() > before {
        return None;
    }
    Some(CompiledScenario {
        name: Arc::from(rule.name.as_str()),
        description: rule.description.clone(),
        kind: rule.kind,
        filter: filter?,
        groupby,
        distinct,
        capacity,
        leakspeed: rule.leakspeed,
        duration: rule.duration,
        condition,
        cancel_on,
        blackhole: rule.blackhole,
        cache_size: rule.cache_size,
        scope: rule.scope,
        scope_expression,
        labels: labels.into(),
        remediation,
    })
}

/// Loopback, RFC 1918, CGNAT, link-local and unique-local ranges.
pub const PRIVATE_RANGES: &[&str] = &[
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

fn compile_whitelist(
    cfg: &Config,
    loc: &Locator<'_>,
    fields: &mut FieldRegistry,
    data: &DataLists,
    diags: &mut Diagnostics,
) -> CompiledWhitelist {
    let mut wl = CompiledWhitelist::default();
    if cfg.whitelists.private_ranges {
        let reason: Arc<str> = Arc::from("private-ranges");
        for r in PRIVATE_RANGES {
            if let Ok(c) = crate::config::types::Cidr::parse(r) {
                wl.cidrs.push((c, reason.clone()));
            }
        }
    }
    let reason: Arc<str> = Arc::from("whitelists.cidrs");
    wl.cidrs
        .extend(cfg.whitelists.cidrs.iter().map(|c| (*c, reason.clone())));
    let n = cfg.whitelists.expressions.len();
    for (i, e) in cfg.whitelists.expressions.iter().enumerate() {
        if let Some(p) = compile_expr(
            e,
            Roots::EVT,
            Some(Type::Bool),
            loc,
            &list_ptr("/whitelists/expressions", i, n),
            fields,
            data,
            diags,
        ) {
            wl.expressions.push(p);
        }
    }
    wl
}

fn compile_profiles(
    profiles: &[Profile],
    loc: &Locator<'_>,
    base: &str,
    fields: &mut FieldRegistry,
    data: &DataLists,
    diags: &mut Diagnostics,
) -> Vec<CompiledProfile> {
    let mut out = Vec::new();
    for (i, p) in profiles.iter().enumerate() {
        let ptr = format!("{base}/{i}");
        let filters: Vec<_> = p
            .filters
            .iter()
            .enumerate()
            .filter_map(|(j, f)| {
                compile_expr(
                    f,
                    Roots::ALERT,
                    Some(Type::Bool),
                    loc,
                    &list_ptr(&format!("{ptr}/filters"), j, p.filters.len()),
                    fields,
                    data,
                    diags,
                )
            })
            .collect();
        if p.decisions.is_empty() {
            diags.push(
                loc.at(&ptr, format!("profile `{}` makes no decision", p.name))
                    .with_hint("add `decisions type=ban duration=\"4h\"`"),
            );
        }
        out.push(CompiledProfile {
            name: Arc::from(p.name.as_str()),
            filters,
            decisions: p.decisions.0.clone(),
            escalation: p.escalation.clone(),
            on_success: p.on_success,
        });
    }
    out
}

/// The ruleset of the `sshd` and `linux` collections plus local `rules` (a rule file in a
/// `rule-dirs` directory), for tests of rules the shipped ones lack.
#[cfg(test)]
pub(crate) fn ruleset_with_local_rules(rules: &str) -> Arc<Ruleset> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RUN: AtomicUsize = AtomicUsize::new(0);
    // One directory per call: tests run in parallel.
    let dir = std::env::temp_dir().join(format!(
        "garrison-local-rules-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(dir.join("rules")).expect("a temporary directory");
    std::fs::write(dir.join("rules/local.kdl"), rules).expect("rules written");
    let config = dir.join("garrison.kdl");
    std::fs::write(
        &config,
        "collections \"sshd\" \"linux\"\nrule-dirs \"rules\"\n",
    )
    .expect("config written");
    let compiled = compile_path(Some(&config));
    let _ = std::fs::remove_dir_all(&dir);
    compiled.expect("the configuration compiles").ruleset
}
