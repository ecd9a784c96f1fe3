//! Build script: decode the shipped rules' KDL ahead of time.
//!
//! The `kdl` crate parses at a few MB/s, which alone would spend most of the 50 ms startup
//! budget on the immutable rules. So the KDL → value-tree step (the same code the runtime
//! uses, included below) runs here, and the binary embeds the trees as JSON; startup only
//! deserializes them and runs the typed decoding and compilation. A file that fails to
//! parse is embedded without a tree, so the runtime parses it and reports the error.

#![allow(dead_code)]

#[path = "src/config/diag.rs"]
mod diag;
#[path = "src/config/kdl.rs"]
mod kdl;
#[path = "src/config/tree.rs"]
mod tree;

use std::path::Path;

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, root, out);
        } else if path.extension().is_some_and(|x| x == "kdl") {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            if let Ok(text) = std::fs::read_to_string(&path) {
                out.push((rel, text));
            }
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=rules");
    println!("cargo:rerun-if-changed=src/config/default.kdl");
    println!("cargo:rerun-if-changed=src/config/kdl.rs");
    println!("cargo:rerun-if-changed=src/config/tree.rs");
    let root = Path::new("rules");
    let mut files = Vec::new();
    collect(root, root, &mut files);
    files.sort();
    let trees: Vec<serde_json::Value> = files
        .iter()
        .map(|(rel, text)| {
            let file =
                diag::SourceFile::new(format!("rules/{rel}"), text.clone(), diag::Format::Kdl);
            let tree = kdl::parse(&file).ok();
            serde_json::json!({ "path": rel, "tree": tree })
        })
        .collect();
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"))
        .join("shipped_rules.json");
    let json = serde_json::to_string(&trees).expect("trees serialize");
    std::fs::write(out, json).expect("OUT_DIR is writable");
}
