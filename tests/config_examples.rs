//! Every example compiles, the JSON twin of a KDL example compiles to the same summary, and the
//! checked-in JSON Schema is current.

use garrison::compile::compile_path;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_example_and_the_default_compile() {
    compile_path(None).unwrap_or_else(|d| panic!("the embedded default must compile:\n{d}"));
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "kdl" || x == "json") {
            compile_path(Some(&path))
                .unwrap_or_else(|d| panic!("{} must compile:\n{d}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 3, "examples/ should hold several configurations");
}

#[test]
fn json_and_kdl_twins_compile_to_the_same_summary() {
    let kdl = compile_path(Some(&root().join("examples/web-server.kdl"))).expect("kdl compiles");
    let json = compile_path(Some(&root().join("examples/web-server.json"))).expect("json compiles");
    let strip = |s: String| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(kdl.summary()), strip(json.summary()));
    // And the decoded models are identical, not only their summaries.
    let a = serde_json::to_value(&kdl.ruleset.config).expect("serialize");
    let b = serde_json::to_value(&json.ruleset.config).expect("serialize");
    assert_eq!(a, b);
}

#[test]
fn checked_in_schema_is_current() {
    let generated = garrison::schema::config_schema_json();
    let path = root().join("schemas/garrison.schema.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in.trim_end() == generated.trim_end(),
        "schemas/garrison.schema.json is stale: run `cargo run -- schema > schemas/garrison.schema.json`"
    );
}

#[test]
fn schema_documents_every_option() {
    let schema: serde_json::Value =
        serde_json::from_str(&garrison::schema::config_schema_json()).expect("valid JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    // Every property of every object in the schema has a description.
    fn walk(v: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (k, p) in props {
                if p.get("description").is_none() {
                    missing.push(format!("{path}/{k}"));
                }
                walk(p, &format!("{path}/{k}"), missing);
            }
        }
        if let Some(defs) = v.get("$defs").and_then(|d| d.as_object()) {
            for (k, d) in defs {
                walk(d, &format!("#/$defs/{k}"), missing);
            }
        }
    }
    let mut missing = Vec::new();
    walk(&schema, "", &mut missing);
    assert!(
        missing.is_empty(),
        "options without a description: {missing:?}"
    );
}
