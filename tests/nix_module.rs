//! The Nix side, checked offline (no Nix store, no nixpkgs): every `.nix` file parses,
//! `nix/render.nix` turns example module options (`nix/examples.nix`, and the
//! `configuration.nix` of README.md's NixOS section) into configurations that
//! `garrison check` accepts, every option the README's example sets is declared by the
//! module, and the typed options of `services.garrison.settings` agree with
//! `schemas/garrison.schema.json`.
//!
//! Needs `nix-instantiate` (Debian: `nix-bin`); the tests fail, loudly, without it.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `nix-instantiate`, run from the repository root with an empty `NIX_PATH` (so nothing can
/// reach for `<nixpkgs>`). Panics when it is not installed: these checks must not be skipped.
fn nix_instantiate() -> Command {
    static PRESENT: OnceLock<Result<String, String>> = OnceLock::new();
    let present =
        PRESENT.get_or_init(
            || match Command::new("nix-instantiate").arg("--version").output() {
                Ok(o) if o.status.success() => {
                    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
                }
                Ok(o) => Err(format!(
                    "`nix-instantiate --version` failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                )),
                Err(e) => Err(format!("cannot run nix-instantiate: {e}")),
            },
        );
    if let Err(e) = present {
        panic!(
            "{e}\nThe Nix checks need nix-instantiate: install Debian's `nix-bin` (CI does), or Nix."
        );
    }
    let mut cmd = Command::new("nix-instantiate");
    cmd.current_dir(root()).env("NIX_PATH", "");
    cmd
}

fn run(mut cmd: Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

/// Evaluates a Nix expression (relative paths are relative to the repository root) to JSON.
fn eval_json(expr: &str) -> Value {
    let mut cmd = nix_instantiate();
    cmd.args(["--eval", "--strict", "--json", "--expr", expr]);
    let out = run(cmd);
    assert!(
        out.status.success(),
        "nix-instantiate --eval failed for\n{expr}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("nix-instantiate --json prints JSON")
}

fn nix_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if name.starts_with('.')
                || name == "target"
                || name.starts_with("result")
                || name == "node_modules"
            {
                continue;
            }
            nix_files(&path, out);
        } else if name.ends_with(".nix") {
            out.push(path);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    let mut files = Vec::new();
    nix_files(root(), &mut files);
    files.sort();
    for expected in [
        "flake.nix",
        "modules/garrison.nix",
        "nix/render.nix",
        "nix/settings-options.nix",
        "nixos-tests/default.nix",
    ] {
        assert!(
            files.contains(&root().join(expected)),
            "{expected} is missing"
        );
    }
    let mut failures = Vec::new();
    for f in &files {
        let mut cmd = nix_instantiate();
        cmd.arg("--parse").arg(f);
        let out = run(cmd);
        if !out.status.success() {
            failures.push(format!(
                "{}:\n{}",
                f.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "Nix files that do not parse:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Rendering: nix/render.nix on nix/examples.nix, then `garrison check`.

/// Module options that are not part of the daemon's configuration (render.nix takes
/// none of them).
const UNIT_ONLY_OPTIONS: &[&str] = &[
    "enable",
    "package",
    "openFirewall",
    "extraGroups",
    "checkConfig",
];

/// The rendered configurations: every example of `nix/examples.nix`, and the README's
/// `configuration.nix` as `readme`.
fn rendered_examples() -> serde_json::Map<String, Value> {
    let v = eval_json("builtins.mapAttrs (_: import ./nix/render.nix) (import ./nix/examples.nix)");
    let mut map = v
        .as_object()
        .expect("an attribute set of configurations")
        .clone();
    for name in [
        "sshd-only",
        "web-bouncer-blocklist",
        "ipv6-whitelist",
        "central-agent-syslog",
    ] {
        assert!(
            map.contains_key(name),
            "nix/examples.nix lost the `{name}` example"
        );
    }
    let readme = readme_configuration();
    let unit_only: Vec<String> = UNIT_ONLY_OPTIONS
        .iter()
        .map(|o| format!("\"{o}\""))
        .collect();
    let rendered = eval_json(&format!(
        "import ./nix/render.nix (builtins.removeAttrs ((import {}) {{ }}).services.garrison [ {} ])",
        readme.display(),
        unit_only.join(" ")
    ));
    map.insert("readme".into(), rendered);
    map
}

/// The `configuration.nix` example of README.md's NixOS section, written to a file.
fn readme_configuration() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
        let section = readme
            .split("\n## NixOS module\n")
            .nth(1)
            .expect("README.md has a `## NixOS module` section");
        let start = section
            .find("```nix\n# configuration.nix\n")
            .expect("the NixOS section has a ```nix block starting with `# configuration.nix`")
            + "```nix\n".len();
        let len = section[start..]
            .find("\n```")
            .expect("the configuration.nix block ends");
        let file = std::env::temp_dir().join(format!(
            "garrison-readme-configuration-{}.nix",
            std::process::id()
        ));
        std::fs::write(&file, &section[start..start + len + 1]).expect("write the example");
        file
    })
    .clone()
}

/// The options the module declares under `services.garrison`, as dotted paths, read from
/// its source by indentation (the module needs nixpkgs to evaluate). A submodule option
/// contributes `<option>.<sub-option>`, an attribute set of them `<option>.*.<sub-option>`.
fn module_option_paths() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(root().join("modules/garrison.nix")).expect("modules/garrison.nix");
    let start = text
        .find("  options.services.garrison = {\n")
        .expect("the module declares options.services.garrison");
    let end = start
        + text[start..]
            .find("\n  config = ")
            .expect("the module has a config section");
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let is_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    };
    let mut out = BTreeSet::new();
    let mut groups: Vec<(usize, String)> = Vec::new();
    let mut lines = text[start..end].lines().skip(1);
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = indent_of(line);
        while groups.last().is_some_and(|(i, _)| *i >= indent) {
            groups.pop();
        }
        let Some((name, rhs)) = line.trim().split_once(" = ") else {
            continue;
        };
        if !is_name(name) {
            continue;
        }
        let full = match groups.last() {
            Some((_, prefix)) => format!("{prefix}.{name}"),
            None => name.to_string(),
        };
        if rhs == "{" {
            groups.push((indent, full));
            continue;
        }
        if !["mkOption", "mkEnableOption", "mkPackageOption"]
            .iter()
            .any(|f| rhs.starts_with(f))
        {
            continue;
        }
        if rhs.ends_with('{') {
            // The option's body, up to the brace closing it.
            let mut body = Vec::new();
            for l in lines.by_ref() {
                if indent_of(l) == indent && l.trim_start().starts_with('}') {
                    break;
                }
                body.push(l.trim());
            }
            if body.iter().any(|l| l.contains("types.submodule")) {
                // attrsOf (submodule ...): one level of names chosen by the user.
                let names = if body.iter().any(|l| l.contains("types.attrsOf")) {
                    ".*"
                } else {
                    ""
                };
                for l in body {
                    let l = l.strip_prefix("options.").unwrap_or(l);
                    if let Some((sub, rest)) = l.split_once(" = ")
                        && rest.starts_with("mkOption")
                        && is_name(sub)
                    {
                        out.insert(format!("{full}{names}.{sub}"));
                    }
                }
            }
        }
        out.insert(full);
    }
    out
}

#[test]
fn readme_example_sets_only_options_the_module_declares() {
    let declared = module_option_paths();
    for expected in [
        "enable",
        "package",
        "settings",
        "acquisitions.sshd.enable",
        "acquisitions.nginx.files",
        "enforcement.nftables.enable",
        "lapi.listen",
        "bouncers",
        "bouncers.*.keyFile",
        "blocklists.*.url",
        "blocklists.*.refresh",
        "lapi.tls.keyFile",
        "openFirewall",
    ] {
        assert!(
            declared.contains(expected),
            "reading the module's options went wrong: no `{expected}` in {declared:?}"
        );
    }
    let readme = readme_configuration();
    let used = eval_json(&format!(
        r#"let
             g = ((import {}) {{ }}).services.garrison;
             flat = prefix: v:
               if builtins.isAttrs v && prefix != [ "settings" ] then
                 builtins.concatLists (map (n: flat (prefix ++ [ n ]) v.${{n}}) (builtins.attrNames v))
               else [ prefix ];
           in flat [ ] g"#,
        readme.display()
    ));
    let mut missing = Vec::new();
    let used = used.as_array().expect("a list of option paths");
    assert!(
        used.len() >= 10,
        "the README example sets few options: {used:?}"
    );
    for path in used {
        let mut segs: Vec<&str> = path
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        // bouncers.<name>.keyFile, blocklists.<name>.url: the names are the user's.
        if matches!(segs.first(), Some(&"bouncers") | Some(&"blocklists")) && segs.len() > 2 {
            segs[1] = "*";
        }
        let name = segs.join(".");
        if !declared.contains(&name) {
            missing.push(format!("services.garrison.{name}"));
        }
    }
    assert!(
        missing.is_empty(),
        "README.md's configuration.nix sets options modules/garrison.nix does not declare: {missing:?}"
    );
}

#[test]
fn render_uses_builtins_only() {
    // The module and the tests share it; it must evaluate without nixpkgs.
    let text = std::fs::read_to_string(root().join("nix/render.nix")).expect("nix/render.nix");
    for forbidden in ["<nixpkgs>", "lib.", "pkgs."] {
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            !code.contains(forbidden),
            "nix/render.nix must not use `{forbidden}`"
        );
    }
    // Called with nothing, it renders the daemon's defaults plus the module's structure.
    let empty = eval_json("import ./nix/render.nix { }");
    assert_eq!(empty["acquisitions"], serde_json::json!([]));
    assert_eq!(empty["lapi"]["listen"], "127.0.0.1:8080");
    assert_eq!(empty["enforcement"]["enable"], true);
}

#[test]
fn rendered_examples_have_the_expected_shape() {
    let ex = rendered_examples();

    let sshd = &ex["sshd-only"];
    assert_eq!(sshd["acquisitions"][0]["type"], "syslog");
    assert_eq!(
        sshd["acquisitions"][0]["journald"],
        serde_json::json!([
            "_SYSTEMD_UNIT=sshd.service",
            "SYSLOG_IDENTIFIER=sshd-session"
        ])
    );
    assert_eq!(sshd["collections"], serde_json::json!(["linux", "sshd"]));

    let web = &ex["web-bouncer-blocklist"];
    assert_eq!(
        web["lapi"]["tls"],
        serde_json::json!({
            "cert": "/run/credentials/garrison.service/lapi-tls-cert",
            "key": "/run/credentials/garrison.service/lapi-tls-key",
        })
    );
    assert_eq!(
        web["lapi"]["bouncer-key-files"],
        serde_json::json!({
            "edge-router": "/run/credentials/garrison.service/edge-router",
            "firewall": "/run/credentials/garrison.service/firewall",
        })
    );
    let text = web.to_string();
    assert!(
        !text.contains("/run/secrets") && !text.contains("/var/lib/acme"),
        "a secret's path leaked into the configuration instead of its credential: {text}"
    );
    assert_eq!(web["lapi"]["listen"], "0.0.0.0:8080");
    assert_eq!(web["blocklists"][0]["name"], "firehol-level1");
    let types: Vec<&str> = web["acquisitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["syslog", "nginx", "syslog"]);
    assert_eq!(
        web["collections"],
        serde_json::json!(["linux", "sshd", "nginx"]),
        "collections are deduplicated"
    );

    let v6 = &ex["ipv6-whitelist"];
    assert_eq!(v6["whitelists"]["private-ranges"], false);
    assert_eq!(
        v6["whitelists"]["cidrs"],
        serde_json::json!([
            "2001:db8:42::/48",
            "2001:db8:1::2",
            "192.0.2.7",
            "fd00:1234::/32"
        ])
    );
    assert_eq!(v6["lapi"]["listen"], "[::1]:8080");

    let agent = &ex["central-agent-syslog"];
    assert_eq!(agent["enforcement"]["enable"], false);
    assert_eq!(
        agent["central"],
        serde_json::json!({"enable": true, "share-signals": false, "pull-interval": "4h"})
    );
    assert_eq!(agent["lapi"]["url"], "https://lapi.example.org:8080");
    assert_eq!(agent["lapi"]["unix-socket"], "/run/garrison/lapi.sock");
    let acqs = agent["acquisitions"].as_array().unwrap();
    assert_eq!(acqs.len(), 2, "the shortcut, then the raw syslog listener");
    assert_eq!(acqs[0]["journald"].as_array().unwrap().len(), 3);
    assert_eq!(acqs[1]["syslog"]["listen"], "127.0.0.1:5514");
    let lists: Vec<(&str, Option<&str>, Option<&str>)> = agent["blocklists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap(),
                b["url"].as_str(),
                b["file"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        lists,
        [
            (
                "partners",
                None,
                Some("/var/lib/partner-lists/bad-hosts.txt")
            ),
            (
                "vendor-json",
                Some("https://lists.example.org/bad.json"),
                None
            ),
        ]
    );
    assert_eq!(
        agent["collections"],
        serde_json::json!(["linux", "sshd", "postfix"])
    );

    // The README's configuration.nix: its bouncer key is a credential, never the secret's path.
    let readme = &ex["readme"];
    assert_eq!(
        readme["lapi"]["bouncer-key-files"],
        serde_json::json!({"edge-router": "/run/credentials/garrison.service/edge-router"})
    );
    assert!(!readme.to_string().contains("/run/secrets"));
    assert_eq!(readme["central"]["enable"], true);
    assert_eq!(readme["acquisitions"].as_array().unwrap().len(), 2);
}

#[test]
fn rendered_examples_pass_garrison_check() {
    let dir = std::env::temp_dir().join(format!("garrison-nix-module-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut failures = Vec::new();
    for (name, config) in rendered_examples() {
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_string_pretty(&config).unwrap())
            .expect("write the rendered configuration");
        let out = run({
            let mut c = Command::new(env!("CARGO_BIN_EXE_garrison"));
            c.arg("check").arg("--config").arg(&file);
            c
        });
        if !out.status.success() {
            failures.push(format!(
                "{name} ({}):\n{}{}",
                file.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        failures.is_empty(),
        "`garrison check` rejects what nix/render.nix produced:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The module's options against the JSON Schema.

fn schema() -> Value {
    let text = std::fs::read_to_string(root().join("schemas/garrison.schema.json"))
        .expect("schemas/garrison.schema.json");
    serde_json::from_str(&text).expect("the schema is JSON")
}

/// Follows `$ref`s, and `anyOf: [X, null]` to `X`.
fn resolve<'a>(schema: &'a Value, mut node: &'a Value) -> &'a Value {
    loop {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            let ptr = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("external $ref {r}"));
            node = schema
                .pointer(ptr)
                .unwrap_or_else(|| panic!("dangling $ref {r}"));
            continue;
        }
        if let Some(any) = node.get("anyOf").and_then(Value::as_array) {
            let non_null: Vec<&Value> = any
                .iter()
                .filter(|v| v.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            if non_null.len() == 1 {
                node = non_null[0];
                continue;
            }
        }
        return node;
    }
}

/// The alternatives of a node (itself, or its `anyOf`/`oneOf` members), resolved.
fn variants<'a>(schema: &'a Value, node: &'a Value) -> Vec<&'a Value> {
    let node = resolve(schema, node);
    match node
        .get("anyOf")
        .or_else(|| node.get("oneOf"))
        .and_then(Value::as_array)
    {
        Some(alts) => alts.iter().flat_map(|a| variants(schema, a)).collect(),
        None => vec![node],
    }
}

/// JSON types a node admits: "string", "null", "boolean", "array:string", ...
fn kinds(schema: &Value, node: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for v in variants(schema, node) {
        let types: Vec<&str> = match v.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        for t in types {
            if t == "array" {
                for item in kinds(schema, v.get("items").unwrap_or(&Value::Null)) {
                    out.insert(format!("array:{item}"));
                }
            } else {
                out.insert(t.to_string());
            }
        }
    }
    out
}

/// The `const`s of an enumeration node (or of its array items with `items`).
fn consts(schema: &Value, node: &Value, items: bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for v in variants(schema, node) {
        if items {
            if v.get("type").and_then(Value::as_str) == Some("array") {
                out.extend(consts(schema, &v["items"], false));
            }
        } else if let Some(c) = v.get("const").and_then(Value::as_str) {
            out.insert(c.to_string());
        }
    }
    out
}

/// The property node at `path` (the node holding `description` and `default`).
fn property<'a>(schema: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = schema;
    for seg in path {
        node = resolve(schema, node).get("properties")?.get(seg)?;
    }
    Some(node)
}

#[test]
fn module_settings_options_exist_in_the_schema() {
    // The module declares its typed settings from this data file; keep it that way.
    let module =
        std::fs::read_to_string(root().join("modules/garrison.nix")).expect("modules/garrison.nix");
    assert!(
        module.contains("import ../nix/settings-options.nix"),
        "the module must declare settings from nix/settings-options.nix"
    );
    assert!(
        module.contains("import ../nix/render.nix"),
        "the module must render with nix/render.nix"
    );

    let options = eval_json(
        r#"let
             flat = prefix: set: builtins.concatLists (map (name:
               let o = set.${name}; path = prefix ++ [ name ]; in
               if o ? options then [ { inherit path; section = true; } ] ++ flat path o.options
               else [ { inherit path; section = false; inherit (o) type default;
                        moduleDefault = o ? moduleDefault; } ]
             ) (builtins.attrNames set));
           in flat [ ] (import ./nix/settings-options.nix)"#,
    );
    let schema = schema();
    let options = options.as_array().expect("a list of options");
    assert!(
        options.len() >= 20,
        "suspiciously few typed options: {}",
        options.len()
    );

    let mut errors = Vec::new();
    for o in options {
        let path: Vec<String> = o["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        let name = format!("services.garrison.settings.{}", path.join("."));
        let Some(prop) = property(&schema, &path) else {
            errors.push(format!("{name}: not in schemas/garrison.schema.json"));
            continue;
        };
        if o["section"] == true {
            if resolve(&schema, prop).get("properties").is_none() {
                errors.push(format!(
                    "{name}: a section in the module, not an object in the schema"
                ));
            }
            continue;
        }
        let have = kinds(&schema, prop);
        let ty = &o["type"];
        let (need, enum_items): (&[&str], Option<bool>) = match ty.as_str() {
            Some("bool") => (&["boolean"], None),
            Some("int") => (&["integer"], None),
            Some("str") | Some("duration") => (&["string"], None),
            Some("nullOrStr") => (&["string", "null"], None),
            Some("listOfStr") => (&["array:string"], None),
            Some(other) => panic!("{name}: unknown type descriptor {other}"),
            None if ty.get("enum").is_some() => (&["string"], Some(false)),
            None if ty.get("listOfEnum").is_some() => (&["array:string"], Some(true)),
            None => panic!("{name}: unknown type descriptor {ty}"),
        };
        for k in need {
            if !have.contains(*k) {
                errors.push(format!(
                    "{name}: the module's type needs `{k}`, the schema admits {have:?}"
                ));
            }
        }
        if let Some(items) = enum_items {
            let module: BTreeSet<String> = ty
                .get(if items { "listOfEnum" } else { "enum" })
                .and_then(Value::as_array)
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            let schema_consts = consts(&schema, prop, items);
            if module != schema_consts {
                errors.push(format!(
                    "{name}: enum {module:?} in the module, {schema_consts:?} in the schema"
                ));
            }
        }
        if o["moduleDefault"] != true && prop.get("default") != Some(&o["default"]) {
            errors.push(format!(
                "{name}: default {} in the module, {} in the schema (mark deliberate differences with moduleDefault)",
                o["default"],
                prop.get("default").unwrap_or(&Value::Null)
            ));
        }
    }

    // The keys the module's shortcut options render into.
    for path in [
        "acquisitions",
        "collections",
        "blocklists",
        "whitelists.cidrs",
        "enforcement.enable",
        "lapi.listen",
        "lapi.bouncer-key-files",
        "lapi.tls",
    ] {
        let segs: Vec<String> = path.split('.').map(String::from).collect();
        if property(&schema, &segs).is_none() {
            errors.push(format!(
                "the module renders `{path}`, which the schema does not have"
            ));
        }
    }
    assert!(
        errors.is_empty(),
        "module and schema disagree:\n{}",
        errors.join("\n")
    );
}

/// Every key of a rendered value is one the schema knows (objects without
/// `additionalProperties: false` accept anything).
fn unknown_keys(schema: &Value, node: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let Some(obj) = variants(schema, node)
                .into_iter()
                .find(|v| v.get("properties").is_some() || v.get("additionalProperties").is_some())
            else {
                out.push(format!(
                    "{at}: an object where the schema has {}",
                    resolve(schema, node)
                ));
                return;
            };
            for (k, v) in map {
                let here = format!("{at}/{k}");
                match obj.get("properties").and_then(|p| p.get(k)) {
                    Some(p) => unknown_keys(schema, p, v, &here, out),
                    None => match obj.get("additionalProperties") {
                        Some(Value::Bool(false)) | None => {
                            out.push(format!("{here}: not in the schema"))
                        }
                        Some(Value::Bool(true)) => {}
                        Some(extra) => unknown_keys(schema, extra, v, &here, out),
                    },
                }
            }
        }
        Value::Array(items) => {
            if let Some(arr) = variants(schema, node)
                .into_iter()
                .find(|v| v.get("type").and_then(Value::as_str) == Some("array"))
            {
                for (i, item) in items.iter().enumerate() {
                    unknown_keys(schema, &arr["items"], item, &format!("{at}/{i}"), out);
                }
            }
        }
        _ => {}
    }
}

#[test]
fn rendered_examples_only_use_schema_keys() {
    let schema = schema();
    let mut errors = Vec::new();
    for (name, config) in rendered_examples() {
        unknown_keys(&schema, &schema, &config, &name, &mut errors);
    }
    assert!(
        errors.is_empty(),
        "rendered keys the schema does not know:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_package_runs_tests_that_exist() {
    // nix/package.nix names the integration tests the build sandbox runs; a renamed or
    // deleted test must not silently drop out (cargo would fail the build, but only there).
    let text = std::fs::read_to_string(root().join("nix/package.nix")).expect("nix/package.nix");
    let start = text
        .find("sandboxTests = [")
        .expect("nix/package.nix lists sandboxTests")
        + "sandboxTests = [".len();
    let end = start + text[start..].find("];").expect("the list ends");
    let names: Vec<&str> = text[start..end]
        .split_whitespace()
        .map(|n| n.trim_matches('"'))
        .collect();
    assert!(
        names.contains(&"nix_module"),
        "the package must run this test: {names:?}"
    );
    for name in names {
        assert!(
            root().join("tests").join(format!("{name}.rs")).is_file(),
            "nix/package.nix runs tests/{name}.rs, which does not exist"
        );
    }
}
