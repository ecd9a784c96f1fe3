//! Loading rule files: the shipped `rules/` tree (embedded in the binary) and the
//! configuration's `rule-dirs`.

pub mod model;

use crate::config::diag::{Diagnostic, Diagnostics, Format, SourceFile};
use crate::config::tree::Node;
use crate::data::DataKind;
use include_dir::{Dir, include_dir};
use std::path::Path;
use std::sync::Arc;

/// The shipped rules, embedded at build time so the binary is self-contained.
static SHIPPED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/rules");

/// One decoded rule file.
#[derive(Debug, Clone)]
pub struct LoadedRuleFile {
    /// The source, for diagnostics.
    pub file: Arc<SourceFile>,
    /// Its tree, for locating errors by JSON pointer.
    pub tree: Node,
    /// The rules.
    pub rules: model::RuleFile,
    /// Shipped with garrison (else from the configuration's `rule-dirs`, whose parsers and
    /// scenarios are always enabled).
    pub shipped: bool,
}

/// A data list's text, before it is compiled.
#[derive(Debug, Clone)]
pub struct DataSource {
    /// The name rules use (the file name: `backdoors.txt`).
    pub name: String,
    /// Strings, or regexes for names ending in `.regex.txt`.
    pub kind: DataKind,
    /// The text.
    pub text: String,
    /// Where it came from.
    pub origin: String,
    /// Shipped with garrison (else from the configuration's `rule-dirs`).
    pub shipped: bool,
}

/// Every rule file and data list.
#[derive(Debug, Default, Clone)]
pub struct LoadedRules {
    /// Rule files in load order: shipped first (patterns before the rest), then `rule-dirs`.
    pub files: Vec<LoadedRuleFile>,
    /// Data lists.
    pub data: Vec<DataSource>,
}

fn data_kind(name: &str) -> DataKind {
    if name.ends_with(".regex.txt") {
        DataKind::Regexes
    } else {
        DataKind::Strings
    }
}

/// Orders rule paths so pattern libraries load first, then everything by path.
fn load_order(path: &str) -> (u8, String) {
    (u8::from(!path.starts_with("patterns/")), path.to_owned())
}

/// The shipped rules' trees, decoded from KDL by `build.rs` (path relative to `rules/` →
/// tree, or null when the file failed to parse and must be reported at run time).
static PREPARSED: &str = include_str!(concat!(env!("OUT_DIR"), "/shipped_rules.json"));

#[derive(serde::Deserialize)]
struct Preparsed {
    path: String,
    tree: Option<Node>,
}

fn push_file(
    out: &mut LoadedRules,
    diags: &mut Diagnostics,
    name: String,
    text: String,
    tree: Option<Node>,
    shipped: bool,
) {
    let file = SourceFile::new(name, text, Format::Kdl);
    let tree = match tree {
        Some(t) => Ok(t),
        None => crate::config::parse_tree(&file),
    };
    match tree {
        Ok(tree) => match crate::config::decode::<model::RuleFile>(&file, &tree) {
            Ok(rules) => out.files.push(LoadedRuleFile {
                file,
                tree,
                rules,
                shipped,
            }),
            Err(d) => diags.push(d),
        },
        Err(ds) => diags.0.extend(ds.0),
    }
}

/// A data list named after its file.
fn data_source(
    file_name: Option<&std::ffi::OsStr>,
    text: String,
    origin: String,
    shipped: bool,
) -> DataSource {
    let name = file_name
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    DataSource {
        kind: data_kind(&name),
        name,
        text,
        origin,
        shipped,
    }
}

fn is_data(path: &str) -> bool {
    path.split('/').any(|seg| seg == "data") && (path.ends_with(".txt") || path.ends_with(".json"))
}

/// The shipped rules, decoded once per process: they are immutable, so a reload or a second
/// compilation only decodes the configuration and its `rule-dirs`.
fn shipped() -> &'static Result<LoadedRules, Diagnostics> {
    static SHIPPED_RULES: std::sync::OnceLock<Result<LoadedRules, Diagnostics>> =
        std::sync::OnceLock::new();
    SHIPPED_RULES.get_or_init(load_shipped)
}

/// Decodes the embedded rules (uncached; see [`load`]).
pub fn load_shipped() -> Result<LoadedRules, Diagnostics> {
    let mut out = LoadedRules::default();
    let mut diags = Diagnostics::default();

    let mut preparsed: std::collections::HashMap<String, Option<Node>> =
        serde_json::from_str::<Vec<Preparsed>>(PREPARSED)
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.path, p.tree))
            .collect();
    let mut shipped: Vec<&include_dir::File<'static>> = Vec::new();
    collect_embedded(&SHIPPED, &mut shipped);
    shipped.sort_by_key(|f| load_order(&f.path().to_string_lossy()));
    for f in shipped {
        let path = f.path().to_string_lossy().into_owned();
        let Some(text) = f.contents_utf8() else {
            continue;
        };
        if path.ends_with(".kdl") {
            let tree = preparsed.remove(&path).flatten();
            push_file(
                &mut out,
                &mut diags,
                format!("rules/{path}"),
                text.to_owned(),
                tree,
                true,
            );
        } else if is_data(&path) {
            out.data.push(data_source(
                f.path().file_name(),
                text.to_owned(),
                format!("rules/{path}"),
                true,
            ));
        }
    }

    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

/// The shipped rules (decoded once per process) followed by every `*.kdl` and data file
/// under `extra_dirs`.
pub fn load(extra_dirs: &[String]) -> Result<Arc<LoadedRules>, Diagnostics> {
    static SHIPPED_ONLY: std::sync::OnceLock<Arc<LoadedRules>> = std::sync::OnceLock::new();
    let shipped = shipped().as_ref().map_err(Clone::clone)?;
    if extra_dirs.is_empty() {
        return Ok(SHIPPED_ONLY
            .get_or_init(|| Arc::new(shipped.clone()))
            .clone());
    }
    let mut out = shipped.clone();
    let mut diags = Diagnostics::default();
    for dir in extra_dirs {
        let mut paths = Vec::new();
        if let Err(e) = walk(Path::new(dir), &mut paths) {
            diags.push(
                Diagnostic::global(format!("cannot read rule directory {dir}: {e}"))
                    .with_hint("check `rule-dirs` in the configuration"),
            );
            continue;
        }
        paths.sort();
        for p in paths {
            let display = p.display().to_string();
            let rel = p
                .strip_prefix(dir)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = match std::fs::read_to_string(&p) {
                Ok(t) => t,
                Err(e) => {
                    diags.push(Diagnostic::global(format!("cannot read {display}: {e}")));
                    continue;
                }
            };
            if display.ends_with(".kdl") {
                push_file(&mut out, &mut diags, display, text, None, false);
            } else if is_data(&rel) {
                out.data
                    .push(data_source(p.file_name(), text, display, false));
            }
        }
    }
    if diags.is_empty() {
        Ok(Arc::new(out))
    } else {
        Err(diags)
    }
}

fn collect_embedded<'a>(dir: &'a Dir<'a>, out: &mut Vec<&'a include_dir::File<'a>>) {
    for f in dir.files() {
        out.push(f);
    }
    for d in dir.dirs() {
        collect_embedded(d, out);
    }
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
