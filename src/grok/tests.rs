use std::collections::BTreeMap;

use super::*;

const PATTERN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/patterns");
const HUB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/corpora/crowdsec-hub"
);

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The shipped KDL pattern files, base first, then the others by name.
fn kdl_files() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(PATTERN_DIR)
        .expect("rules/patterns")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "kdl"))
        .collect();
    files.sort_by_key(|p| (p.file_stem().is_none_or(|s| s != "base"), p.clone()));
    files
}

/// Loads the shipped library, checking the KDL with the `kdl` crate directly.
fn shared_lib() -> PatternLibrary {
    let mut lib = PatternLibrary::new();
    for path in kdl_files() {
        let text = std::fs::read_to_string(&path).expect("read kdl");
        let doc: kdl::KdlDocument = text
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let block = doc.get("patterns").expect("patterns block");
        for child in block.children().expect("children").nodes() {
            assert_eq!(child.entries().len(), 1, "{}", child.name().value());
            let pattern = child.entries()[0]
                .value()
                .as_string()
                .expect("string pattern");
            lib.add(child.name().value(), pattern)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    lib
}

fn caps<'h>(g: &Grok, line: &'h str) -> BTreeMap<String, &'h str> {
    g.captures(line)
        .unwrap_or_else(|| panic!("no match for {line:?} with {}", g.as_str()))
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn lib_of(pairs: &[(&str, &str)]) -> PatternLibrary {
    let mut lib = PatternLibrary::new();
    for (k, v) in pairs {
        lib.add(k, v).expect("add");
    }
    lib
}

#[test]
fn every_shipped_pattern_compiles_and_matches_the_hub_source() {
    let lib = shared_lib();
    assert!(lib.len() >= 397, "{}", lib.len());
    for (name, pattern) in lib.iter() {
        if let Err(e) = compile(pattern, &lib) {
            panic!("{name}: {e}");
        }
    }
    // The KDL files are faithful copies of the hub files (same line rule as grokky).
    let line_re = Regex::new(r"^(\w+)\s+(.+)$").expect("regex");
    let mut from_hub = 0;
    for entry in std::fs::read_dir(format!("{HUB}/patterns")).expect("hub patterns") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("LICENSE"))
        {
            continue;
        }
        for line in read(&path.to_string_lossy()).lines() {
            if let Some(c) = line_re.captures(line) {
                assert_eq!(lib.get(&c[1]), Some(&c[2]), "{}", &c[1]);
                from_hub += 1;
            }
        }
    }
    assert_eq!(from_hub, lib.len());
    // And through the library's own loader.
    let mut via_loader = PatternLibrary::new();
    for path in kdl_files() {
        via_loader
            .add_kdl(&std::fs::read_to_string(&path).expect("read"))
            .expect("add_kdl");
    }
    assert_eq!(via_loader, lib);
    assert!(via_loader.check(&via_loader).is_ok());
}

#[test]
fn expansion_and_fields() {
    let lib = lib_of(&[
        ("WORD", r"\b\w+\b"),
        ("NUM", r"[0-9]+"),
        ("PAIR", "%{WORD:key}=%{NUM:value}"),
    ]);
    let g = compile("%{WORD:first} %{NUM} %{PAIR}", &lib).expect("compile");
    assert_eq!(
        g.fields().iter().map(|f| &**f).collect::<Vec<_>>(),
        ["first", "key", "value"]
    );
    assert_eq!(
        g.regex().expect("builds").captures_len(),
        4,
        "only field groups capture: {}",
        g.as_str()
    );
    let c = caps(&g, "xx hello 42 a=7 yy");
    assert_eq!(c["first"], "hello");
    assert_eq!(c["key"], "a");
    assert_eq!(c["value"], "7");
    // Unanchored search; type suffix ignored.
    let g = compile("%{NUM:n:int}$", &lib).expect("compile");
    assert_eq!(caps(&g, "abc 123")["n"], "123");
    assert_eq!(g.field_index("n"), Some(0));
}

#[test]
fn named_reference_keeps_inner_fields_and_outer_wins() {
    let lib = lib_of(&[
        ("W", r"[a-z]+"),
        ("KV", "%{W:key}-%{W:val}"),
        ("WRAP", "<%{KV:key}>"),
    ]);
    let g = compile("%{KV:pair}", &lib).expect("compile");
    let c = caps(&g, "ab-cd");
    assert_eq!((c["pair"], c["key"], c["val"]), ("ab-cd", "ab", "cd"));
    // `key` declared by WRAP wins over KV's inner `key`.
    let g = compile("%{WRAP}", &lib).expect("compile");
    let c = caps(&g, "<ab-cd>");
    assert_eq!((c["key"], c["val"]), ("ab-cd", "cd"));
    // The top level wins over everything below.
    let g = compile("%{WRAP:val}", &lib).expect("compile");
    let c = caps(&g, "<ab-cd>");
    assert_eq!((c["key"], c["val"]), ("ab-cd", "<ab-cd>"));
    assert_eq!(g.fields().len(), 2);
}

#[test]
fn duplicate_fields() {
    let lib = lib_of(&[("W", r"[a-z]+"), ("N", r"[0-9]+")]);
    // Alternatives: the participating one.
    let g = compile("^(?:x%{W:a}|y%{N:a})$", &lib).expect("compile");
    assert_eq!(caps(&g, "xabc")["a"], "abc");
    assert_eq!(caps(&g, "y42")["a"], "42");
    assert_eq!(g.fields().len(), 1);
    // Sequence: the last non-empty one (grokky keeps the last group).
    let g = compile("%{W:a} %{W:a}", &lib).expect("compile");
    assert_eq!(caps(&g, "foo bar")["a"], "bar");
    let g = compile("(%{W:a} )?%{N:b}(-%{W:a})?", &lib).expect("compile");
    assert_eq!(caps(&g, "foo 1")["a"], "foo");
    assert_eq!(caps(&g, "foo 1-bar")["a"], "bar");
}

#[test]
fn empty_captures_are_skipped() {
    let lib = lib_of(&[("DATA", ".*?"), ("N", "[0-9]+")]);
    let g = compile("a%{DATA:d}b(%{N:n})?", &lib).expect("compile");
    let mut locs = None;
    let mut seen = Vec::new();
    assert!(g.captures_into("ab", &mut locs, |f, s, e| seen.push((f, s, e))));
    assert!(seen.is_empty());
    assert!(g.captures_into("xaZb12", &mut locs, |f, s, e| seen.push((f, s, e))));
    assert_eq!(seen, [(0, 2, 3), (1, 4, 6)]);
    assert!(!g.captures_into("nothing", &mut locs, |_, _, _| {}));
    // Foreign capture locations are replaced, not a panic.
    let mut foreign = Some(Regex::new("x").expect("regex").capture_locations());
    assert!(g.captures_into("aZb", &mut foreign, |_, _, _| {}));
    // No fields: plain match test.
    let g = compile("a%{DATA}b", &lib).expect("compile");
    assert!(g.fields().is_empty());
    assert_eq!(g.captures("zzaqbzz"), Some(vec![]));
    assert_eq!(g.captures("zz"), None);
}

#[test]
fn raw_named_groups_are_fields() {
    let lib = lib_of(&[("W", "[a-z]+")]);
    let g = compile("(?P<x>[0-9]+) (?<y>%{W:z})", &lib).expect("compile");
    let c = caps(&g, "12 ab");
    assert_eq!((c["x"], c["y"], c["z"]), ("12", "ab", "ab"));
}

#[test]
fn cycles_are_errors() {
    let lib = lib_of(&[
        ("A", "x%{B}"),
        ("B", "%{C:c}"),
        ("C", "%{A}"),
        ("SELF", "%{SELF}"),
    ]);
    let e = compile("12 %{A}", &lib).expect_err("cycle");
    assert!(e.message.contains("A -> B -> C -> A"), "{e}");
    assert_eq!(e.offset, Some(3..7));
    let e = compile("%{SELF}", &lib).expect_err("cycle");
    assert!(e.message.contains("cycle"), "{e}");
}

#[test]
fn unknown_names_have_hints_and_spans() {
    let lib = shared_lib();
    let e = compile("from %{IPV5:ip} port", &lib).expect_err("unknown");
    assert!(e.message.contains("IPV5"), "{e}");
    assert_eq!(e.offset, Some(5..15));
    let hint = e.hint.expect("hint");
    assert!(hint.contains("IPV4") || hint.contains("IPV6"), "{hint}");
    let e = compile("%{usernam}", &lib).expect_err("unknown");
    assert_eq!(e.hint.as_deref(), Some("did you mean `USERNAME`?"));
    let e = compile("%{ZZZZZZZZZZZ}", &lib).expect_err("unknown");
    assert_eq!(e.hint, None);
    // Unknown name deep inside a library pattern: span of the top-level reference.
    let local = lib_of(&[("OUTER", "%{INNER_MISSING}")]);
    let e = compile("ab %{OUTER:o}", &lib.with_local(&local)).expect_err("unknown");
    assert_eq!(e.offset, Some(3..13));
    assert!(
        e.message.contains("INNER_MISSING") && e.message.contains("OUTER"),
        "{e}"
    );
}

#[test]
fn regex_errors_are_located() {
    let lib = lib_of(&[("BAD", "a{2,1}"), ("OK", "b")]);
    let e = compile("%{OK} %{BAD:x}", &lib).expect_err("bad");
    assert_eq!(e.offset, Some(6..14));
    assert!(e.message.contains("BAD"), "{e}");
    let e = compile("%{OK} (", &lib).expect_err("bad");
    assert_eq!(e.offset, Some(0..7));
    let e = compile("x[", &lib).expect_err("bad");
    assert_eq!(e.offset, Some(1..2));
    assert!(compile("", &lib).is_err());
    let display = e.to_string();
    assert!(display.contains("bytes 1..2"), "{display}");
}

#[test]
fn library_rules() {
    let mut lib = PatternLibrary::new();
    lib.add("A", "a").expect("add");
    assert!(lib.add("A", "b").is_err());
    assert!(lib.add("bad-name", "b").is_err());
    assert!(lib.add("E", "").is_err());
    assert_eq!(lib.get("A"), Some("a"));
    assert_eq!(lib.get("B"), None);
    let e = PatternLibrary::from_kdl("patterns {\n  A #\"a\"#\n  A #\"b\"#\n}\n").expect_err("dup");
    assert!(
        e.message.contains("already defined") && e.offset.is_some(),
        "{e}"
    );
    let e = PatternLibrary::from_kdl("patterns {\n  A 1\n}\n").expect_err("not a string");
    assert!(e.offset.is_some());
    assert!(PatternLibrary::from_kdl("other {\n}\n").is_err());
    assert!(PatternLibrary::from_kdl("patterns { A \"unterminated }").is_err());
}

#[test]
fn local_patterns_extend_and_override() {
    let base = lib_of(&[("W", "[a-z]+"), ("PAIR", "%{W:k}=%{W:v}")]);
    let local = lib_of(&[("W", "[0-9]+"), ("EXTRA", "<%{PAIR}>")]);
    let layered = base.with_local(&local);
    let g = compile("%{EXTRA}", &layered).expect("compile");
    let c = caps(&g, "<1=2>");
    assert_eq!((c["k"], c["v"]), ("1", "2"));
    // The base library alone is unchanged.
    assert!(compile("%{EXTRA}", &base).is_err());
    let g = compile("%{PAIR}", &base).expect("compile");
    assert!(g.captures("1=2").is_none());
    // Layers stack.
    let top = lib_of(&[("W", "[A-Z]+")]);
    let two = Layered::new(&top, &layered);
    let g = compile("%{EXTRA}", &two).expect("compile");
    assert!(g.captures("<A=B>").is_some());
}

#[test]
fn required_literals() {
    let lib = shared_lib();
    let g = compile("%{SSHD_FAIL}", &lib).expect("compile");
    assert_eq!(g.required_literal(), Some("Failed "));
    let g = compile("%{SYSLOGLINE}", &lib).expect("compile");
    assert_eq!(g.required_literal(), None);
    let g = compile(r"(?i)Failed password", &lib).expect("compile");
    assert_eq!(g.required_literal(), None);
    let g = compile(r"%{IP:ip} port \d+ \[preauth\]", &lib).expect("compile");
    assert_eq!(g.required_literal(), Some(" [preauth]"));
}

#[test]
fn no_panic_on_odd_input() {
    let lib = shared_lib();
    let odd = [
        "[",
        "]",
        "(",
        ")",
        "%{",
        "%{}",
        "%{A:}",
        "%{A",
        "%{A:b",
        "%{A:b:c:d}",
        "\\",
        "\\x",
        "\\x{",
        "\\p",
        "\\p{",
        "(?P<",
        "(?P<>x)",
        "(?<a",
        "[[:",
        "[[:alpha:",
        "[^",
        "[]",
        "{",
        "}",
        "a{1",
        "a{1,",
        "\\Q",
        "\\Qab",
        "\\8",
        "\\1",
        "é\\é",
        "[é-]",
        "%%{{",
        "(?i",
        "(?",
        "\\0\\00\\000\\0000",
        "[\\",
        "[a-",
        "[a-\\",
        "x{99999999999}",
    ];
    for p in odd {
        let _ = compile(p, &lib);
    }
    // Every prefix of every shipped pattern.
    for (_, pattern) in lib.iter() {
        for (i, _) in pattern.char_indices() {
            let _ = translate::translate(&pattern[..i]);
            let _ = literal::required_literal(&pattern[..i]);
        }
    }
    let g = compile("%{SYSLOGLINE}", &lib).expect("compile");
    for hay in ["", "\u{0}", "é", "Feb 12 14:10:21 é sshd[1]: é"] {
        let _ = g.captures(hay);
    }
    // Exponential expansion is cut off, not an out-of-memory.
    let mut lib = lib_of(&[("L0", "ab")]);
    for i in 1..40 {
        lib.add(&format!("L{i}"), &format!("%{{L{0}}}%{{L{0}}}", i - 1))
            .expect("add");
    }
    let e = compile("%{L39}", &lib).expect_err("too big");
    assert!(e.message.contains("exceeds"), "{e}");
    // Deep nesting is an error, not a stack overflow.
    let mut lib = lib_of(&[("D0", "x")]);
    for i in 1..200 {
        lib.add(&format!("D{i}"), &format!("%{{D{}}}", i - 1))
            .expect("add");
    }
    assert!(compile("%{D199}", &lib).is_err());
}

// ---------------------------------------------------------------------------
// Real log lines from the hub test corpus, checked against its parser.assert.

/// `(stage, parser, index) -> {field: value}` from a parser.assert file.
fn asserted_parsed(test: &str) -> BTreeMap<(String, String, usize), BTreeMap<String, String>> {
    let re = Regex::new(
        r#"^results\["([^"]+)"\]\["([^"]+)"\]\[(\d+)\]\.Evt\.Parsed\["([^"]+)"\] == "(.*)"$"#,
    )
    .expect("regex");
    let mut out: BTreeMap<_, BTreeMap<String, String>> = BTreeMap::new();
    for line in read(&format!("{HUB}/.tests/{test}/parser.assert")).lines() {
        if let Some(c) = re.captures(line) {
            let idx: usize = c[3].parse().expect("index");
            let value = c[5].replace("\\\"", "\"").replace("\\\\", "\\");
            out.entry((c[1].to_string(), c[2].to_string(), idx))
                .or_default()
                .insert(c[4].to_string(), value);
        }
    }
    out
}

/// Local `pattern_syntax` (top level) and grok `name:`s of a hub parser file,
/// read with a minimal line parser (enough for these files).
fn parser_locals(path: &str) -> (PatternLibrary, Vec<String>) {
    let text = read(&format!("{HUB}/parsers/{path}"));
    let mut lib = PatternLibrary::new();
    let mut names = Vec::new();
    let mut in_syntax = false;
    let entry = Regex::new(r"^  ([A-Za-z0-9_]+): (.*)$").expect("regex");
    let name = Regex::new(r#"^\s+name: "(\w+)""#).expect("regex");
    for line in text.lines() {
        if line.starts_with("pattern_syntax:") {
            in_syntax = true;
            continue;
        }
        if !line.starts_with(' ') && !line.starts_with('#') {
            in_syntax = false;
        }
        if in_syntax && let Some(c) = entry.captures(line) {
            let v = c[2].trim();
            let v = match v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                Some(q) => q.replace("''", "'"),
                None => v.to_string(),
            };
            lib.add(&c[1], &v).expect("local pattern");
        }
        if let Some(c) = name.captures(line) {
            names.push(c[1].to_string());
        }
    }
    (lib, names)
}

fn check_fields(
    ctx: &str,
    ours: &BTreeMap<String, &str>,
    grok: &Grok,
    expected: &BTreeMap<String, String>,
) {
    for field in grok.fields() {
        let field = &**field;
        if field == "logsource" {
            continue; // overwritten by a static in the parser
        }
        let want = expected.get(field).map(String::as_str).unwrap_or("");
        let got = ours.get(field).copied().unwrap_or("");
        assert_eq!(got, want, "{ctx}: field {field}");
    }
}

#[test]
fn sshd_logs_match_the_hub_results() {
    let lib = shared_lib();
    let syslog = compile("^%{SYSLOGLINE}", &lib).expect("syslog");
    let (local, names) = parser_locals("s01-parse/crowdsecurity/sshd-logs.yaml");
    let layered = lib.with_local(&local);
    let nodes: Vec<(String, Grok)> = names
        .iter()
        .map(|n| {
            let text = layered.resolve(n).unwrap_or_else(|| panic!("{n}"));
            (
                n.clone(),
                compile(text, &layered).unwrap_or_else(|e| panic!("{n}: {e}")),
            )
        })
        .collect();
    assert!(nodes.len() >= 15);
    let asserts = asserted_parsed("sshd-logs");
    let log = read(&format!("{HUB}/.tests/sshd-logs/sshd-logs.log"));
    let mut matched = 0;
    for (i, line) in log.lines().enumerate() {
        let s00 = caps(&syslog, line);
        let key = (
            "s00-raw".to_string(),
            "crowdsecurity/syslog-logs".to_string(),
            i,
        );
        check_fields(&format!("line {i} s00"), &s00, &syslog, &asserts[&key]);
        let message = s00["message"];
        let key = (
            "s01-parse".to_string(),
            "crowdsecurity/sshd-logs".to_string(),
            i,
        );
        let Some((node, grok)) = nodes.iter().find(|(_, g)| g.is_match(message)) else {
            assert!(
                asserts
                    .get(&key)
                    .is_none_or(|a| !a.contains_key("sshd_client_ip")),
                "line {i}: {message}"
            );
            continue;
        };
        matched += 1;
        check_fields(
            &format!("line {i} {node}"),
            &caps(grok, message),
            grok,
            &asserts[&key],
        );
    }
    assert_eq!(matched, 23);
}

#[test]
fn sshd_log_alternatives() {
    let lib = shared_lib();
    let all = compile("%{SSHD_LOG}", &lib).expect("SSHD_LOG");
    let line = "Failed password for root from 192.168.1.2 port 51182 ssh2";
    let c = caps(&all, line);
    assert_eq!(c["sshd_client_ip"], "192.168.1.2");
    assert_eq!(c["sshd_invalid_user"], "root");
    assert_eq!(c["sshd_port"], "51182");
    let c = caps(&all, "Received disconnect from 10.0.0.1 port 22:11: Bye");
    assert_eq!(
        (c["sshd_client_ip"], c["sshd_disconnect_status"]),
        ("10.0.0.1", "Bye")
    );
    let c = caps(
        &all,
        "Bad protocol version identification 'GET / HTTP/1.1' from 2001:db8::1",
    );
    assert_eq!(c["sshd_client_ip"], "2001:db8::1");
}

#[test]
fn syslog_lines() {
    let lib = shared_lib();
    let g = compile("^%{SYSLOGLINE}", &lib).expect("compile");
    let c = caps(
        &g,
        "Feb 12 14:10:21 sd-126005 sshd[16378]: Invalid user pascal from 35.188.49.176 port 53502",
    );
    assert_eq!(c["timestamp"], "Feb 12 14:10:21");
    assert_eq!(c["logsource"], "sd-126005");
    assert_eq!(c["program"], "sshd");
    assert_eq!(c["pid"], "16378");
    assert_eq!(
        c["message"],
        "Invalid user pascal from 35.188.49.176 port 53502"
    );
    let c = caps(
        &g,
        "2023-11-14T00:20:42.738197+01:00 myserver sshd-session[1]: hello",
    );
    assert_eq!(c["timestamp8601"], "2023-11-14T00:20:42.738197+01:00");
    assert_eq!(c["program"], "sshd-session");
    assert!(!c.contains_key("timestamp"));
    assert!(g.captures("not a syslog line").is_none());
}

#[test]
fn nginx_access_log() {
    let lib = shared_lib();
    let text = read(&format!(
        "{HUB}/parsers/s01-parse/crowdsecurity/nginx-logs.yaml"
    ));
    let (local, _) = parser_locals("s01-parse/crowdsecurity/nginx-logs.yaml");
    let pattern_re = Regex::new(r"^      pattern: '(.*)'$").expect("regex");
    let access = text
        .lines()
        .find_map(|l| pattern_re.captures(l).map(|c| c[1].replace("''", "'")))
        .expect("first pattern");
    let g = compile(&access, &lib.with_local(&local)).expect("compile");
    let asserts = asserted_parsed("nginx_http-logs");
    let log = read(&format!("{HUB}/.tests/nginx_http-logs/nginx_http-logs.log"));
    let mut checked = 0;
    for (i, line) in log.lines().enumerate() {
        let Some(key) = asserts
            .keys()
            .find(|k| k.0 == "s01-parse" && k.1 == "crowdsecurity/nginx-logs" && k.2 == i)
        else {
            continue;
        };
        let Some(found) = g.captures(line) else {
            continue;
        };
        let ours: BTreeMap<String, &str> =
            found.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        check_fields(&format!("nginx line {i}"), &ours, &g, &asserts[key]);
        checked += 1;
    }
    assert!(checked >= 5, "{checked}");
    let c = caps(&g, log.lines().next().expect("line"));
    assert_eq!(c["remote_addr"], "192.168.1.1");
    assert_eq!(c["verb"], "GET");
    assert_eq!(c["status"], "404");
    assert_eq!(c["http_user_agent"], "Go-http-client/1.1");
}

#[test]
fn apache_common_log() {
    let lib = shared_lib();
    let g = compile("%{COMMONAPACHELOG}", &lib).expect("compile");
    for f in [
        "clientip",
        "ident",
        "auth",
        "timestamp",
        "verb",
        "request",
        "httpversion",
        "rawrequest",
        "response",
        "bytes",
    ] {
        assert!(g.field_index(f).is_some(), "{f}");
    }
    let log = read(&format!("{HUB}/.tests/apache2-logs/apache2-logs.log"));
    for line in log.lines().filter(|l| l.contains("\" 500 ")) {
        assert!(g.is_match(line), "{line}");
    }
    let c = caps(
        &g,
        r#"93.43.209.58 - - [08/Jun/2020:06:49:01 +0000] "POST /login HTTP/1.0" 500 803 "-" "-""#,
    );
    assert_eq!(c["clientip"], "93.43.209.58");
    assert_eq!(c["ident"], "-");
    assert_eq!(c["timestamp"], "08/Jun/2020:06:49:01 +0000");
    assert_eq!(
        (c["verb"], c["request"], c["httpversion"]),
        ("POST", "/login", "1.0")
    );
    assert_eq!((c["response"], c["bytes"]), ("500", "803"));
    assert!(!c.contains_key("rawrequest"));
}

/// Rough throughput check: `cargo test --release --lib grok::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore = "timing, run manually in release mode"]
fn throughput() {
    let lib = shared_lib();
    let syslog = compile("^%{SYSLOGLINE}", &lib).expect("syslog");
    let (local, names) = parser_locals("s01-parse/crowdsecurity/sshd-logs.yaml");
    let layered = lib.with_local(&local);
    let nodes: Vec<Grok> = names
        .iter()
        .filter_map(|n| layered.resolve(n))
        .map(|t| compile(t, &layered).expect("compile"))
        .collect();
    let log = read(&format!("{HUB}/.tests/sshd-logs/sshd-logs.log"));
    let lines: Vec<&str> = log.lines().collect();
    let mut syslog_locs = None;
    let mut node_locs: Vec<_> = nodes.iter().map(|_| None).collect();
    let rounds = 20_000;
    let start = std::time::Instant::now();
    let mut fields = 0usize;
    for _ in 0..rounds {
        for line in &lines {
            let mut msg = 0..0;
            let msg_field = syslog.field_index("message").unwrap_or(usize::MAX);
            syslog.captures_into(line, &mut syslog_locs, |f, s, e| {
                fields += 1;
                if f == msg_field {
                    msg = s..e;
                }
            });
            let message = line.get(msg).unwrap_or_default();
            for (g, locs) in nodes.iter().zip(node_locs.iter_mut()) {
                if g.captures_into(message, locs, |_, _, _| fields += 1) {
                    break;
                }
            }
        }
    }
    let n = rounds * lines.len();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} lines in {secs:.2}s: {:.0} lines/s ({fields} fields)",
        n as f64 / secs
    );
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        for line in &lines {
            syslog.captures_into(line, &mut syslog_locs, |_, _, _| fields += 1);
        }
    }
    println!(
        "syslog only: {:.0} lines/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        for line in &lines {
            fields += usize::from(syslog.is_match(line));
        }
    }
    println!(
        "syslog is_match: {:.0} lines/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        for line in &lines {
            fields += syslog
                .regex()
                .and_then(|r| r.find(line))
                .map_or(0, |m| m.end());
        }
    }
    println!(
        "syslog find: {:.0} lines/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once("]: ").map(|x| x.1))
        .collect();
    for (name, (g, locs)) in names.iter().zip(nodes.iter().zip(node_locs.iter_mut())) {
        let start = std::time::Instant::now();
        for _ in 0..2000 {
            for m in &messages {
                g.captures_into(m, locs, |_, _, _| fields += 1);
            }
        }
        println!(
            "{name}: {:.0} lines/s",
            (2000 * messages.len()) as f64 / start.elapsed().as_secs_f64()
        );
    }
}

/// The shortcut's precondition: the shipped `IPV6` is the text the shortcut knows.
#[test]
fn stock_ipv6_is_the_shipped_pattern() {
    assert_eq!(shared_lib().get("IPV6"), Some(STOCK_IPV6));
}

#[test]
fn stock_hostname_is_the_shipped_pattern() {
    assert_eq!(shared_lib().get("HOSTNAME"), Some(STOCK_HOSTNAME));
    assert_eq!(STOCK_HOSTNAME.replace("{0,62}", "*"), RELAXED_HOSTNAME);
}

/// Capture ranges of `regex` on `line`.
fn capture_ranges(regex: &regex::Regex, line: &str) -> Option<Vec<Option<Range<usize>>>> {
    regex
        .captures(line)
        .map(|c| c.iter().map(|m| m.map(|m| m.range())).collect())
}

/// A variant is used only where it cannot change a result: on lines without `::` and with
/// fewer than six colons `IPV6` is dropped, on lines without a run of 64 label characters
/// `HOSTNAME` is relaxed, and either way the match and captures are the full pattern's.
#[test]
fn shortcuts_keep_matches_and_captures() {
    let lib = shared_lib();
    let long_label = "a".repeat(70);
    let long_host = format!("{long_label}.example.org GET");
    let long_path = format!(
        r#"1.2.3.4 - - [18/Nov/2025:09:46:40 +0000] "GET /{} HTTP/1.1" 200 12 "-" "curl""#,
        "f".repeat(64)
    );
    let cases = [
        ("%{IPORHOST:ip} %{WORD:w}", "10.0.0.1 GET"),
        ("%{IPORHOST:ip} %{WORD:w}", "host.example.org GET"),
        ("%{IPORHOST:ip} %{WORD:w}", "2001:db8::1 GET"),
        ("%{IPORHOST:ip} %{WORD:w}", "1:2:3:4:5:6:7:8 GET"),
        ("%{IPORHOST:ip} %{WORD:w}", "0:0:0:0:0:0:1.2.3.4 GET"),
        ("%{IPORHOST:ip} %{WORD:w}", &long_host),
        ("%{IP:ip}", "a:b:c at 10.1.2.3:80"),
        ("%{IP:ip}", "fe80::1%eth0"),
        (
            "from %{IP:ip} port %{INT:port}",
            "Failed password for root from 1.2.3.4 port 22",
        ),
        (
            "from %{IP:ip} port %{INT:port}",
            "Failed password for root from ::ffff:1.2.3.4 port 22",
        ),
        (
            "%{COMBINEDAPACHELOG}",
            r#"1.2.3.4 - - [18/Nov/2025:09:46:40 +0000] "GET /a HTTP/1.1" 200 12 "https://x.org/" "curl""#,
        ),
        (
            "%{COMBINEDAPACHELOG}",
            r#"2001:db8::2 - - [18/Nov/2025:09:46:40 +0000] "GET /a HTTP/1.1" 200 12 "-" "curl""#,
        ),
        ("%{COMBINEDAPACHELOG}", &long_path),
    ];
    for (pattern, line) in cases {
        let g = compile(pattern, &lib).expect(pattern);
        let v = g.variants.as_ref().expect("uses IPV6 or HOSTNAME");
        let expected = Shortcuts {
            drop_ipv6: v.possible.drop_ipv6 && !may_hold_ipv6(line),
            relax_hostname: v.possible.relax_hostname && !may_hold_long_label(line),
        };
        let chosen = g.regex_for(line).expect("builds").as_str();
        match v.regex(expected) {
            Some(small) => assert_eq!(chosen, small.as_str(), "{line}"),
            None => assert_eq!(chosen, g.as_str(), "{line}"),
        }
        let full = capture_ranges(g.regex().expect("builds"), line);
        assert_eq!(
            full,
            capture_ranges(g.regex_for(line).expect("builds"), line),
            "{pattern} on {line}"
        );
        assert!(full.is_some(), "{pattern} should match {line}");
    }
    // Where the line has a long label the relaxed variant would capture more, which is why
    // it is not used there.
    let g = compile("%{IPORHOST:ip} %{WORD:w}", &lib).expect("compiles");
    let relaxed = g
        .variants
        .as_ref()
        .and_then(|v| {
            v.regex(Shortcuts {
                drop_ipv6: true,
                relax_hostname: true,
            })
        })
        .expect("variant");
    assert_ne!(
        capture_ranges(relaxed, &long_host),
        capture_ranges(g.regex().expect("builds"), &long_host)
    );
    assert_eq!(
        g.captures(&long_host),
        Some(vec![("ip", "example.org"), ("w", "GET")])
    );
}

#[test]
fn long_label_runs_are_found() {
    assert!(!may_hold_long_label(&"a".repeat(63)));
    assert!(may_hold_long_label(&"a".repeat(64)));
    assert!(may_hold_long_label(&"a-9".repeat(22)));
    assert!(!may_hold_long_label(&format!(
        "{}.{}",
        "a".repeat(63),
        "b".repeat(63)
    )));
    assert!(may_hold_long_label(&format!("x {}", "Z".repeat(64))));
    // Every placement of a run of 63 and of 64 in a line of other characters.
    for len in [63, 64] {
        for at in 0..140 {
            let line = format!(
                "{}{}{}",
                " ".repeat(at),
                "q".repeat(len),
                ".".repeat(at % 7)
            );
            assert_eq!(may_hold_long_label(&line), len == 64, "{len} at {at}");
        }
    }
}

/// The groks of a shipped parser.
fn shipped_groks(parser: &str) -> Vec<Grok> {
    let compiled = crate::compile::compile_path(None).expect("the default configuration compiles");
    compiled
        .ruleset
        .stages
        .iter()
        .flatten()
        .find(|p| &*p.name == parser)
        .map(|p| p.groks.iter().map(|g| g.grok.clone()).collect())
        .expect("the shipped parser")
}

/// The first grok of a shipped parser, and the same grok without its native scanner
/// (regex only).
fn shipped_grok(parser: &str) -> (Grok, Grok) {
    let grok = shipped_groks(parser).swap_remove(0);
    let mut regex_only = grok.clone();
    regex_only.native = None;
    (grok, regex_only)
}

/// Captures as `(field, value)`, or `None` for no match (the scanner declining).
type FieldValues<'h> = Option<Vec<(usize, &'h str)>>;

/// Native and regex captures of `line`: the native's verdict is `None` when it left the
/// line to the regex, `Some(None)` when it proved no match.
fn native_and_regex<'h>(
    grok: &Grok,
    regex_only: &Grok,
    line: &'h str,
) -> (Option<FieldValues<'h>>, FieldValues<'h>) {
    let native = grok.native.as_ref().expect("a native scanner");
    let mut got = Vec::new();
    let decided = native.captures(line, &mut |f, s, e| got.push((f, &line[s..e])));
    let mut locs = None;
    let mut want = Vec::new();
    let matched = regex_only.captures_into(line, &mut locs, |f, s, e| want.push((f, &line[s..e])));
    (decided.map(|m| m.then_some(got)), matched.then_some(want))
}

/// Runs the native scanner of a shipped parser's first grok and the regex on every input
/// and on single-byte mutations (replaced, deleted or doubled by a byte that delimits
/// pattern parts) of every input the scanner accepts; they must agree wherever the scanner
/// accepts, and it must accept at least 100 (the check is not vacuous).
fn check_native_against_regex(parser: &str, inputs: Vec<String>, bytes: &[&str]) {
    let (grok, regex_only) = shipped_grok(parser);
    let (accepted, _, checked) =
        check_grok_against_regex(parser, &grok, &regex_only, inputs, bytes);
    assert!(
        accepted >= 100,
        "{parser}: the scanner accepted only {accepted} of {checked} inputs"
    );
}

/// [`check_native_against_regex`] for one grok: the inputs the scanner accepted, those its
/// refuter proved the regex cannot match (both mutated further), and all checked.
fn check_grok_against_regex(
    parser: &str,
    grok: &Grok,
    regex_only: &Grok,
    inputs: Vec<String>,
    bytes: &[&str],
) -> (usize, usize, usize) {
    let mut accepted = 0usize;
    let mut refuted = 0usize;
    let mut checked = 0usize;
    let mut queue: Vec<(String, bool)> = inputs.into_iter().map(|l| (l, true)).collect();
    while let Some((line, mutate)) = queue.pop() {
        let (native, regex) = native_and_regex(grok, regex_only, &line);
        checked += 1;
        let Some(native) = native else { continue };
        assert_eq!(native, regex, "{parser}: {line:?}");
        match native {
            Some(_) => accepted += 1,
            None => refuted += 1,
        }
        if !mutate {
            continue;
        }
        for i in 0..line.len() {
            if !line.is_char_boundary(i) || !line.is_char_boundary(i + 1) {
                continue;
            }
            for b in bytes.iter().chain([&""]) {
                queue.push((format!("{}{b}{}", &line[..i], &line[i + 1..]), false));
            }
            queue.push((format!("{}{}", &line[..i + 1], &line[i..]), false));
        }
    }
    (accepted, refuted, checked)
}

/// Every line of the hub's test fixtures.
fn hub_fixture_lines() -> Vec<String> {
    let mut lines = Vec::new();
    let fixtures = std::fs::read_dir(format!("{HUB}/.tests")).expect("hub tests");
    for dir in fixtures.flatten() {
        for file in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if file.path().extension().is_some_and(|x| x == "log")
                && let Ok(text) = std::fs::read_to_string(file.path())
            {
                lines.extend(text.lines().map(str::to_owned));
            }
        }
    }
    lines
}

#[test]
fn shipped_stock_groks_have_their_native_scanners() {
    // If this fails, the rule or a pattern it uses changed: update the stock text in
    // src/grok/native.rs (for nginx and the hub's SSHD_DISC_PREAUTH, src/grok/*.re) from
    // `Grok::as_str`, after checking that the scanner's reasoning still holds for the new
    // text.
    for parser in ["nginx-logs", "http-logs", "sshd-success-logs"] {
        let (grok, _) = shipped_grok(parser);
        assert!(
            grok.native.is_some(),
            "{parser}: expanded text:\n{}",
            grok.as_str()
        );
    }
    // sshd-logs: SSHD_FAILED_ANY, the hub's PREAUTH_AUTHENTICATING_USER(_ALT),
    // INVALID_USER, AUTH_FAIL, INVALID_BANNER, BAD_KEY_NEGOTIATION, AUTH_TIMEOUT and
    // DISC_PREAUTH, and SSHD_DISCONNECT_PREAUTH and SSHD_PROBE.
    let with_scanner = shipped_groks("sshd-logs")
        .iter()
        .filter(|g| g.native.is_some())
        .count();
    assert_eq!(
        with_scanner, 11,
        "sshd-logs alternatives with a native scanner"
    );
}

#[test]
fn native_sshd_scanners_agree_with_the_regex() {
    let mut messages: Vec<String> = [
        "Failed password for root from 1.2.3.4 port 22 ssh2",
        "Failed password for invalid user admin from 10.0.0.1 port 2222 ssh2",
        "Failed password for invalid user  from 10.0.0.1 port 2222 ssh2",
        "Failed password for from from 10.0.0.1 port 22 ssh2",
        "Failed password for x from 10.0.0.1 port 22 ssh2 from 9.9.9.9 port 1 ssh2",
        "Failed publickey for git from 1.2.3.4 port 5 ssh2: RSA SHA256:abc",
        "Failed none for invalid user a b from 1.2.3.4",
        "Failed password for root from 1.2.3.4 port 22.5 ssh2",
        "Failed password for root from 2001:db8::1 port 22 ssh2",
        "Disconnected from authenticating user root 1.2.3.4 port 22 [preauth]",
        "Disconnected from invalid user a.b-c 2001:db8::1 port 22 [preauth]",
        "Disconnected from invalid user x 1.2.3.4 port 22 [preauth] trailing",
        "Connection closed by authenticating user root 1.2.3.4 port 22 [preauth]",
        "Connection reset by invalid user pi ::ffff:1.2.3.4 port 22 [preauth]",
        "Connection closed by 1.2.3.4 port 22 [preauth]",
        "Connection closed by 1.2.3.4 port 22",
        "Invalid user debian from 1.2.3.4 port 22",
        "Invalid user  from 1.2.3.4 port 22",
        "Invalid user from from 1.2.3.4",
        "Invalid userx from 1.2.3.4",
        "Invalid user a from 1.2.3.4.5",
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4  user=root",
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4 ",
        "pam_unix(sshd:auth): authentication failure; logname= uid= euid= tty=ssh ruser= rhost=1.2.3.4 user=",
        "pam_x(sshd:auth): authentication failure; logname= uid=1.5 euid=0 tty=ssh ruser= rhost=1.2.3.4",
        "Received disconnect from 1.2.3.4 port 22:11: Bye Bye [preauth]",
        "Received disconnect from 1.2.3.4:11: Auth fail",
        "Received disconnect from 1.2.3.4 port 22:11: disconnected by user",
        "Received disconnect from 1.2.3.4 port 22: 11: [preauth]",
        "banner exchange: Connection from 1.2.3.4 port 22: invalid format",
        "banner exchange: Connection from 1.2.3.4 port 22: invalid format and more",
        "banner exchange: Connection from 1.2.3.4 port : invalid format",
        "banner exchange: Connection from 2001:db8::1 port 22: invalid format",
        "Unable to negotiate with 1.2.3.4 port 22: no matching key exchange method found. Their offer: a,b [preauth]",
        "Unable to negotiate with 1.2.3.4 port 22: no matching host key type found. Their offer: ssh-rsa [preauth]",
        "Unable to negotiate with 1.2.3.4 port 22: no matching MAC found.",
        "Unable to negotiate with 1.2.3.4 port 22: no matching MAC found",
        "Unable to negotiate with 1.2.3.4 port 22: no matching MAC found\n",
        "Unable to negotiate with 1.2.3.4 port 22: no matching cipher found. Their offer: x",
        "Unable to negotiate with 1.2.3.4 port 22: no matching MAC found\u{e9}",
        "Timeout before authentication for 1.2.3.4 port 22",
        "Timeout before authentication for 1.2.3.4",
        "Timeout before authentication for 1.2.3.4 port x",
        "Timeout before authentication for 1.2.3.456 port 22",
        "Timeout before authentication for connection from 1.2.3.4 to 5.6.7.8, pid = 1",
        "Disconnected from user alice 1.2.3.4 port 22",
        "Disconnected from 1.2.3.4 port 22 [preauth]",
        "Disconnected from 1.2.3.4 port 22",
        "Disconnected from user x Disconnected from 1.2.3.4 port 2",
        "Disconnected from :: port 2",
        "Disconnected from fe80::1 port 22",
        "Received disconnect from 1.2.3.4 port 22:11: disconnected by user\n[preauth]",
        "Did not receive identification string from 1.2.3.4",
        "ssh_dispatch_run_fatal: Connection from 1.2.3.4 port 22: x [preauth]",
        "Connection closed by 1.2.3.4 port 22 trailing",
        "Connection closed by 2001:db8::1 port 22",
        "Connection closed by 1.2.3.4 port 22\n",
        "Accepted publickey for deploy from 1.2.3.4 port 22 ssh2: ED25519 SHA256:abc+/x",
        "Accepted password for bob from 1.2.3.4 port 22 ssh2",
        "Accepted keyboard-interactive/pam for a.b-c from 1.2.3.4 port 22 ssh2",
        "Accepted gssapi-with-mic for x from 1.2.3.4 port 22 ssh2 trailing",
        "Accepted hostbased for x from 1.2.3.4 port 22.5 ssh2",
        "Accepted none for x from 1.2.3.4 port 22 ssh2",
        "Accepted password for x from 2001:db8::1 port 22 ssh2",
        "Accepted password for x from 1.2.3.4 port 22 ssh1",
        "Accepted password for x y from 1.2.3.4 port 22 ssh2",
        "Accepted password for x from 1.2.3.4 port 22 ssh2\nmore",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    // Each message with an IPv4 address again with IPv6 addresses in its place: whole
    // tokens, a mapped quad (`IPV6` first takes `::ffff:1`), a zone, too many groups.
    let ipv6 = [
        "2001:db8::1",
        "2a04:bde:f9b:4f51::752",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8:9",
        "1::2:3:4:5:6:7",
        "::",
        "::1",
        "::ffff:1.2.3.4",
        "::ffff:1.2.3.4:5",
        "fe80::1%eth0",
        "fe80::1%eth0\nx",
        "abcd::",
        "abcd:",
        "12345::1",
        "1:2:3:4:5:6:1.2.3.4",
    ];
    let with_ipv6: Vec<String> = messages
        .iter()
        .filter(|m| m.contains("1.2.3.4"))
        .flat_map(|m| ipv6.iter().map(move |a| m.replacen("1.2.3.4", a, 1)))
        .collect();
    // The scanners decide IPv6 lines themselves (not only by leaving them to the regex).
    let ipv6_accepted = shipped_groks("sshd-logs")
        .iter()
        .filter(|g| g.native.is_some())
        .map(|grok| {
            let mut regex_only = grok.clone();
            regex_only.native = None;
            with_ipv6
                .iter()
                .filter(|m| matches!(native_and_regex(grok, &regex_only, m).0, Some(Some(_))))
                .count()
        })
        .sum::<usize>();
    assert!(ipv6_accepted >= 200, "IPv6 lines scanned: {ipv6_accepted}");
    messages.extend(with_ipv6);
    // The message of every syslog line of the hub's fixtures and of fail2ban's sshd samples.
    let mut lines = hub_fixture_lines();
    let f2b = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpora/fail2ban-logs/logs/sshd"
    );
    lines.extend(read(f2b).lines().map(str::to_owned));
    for line in &lines {
        if let Some(h) = crate::parse::syslog::parse_syslog(line) {
            messages.push(h.message.to_owned());
        }
    }
    let bytes = [" ", ":", ".", "0", "9", "a", "[", "]", "(", "=", "-"];
    let mut accepted_by = Vec::new();
    let groks = shipped_groks("sshd-logs")
        .into_iter()
        .chain(shipped_groks("sshd-success-logs"));
    for grok in groks.filter(|g| g.native.is_some()) {
        let mut regex_only = grok.clone();
        regex_only.native = None;
        let (accepted, refuted, _) =
            check_grok_against_regex("sshd-logs", &grok, &regex_only, messages.clone(), &bytes);
        accepted_by.push((accepted, refuted));
    }
    assert!(
        accepted_by.iter().all(|&(a, r)| a + r >= 20),
        "each scanner decides at least some messages: {accepted_by:?}"
    );
    // The two refuters (SSHD_DISCONNECT_PREAUTH, SSHD_DISC_PREAUTH) each settle some.
    assert!(
        accepted_by.iter().filter(|&&(_, r)| r >= 20).count() >= 2,
        "refuted: {accepted_by:?}"
    );
}

#[test]
fn native_nginx_access_scanner_agrees_with_the_regex() {
    let mut lines: Vec<String> = vec![
        r#"1.2.3.4 - - [18/Nov/2026:09:48:53 +0000] "GET /index.html HTTP/1.1" 200 512 "-" "Mozilla/5.0""#.into(),
        r#"255.0.10.199 - alice@example.org [01/Dec/2026:23:59:59 -0130] "POST /a?b=c HTTP/2.0" 404 0 "" "curl/8""#.into(),
        r#"8.8.8.8 - [31/Jan/1999:00:00:00 +0100] "GET / HTTP/1.0" 301 1 "http://x/" "ua""#.into(),
        r#"9.9.9.9 - - [02/May/2026:10:11:12 +0000] "GET /x HTTP/1.1 HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"9.9.9.9 - - [02/May/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 5 "-" "-" 10 0.005 [up] [alt]"#.into(),
        r#"host.example 9.9.9.9 - - [02/May/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"9.9.9.256 - - [02/May/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"09.9.9.9 - - [02/May/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"9.9.9.9 - - [00/May/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"9.9.9.9 - - [02/Foo/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"9.9.9.9 - - [02/May/2026:10:11:12 +0000] "GET  HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"9.9.9.9 - - [02/May/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 - "-" "-""#.into(),
        r#"2001:db8::1 - - [02/May/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"::ffff:1.2.3.4 - - [02/May/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"2a01:4f8:1:2::5 - bob [02/May/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"fe80::1%eth0 - - [02/May/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"1:2:3:4:5:6:7:8:9 - - [02/May/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"1:2:3:4:5:6:7:8 - - [02/May/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"12345::1 - - [02/May/2026:10:11:12 +0000] "GET /x HTTP/1.1" 200 5 "-" "-""#.into(),
        r#"9.9.9.9 - - [02/May/2026:10:11:12 +0000] "\x16\x03\x01" 400 150 "-" "-""#.into(),
    ];
    lines.extend(hub_fixture_lines());
    let bytes = [
        " ", "\"", "-", "[", "]", ".", ":", "/", "0", "9", "a", "_", "+", "%", "?", "\n",
    ];
    check_native_against_regex("nginx-logs", lines, &bytes);
}

#[test]
fn native_request_path_scanner_agrees_with_the_regex() {
    let mut requests: Vec<String> = [
        "/",
        "/a",
        "/a/",
        "/a/b.c",
        "/a/.htaccess",
        "/a/b.",
        "/a/b..c",
        "/a.b/c",
        "/a/b.c.d",
        "/a?",
        "/a?x=1",
        "/a/b.php?x=/y.z?w",
        "?x",
        "",
        "a",
        "a/b",
        "/a\nb",
        "/a?x\ny",
        "/a\nb?x",
        "/a/b.c?\n",
        "/é/ü.ß?ç",
        "//",
        "/a/b.c/",
        "/.",
        "/..",
        "/a/.b.c",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    // The request of every fixture line the nginx access grok reads.
    let (access, _) = shipped_grok("nginx-logs");
    let field = access.field_index("request").expect("a request field");
    for line in hub_fixture_lines() {
        if let Some(caps) = access.captures(&line)
            && let Some((_, r)) = caps
                .iter()
                .find(|(f, _)| *f == access.fields()[field].as_ref())
        {
            requests.push((*r).to_owned());
        }
    }
    let bytes = ["/", "?", ".", "\n", "a", "%", "#"];
    check_native_against_regex("http-logs", requests, &bytes);
}

#[test]
fn a_stock_text_with_its_names_on_other_groups_gets_no_scanner() {
    let lib = shared_lib();
    let mut local = PatternLibrary::new();
    local
        .add("NGCUSTOMUSER", r#"[a-zA-Z0-9\.\@\-\+_%]+"#)
        .expect("a pattern");
    let l = lib.with_local(&local);
    // The shipped nginx access pattern (rules/parsers/nginx.kdl).
    let stock = r#"(%{IPORHOST:target_fqdn}(:%{INT:port})? )?%{IPORHOST:remote_addr} - (%{NGCUSTOMUSER:remote_user} )?\[%{HTTPDATE:time_local}\] "%{WORD:verb} %{DATA:request} HTTP/%{NUMBER:http_version}" %{NUMBER:status} %{NUMBER:body_bytes_sent} "%{NOTDQUOTE:http_referer}" "%{NOTDQUOTE:http_user_agent}"( %{NUMBER:request_length} %{NUMBER:request_time} \[%{DATA:proxy_upstream_name}\] \[%{DATA:proxy_alternative_upstream_name}\])?"#;
    let shipped = compile(stock, &l).expect("compiles");
    assert!(shipped.native.is_some());
    // A log format with the user agent before the referer: the same regex text.
    let swapped = stock
        .replace("NOTDQUOTE:http_referer", "NOTDQUOTE:swap")
        .replace("NOTDQUOTE:http_user_agent", "NOTDQUOTE:http_referer")
        .replace("NOTDQUOTE:swap", "NOTDQUOTE:http_user_agent");
    let g = compile(&swapped, &l).expect("compiles");
    assert_eq!(g.as_str(), shipped.as_str());
    assert!(g.native.is_none());
    let line = r#"1.2.3.4 - - [18/Nov/2026:09:48:53 +0000] "GET / HTTP/1.1" 200 5 "Mozilla/5.0" "https://ref/""#;
    let caps = g.captures(line).expect("a match");
    assert!(
        caps.contains(&("http_user_agent", "Mozilla/5.0")),
        "{caps:?}"
    );
    assert!(caps.contains(&("http_referer", "https://ref/")), "{caps:?}");
}

#[test]
fn a_grok_built_on_first_use_is_built_by_its_first_search_and_a_failed_build_matches_nothing() {
    let lib = lib_of(&[("N", "[0-9]+")]);
    let g = compile_with("port %{N:port}", &lib, Build::OnFirstUse).expect("compile");
    assert!(g.regex.built.get().is_none(), "built before any search");
    assert_eq!(g.captures("from port 22"), Some(vec![("port", "22")]));
    assert!(g.regex.built.get().is_some());
    // Over the size limit: `Build::Now` reports it, a deferred build matches nothing.
    let huge = r"x(?:\w{1000}){1000}%{N:n}";
    let e = compile_with(huge, &lib, Build::Now).expect_err("too big");
    assert!(e.message.contains("size limit"), "{e}");
    let g = compile_with(huge, &lib, Build::OnFirstUse).expect("syntax is not checked");
    assert_eq!(g.captures("x1"), None);
    assert!(!g.is_match("x1"));
    assert!(g.regex().is_none());
}
