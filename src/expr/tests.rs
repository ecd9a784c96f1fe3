//! Tests for the expression language.

use super::*;
use crate::alert::{Alert, Scope};
use crate::data::{DataKind, DataList, DataLists};
use crate::event::{Event, FieldRegistry, FieldValue, Namespace, Timestamp};
use std::sync::Arc;

// ---------------------------------------------------------------- helpers

struct Env {
    fields: FieldRegistry,
    data: DataLists,
}

const FIELDS: &[(Namespace, &str)] = &[
    (Namespace::Meta, "log_type"),
    (Namespace::Meta, "source_ip"),
    (Namespace::Meta, "service"),
    (Namespace::Meta, "http_status"),
    (Namespace::Meta, "http_path"),
    (Namespace::Meta, "http_user_agent"),
    (Namespace::Meta, "target_user"),
    (Namespace::Meta, "sub_type"),
    (Namespace::Parsed, "program"),
    (Namespace::Parsed, "message"),
    (Namespace::Parsed, "request"),
    (Namespace::Parsed, "http_args"),
    (Namespace::Parsed, "file_name"),
    (Namespace::Parsed, "file_ext"),
    (Namespace::Parsed, "file_frag"),
    (Namespace::Parsed, "target_fqdn"),
    (Namespace::Parsed, "verb"),
    (Namespace::Parsed, "http_user_agent"),
    (Namespace::Parsed, "static_ressource"),
    (Namespace::Parsed, "x_forwarded_for"),
    (Namespace::Parsed, "json"),
    (Namespace::Enriched, "IsoCode"),
    (Namespace::Labels, "type"),
];

fn list(data: &mut DataLists, name: &str, kind: DataKind, text: &str) {
    match DataList::from_text(name, kind, text) {
        Ok(l) => {
            data.insert(l);
        }
        Err(e) => panic!("bad test list {name}: {e}"),
    }
}

fn env() -> Env {
    let mut fields = FieldRegistry::new();
    for (ns, n) in FIELDS {
        fields.intern(*ns, n);
    }
    let mut data = DataLists::new();
    let s = DataKind::Strings;
    list(
        &mut data,
        "admin_interfaces.txt",
        s,
        "#generic\n/admin\n/manager\n\n/phpmyadmin\n",
    );
    list(
        &mut data,
        "backdoors.txt",
        s,
        "c99.php\nr57.php\nshell.php\n",
    );
    list(
        &mut data,
        "sensitive_data.txt",
        s,
        ".sql\n.bak\n.env\nid_rsa\n",
    );
    list(
        &mut data,
        "sqli_probe_patterns.txt",
        s,
        "%20union%20select%20\n' or 1=1\nsleep(\ninformation_schema.tables\n",
    );
    list(
        &mut data,
        "xss_probe_patterns.txt",
        s,
        "<script\nonerror=\n",
    );
    list(&mut data, "http_path_traversal.txt", s, "../\n..%2f\n");
    list(
        &mut data,
        "trendy_cves_uris.json",
        s,
        "{\"cve\":\"CVE-2024-3400\",\"uri\":\"/global-protect/login.esp\"}\n{\"cve\":\"CVE-2021-3129\",\"uri\":\"/_ignition/execute-solution\"}\n",
    );
    list(
        &mut data,
        "bad_user_agents.regex.txt",
        DataKind::Regexes,
        "^curl/\nsqlmap\nNikto\n",
    );
    list(
        &mut data,
        "cidrs.txt",
        s,
        "10.0.0.0/8\n192.168.0.0/16\n2001:db8::/32\n1.2.3.4\n",
    );
    Env { fields, data }
}

impl Env {
    fn compile(
        &mut self,
        src: &str,
        roots: Roots,
        expect: Option<Type>,
    ) -> Result<Program, ExprError> {
        let mut ce = CompileEnv {
            fields: &mut self.fields,
            data: &self.data,
            roots,
        };
        compile(src, &mut ce, expect)
    }

    fn ok(&mut self, src: &str) -> Program {
        match self.compile(src, Roots::EVT | Roots::QUEUE | Roots::ALERT, None) {
            Ok(p) => p,
            Err(e) => panic!("{src:?} failed to compile: {e}"),
        }
    }

    fn err(&mut self, src: &str, roots: Roots, expect: Option<Type>) -> ExprError {
        match self.compile(src, roots, expect) {
            Ok(p) => panic!("{src:?} should not compile (type {})", p.result_type()),
            Err(e) => e,
        }
    }

    fn event(&self, kv: &[(&str, &str)]) -> Event {
        let mut e = Event::new(
            "raw line".to_owned(),
            Timestamp::UNIX_EPOCH,
            self.fields.len(),
        );
        for (k, v) in kv {
            let (ns, name) = split_key(k);
            let Some(id) = self.fields.get(ns, name) else {
                panic!("test field {k} not registered");
            };
            e.set(id, FieldValue::Owned((*v).to_owned()));
        }
        e
    }

    fn check(&mut self, src: &str, kv: &[(&str, &str)]) -> bool {
        let p = self.ok(src);
        let ev = self.event(kv);
        let ctx = EvalCtx::for_event(&ev, &self.data);
        match p.eval(&ctx) {
            Ok(Value::Bool(b)) => {
                assert_eq!(b, p.eval_bool(&ctx));
                b
            }
            other => panic!("{src:?} gave {other:?}"),
        }
    }

    fn string(&mut self, src: &str, kv: &[(&str, &str)]) -> Option<String> {
        let p = self.ok(src);
        let ev = self.event(kv);
        let ctx = EvalCtx::for_event(&ev, &self.data);
        let value = p.eval_string(&ctx).map(|s| s.into_owned());
        // The parser statics' way (appended to a reused buffer) says the same.
        let mut buf = String::from("kept:");
        let ok = p.eval_string_into(&ctx, &mut buf);
        let appended = ok.then(|| buf["kept:".len()..].to_owned());
        assert_eq!(appended, value, "eval_string_into of {src}");
        assert!(buf.starts_with("kept:"), "{src}");
        value
    }
}

fn split_key(k: &str) -> (Namespace, &str) {
    if let Some(n) = k.strip_prefix("Labels.") {
        return (Namespace::Labels, n);
    }
    let (ns, n) = k.split_once('.').unwrap_or(("Meta", k));
    (Namespace::from_name(ns).unwrap_or(Namespace::Meta), n)
}

fn constant(src: &str) -> String {
    let mut e = env();
    let p = e.ok(src);
    let ev = e.event(&[]);
    let ctx = EvalCtx::for_event(&ev, &e.data);
    match p.eval(&ctx) {
        Ok(v) => v.to_go_string(),
        Err(err) => format!("error: {}", err.message),
    }
}

// ---------------------------------------------------------------- hub expressions

/// Every supported `filter`, `expression`, `groupby`, `distinct`, `cancel_on`, `condition` of the
/// hub corpus (parsers and scenarios).
const HUB: &[(&str, &str)] = &[
    ("filter", "evt.Line.Labels.type == 'containerd'"),
    ("expression", "evt.Parsed.cri_timestamp"),
    ("expression", "evt.Line.Labels.program"),
    ("filter", "evt.Line.Labels.type == 'syslog'"),
    ("expression", "evt.Parsed.logsource"),
    ("expression", "evt.Parsed.timestamp8601"),
    ("filter", "evt.Line.Labels.type not in ['syslog', 'unifi']"),
    ("expression", "evt.Line.Raw"),
    ("filter", "evt.Parsed.program startsWith 'apache2'"),
    (
        "expression",
        "evt.Parsed.request != '' ? evt.Parsed.request : evt.Parsed.rawrequest",
    ),
    (
        "filter",
        "evt.Parsed.module == 'core' && evt.Parsed.message contains 'Invalid URI'",
    ),
    ("filter", "evt.Parsed.program in ['sshd-session', 'sshd']"),
    ("filter", "evt.Parsed.program == 'envoy'"),
    (
        "expression",
        "let xff = evt.Parsed.x_forwarded_for ?? '';\nlet first_ip = xff != '' ? Split(xff, ',')[0] : '';\nTrimPrefix(TrimSuffix(first_ip, \"]\"), \"[\")",
    ),
    ("expression", "evt.Enriched.MarshaledTime"),
    (
        "filter",
        "evt.Meta.service == 'http' && evt.Meta.log_type in ['http_access-log', 'http_error-log']",
    ),
    (
        "expression",
        "evt.Meta.http_status in ['404', '403', '502'] ? 'false' : 'true'",
    ),
    ("expression", "len(evt.Parsed.http_args)"),
    ("expression", "evt.Parsed.file_frag + evt.Parsed.file_ext"),
    (
        "expression",
        "Upper(evt.Parsed.file_ext) in ['.JPG', '.CSS', '.JS', '.JPEG', '.PNG', '.SVG', '.MAP', '.ICO', '.OTF', '.GIF', '.MP3', '.MP4', '.WOFF', '.WOFF2', '.TTF', '.OTF', '.EOT', '.WEBP', '.WAV', '.GZ', '.BROTLI', '.BVR', '.TS', '.BMP', '.AVIF', '.MJS'] ? 'true' : 'false'",
    ),
    ("filter", "evt.Meta.log_type == 'ssh_bad_keyexchange'"),
    ("groupby", "evt.Meta.source_ip"),
    (
        "filter",
        "evt.Meta.service == 'http' and \nevt.Meta.log_type in ['http_access-log', 'http_error-log'] and \nevt.Meta.http_status in ['404', '403'] and\nany(File(\"admin_interfaces.txt\"), { Lower(evt.Meta.http_path) contains #})",
    ),
    ("distinct", "evt.Meta.http_path"),
    (
        "filter",
        "evt.Meta.log_type in [\"http_access-log\", \"http_error-log\"] and any(File(\"backdoors.txt\"), { evt.Parsed.file_name == #})",
    ),
    (
        "filter",
        "evt.Meta.log_type in [\"http_access-log\", \"http_error-log\"] && RegexpInFile(evt.Parsed.http_user_agent, \"bad_user_agents.regex.txt\")",
    ),
    (
        "filter",
        "evt.Meta.log_type == 'http_access-log' && evt.Parsed.file_name == 'wp-login.php' && evt.Parsed.verb == 'POST' && evt.Meta.http_status == '200'",
    ),
    (
        "filter",
        "evt.Meta.log_type in ['http_access-log', 'http_error-log'] && evt.Parsed.static_ressource == 'false' && evt.Parsed.verb in ['GET', 'HEAD']",
    ),
    (
        "groupby",
        "evt.Meta.source_ip + '/' + evt.Parsed.target_fqdn",
    ),
    (
        "filter",
        "evt.Meta.service == 'http' and \nevt.Meta.log_type in ['http_access-log', 'http_error-log'] and \nevt.Meta.http_status in ['404', '403'] and\nany(File(\"trendy_cves_uris.json\"), { \n  evt.Meta.http_path contains JsonExtract(#, \"uri\") ? evt.SetMeta(\"cve\", JsonExtract(#, \"cve\")) : false \n})",
    ),
    (
        "filter",
        "evt.Meta.service == 'http' && evt.Meta.sub_type == 'auth_fail'",
    ),
    (
        "filter",
        "evt.Meta.log_type in [\"http_access-log\", \"http_error-log\"] and evt.Meta.http_path == \"/crowdsec-test-NtktlJHV4TfBSK3wvlhiOBnl\"",
    ),
    (
        "filter",
        "evt.Meta.log_type == 'http_access-log' && evt.Meta.http_status in ['400','405'] && (evt.Parsed.verb == 'CONNECT' || evt.Parsed.request matches '^http[s]?://')",
    ),
    (
        "filter",
        "evt.Meta.log_type in ['http_access-log', 'http_error-log'] && any(File('http_path_traversal.txt'),{evt.Meta.http_path contains #})",
    ),
    (
        "filter",
        "evt.Meta.log_type in [\"http_access-log\", \"http_error-log\"] and any(File(\"sensitive_data.txt\"), { evt.Parsed.request endsWith #})",
    ),
    (
        "filter",
        "evt.Meta.log_type in ['http_access-log', 'http_error-log'] && any(File('sqli_probe_patterns.txt'), {Upper(evt.Parsed.http_args) contains Upper(#)})",
    ),
    (
        "filter",
        "evt.Meta.service == 'http' and\nevt.Meta.log_type in ['http_access-log', 'http_error-log'] and\nevt.Meta.http_status in ['404', '403'] and\nLower(evt.Parsed.request) matches \"(?i)(/wp-.*\\\\.php|/wp-content/plugins/.*\\\\.(txt|md))$\"",
    ),
    (
        "filter",
        "evt.Meta.log_type == 'http_access-log' && Upper(evt.Parsed.http_args) contains 'AUTHOR='",
    ),
    (
        "filter",
        "evt.Meta.log_type in ['http_access-log', 'http_error-log'] && any(File('xss_probe_patterns.txt'), {Upper(evt.Parsed.http_args) contains Upper(#)})",
    ),
    (
        "filter",
        "evt.Meta.log_type in ['ssh_auth_timeout', 'ssh_dispatch_fatal']",
    ),
    (
        "filter",
        "evt.Meta.service == 'ssh' && evt.Meta.log_type in ['ssh_failed-auth', 'auth_success']",
    ),
    ("cancel_on", "evt.Meta.log_type == 'auth_success'"),
    (
        "condition",
        "let failedAuths = filter(queue.Queue, {#.Meta.log_type == 'ssh_failed-auth'});\nlen(failedAuths) >= 4 &&\nMedianInterval(map(failedAuths[-4:], {#.Time})) > duration(\"10m\")",
    ),
];

/// Interns every `evt.<ns>.<name>` mentioned in `src` (so the hub corpus compiles).
fn intern_mentions(fields: &mut FieldRegistry, src: &str) {
    for (prefix, ns) in [
        ("evt.Meta.", Namespace::Meta),
        ("evt.Parsed.", Namespace::Parsed),
        ("evt.Enriched.", Namespace::Enriched),
        ("evt.Line.Labels.", Namespace::Labels),
        ("#.Meta.", Namespace::Meta),
    ] {
        let mut rest = src;
        while let Some(i) = rest.find(prefix) {
            rest = &rest[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end > 0 {
                fields.intern(ns, &rest[..end]);
            }
        }
    }
}

#[test]
fn hub_expressions_compile() {
    let mut e = env();
    for (kind, src) in HUB {
        intern_mentions(&mut e.fields, src);
        let (roots, expect) = match *kind {
            "filter" | "cancel_on" => (Roots::EVT, Some(Type::Bool)),
            "condition" => (Roots::EVT | Roots::QUEUE, Some(Type::Bool)),
            "groupby" => (Roots::EVT, Some(Type::Str)),
            _ => (Roots::EVT, None),
        };
        if let Err(err) = e.compile(src, roots, expect) {
            panic!("{kind} {src:?}: {err}");
        }
    }
}

/// Loads the real hub data lists when the shared corpus is next to the checkout.
#[test]
fn hub_scenarios_with_real_lists() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpora/crowdsec-hub/sec-lists/web");
    if !dir.is_dir() {
        return;
    }
    let mut e = env();
    let mut data = DataLists::new();
    for (file, name, kind) in [
        (
            "sqli_probe_patterns.txt",
            "sqli_probe_patterns.txt",
            DataKind::Strings,
        ),
        (
            "xss_probe_patterns.txt",
            "xss_probe_patterns.txt",
            DataKind::Strings,
        ),
        ("backdoors.txt", "backdoors.txt", DataKind::Strings),
        (
            "sensitive_data.txt",
            "sensitive_data.txt",
            DataKind::Strings,
        ),
        (
            "admin_interfaces.txt",
            "admin_interfaces.txt",
            DataKind::Strings,
        ),
        (
            "path_traversal.txt",
            "http_path_traversal.txt",
            DataKind::Strings,
        ),
        (
            "trendy_cves_uris.json",
            "trendy_cves_uris.json",
            DataKind::Strings,
        ),
        (
            "bad_user_agents.regex.txt",
            "bad_user_agents.regex.txt",
            DataKind::Regexes,
        ),
    ] {
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
            return;
        };
        match DataList::from_text(name, kind, &text) {
            Ok(l) => {
                data.insert(l);
            }
            Err(err) => panic!("{file}: {err}"),
        }
    }
    e.data = data;
    for (kind, src) in HUB {
        intern_mentions(&mut e.fields, src);
        let roots = Roots::EVT | Roots::QUEUE;
        if let Err(err) = e.compile(src, roots, None) {
            panic!("{kind} {src:?}: {err}");
        }
    }
    let http = [
        ("log_type", "http_access-log"),
        ("service", "http"),
        ("http_status", "404"),
    ];
    let sqli = "evt.Meta.log_type in ['http_access-log', 'http_error-log'] && any(File('sqli_probe_patterns.txt'), {Upper(evt.Parsed.http_args) contains Upper(#)})";
    let mut kv = http.to_vec();
    kv.push(("Parsed.http_args", "id=1%20UNION%20ALL%20SELECT%20null"));
    assert!(e.check(sqli, &kv));
    kv.pop();
    kv.push(("Parsed.http_args", "q=hello"));
    assert!(!e.check(sqli, &kv));
    let cve = HUB
        .iter()
        .find(|(_, s)| s.contains("trendy_cves"))
        .map(|(_, s)| *s)
        .unwrap_or_default();
    let mut kv = http.to_vec();
    kv.push(("http_path", "/global-protect/login.esp"));
    let p = e.ok(cve);
    let ev = e.event(&kv);
    let ctx = EvalCtx::for_event(&ev, &e.data);
    assert!(p.eval_bool(&ctx));
    let w = ctx.take_writes();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].1, "CVE-2024-3400");
    let ua = "RegexpInFile(evt.Parsed.http_user_agent, 'bad_user_agents.regex.txt')";
    assert!(e.check(
        ua,
        &[("Parsed.http_user_agent", "Mozilla/5.00 (Nikto/2.1.6)")]
    ));
    assert!(!e.check(
        ua,
        &[(
            "Parsed.http_user_agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
        )]
    ));
}

#[test]
fn hub_filters_behave() {
    let mut e = env();
    let ssh = "evt.Meta.log_type == 'ssh_failed-auth'";
    assert!(e.check(ssh, &[("log_type", "ssh_failed-auth")]));
    assert!(!e.check(ssh, &[("log_type", "ssh_success")]));
    assert!(!e.check(ssh, &[]));

    let prog = "evt.Parsed.program in ['sshd-session', 'sshd']";
    assert!(e.check(prog, &[("Parsed.program", "sshd")]));
    assert!(e.check(prog, &[("Parsed.program", "sshd-session")]));
    assert!(!e.check(prog, &[("Parsed.program", "sshd2")]));
    let notin = "evt.Line.Labels.type not in ['syslog', 'unifi']";
    assert!(e.check(notin, &[("Labels.type", "nginx")]));
    assert!(!e.check(notin, &[("Labels.type", "syslog")]));
    assert!(e.check(
        "evt.Meta.log_type not in ['a', 'b', 'c']",
        &[("log_type", "d")]
    ));

    assert_eq!(
        e.string(
            "evt.Meta.source_ip + '/' + evt.Parsed.target_fqdn",
            &[
                ("source_ip", "1.2.3.4"),
                ("Parsed.target_fqdn", "example.org")
            ]
        )
        .as_deref(),
        Some("1.2.3.4/example.org")
    );

    // `contains` a literal (a searcher built once), and the empty literal.
    let shellshock = "evt.Meta.http_user_agent contains '() {'";
    assert!(e.check(shellshock, &[("http_user_agent", "x () { :; }; echo")]));
    assert!(e.check(shellshock, &[("http_user_agent", "() {")]));
    assert!(!e.check(shellshock, &[("http_user_agent", "() ;{")]));
    assert!(!e.check(shellshock, &[]));
    assert!(e.check("evt.Meta.http_user_agent contains ''", &[]));

    let sqli =
        "any(File('sqli_probe_patterns.txt'), {Upper(evt.Parsed.http_args) contains Upper(#)})";
    assert!(e.check(sqli, &[("Parsed.http_args", "id=1%20UNION%20select%20x")]));
    assert!(e.check(sqli, &[("Parsed.http_args", "x=1' OR 1=1")]));
    assert!(e.check(sqli, &[("Parsed.http_args", "é=SLEEP(5)")]));
    assert!(!e.check(sqli, &[("Parsed.http_args", "id=12")]));
    assert!(!e.check(sqli, &[("Parsed.http_args", "é=ok")]));

    let bd = "any(File(\"backdoors.txt\"), { evt.Parsed.file_name == #})";
    assert!(e.check(bd, &[("Parsed.file_name", "c99.php")]));
    assert!(!e.check(bd, &[("Parsed.file_name", "C99.php")]));
    assert!(!e.check(bd, &[("Parsed.file_name", "c99.php5")]));

    let sens = "any(File(\"sensitive_data.txt\"), { evt.Parsed.request endsWith #})";
    assert!(e.check(sens, &[("Parsed.request", "/backup/db.sql")]));
    assert!(e.check(sens, &[("Parsed.request", "/.env")]));
    assert!(e.check(sens, &[("Parsed.request", "/home/.ssh/id_rsa")]));
    assert!(!e.check(sens, &[("Parsed.request", "/db.sql.txt")]));
    assert!(!e.check(sens, &[("Parsed.request", "")]));

    let admin = "any(File(\"admin_interfaces.txt\"), { Lower(evt.Meta.http_path) contains #})";
    assert!(e.check(admin, &[("http_path", "/ADMIN/login")]));
    assert!(e.check(admin, &[("http_path", "/x/PhpMyAdmin/")]));
    assert!(!e.check(admin, &[("http_path", "/index.html")]));
    assert!(!e.check(admin, &[("http_path", "/#generic")]));

    let ua = "RegexpInFile(evt.Parsed.http_user_agent, \"bad_user_agents.regex.txt\")";
    assert!(e.check(ua, &[("Parsed.http_user_agent", "curl/8.1")]));
    assert!(!e.check(ua, &[("Parsed.http_user_agent", "Mozilla curl/8.1")]));

    let proxy = "evt.Meta.log_type == 'http_access-log' && evt.Meta.http_status in ['400','405'] && (evt.Parsed.verb == 'CONNECT' || evt.Parsed.request matches '^http[s]?://')";
    let base = [("log_type", "http_access-log"), ("http_status", "400")];
    let mut kv = base.to_vec();
    kv.push(("Parsed.request", "https://x.org/"));
    assert!(e.check(proxy, &kv));
    let mut kv = base.to_vec();
    kv.push(("Parsed.request", "/https://x.org/"));
    assert!(!e.check(proxy, &kv));
    let mut kv = base.to_vec();
    kv.push(("Parsed.verb", "CONNECT"));
    assert!(e.check(proxy, &kv));

    let statics = "Upper(evt.Parsed.file_ext) in ['.JPG', '.CSS', '.JS'] ? 'true' : 'false'";
    assert_eq!(
        e.string(statics, &[("Parsed.file_ext", ".jpg")]).as_deref(),
        Some("true")
    );
    assert_eq!(
        e.string(statics, &[("Parsed.file_ext", ".php")]).as_deref(),
        Some("false")
    );
    assert_eq!(
        e.string(
            "len(evt.Parsed.http_args)",
            &[("Parsed.http_args", "a=1&b=2")]
        )
        .as_deref(),
        Some("7")
    );
    // A string chain is one node over every operand, left to right.
    assert_eq!(
        e.string(
            "'<' + (evt.Parsed.file_frag + ('' + evt.Parsed.file_ext)) + '>' + 'x'",
            &[("Parsed.file_frag", "a"), ("Parsed.file_ext", ".b")]
        )
        .as_deref(),
        Some("<a.b>x")
    );
    assert_eq!(
        e.string("1 + 2", &[]).as_deref(),
        Some("3"),
        "numbers still add"
    );
    assert_eq!(
        e.string(
            "evt.Parsed.file_frag + evt.Parsed.file_ext",
            &[("Parsed.file_frag", "index"), ("Parsed.file_ext", ".php")]
        )
        .as_deref(),
        Some("index.php")
    );
    assert!(e.check(
        "IpInRange(evt.Meta.source_ip, \"10.0.0.0/8\")",
        &[("source_ip", "10.1.2.3")]
    ));
    assert!(!e.check(
        "IpInRange(evt.Meta.source_ip, \"10.0.0.0/8\")",
        &[("source_ip", "11.1.2.3")]
    ));
    assert!(!e.check(
        "IpInRange(evt.Meta.source_ip, \"10.0.0.0/8\")",
        &[("source_ip", "junk")]
    ));
    assert!(e.check(
        "evt.Meta.http_user_agent startsWith 'curl'",
        &[("http_user_agent", "curl/7")]
    ));
    assert!(e.check("Lower(evt.Meta.service) == 'http'", &[("service", "HTTP")]));
    assert!(e.check("!(evt.Meta.service == 'ssh')", &[("service", "http")]));
    assert!(e.check("not (evt.Meta.service == 'ssh')", &[("service", "http")]));
    assert!(e.check(
        "evt.Meta.service == 'http' and evt.Meta.log_type == 'x' or evt.Meta.sub_type == 'y'",
        &[("sub_type", "y")]
    ));
    let xff = "let xff = evt.Parsed.x_forwarded_for ?? '';\nlet first_ip = xff != '' ? Split(xff, ',')[0] : '';\nTrimPrefix(TrimSuffix(first_ip, \"]\"), \"[\")";
    assert_eq!(
        e.string(xff, &[("Parsed.x_forwarded_for", "[2001:db8::1],10.0.0.1")])
            .as_deref(),
        Some("2001:db8::1")
    );
    assert_eq!(e.string(xff, &[]).as_deref(), Some(""));
}

fn has_contains_gate(p: &Program) -> bool {
    p.root
        .any(&|n| matches!(n.k, super::eval::K::ContainsGate(..)).then_some(true))
}

#[test]
fn any_over_a_column_is_gated_by_one_pass() {
    let mut e = env();
    let cves = "File(\"trendy_cves_uris.json\")";
    let gated = [
        format!(
            "any({cves}, {{ evt.Meta.http_path contains JsonExtract(#, \"uri\") ? evt.SetMeta(\"cve\", JsonExtract(#, \"cve\")) : false }})"
        ),
        format!(
            "any({cves}, {{ evt.Meta.http_path contains JsonExtract(#, \"uri\") && evt.Meta.http_status == '404' }})"
        ),
        format!(
            "evt.Meta.http_status in ['404', '403'] and any({cves}, {{ evt.Meta.http_path contains JsonExtract(#, \"uri\") }})"
        ),
    ];
    // The same bodies with a first test that is not the gate: evaluated element by element.
    let plain = [
        format!(
            "any({cves}, {{ evt.Meta.http_path != 'zz' && evt.Meta.http_path contains JsonExtract(#, \"uri\") ? evt.SetMeta(\"cve\", JsonExtract(#, \"cve\")) : false }})"
        ),
        format!(
            "any({cves}, {{ evt.Meta.http_path != 'zz' && evt.Meta.http_path contains JsonExtract(#, \"uri\") && evt.Meta.http_status == '404' }})"
        ),
        format!(
            "evt.Meta.http_status in ['404', '403'] and any({cves}, {{ evt.Meta.http_path != 'zz' && evt.Meta.http_path contains JsonExtract(#, \"uri\") }})"
        ),
    ];
    let events = [
        ("/x/_ignition/execute-solution?a", "404"),
        ("/global-protect/login.esp", "200"),
        ("/global-protect/login.esp", "404"),
        ("/index.html", "404"),
        ("", "404"),
    ];
    for (g, p) in gated.iter().zip(&plain) {
        let (g, p) = (e.ok(g), e.ok(p));
        assert!(has_contains_gate(&g), "{}", g.source());
        assert!(!has_contains_gate(&p), "{}", p.source());
        let mut seen = [false, false];
        for (path, status) in events {
            let ev = e.event(&[("http_path", path), ("http_status", status)]);
            let (cg, cp) = (
                EvalCtx::for_event(&ev, &e.data),
                EvalCtx::for_event(&ev, &e.data),
            );
            let verdict = g.eval_bool(&cg);
            assert_eq!(verdict, p.eval_bool(&cp), "{} on {path}", g.source());
            assert_eq!(
                cg.take_writes(),
                cp.take_writes(),
                "{} on {path}",
                g.source()
            );
            seen[usize::from(verdict)] = true;
        }
        assert_eq!(seen, [true, true], "{}", g.source());
    }
    // Not gated: the contains test is not the first thing the body evaluates, or the
    // body may be true without it.
    for src in [
        format!(
            "any({cves}, {{ evt.Meta.http_status == '404' && evt.Meta.http_path contains JsonExtract(#, \"uri\") }})"
        ),
        format!(
            "any({cves}, {{ evt.Meta.http_path contains JsonExtract(#, \"uri\") ? true : evt.Meta.http_status == '404' }})"
        ),
        format!(
            "any({cves}, {{ evt.Meta.http_path contains JsonExtract(#, \"uri\") || evt.Meta.http_status == '404' }})"
        ),
        format!("all({cves}, {{ evt.Meta.http_path contains JsonExtract(#, \"uri\") }})"),
    ] {
        assert!(!has_contains_gate(&e.ok(&src)), "{src}");
    }
}

#[test]
fn set_meta_interns_and_buffers() {
    let mut e = env();
    let src = "any(File(\"trendy_cves_uris.json\"), { evt.Meta.http_path contains JsonExtract(#, \"uri\") ? evt.SetMeta(\"cve\", JsonExtract(#, \"cve\")) : false })";
    let p = e.ok(src);
    let cve = e.fields.get(Namespace::Meta, "cve");
    assert!(cve.is_some());
    assert!(p.referenced_fields().contains(&cve.unwrap_or(FieldId(0))));
    let ev = e.event(&[("http_path", "/x/_ignition/execute-solution?a")]);
    let ctx = EvalCtx::for_event(&ev, &e.data);
    assert!(p.eval_bool(&ctx));
    let w = ctx.take_writes();
    assert_eq!(
        w,
        vec![(cve.unwrap_or(FieldId(0)), "CVE-2021-3129".to_owned())]
    );
    let ev = e.event(&[("http_path", "/index.html")]);
    let ctx = EvalCtx::for_event(&ev, &e.data);
    assert!(!p.eval_bool(&ctx));
    assert!(ctx.take_writes().is_empty());
    // Once interned, the new field can be read by later expressions.
    assert!(
        e.compile("evt.Meta.cve != ''", Roots::EVT, Some(Type::Bool))
            .is_ok()
    );
    assert!(e.check("evt.GetMeta('log_type') == 'x'", &[("log_type", "x")]));
}

fn event_at(e: &Env, log_type: &str, secs: i64) -> Event {
    let mut ev = e.event(&[("log_type", log_type)]);
    ev.time = Timestamp::from_second(1_700_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH);
    ev
}

#[test]
fn conditional_scenario() {
    let mut e = env();
    let src = "let failedAuths = filter(queue.Queue, {#.Meta.log_type == 'ssh_failed-auth'});\nlen(failedAuths) >= 4 &&\nMedianInterval(map(failedAuths[-4:], {#.Time})) > duration(\"10m\")";
    let p = match e.compile(src, Roots::EVT | Roots::QUEUE, Some(Type::Bool)) {
        Ok(p) => p,
        Err(err) => panic!("{err}"),
    };
    let slow: Vec<Event> = (0..5)
        .map(|i| {
            event_at(
                &e,
                if i == 2 {
                    "auth_success"
                } else {
                    "ssh_failed-auth"
                },
                i * 900,
            )
        })
        .collect();
    let fast: Vec<Event> = (0..6)
        .map(|i| event_at(&e, "ssh_failed-auth", i * 60))
        .collect();
    let few: Vec<Event> = (0..3)
        .map(|i| event_at(&e, "ssh_failed-auth", i * 900))
        .collect();
    let last = event_at(&e, "ssh_failed-auth", 0);
    for (q, want) in [(&slow, true), (&fast, false), (&few, false)] {
        let ctx = EvalCtx::for_event(&last, &e.data).with_queue(q);
        assert_eq!(p.eval_bool(&ctx), want);
    }
    // The median of [15m, 30m, 15m] is 15m.
    let m = e.ok("MedianInterval(map(queue.Queue, {#.Time}))");
    let ctx = EvalCtx::for_event(&last, &e.data).with_queue(&slow);
    assert_eq!(m.eval_string(&ctx).as_deref(), Some("15m0s"));
    assert_eq!(*m.result_type(), Type::Duration);
}

#[test]
fn a_filter_reading_one_field_outside_its_checked_conjuncts_says_which() {
    let mut e = env();
    let id = |e: &Env, k: &str| {
        let (ns, n) = split_key(k);
        e.fields.get(ns, n).expect("registered")
    };
    let (log_type, request) = (id(&e, "log_type"), id(&e, "Parsed.request"));
    let type_checked = |x: FieldId| x == log_type;
    // (filter, the one field read once log_type is checked)
    let cases = [
        (
            "evt.Meta.log_type == 'http_access-log' && evt.Parsed.request contains 'wp-'",
            Some(request),
        ),
        (
            "evt.Meta.log_type == 'http_access-log' && any(File('sensitive_data.txt'), { evt.Parsed.request endsWith #})",
            Some(request),
        ),
        (
            "evt.Meta.log_type == 'http_access-log' && Upper(evt.Parsed.request) contains 'X' && len(evt.Parsed.request) > 3",
            Some(request),
        ),
        // Two fields, one of them unchecked.
        (
            "evt.Meta.log_type == 'http_access-log' && evt.Meta.http_status == '404' && evt.Parsed.request contains 'wp-'",
            None,
        ),
        (
            "evt.Meta.log_type == 'http_access-log' && (evt.Meta.http_status == '404' || evt.Parsed.request contains 'wp-')",
            None,
        ),
        // A write, the clock, the whole event: not a function of one value.
        (
            "evt.Meta.log_type == 'http_access-log' && evt.SetMeta('cve', evt.Parsed.request)",
            None,
        ),
        (
            "evt.Meta.log_type == 'http_access-log' && evt.Parsed.request contains 'x' && TimeNow() != ''",
            None,
        ),
        // Nothing left to read.
        ("evt.Meta.log_type == 'http_access-log'", None),
    ];
    for (src, want) in cases {
        let f = e.ok(src);
        let fields = f.value_fields(f.checked_conjuncts(&type_checked));
        let sole = match fields.as_deref() {
            Some(&[one]) => Some(one),
            _ => None,
        };
        assert_eq!(sole, want, "{src}");
    }
    // Unchecked, the log_type test is a second field: the verdict is a function of both.
    let f = e.ok("evt.Meta.log_type == 'http_access-log' && evt.Parsed.request contains 'wp-'");
    let mut both = vec![log_type, request];
    both.sort_unstable();
    assert_eq!(f.value_fields(0), Some(both));
    let f = e.ok("evt.Parsed.request contains 'x' && TimeNow() != ''");
    assert_eq!(f.value_fields(0), None);
}

#[test]
fn conjuncts_the_caller_checked_are_taken_as_true() {
    let mut e = env();
    let id = |e: &Env, k: &str| {
        let (ns, n) = split_key(k);
        e.fields.get(ns, n).expect("registered")
    };
    let (log_type, status, verb) = (
        id(&e, "log_type"),
        id(&e, "http_status"),
        id(&e, "Parsed.verb"),
    );
    let f = e.ok(
        "evt.Meta.log_type == 'http_access-log' && evt.Meta.http_status in ['404', '403'] && evt.Parsed.request contains 'wp-'",
    );
    let both = |x: FieldId| x == log_type || x == status;
    let only_type = |x: FieldId| x == log_type;
    let cases = [
        // (log_type, status, request, eval_bool, assuming both checked, assuming log_type)
        ("http_access-log", "404", "/wp-login.php", true, true, true),
        ("http_access-log", "404", "/index.php", false, false, false),
        (
            "http_access-log",
            "200",
            "/wp-login.php",
            false,
            true,
            false,
        ),
        ("syslog", "200", "/wp-login.php", false, true, false),
    ];
    for (t, st, req, plain, assume_both, assume_type) in cases {
        let ev = e.event(&[
            ("log_type", t),
            ("http_status", st),
            ("Parsed.request", req),
        ]);
        let ctx = EvalCtx::for_event(&ev, &e.data);
        assert_eq!(f.eval_bool(&ctx), plain, "{t} {st} {req}");
        assert_eq!(
            f.eval_bool_skipping(&ctx, f.checked_conjuncts(&both)),
            assume_both,
            "{t} {st} {req}"
        );
        assert_eq!(
            f.eval_bool_skipping(&ctx, f.checked_conjuncts(&only_type)),
            assume_type,
            "{t} {st} {req}"
        );
    }
    assert!(!f.only_field_tests(&both));

    // Programs made only of field tests run them directly; the interpreter agrees.
    let mut seen = [false, false];
    for src in [
        "evt.Meta.log_type == 'x' && evt.Parsed.verb in ['GET', 'HEAD']",
        "'x' == evt.Meta.log_type",
        "evt.Parsed.verb in ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS', 'CONNECT']",
        "evt.Meta.log_type == '' && evt.Parsed.verb == 'GET' && evt.Meta.http_status == '404'",
        "evt.Parsed.verb not in ['GET', 'HEAD'] && evt.Meta.log_type != 'y'",
        "!(evt.Meta.log_type == 'x') && !(evt.Parsed.verb != 'HEAD')",
        "evt.Line.Labels.type not in ['syslog', 'unifi']",
    ] {
        let p = e.ok(src);
        assert!(p.field_tests.is_some(), "{src}");
        for (t, v, st) in [
            ("x", "GET", "404"),
            ("x", "POST", "200"),
            ("", "GET", "404"),
            ("y", "HEAD", ""),
            ("x", "CONNECT", "404"),
        ] {
            let ev = e.event(&[("log_type", t), ("Parsed.verb", v), ("http_status", st)]);
            let ctx = EvalCtx::for_event(&ev, &e.data);
            let direct = p.eval_bool(&ctx);
            assert_eq!(
                direct,
                p.eval_bool_skipping(&ctx, p.checked_conjuncts(&|_| false)),
                "{src} on {t} {v} {st}"
            );
            seen[usize::from(direct)] = true;
        }
    }
    assert_eq!(seen, [true, true]);
    assert!(e.ok("evt.Parsed.verb contains 'GE'").field_tests.is_none());
    // Past eight values, a list keeps its hash set (field tests compare one by one).
    let long = e.ok("evt.Parsed.verb in ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'CONNECT']");
    assert!(long.field_tests.is_none());
    for (v, want) in [("TRACE", true), ("CONNECT", true), ("BREW", false)] {
        let ev = e.event(&[("Parsed.verb", v)]);
        assert_eq!(
            long.eval_bool(&EvalCtx::for_event(&ev, &e.data)),
            want,
            "{v}"
        );
    }

    let tests_only = e.ok("evt.Meta.log_type == 'x' && evt.Parsed.verb in ['GET', 'HEAD']");
    assert!(tests_only.only_field_tests(&|x| x == log_type || x == verb));
    assert!(!tests_only.only_field_tests(&only_type));
    // Not a plain field test: a fold, a negation, a disjunction, a function of the field.
    for src in [
        "Upper(evt.Parsed.verb) == 'GET'",
        "evt.Parsed.verb != 'GET'",
        "evt.Parsed.verb == 'GET' || evt.Parsed.verb == 'HEAD'",
        "evt.Parsed.verb contains 'GE'",
        "!(evt.Parsed.verb in ['GET'])",
    ] {
        let p = e.ok(src);
        assert!(!p.only_field_tests(&|x| x == verb), "{src}");
        let ev = e.event(&[("Parsed.verb", "POST")]);
        let ctx = EvalCtx::for_event(&ev, &e.data);
        assert_eq!(
            p.eval_bool_skipping(&ctx, p.checked_conjuncts(&|x| x == verb)),
            p.eval_bool(&ctx),
            "{src}"
        );
    }
}

#[test]
fn a_queue_filter_lets_a_bucket_queue_only_what_it_admits() {
    let mut e = env();
    let src = "let failedAuths = filter(queue.Queue, {#.Meta.log_type == 'ssh_failed-auth'});\nlen(failedAuths) >= 4 &&\nMedianInterval(map(failedAuths[-4:], {#.Time})) > duration(\"10m\")";
    let p = e.ok(src);
    assert!(p.has_queue_filter());
    let count = e.ok("len(filter(queue.Queue, {#.Meta.log_type == 'ssh_failed-auth'}))");
    assert!(count.has_queue_filter());
    let types = [
        "ssh_failed-auth",
        "auth_success",
        "ssh_failed-auth",
        "x",
        "ssh_failed-auth",
    ];
    let queues: Vec<Vec<Event>> = (0..types.len() * 2)
        .map(|n| {
            (0..n)
                .map(|i| event_at(&e, types[(i * 7 + n) % types.len()], (i * 700) as i64))
                .collect()
        })
        .collect();
    let last = event_at(&e, "ssh_failed-auth", 0);
    // Queued events keep only the fields read outside the predicate: here none, the
    // condition reads their times.
    assert_eq!(p.queued_event_fields(), Vec::new());
    let mut verdicts = [0, 0];
    for q in &queues {
        let kept: Vec<Event> = q
            .iter()
            .filter(|ev| p.queue_filter_admits(ev, &e.data))
            .map(|ev| Event::new(String::new(), ev.time, 0))
            .collect();
        let whole = EvalCtx::for_event(&last, &e.data).with_queue(q);
        let mut filtered = EvalCtx::for_event(&last, &e.data).with_queue(&kept);
        filtered.queue_prefiltered = true;
        assert_eq!(p.eval_bool(&whole), p.eval_bool(&filtered), "queue {q:?}");
        verdicts[usize::from(p.eval_bool(&whole))] += 1;
        let n = |ctx: &EvalCtx<'_>| count.eval_string(ctx).map(|s| s.into_owned());
        assert_eq!(n(&whole), n(&filtered));
        assert_eq!(n(&whole), Some(kept.len().to_string()));
    }
    assert!(
        verdicts[0] > 0 && verdicts[1] > 0,
        "both verdicts seen: {verdicts:?}"
    );
    // The flag is what makes the filter a no-op: over the whole queue it counts everything.
    let q = &queues[6];
    let mut lying = EvalCtx::for_event(&last, &e.data).with_queue(q);
    lying.queue_prefiltered = true;
    assert_eq!(count.eval_string(&lying).as_deref(), Some("6"));

    // No split when the queue is read elsewhere too, or the predicate reads more than its
    // element.
    for src in [
        "len(queue.Queue) > 1 && len(filter(queue.Queue, {#.Meta.log_type == 'x'})) > 0",
        "len(filter(queue.Queue, {#.Meta.log_type == 'x'})) > len(filter(queue.Queue, {#.Meta.log_type == 'x'}))",
        "len(filter(queue.Queue, {#.Meta.log_type == evt.Meta.log_type})) > 1",
        "len(map(queue.Queue, {#.Meta.log_type})) > 1",
        "evt.Meta.log_type == 'x'",
    ] {
        let p = e.ok(src);
        assert!(!p.has_queue_filter(), "{src}");
        assert_eq!(p.queued_event_fields(), p.referenced_fields(), "{src}");
    }
    // A field read of the queued events outside the predicate is kept.
    let p = e.ok("let f = filter(queue.Queue, {#.Meta.log_type == 'x'}); len(f) > 1 && f[0].Meta.source_ip == 'a'");
    assert!(p.has_queue_filter());
    let ip = e.fields.get(Namespace::Meta, "source_ip");
    assert_eq!(p.queued_event_fields(), Vec::from_iter(ip));
}

#[test]
fn queue_conditions_answer_like_the_interpreter() {
    let mut e = env();
    let filtered = "let f = filter(queue.Queue, {#.Meta.log_type == 'ssh_failed-auth'}); ";
    let mut sources = vec![
        // The hub's, verbatim.
        "let failedAuths = filter(queue.Queue, {#.Meta.log_type == 'ssh_failed-auth'});\nlen(failedAuths) >= 4 &&\nMedianInterval(map(failedAuths[-4:], {#.Time})) > duration(\"10m\")".to_owned(),
        "len(queue.Queue) > 2".to_owned(),
        "3 <= len(queue.Queue) && MedianInterval(map(queue.Queue, {#.Time})) < duration('1m')".to_owned(),
        "len(filter(queue.Queue, {#.Meta.log_type in ['ssh_failed-auth', 'x']})) == 3".to_owned(),
        "duration('5m') >= MedianInterval(map(filter(queue.Queue, {#.Meta.log_type != 'x'})[1:], {#.Time}))".to_owned(),
    ];
    for slice in [
        "[-4:]", "[1:]", "[:3]", "[-50:]", "[2:1]", "[-2:-1]", "[0:40]", "",
    ] {
        for (cmp, d) in [(">", "10m"), ("<=", "90s"), ("==", "0s"), ("!=", "1h")] {
            sources.push(format!(
                "{filtered}len(f) >= 2 && MedianInterval(map(f{slice}, {{#.Time}})) {cmp} duration('{d}')"
            ));
        }
    }
    let types = ["ssh_failed-auth", "auth_success", "x"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let last = event_at(&e, "ssh_failed-auth", 0);
    let mut verdicts = [0, 0];
    let mut bounded = 0;
    for src in &sources {
        let p = e.ok(src);
        assert!(p.queue_condition.is_some(), "compiled: {src}");
        assert!(p.reads_queue_times_only(), "{src}");
        for _ in 0..300 {
            let n = rng.below(40);
            let mut t = 0i64;
            let whole: Vec<Event> = (0..n)
                .map(|_| {
                    // Mostly ascending, sometimes equal or earlier (clock changes, merged files).
                    t += rng.below(1_500) as i64 - 100;
                    event_at(&e, types[rng.below(types.len())], t)
                })
                .collect();
            let kept: Vec<Event> = whole
                .iter()
                .filter(|ev| p.queue_filter_admits(ev, &e.data))
                .map(|ev| Event::new(String::new(), ev.time, 0))
                .collect();
            for (queue, prefiltered) in [(&whole, false), (&kept, true)] {
                let mut ctx = EvalCtx::for_event(&last, &e.data).with_queue(queue);
                ctx.queue_prefiltered = prefiltered;
                let interpreted = eval::eval_bool(&p.root, &ctx, None).unwrap_or(false);
                assert_eq!(p.eval_bool(&ctx), interpreted, "{src} over {queue:?}");
                verdicts[usize::from(interpreted)] += 1;
                if prefiltered == p.has_queue_filter() {
                    // Only the times of the queue a bucket keeps.
                    let times: Vec<i128> = queue.iter().map(|ev| ev.time.as_nanosecond()).collect();
                    assert_eq!(
                        p.holds_over_times(&times),
                        interpreted,
                        "{src} over the times of {queue:?}"
                    );
                    // A bucket keeps only the times the condition reads.
                    if let Some(read) = p.queue_times_read() {
                        let cut = times.len().saturating_sub(read);
                        assert_eq!(
                            p.holds_over_times(&times[cut..]),
                            interpreted,
                            "{src}, last {read}"
                        );
                        bounded += 1;
                    }
                }
            }
        }
    }
    assert!(verdicts[0] > 1000 && verdicts[1] > 1000, "{verdicts:?}");
    assert!(bounded > 3000, "queues cut to what they read: {bounded}");
    // The hub's condition reads the last 5 times: 4 for the median, and 5 to tell `>= 4`.
    assert_eq!(e.ok(&sources[0]).queue_times_read(), Some(5));
    assert_eq!(e.ok("len(queue.Queue) > 2").queue_times_read(), Some(3));
    assert_eq!(e.ok(&sources[2]).queue_times_read(), None);
    // The queue filter's predicate runs as field tests of the element, with the same verdict.
    let p = e.ok(&sources[0]);
    assert!(p.queue_filter_tests.is_some());
    for t in ["ssh_failed-auth", "auth_success", "", "ssh_failed-auth "] {
        let ev = event_at(&e, t, 0);
        let interpreted = p.queue_filter.as_deref().is_some_and(|f| {
            eval::element_verdict(f, &ev, &EvalCtx::new(&e.data)).unwrap_or(false)
        });
        assert_eq!(p.queue_filter_admits(&ev, &e.data), interpreted, "{t:?}");
        assert_eq!(interpreted, t == "ssh_failed-auth");
    }
    // Left to the interpreter: other measures, computed operands, two different queues.
    for src in [
        "len(queue.Queue) > len(queue.Queue) - 1",
        "len(queue.Queue) > 2.5",
        "MedianInterval(map(queue.Queue[evt.Meta.log_type == 'x' ? 1 : 2:], {#.Time})) > duration('1m')",
        "len(queue.Queue) > 1 && len(filter(queue.Queue, {#.Meta.log_type == 'x'})) > 0",
        "len(queue.Queue) > 1 || len(queue.Queue) < 0",
        "let n = 4; len(queue.Queue) >= n",
        "evt.Meta.log_type == 'x' && len(queue.Queue) > 1",
    ] {
        assert!(e.ok(src).queue_condition.is_none(), "{src}");
    }
}

#[test]
fn element_predicates_are_memoised_on_queued_events() {
    let mut e = env();
    let p = e.ok("len(filter(queue.Queue, {#.Meta.log_type == 'ssh_failed-auth'})) >= 2");
    let q: Vec<Event> = ["ssh_failed-auth", "auth_success", "ssh_failed-auth"]
        .iter()
        .enumerate()
        .map(|(i, t)| event_at(&e, t, i as i64))
        .collect();
    let last = event_at(&e, "ssh_failed-auth", 9);
    let ctx = EvalCtx::for_event(&last, &e.data).with_queue(&q);
    assert!(p.eval_bool(&ctx));
    assert!(q.iter().all(|ev| ev.memo.get() != 0), "verdicts kept");
    // The second run reads the memo and agrees.
    assert!(p.eval_bool(&ctx));
    // A changed event forgets its verdicts.
    let mut changed = q.clone();
    changed[0].set(
        e.fields.get(Namespace::Meta, "log_type").expect("log_type"),
        crate::event::FieldValue::Static("auth_success"),
    );
    assert_eq!(changed[0].memo.get(), 0);
    let ctx = EvalCtx::for_event(&last, &e.data).with_queue(&changed);
    assert!(!p.eval_bool(&ctx));

    // A predicate that reads the root event depends on more than its element: not kept.
    let outer = e.ok("any(queue.Queue, {#.Meta.log_type == evt.Meta.log_type})");
    let fresh: Vec<Event> = vec![event_at(&e, "auth_success", 0)];
    for (root, want) in [("ssh_failed-auth", false), ("auth_success", true)] {
        let root = event_at(&e, root, 5);
        let ctx = EvalCtx::for_event(&root, &e.data).with_queue(&fresh);
        assert_eq!(outer.eval_bool(&ctx), want);
        assert_eq!(fresh[0].memo.get(), 0);
    }
}

struct Hist;
impl DecisionHistory for Hist {
    fn decisions_count(&self, value: &str) -> i64 {
        if value == "1.2.3.4" { 1 } else { 0 }
    }
}

fn alert(e: &Env, remediation: bool, scope: Scope) -> Alert {
    Alert {
        scenario: Arc::from("crowdsecurity/ssh-bf"),
        scope,
        value: "1.2.3.4".to_owned(),
        events_count: 6,
        start_at: Timestamp::UNIX_EPOCH,
        stop_at: Timestamp::UNIX_EPOCH,
        remediation,
        events: vec![e.event(&[("log_type", "ssh_failed-auth"), ("target_user", "root")])].into(),
        labels: Arc::from([]),
        custom_message: Some(String::new()),
    }
}

#[test]
fn profiles() {
    let mut e = env();
    let f = "Alert.Remediation == true && Alert.GetScope() == \"Ip\"";
    let p = match e.compile(f, Roots::ALERT, Some(Type::Bool)) {
        Ok(p) => p,
        Err(err) => panic!("{err}"),
    };
    let a = alert(&e, true, Scope::Ip);
    let b = alert(&e, true, Scope::Range);
    let c = alert(&e, false, Scope::Ip);
    for (al, want) in [(&a, true), (&b, false), (&c, false)] {
        let ctx = EvalCtx::new(&e.data).with_alert(al);
        assert_eq!(p.eval_bool(&ctx), want);
    }
    let d = match e.compile(
        "Sprintf('%dh', (GetDecisionsCount(Alert.GetValue()) + 1) * 4)",
        Roots::ALERT,
        Some(Type::Str),
    ) {
        Ok(p) => p,
        Err(err) => panic!("{err}"),
    };
    let ctx = EvalCtx::new(&e.data).with_alert(&a).with_decisions(&Hist);
    assert_eq!(d.eval_string(&ctx).as_deref(), Some("8h"));
    let ctx = EvalCtx::new(&e.data).with_alert(&a);
    assert_eq!(d.eval_string(&ctx).as_deref(), Some("4h"));
    let cases = [
        ("Alert.GetScenario()", "crowdsecurity/ssh-bf"),
        ("Alert.GetValue()", "1.2.3.4"),
        ("Alert.GetEventsCount()", "6"),
        ("Alert.GetMeta('target_user')", "root"),
        ("Alert.Source.IP", "1.2.3.4"),
        ("len(Alert.Events)", "1"),
        ("Alert.Events[0].Meta.log_type", "ssh_failed-auth"),
    ];
    let progs: Vec<Program> = cases
        .iter()
        .map(|(src, _)| match e.compile(src, Roots::ALERT, None) {
            Ok(p) => p,
            Err(err) => panic!("{src}: {err}"),
        })
        .collect();
    let ctx = EvalCtx::new(&e.data).with_alert(&a);
    for (p, (src, want)) in progs.iter().zip(cases) {
        assert_eq!(p.eval_string(&ctx).as_deref(), Some(want), "{src}");
    }
}

// ---------------------------------------------------------------- language

#[test]
fn precedence_and_operators() {
    for (src, want) in [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("10 - 2 - 3", "5"),
        ("2 ** 3 ** 2", "512"),
        ("-2 ** 2", "-4"),
        ("10 / 4", "2.5"),
        ("7 % 3", "1"),
        ("1 + 2 * 3 == 7", "true"),
        ("true || false && false", "true"),
        ("(true || false) && false", "false"),
        ("not true == false", "true"),
        ("!true || true", "true"),
        ("1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 4", "false"),
        ("'a' + 'b' == 'ab'", "true"),
        ("'abc' < 'abd'", "true"),
        ("true ? 1 : false ? 2 : 3", "1"),
        ("false ? 1 : false ? 2 : 3", "3"),
        ("nil ?? 'x'", "x"),
        ("'y' ?? 'x'", "y"),
        ("[1, 2, 3][-1]", "3"),
        ("[1, 2, 3, 4, 5][-2:]", "[4 5]"),
        ("[1, 2, 3, 4, 5][1:3]", "[2 3]"),
        ("[1, 2, 3][:10]", "[1 2 3]"),
        ("'hello'[1:3]", "el"),
        ("'hello'[-3:]", "llo"),
        ("2 in [1, 2]", "true"),
        ("2.0 in [1, 2]", "true"),
        ("'x' not in ['x']", "false"),
        ("'abc' contains 'b'", "true"),
        ("'abc' not contains 'b'", "false"),
        ("'abc' startsWith 'ab' and 'abc' endsWith 'bc'", "true"),
        ("'abc' matches '^a.c$'", "true"),
        ("'abc' not matches 'z'", "true"),
        ("'a' + \"b\\t\" + 'c\\x41\\u00e9'", "ab\tcAé"),
        ("`raw\\n`", "raw\\n"),
        ("1_000 + 0x10", "1016"),
        ("1.5e3", "1500"),
        ("0.1 + 0.2", "0.30000000000000004"),
        ("1e21 * 1.0", "1e+21"),
        ("let x = 2; let y = x * 3; y + x", "8"),
        ("duration('1h30m') == duration('90m')", "true"),
        ("duration('1h30m')", "1h30m0s"),
        ("duration('1.5s') + duration('500ms')", "2s"),
        ("duration('10m') > duration('599s')", "true"),
        ("any([1, 2, 3], # > 2)", "true"),
        ("all([1, 2, 3], {# > 0})", "true"),
        ("none([1, 2, 3], {# > 2})", "false"),
        ("one([1, 2, 3], {# > 2})", "true"),
        ("count([1, 2, 3], {# >= 2})", "2"),
        ("map([1, 2], {# * 10})", "[10 20]"),
        ("filter(['a', 'bb', 'cc'], {len(#) == 2})", "[bb cc]"),
        ("map([[1, 2], [3]], {len(filter(#, {# > 1}))})", "[1 1]"),
        ("1..3", "[1 2 3]"),
        ("Sprintf('%s-%d-%v', 'a', 3, 1.5)", "a-3-1.5"),
        ("Upper('abc') + Lower('DÉF')", "ABCdéf"),
        ("TrimSpace('  x  ') + Trim('--y--', '-')", "xy"),
        (
            "Replace('aaa', 'a', 'b', 2) + ReplaceAll('aa', 'a', 'c')",
            "bbacc",
        ),
        ("Join(Split('a,b,c', ','), '|')", "a|b|c"),
        ("Atof('1.5') * 2", "3"),
        ("ToString(12) + ToString(true)", "12true"),
        ("int('42') + 1", "43"),
        ("JsonExtract('{\"a\":{\"b\":[1,\"x\"]}}', 'a.b.[1]')", "x"),
        ("JsonExtract('{\"a\":{\"b\":2}}', 'a')", "{\"b\":2}"),
        ("JsonExtract('not json', 'a')", ""),
        (
            "IsIPV4('1.2.3.4') && !IsIPV4('::1') && IsIPV6('::1') && IsIP('::1') && !IsIP('x')",
            "true",
        ),
        ("IpToRange('2001:db8::1234', '/64')", "2001:db8::/64"),
        ("IpInRange('::ffff:10.1.1.1', '10.0.0.0/8')", "true"),
        ("ParseUnix('1700000000')", "2023-11-14T22:13:20Z"),
        ("lastIndexOf('a:b:c', ':')", "3"),
        ("PathUnescape('%2e%2e%2f')", "../"),
        ("abs(-3)", "3"),
        ("first([4, 5]) + last([4, 5])", "9"),
        ("find([1, 5, 7], {# > 4})", "5"),
        ("findIndex([1, 5, 7], {# > 6})", "2"),
        ("/* comment */ 1 // trailing", "1"),
    ] {
        assert_eq!(constant(src), want, "{src}");
    }
}

#[test]
fn runtime_errors_are_false() {
    let mut e = env();
    for src in [
        "[1, 2][5] == 1",
        "int(evt.Meta.log_type) > 3",
        "evt.Meta.log_type matches evt.Meta.service",
        "'é'[1:] == ''",
        "7 % (evt.Meta.log_type == 'abc' ? 0 : 1) == 1",
    ] {
        let p = e.ok(src);
        let ev = e.event(&[("log_type", "abc"), ("service", "(unclosed")]);
        let ctx = EvalCtx::for_event(&ev, &e.data);
        assert!(p.eval(&ctx).is_err(), "{src} should fail at run time");
        assert!(!p.eval_bool(&ctx));
    }
    // A dynamic pattern that is valid works (and is cached).
    for _ in 0..3 {
        assert!(e.check(
            "evt.Meta.log_type matches evt.Meta.service",
            &[("log_type", "abc"), ("service", "^a")]
        ));
    }
    // Missing context: no event.
    let p = e.ok("evt.Meta.log_type == ''");
    let ctx = EvalCtx::new(&e.data);
    assert!(p.eval(&ctx).is_err());
    assert!(!p.eval_bool(&ctx));
}

// ---------------------------------------------------------------- compile errors

fn span_text<'s>(src: &'s str, e: &ExprError) -> &'s str {
    src.get(e.span.clone()).unwrap_or("<bad span>")
}

#[test]
fn type_errors() {
    let mut e = env();
    let src = "evt.Meta.log_type == 'x' && evt.Meta.http_status == 404";
    let err = e.err(src, Roots::EVT, Some(Type::Bool));
    assert_eq!(span_text(src, &err), "evt.Meta.http_status == 404");
    assert!(
        err.message.contains("string") && err.message.contains("int"),
        "{err}"
    );
    assert!(err.hint.as_deref().unwrap_or("").contains("'404'"), "{err}");

    let src = "evt.Meta.http_status in [404, 403]";
    let err = e.err(src, Roots::EVT, Some(Type::Bool));
    assert!(err.hint.as_deref().unwrap_or("").contains("quote"), "{err}");

    let src = "evt.Meta.source_ip";
    let err = e.err(src, Roots::EVT, Some(Type::Bool));
    assert!(err.message.contains("expected bool"), "{err}");
    assert_eq!(err.span, 0..src.len());

    let src = "evt.Meta.source_ip + 1";
    let err = e.err(src, Roots::EVT, None);
    assert_eq!(span_text(src, &err), "+");
    assert!(err.hint.is_some());

    let src = "evt.Meta.log_type && true";
    let err = e.err(src, Roots::EVT, None);
    assert_eq!(span_text(src, &err), "evt.Meta.log_type");

    let src = "Upper(12)";
    let err = e.err(src, Roots::EVT, None);
    assert_eq!(span_text(src, &err), "12");

    let src = "len(1)";
    assert!(e.compile(src, Roots::EVT, None).is_err());
    let src = "any(File('backdoors.txt'), {len(#)})";
    let err = e.err(src, Roots::EVT, None);
    assert!(err.message.contains("must return bool"), "{err}");
    let src = "1 < 'a'";
    assert!(e.compile(src, Roots::EVT, None).is_err());
    let src = "'abc' in 'abcd'";
    let err = e.err(src, Roots::EVT, None);
    assert!(
        err.hint.as_deref().unwrap_or("").contains("contains"),
        "{err}"
    );
    let src = "duration('10 minutes') > duration('1m')";
    let err = e.err(src, Roots::EVT, None);
    assert_eq!(span_text(src, &err), "duration('10 minutes')");
    let src = "evt.Meta.log_type matches '(unclosed'";
    let err = e.err(src, Roots::EVT, None);
    assert_eq!(span_text(src, &err), "'(unclosed'");
}

#[test]
fn name_errors_with_hints() {
    let mut e = env();
    let src = "evt.Meta.source_iq == '1.2.3.4'";
    let err = e.err(src, Roots::EVT, Some(Type::Bool));
    assert_eq!(span_text(src, &err), "source_iq");
    assert_eq!(
        err.hint.as_deref(),
        Some("did you mean `evt.Meta.source_ip`?")
    );

    let src = "evt.Meta.nope == 'x'";
    let err = e.err(src, Roots::EVT, Some(Type::Bool));
    assert_eq!(span_text(src, &err), "nope");
    assert!(err.message.contains("evt.Meta.nope"), "{err}");

    let src = "evt.Parsed['http_argz'] == ''";
    let err = e.err(src, Roots::EVT, Some(Type::Bool));
    assert_eq!(span_text(src, &err), "'http_argz'");
    assert_eq!(
        err.hint.as_deref(),
        Some("did you mean `evt.Parsed.http_args`?")
    );
    assert!(e.check(
        "evt.Parsed['http_args'] == 'a'",
        &[("Parsed.http_args", "a")]
    ));

    let src = "evt.Line.Labels.typ == 'x'";
    let err = e.err(src, Roots::EVT, Some(Type::Bool));
    assert_eq!(
        err.hint.as_deref(),
        Some("did you mean `evt.Line.Labels.type`?")
    );

    let src = "evt.Metta.x == ''";
    let err = e.err(src, Roots::EVT, None);
    assert_eq!(span_text(src, &err), "Metta");
    assert_eq!(err.hint.as_deref(), Some("did you mean `Meta`?"));

    let src = "Uper(evt.Meta.log_type) == 'X'";
    let err = e.err(src, Roots::EVT, None);
    assert_eq!(span_text(src, &err), "Uper");
    assert_eq!(err.hint.as_deref(), Some("did you mean `Upper`?"));

    let src = "IpInRange(evt.Meta.source_ip)";
    let err = e.err(src, Roots::EVT, None);
    assert!(err.message.contains("takes 2"), "{err}");
    assert_eq!(err.span, 0..src.len());

    let src = "any(File('backdoor.txt'), {evt.Parsed.file_name == #})";
    let err = e.err(src, Roots::EVT, None);
    assert_eq!(span_text(src, &err), "'backdoor.txt'");
    assert_eq!(err.hint.as_deref(), Some("did you mean `backdoors.txt`?"));

    let src = "RegexpInFile(evt.Parsed.http_user_agent, 'bad_user_agent.regex.txt')";
    let err = e.err(src, Roots::EVT, None);
    assert_eq!(
        err.hint.as_deref(),
        Some("did you mean `bad_user_agents.regex.txt`?")
    );
    let src = "RegexpInFile(evt.Parsed.http_user_agent, 'backdoors.txt')";
    assert!(e.compile(src, Roots::EVT, None).is_err());

    let src = "Alert.Remediation == true";
    let err = e.err(src, Roots::EVT, Some(Type::Bool));
    assert_eq!(span_text(src, &err), "Alert");
    assert_eq!(err.hint.as_deref(), Some("available here: evt"));
    let src = "evt.Meta.log_type == 'x'";
    let err = e.err(src, Roots::ALERT, Some(Type::Bool));
    assert_eq!(span_text(src, &err), "evt");
    let src = "len(queue.Queue) > 1";
    assert!(e.compile(src, Roots::EVT, Some(Type::Bool)).is_err());
    assert!(
        e.compile(src, Roots::EVT | Roots::QUEUE, Some(Type::Bool))
            .is_ok()
    );

    let src = "let abc = 1; abd + 1";
    let err = e.err(src, Roots::EVT, None);
    assert_eq!(err.hint.as_deref(), Some("did you mean `abc`?"));
    let src = "# == 1";
    assert!(e.compile(src, Roots::EVT, None).is_err());
    let src = "Alert.GetScop()";
    let err = e.err(src, Roots::ALERT, None);
    assert_eq!(err.hint.as_deref(), Some("did you mean `GetScope`?"));
    let src = "evt.SetMeta(evt.Meta.log_type, 'x')";
    assert!(e.compile(src, Roots::EVT, None).is_err());
    let src = "evt.Meta";
    let err = e.err(src, Roots::EVT, None);
    assert!(err.hint.is_some());
}

#[test]
fn parse_errors_with_spans() {
    let mut e = env();
    for (src, span_start, needle) in [
        ("evt.Meta.log_type ==", 20, "unexpected end"),
        ("'abc", 0, "unterminated string"),
        ("evt.Meta.log_type == 'x' )", 25, "unexpected `)`"),
        ("(1 + 2", 6, "expected `)`"),
        ("1 +* 2", 3, "unexpected `*`"),
        ("'bad \\q escape'", 5, "invalid escape"),
        ("1 @ 2", 2, "unexpected character"),
        ("a not b", 6, "after `not`"),
        ("nil ?? 1 + 2", 9, "cannot be mixed"),
        ("[1, 2", 5, "expected `]`"),
        ("let = 3; 1", 4, "variable name"),
        ("99999999999999999999", 0, "out of range"),
    ] {
        let err = e.err(src, Roots::EVT, None);
        assert_eq!(err.span.start, span_start, "{src}: {err}");
        assert!(err.message.contains(needle), "{src}: {err}");
        assert!(err.span.end <= src.len() && err.span.start <= err.span.end);
        assert!(!err.to_string().is_empty());
    }
}

// ---------------------------------------------------------------- fast paths

/// The specialised matchers give the same answers as the generic closure path.
#[test]
fn specialised_matchers_agree_with_generic_path() {
    let mut e = env();
    let mut data = DataLists::new();
    list(
        &mut data,
        "p.txt",
        DataKind::Strings,
        "abc\nABC\nSelect\nunion\né\nÉX\nfoo/bar\n.php\nİ\nſs\nx\n",
    );
    e.data = data;
    let hays = [
        "",
        "abc",
        "xABCx",
        "SELECT * from",
        "Union all",
        "caféx",
        "CAFÉX",
        "foo/bar.php",
        ".PHP",
        "ſs",
        "SS",
        "İ",
        "i̇",
        "zzz",
        "x",
        "X",
    ];
    for op in ["contains", "==", "startsWith", "endsWith"] {
        for lhs in [
            "evt.Parsed.request",
            "Upper(evt.Parsed.request)",
            "Lower(evt.Parsed.request)",
        ] {
            for rhs in ["#", "Upper(#)", "Lower(#)"] {
                let fast = format!("any(File('p.txt'), {{{lhs} {op} {rhs}}})");
                let slow = format!("any(File('p.txt'), {{{lhs} {op} {rhs} && true}})");
                let none = format!("none(File('p.txt'), {{{lhs} {op} {rhs}}})");
                for h in hays {
                    let kv = [("Parsed.request", h)];
                    let a = e.check(&fast, &kv);
                    let b = e.check(&slow, &kv);
                    assert_eq!(a, b, "{fast} on {h:?}");
                    assert_eq!(e.check(&none, &kv), !b, "{none} on {h:?}");
                }
            }
        }
    }
    for lhs in [
        "evt.Parsed.request",
        "Upper(evt.Parsed.request)",
        "Lower(evt.Parsed.request)",
    ] {
        let fast = format!("{lhs} in File('p.txt')");
        let slow = format!("any(File('p.txt'), {{{lhs} == # && true}})");
        let lit = format!(
            "{lhs} in ['abc', 'ABC', 'Select', 'union', 'é', 'ÉX', 'foo/bar', '.php', 'İ', 'ſs', 'x']"
        );
        for h in hays {
            let kv = [("Parsed.request", h)];
            let b = e.check(&slow, &kv);
            assert_eq!(e.check(&fast, &kv), b, "{fast} on {h:?}");
            assert_eq!(e.check(&lit, &kv), b, "{lit} on {h:?}");
        }
    }
}

#[test]
fn ip_ranges_from_list() {
    let mut e = env();
    let fast = "any(File('cidrs.txt'), {IpInRange(evt.Meta.source_ip, #)})";
    let slow = "any(File('cidrs.txt'), {IpInRange(evt.Meta.source_ip, #) && true})";
    for (ip, want) in [
        ("10.2.3.4", true),
        ("192.168.1.1", true),
        ("2001:db8::5", true),
        ("1.2.3.4", false), // a bare address is not a CIDR for IpInRange
        ("1.2.3.5", false),
        ("8.8.8.8", false),
        ("nonsense", false),
        ("", false),
    ] {
        assert_eq!(e.check(fast, &[("source_ip", ip)]), want, "{ip}");
        assert_eq!(e.check(slow, &[("source_ip", ip)]), want, "{ip}");
    }
}

// ---------------------------------------------------------------- robustness

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn never_panics_on_junk() {
    let mut e = env();
    const VOCAB: &[&str] = &[
        "evt",
        ".",
        "Meta",
        "Parsed",
        "log_type",
        "source_ip",
        "http_args",
        "Line",
        "Labels",
        "type",
        "Raw",
        "Time",
        "queue",
        "Queue",
        "Alert",
        "GetScope",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        ";",
        "?",
        "??",
        "!",
        "not",
        "in",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "and",
        "or",
        "&&",
        "||",
        "==",
        "!=",
        "<",
        ">=",
        "+",
        "-",
        "*",
        "/",
        "%",
        "**",
        "#",
        "let",
        "x",
        "=",
        "'a'",
        "\"b\"",
        "'",
        "\"",
        "\\",
        "1",
        "-1",
        "0",
        "2.5",
        "1e400",
        "9223372036854775807",
        "nil",
        "true",
        "any",
        "all",
        "filter",
        "map",
        "count",
        "File",
        "'backdoors.txt'",
        "RegexpInFile",
        "'bad_user_agents.regex.txt'",
        "Upper",
        "Lower",
        "len",
        "duration",
        "'10m'",
        "MedianInterval",
        "Split",
        "JsonExtract",
        "Sprintf",
        "'%d%s%'",
        "SetMeta",
        "'k'",
        "..",
        "?.",
        "é",
        "\u{0}",
        "`",
        "/*",
        "*/",
        "..%",
        "IpInRange",
        "'10.0.0.0/8'",
        "int",
        "'(?i)x'",
        "'('",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut srcs: Vec<String> = Vec::new();
    for (_, h) in HUB {
        for cut in 0..h.len() {
            if h.is_char_boundary(cut) {
                srcs.push(h[..cut].to_owned());
            }
        }
    }
    for _ in 0..4000 {
        let n = 1 + rng.below(14);
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(VOCAB[rng.below(VOCAB.len())]);
            if rng.below(3) == 0 {
                s.push(' ');
            }
        }
        srcs.push(s);
    }
    for _ in 0..1000 {
        let bytes: Vec<u8> = (0..rng.below(24))
            .map(|_| (rng.next() & 0x7f) as u8)
            .collect();
        srcs.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    srcs.push("(".repeat(10_000));
    srcs.push("!".repeat(10_000));
    srcs.push("-".repeat(10_000) + "1");
    srcs.push("[".repeat(500) + &"]".repeat(500));
    let q: Vec<Event> = (0..5)
        .map(|i| event_at(&e, "ssh_failed-auth", i * 100))
        .collect();
    let a = alert(&e, true, Scope::Ip);
    let ev = e.event(&[
        ("log_type", "ssh_failed-auth"),
        ("source_ip", "10.0.0.1"),
        ("Parsed.http_args", "x"),
    ]);
    let mut compiled = 0;
    for s in &srcs {
        for expect in [None, Some(Type::Bool)] {
            if let Ok(p) = e.compile(s, Roots::EVT | Roots::QUEUE | Roots::ALERT, expect) {
                compiled += 1;
                let ctx = EvalCtx::for_event(&ev, &e.data)
                    .with_queue(&q)
                    .with_alert(&a)
                    .with_decisions(&Hist);
                let _ = p.eval(&ctx);
                let _ = p.eval_bool(&ctx);
                let _ = p.eval_string(&ctx);
                let empty = EvalCtx::new(&e.data);
                let _ = p.eval(&empty);
            }
        }
    }
    assert!(compiled > 100, "only {compiled} compiled");
}

#[test]
fn program_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Program>();
    check::<ExprError>();
    check::<EvalError>();
}

// ---------------------------------------------------------------- allocation

#[test]
fn typical_filters_do_not_allocate() {
    let mut e = env();
    let filters = [
        "evt.Meta.log_type == 'ssh_failed-auth'",
        "evt.Meta.service == 'http' && evt.Meta.log_type in ['http_access-log', 'http_error-log'] && evt.Meta.http_status in ['404', '403', '400'] && evt.Parsed.static_ressource == 'false'",
        "evt.Meta.log_type in ['http_access-log', 'http_error-log'] && any(File('sqli_probe_patterns.txt'), {Upper(evt.Parsed.http_args) contains Upper(#)})",
        "evt.Meta.log_type in [\"http_access-log\", \"http_error-log\"] and any(File(\"backdoors.txt\"), { evt.Parsed.file_name == #})",
        "evt.Meta.log_type in [\"http_access-log\", \"http_error-log\"] and any(File(\"sensitive_data.txt\"), { evt.Parsed.request endsWith #})",
        "evt.Meta.log_type == 'http_access-log' && evt.Meta.http_status in ['400','405'] && (evt.Parsed.verb == 'CONNECT' || evt.Parsed.request matches '^http[s]?://')",
        "evt.Meta.log_type == 'http_access-log' && Upper(evt.Parsed.file_ext) in ['.JPG', '.CSS', '.JS']",
        "any(File(\"admin_interfaces.txt\"), { Lower(evt.Meta.http_path) contains #})",
        "any(File(\"trendy_cves_uris.json\"), { evt.Meta.http_path contains JsonExtract(#, \"uri\") ? evt.SetMeta(\"cve\", JsonExtract(#, \"cve\")) : false })",
    ];
    let progs: Vec<Program> = filters.iter().map(|f| e.ok(f)).collect();
    let ev = e.event(&[
        ("log_type", "http_access-log"),
        ("service", "http"),
        ("http_status", "404"),
        ("http_path", "/wp-login.php"),
        ("Parsed.http_args", "id=1&q=hello%20world"),
        ("Parsed.file_name", "wp-login.php"),
        ("Parsed.file_ext", ".php"),
        ("Parsed.request", "/wp-login.php?id=1"),
        ("Parsed.static_ressource", "false"),
        ("Parsed.verb", "GET"),
    ]);
    let ctx = EvalCtx::for_event(&ev, &e.data);
    let mut hits = 0;
    for p in &progs {
        hits += usize::from(p.eval_bool(&ctx));
    }
    let before = crate::allocator::allocations_on_this_thread();
    for _ in 0..10_000 {
        for p in &progs {
            hits += usize::from(p.eval_bool(&ctx));
        }
    }
    let after = crate::allocator::allocations_on_this_thread();
    assert_eq!(after - before, 0, "filters allocated");
    assert!(hits > 0);
}

/// Nesting just under the limit still compiles and evaluates on a thread with the
/// default 2 MiB stack (unoptimised build); beyond it, a clean error.
#[test]
fn deep_nesting_is_bounded() {
    let t = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(deep_nesting_body);
    match t.map(std::thread::JoinHandle::join) {
        Ok(Ok(())) => {}
        _ => panic!("deep nesting test failed"),
    }
}

fn deep_nesting_body() {
    let mut e = env();
    let n = 60;
    for src in [
        format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        format!("{}true", "!".repeat(n)),
        format!("1{}", " + 1".repeat(n)),
        format!("{}1{}", "[".repeat(n), "]".repeat(n)),
        format!("[1]{}", "[0:]".repeat(n)),
    ] {
        let p = e.ok(&src);
        let ev = e.event(&[]);
        let ctx = EvalCtx::for_event(&ev, &e.data);
        assert!(p.eval(&ctx).is_ok(), "{src}");
    }
    for src in [
        format!("{}1{}", "(".repeat(5000), ")".repeat(5000)),
        format!("1{}", " + 1".repeat(5000)),
        format!("evt{}", ".Meta".repeat(5000)),
    ] {
        let err = e.err(&src, Roots::EVT, None);
        assert!(err.message.contains("nested too deeply"), "{err}");
    }
}

/// What a filter implies about one field, for the detector's scenario index: `==` and
/// `in` literals through `&&` (either side) and `||` (both sides), nothing otherwise.
#[test]
fn implied_values_of_filters() {
    let mut e = env();
    let log_type = e.fields.get(Namespace::Meta, "log_type").expect("field");
    let mut implied = |src: &str| {
        e.ok(src)
            .implied_values(log_type)
            .map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    assert_eq!(
        implied("evt.Meta.log_type == 'ssh_failed-auth'"),
        Some(vec!["ssh_failed-auth".to_string()])
    );
    assert_eq!(
        implied("'x' == evt.Meta.log_type && evt.Meta.service == 'ssh'"),
        Some(vec!["x".to_string()])
    );
    assert_eq!(
        implied("evt.Meta.service == 'http' and evt.Meta.log_type in ['a', 'b']"),
        Some(vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(
        implied("evt.Meta.log_type in ['a', 'b'] && evt.Meta.log_type == 'b'"),
        Some(vec!["b".to_string()])
    );
    assert_eq!(
        implied("evt.Meta.log_type == 'a' || evt.Meta.log_type == 'b'"),
        Some(vec!["a".to_string(), "b".to_string()])
    );
    // Either side of `||` may hold without the field: nothing implied.
    assert_eq!(
        implied("evt.Meta.log_type == 'a' || evt.Meta.sub_type == 'b'"),
        None
    );
    assert_eq!(implied("evt.Meta.log_type != 'a'"), None);
    assert_eq!(implied("!(evt.Meta.log_type == 'a')"), None);
    assert_eq!(implied("evt.Meta.log_type contains 'a'"), None);
    assert_eq!(implied("Lower(evt.Meta.log_type) == 'a'"), None);
    assert_eq!(implied("evt.Meta.service == 'ssh'"), None);
}

#[test]
fn regex_list_verdicts_are_the_sets_verdicts_whatever_the_cache_holds() {
    use super::matcher::RegexList;
    let list = |name: &str, text: &str| {
        let list = DataList::from_text(name, DataKind::Regexes, text).expect("a list");
        RegexList::new(std::sync::Arc::new(list))
    };
    let bots = list("bots.regex.txt", "(?i)bot\\b\n^curl/\n");
    let digits = list("digits.regex.txt", "^[0-9]+$\n");
    // More values than the cache has slots, each asked twice of both lists, in an order
    // that makes them evict each other.
    let values: Vec<String> = (0..2000)
        .map(|i| match i % 4 {
            0 => format!("{i}"),
            1 => format!("curl/{i}"),
            2 => format!("Googlebot {i}"),
            _ => format!("Mozilla/{i} AppleBot"),
        })
        .collect();
    for _ in 0..2 {
        for v in &values {
            let is_bot = v.starts_with("curl/")
                || v.to_lowercase().contains("bot ")
                || v.to_lowercase().ends_with("bot");
            assert_eq!(bots.is_match(v), is_bot, "{v}");
            assert_eq!(
                digits.is_match(v),
                v.bytes().all(|b| b.is_ascii_digit()),
                "{v}"
            );
        }
    }
    // A value too long to cache is still answered.
    let long = format!("{}bot", "x".repeat(1000));
    assert!(!bots.is_match(&long.replace("bot", "bat")));
    assert!(bots.is_match(&format!("{} bot", "x".repeat(1000))));
}

#[test]
fn median_interval_is_the_same_on_and_off_the_stack() {
    use super::funcs::median_interval_of;
    // Intervals 1, 2, 3, ... seconds, in a shuffled-looking order, for lists of 0 to 70
    // times (the stack holds 32).
    for n in 0..70i64 {
        let mut t = 1_700_000_000i64;
        let times: Vec<Value> = (0..n)
            .map(|i| {
                t += (i * 7919) % 13 + 1;
                Value::Time(Timestamp::from_second(t).expect("a time"))
            })
            .collect();
        let mut intervals: Vec<i64> = (1..n).map(|i| (i * 7919) % 13 + 1).collect();
        intervals.sort_unstable();
        let m = intervals.len();
        let want = match m {
            0 => 0,
            _ if m % 2 == 1 => intervals[m / 2] * 1_000_000_000,
            _ => (intervals[m / 2 - 1] + intervals[m / 2]) * 1_000_000_000 / 2,
        };
        let got = median_interval_of(&List::Values(std::rc::Rc::new(times)));
        assert_eq!(
            got.map(|d| d.as_nanos()),
            Some(i128::from(want)),
            "{n} times"
        );
    }
    let mixed = List::Values(std::rc::Rc::new(vec![Value::Int(1)]));
    assert!(median_interval_of(&mixed).is_none());
}

#[test]
fn integers_are_written_as_they_format() {
    for i in [0, 7, -7, 10, 1_000_000, i64::MAX, i64::MIN, -1] {
        let mut out = String::from("x=");
        super::eval::push_int(&mut out, i);
        assert_eq!(out, format!("x={i}"));
    }
    // A ternary written in place picks its branch, and a nil branch writes nothing.
    let mut e = env();
    for (src, want) in [
        (
            "evt.Meta.http_status in ['404', '403'] ? 'false' : 'true'",
            Some("false"),
        ),
        ("evt.Meta.http_status == '200' ? 'yes' : nil", None),
        (
            "evt.Meta.http_status == '404' ? len(evt.Meta.http_path) : -1",
            Some("5"),
        ),
    ] {
        let p = e.ok(src);
        let ev = e.event(&[("http_status", "404"), ("http_path", "/a/bc")]);
        let ctx = EvalCtx::for_event(&ev, &e.data);
        let mut out = String::from("kept");
        let ok = p.eval_string_into(&ctx, &mut out);
        assert_eq!(ok, want.is_some(), "{src}");
        assert_eq!(out, format!("kept{}", want.unwrap_or("")), "{src}");
    }
}

#[test]
fn what_a_program_reads_beyond_its_fields() {
    let mut e = env();
    // Field by field: the root event's fields, time and line, queued events' fields.
    for src in [
        "evt.Meta.log_type == 'x'",
        "evt.Line.Raw contains 'x' && evt.Time > evt.Time",
        "len(filter(queue.Queue, {#.Meta.log_type == 'x'})) > 2",
    ] {
        assert!(!e.ok(src).reads_whole_event(), "{src}");
    }
    assert!(e.ok("ToString(evt) != ''").reads_whole_event());
    // An alert's summary, or its events.
    for src in [
        "Alert.Remediation == true && Alert.GetScope() == 'Ip'",
        "Alert.GetEventsCount() > 3 && Alert.GetValue() != ''",
    ] {
        assert!(!e.ok(src).reads_alert_events(), "{src}");
    }
    for src in [
        "Alert.GetMeta('log_type') == 'x'",
        "len(Alert.Events) > 1",
        "ToString(Alert) != ''",
    ] {
        assert!(e.ok(src).reads_alert_events(), "{src}");
    }
}

#[test]
fn value_memos_give_what_their_expressions_give() {
    let mut e = env();
    // (expression, whether its values are computed rather than its literals)
    for (src, computed) in [
        // The hub's static_ressource: literal values.
        (
            "Upper(evt.Parsed.file_ext) in ['.JPG', '.CSS', '.PNG'] ? 'true' : 'false'",
            false,
        ),
        // Two fields, computed values, and an empty one.
        (
            "evt.Parsed.file_frag == 'skip' ? '' : evt.Parsed.file_frag + '|' + evt.Parsed.file_ext",
            true,
        ),
    ] {
        let p = e.ok(src);
        let mut memo = ValueMemo::of(&p).expect("a few fields decide it");
        let literals = p.string_literals();
        let (mut literal, mut text, mut unkept) = (0, 0, 0);
        // More values than the memo has slots, three times over, so that slots are
        // evicted and filled again; some too long to keep.
        for round in 0..3 {
            for n in 0..150usize {
                let ext = match n % 5 {
                    0 => ".jpg".to_owned(),
                    1 => ".PNG".to_owned(),
                    2 => String::new(),
                    _ => format!(".e{}", (n * 7 + round) % 90),
                };
                let frag = match n % 7 {
                    0 => "skip".to_owned(),
                    1 => "x".repeat(70),
                    _ => format!("f{}", n % 11),
                };
                let ev = e.event(&[("Parsed.file_ext", &ext), ("Parsed.file_frag", &frag)]);
                let mut want = String::new();
                p.eval_string_into(&EvalCtx::for_event(&ev, &e.data), &mut want);
                match memo.value(&p, &ev, &e.data) {
                    Some(MemoText::Literal(l)) => {
                        assert_eq!(l, want, "{src} on {ext:?} {frag:?}");
                        assert!(literals.contains(&l));
                        literal += 1;
                    }
                    Some(MemoText::Text(t)) => {
                        assert_eq!(t, want, "{src} on {ext:?} {frag:?}");
                        assert!(!literals.contains(&t), "{t:?} is a literal");
                        text += 1;
                    }
                    None => unkept += 1,
                }
            }
        }
        if computed {
            // Its long values are not kept.
            assert!(text > 0 && unkept > 0, "{text} {unkept}");
        } else {
            assert!(literal > 0 && text == 0 && unkept == 0, "{literal} {text}");
        }
    }
    // Reading the whole event or the clock: no memo.
    assert!(ValueMemo::of(&e.ok("evt.Line.Raw + 'x'")).is_none());
}
