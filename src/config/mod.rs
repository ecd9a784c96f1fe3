//! Configuration: reading KDL or JSON into the typed [`model::Config`], with diagnostics
//! that point at `file:line:col`.

pub mod de;
pub mod diag;
pub mod json;
pub mod kdl;
pub mod model;
pub mod tree;
pub mod types;

use diag::{Diagnostic, Diagnostics, Format, SourceFile, did_you_mean};
use std::path::Path;
use std::sync::Arc;
use tree::{Node, Span};

/// The configuration used when no `--config` is given: sshd, linux and nginx collections,
/// private and loopback ranges whitelisted, 4 h bans, Local API on 127.0.0.1:8080.
pub const DEFAULT_CONFIG: &str = include_str!("default.kdl");

/// The name the embedded default has in messages.
pub const DEFAULT_CONFIG_NAME: &str = "<embedded default config>";

/// A configuration file, parsed: the source (for diagnostics), its tree and the typed model.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The file it came from.
    pub file: Arc<SourceFile>,
    /// The format-neutral tree (for locating later errors by JSON pointer).
    pub tree: Node,
    /// The typed configuration.
    pub config: model::Config,
}

impl LoadedConfig {
    /// A diagnostic at the value a JSON pointer names (or at the file start if it is gone).
    pub fn diag_at(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        diag_at(&self.file, &self.tree, pointer, message)
    }
}

/// A diagnostic pointing at the value a JSON pointer names in a tree.
pub fn diag_at(
    file: &Arc<SourceFile>,
    tree: &Node,
    pointer: &str,
    message: impl Into<String>,
) -> Diagnostic {
    let span = tree
        .pointer(pointer)
        .map_or(Span::new(0, 1), |(node, _)| node.span);
    Diagnostic::new(file, span, message).with_pointer(pointer)
}

/// Reads a file from disk.
pub fn read_source(path: &Path) -> Result<Arc<SourceFile>, Diagnostic> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        Diagnostic::global(format!("cannot read {name}: {e}"))
            .with_hint("check the path given with --config")
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Diagnostic::global(format!(
            "{name} is not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok(SourceFile::new(
        name.clone(),
        text,
        Format::from_path(&name),
    ))
}

/// Parses a source file into the format-neutral tree.
pub fn parse_tree(file: &Arc<SourceFile>) -> Result<Node, Diagnostics> {
    match file.format {
        Format::Kdl => kdl::parse(file),
        Format::Json => json::parse(file),
    }
}

/// Deserializes a typed value from a tree, turning serde errors into located diagnostics.
pub fn decode<T: serde::de::DeserializeOwned>(
    file: &Arc<SourceFile>,
    tree: &Node,
) -> Result<T, Diagnostic> {
    de::from_node(tree).map_err(|e| {
        let span = e.span.unwrap_or(Span::new(0, 1));
        let mut d = Diagnostic::new(file, span, e.message.clone());
        if let Some(p) = e.pointer {
            d = d.with_pointer(p);
        }
        if let Some((word, expected)) = &e.unknown {
            d.hint = Some(match did_you_mean(word, expected.iter().copied()) {
                Some(best) => format!("did you mean `{best}`?"),
                None if expected.is_empty() => "this block takes no keys".to_owned(),
                None if e.message.contains("expected one of") => return d,
                None => format!(
                    "expected one of {}",
                    expected
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        d
    })
}

/// Loads and decodes a configuration: from `path`, or the embedded default.
pub fn load(path: Option<&Path>) -> Result<LoadedConfig, Diagnostics> {
    let file = match path {
        Some(p) => read_source(p)?,
        None => SourceFile::new(DEFAULT_CONFIG_NAME, DEFAULT_CONFIG, Format::Kdl),
    };
    load_source(file)
}

/// Decodes a configuration from an in-memory source.
pub fn load_source(file: Arc<SourceFile>) -> Result<LoadedConfig, Diagnostics> {
    let tree = parse_tree(&file)?;
    if !matches!(tree.value, tree::Value::Object(_)) {
        return Err(Diagnostic::new(&file, tree.span, format!("a configuration is a block of settings, found {}", tree.value.kind()))
            .with_hint("start with a section such as `collections \"sshd\"` (KDL) or `{\"collections\": [\"sshd\"]}` (JSON)")
            .into());
    }
    let config = decode(&file, &tree)?;
    Ok(LoadedConfig { file, tree, config })
}
