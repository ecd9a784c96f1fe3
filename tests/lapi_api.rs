//! The Local API on the wire: CrowdSec's exact answers for bouncers and agents, per-bouncer
//! stream cursors, de-duplication, filters, JWT, alerts, robustness, and the CLI over the
//! Unix socket.

mod lapi_common;

use lapi_common::{Server, agent, read};
use serde_json::{Value, json};

fn get(s: &Server, path: &str, key: &str) -> (u16, String) {
    read(
        agent()
            .get(format!("{}{path}", s.url))
            .header("X-Api-Key", key)
            .call(),
    )
}

fn stream(s: &Server, key: &str, startup: bool) -> Value {
    let q = if startup {
        "?startup=true&community_pull=false&additional_pull=false"
    } else {
        ""
    };
    let (st, body) = get(s, &format!("/v1/decisions/stream{q}"), key);
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).expect("stream JSON")
}

fn values(v: &Value, k: &str) -> Vec<String> {
    v[k].as_array()
        .expect("list")
        .iter()
        .map(|d| d["value"].as_str().expect("value").to_owned())
        .collect()
}

#[test]
fn health_unknown_routes_and_wrong_methods() {
    let s = Server::start();
    assert_eq!(
        read(agent().get(format!("{}/health", s.url)).call()),
        (200, r#"{"status":"up"}"#.into())
    );
    assert_eq!(
        read(agent().get(format!("{}/v1/nope", s.url)).call()),
        (404, String::new())
    );
    assert_eq!(
        read(agent().put(format!("{}/v1/decisions", s.url)).send_empty()),
        (405, String::new())
    );
}

#[test]
fn bad_or_missing_keys_are_403_access_forbidden() {
    let s = Server::start();
    let _ = s.bouncer("fw");
    let forbidden = (403, r#"{"message":"access forbidden"}"#.to_owned());
    assert_eq!(get(&s, "/v1/decisions", "wrong-key-wrong-key"), forbidden);
    assert_eq!(
        read(agent().get(format!("{}/v1/decisions/stream", s.url)).call()),
        forbidden
    );
    let (st, _) = read(
        agent()
            .head(format!("{}/v1/decisions", s.url))
            .header("X-Api-Key", "bad")
            .call(),
    );
    assert_eq!(st, 403);
    assert!(
        s.state
            .stats
            .failed_auth
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
}

#[test]
fn decision_queries_null_filters_and_go_durations() {
    let s = Server::start();
    let key = s.bouncer("nginx");
    assert_eq!(
        get(&s, "/v1/decisions?ip=192.0.2.1", &key),
        (200, "null".into())
    );
    assert_eq!(get(&s, "/v1/decisions", &key), (200, "null".into()));
    let id = s.decide("Ip", "192.0.2.1", 4 * 3600, "cscli");
    s.decide("Range", "198.51.100.0/24", 3600, "crowdsec");
    s.decide("Country", "FR", 3600, "crowdsec");
    let (st, body) = get(&s, "/v1/decisions?ip=192.0.2.1&unknown=1", &key);
    assert_eq!(st, 200);
    // Go field order, duration computed now and rounded to the second.
    let want_a = format!(
        r#"[{{"duration":"4h0m0s","id":{id},"origin":"cscli","scenario":"test/scenario","scope":"Ip","type":"ban","value":"192.0.2.1"}}]"#
    );
    let want_b = want_a.replace("4h0m0s", "3h59m59s");
    assert!(body == want_a || body == want_b, "{body}");
    // An address inside a banned range matches it (contains=true by default).
    let (_, body) = get(&s, "/v1/decisions?ip=198.51.100.77", &key);
    assert!(body.contains("198.51.100.0/24"), "{body}");
    assert_eq!(
        get(&s, "/v1/decisions?ip=198.51.100.77&contains=false", &key).1,
        "null"
    );
    let (_, body) = get(
        &s,
        "/v1/decisions?range=198.51.100.0/16&contains=false",
        &key,
    );
    assert!(body.contains("198.51.100.0/24"), "{body}");
    assert_eq!(get(&s, "/v1/decisions?scope=country&value=FR", &key).0, 200);
    assert!(
        get(&s, "/v1/decisions?scope=country", &key)
            .1
            .contains("\"FR\"")
    );
    assert_eq!(
        get(&s, "/v1/decisions?ip=192.0.2.1&origins=crowdsec", &key).1,
        "null"
    );
    assert_eq!(
        get(&s, "/v1/decisions?ip=192.0.2.1&type=captcha", &key).1,
        "null"
    );
    // A bad address is CrowdSec's 500 with a message.
    let (st, body) = get(&s, "/v1/decisions?ip=not-an-ip", &key);
    assert_eq!(st, 500);
    assert!(body.contains("not-an-ip"), "{body}");
    // HEAD: 200, empty body.
    let (st, body) = read(
        agent()
            .head(format!("{}/v1/decisions?ip=192.0.2.1", s.url))
            .header("X-Api-Key", &key)
            .call(),
    );
    assert_eq!((st, body.as_str()), (200, ""));
}

#[test]
fn stream_startup_delta_per_bouncer_and_deletions() {
    let s = Server::start();
    let a = s.bouncer("a");
    let b = s.bouncer("b");
    // Exact bytes of an empty stream.
    assert_eq!(
        get(&s, "/v1/decisions/stream?startup=true", &a),
        (200, r#"{"new": [], "deleted": []}"#.into())
    );
    s.decide("Ip", "192.0.2.10", 3600, "crowdsec");
    s.decide("Ip", "192.0.2.11", 3600, "cscli");
    let d = stream(&s, &a, false);
    assert_eq!(values(&d, "new"), ["192.0.2.10", "192.0.2.11"]);
    assert!(
        d["new"][0]["duration"]
            .as_str()
            .expect("duration")
            .starts_with("59m5")
            || d["new"][0]["duration"] == "1h0m0s"
    );
    // Nothing new for a: an empty delta.
    let d = stream(&s, &a, false);
    assert_eq!(
        (values(&d, "new").len(), values(&d, "deleted").len()),
        (0, 0)
    );
    // A new decision reaches a in its delta; b (never pulled) gets everything.
    let id = s.decide("Ip", "192.0.2.12", 3600, "crowdsec");
    assert_eq!(values(&stream(&s, &a, false), "new"), ["192.0.2.12"]);
    assert_eq!(values(&stream(&s, &b, false), "new").len(), 3);
    // A deletion is an expiry: reported in the next delta's deleted list.
    let (st, body) = read(
        agent()
            .delete(format!("{}/v1/decisions/{id}", s.url))
            .call(),
    );
    assert_eq!(st, 401, "{body}");
    s.state.store.expire_where(|d, _| d.id == id);
    let d = stream(&s, &a, false);
    assert_eq!(values(&d, "deleted"), ["192.0.2.12"]);
    let dur = d["deleted"][0]["duration"].as_str().expect("duration");
    assert!(dur == "0s" || dur.starts_with('-'), "{dur}");
    assert_eq!(values(&stream(&s, &b, false), "deleted"), ["192.0.2.12"]);
    // startup=true: all active in new, retained expired in deleted.
    let d = stream(&s, &a, true);
    assert_eq!(values(&d, "new").len(), 2);
    assert_eq!(values(&d, "deleted"), ["192.0.2.12"]);
    // The cursor survives in the database.
    s.state.auth.flush();
    let cursor = s.state.auth.pull_cursor("a").expect("cursor");
    assert_eq!(cursor.1, id);
    // HEAD on the stream: 200, empty, no state change.
    let (st, body) = read(
        agent()
            .head(format!("{}/v1/decisions/stream", s.url))
            .header("X-Api-Key", &a)
            .call(),
    );
    assert_eq!((st, body.as_str()), (200, ""));
}

#[test]
fn stream_dedups_longest_and_filters() {
    let s = Server::start();
    let k = s.bouncer("fw");
    s.decide("Ip", "203.0.113.5", 600, "crowdsec");
    let long = s.decide("Ip", "203.0.113.5", 7200, "CAPI");
    s.decide("Ip", "203.0.113.6", 600, "cscli");
    s.decide("Country", "FR", 600, "cscli");
    let d = stream(&s, &k, true);
    let new = d["new"].as_array().expect("new");
    assert_eq!(new.len(), 2, "{d}");
    assert_eq!(new[0]["value"], "203.0.113.5");
    assert_eq!(new[0]["id"], long);
    // Explicit scopes and origin filters (applied after de-duplication, as in CrowdSec).
    let (_, body) = get(&s, "/v1/decisions/stream?startup=true&scopes=country", &k);
    assert!(
        body.contains("\"FR\"") && !body.contains("203.0.113"),
        "{body}"
    );
    let (_, body) = get(&s, "/v1/decisions/stream?startup=true&origins=cscli", &k);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(values(&v, "new"), ["203.0.113.6"]);
    let (_, body) = get(
        &s,
        "/v1/decisions/stream?startup=true&scenarios_containing=TEST&scenarios_not_containing=nothing",
        &k,
    );
    assert_eq!(
        values(&serde_json::from_str(&body).expect("json"), "new").len(),
        2
    );
    // A deleted short decision is not reported while a longer one stands.
    s.state
        .store
        .expire_where(|d, _| d.id != long && d.target.value() == "203.0.113.5");
    let d = stream(&s, &k, false);
    assert!(values(&d, "deleted").is_empty(), "{d}");
}

fn login(s: &Server, id: &str, pw: &str) -> (u16, Value) {
    let (st, body) = read(
        agent()
            .post(format!("{}/v1/watchers/login", s.url))
            .header("User-Agent", "crowdsec/v1.4.6")
            .send_json(
                json!({"machine_id": id, "password": pw, "scenarios": ["crowdsecurity/ssh-bf"]}),
            ),
    );
    (st, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn alert(value: &str, decisions: Value) -> Value {
    let now = jiff::Timestamp::now().to_string();
    json!({
        "capacity": 5, "decisions": decisions, "events": [{"meta": [{"key": "source_ip", "value": value}], "timestamp": "2020-10-02 17:09:08 +0000 UTC"}],
        "events_count": 6, "labels": null, "leakspeed": "10s", "message": format!("Ip {value} performed 'crowdsecurity/ssh-bf'"),
        "remediation": true, "scenario": "crowdsecurity/ssh-bf", "scenario_hash": "x", "scenario_version": "0.1",
        "simulated": false, "source": {"scope": "ip", "value": value, "ip": value, "cn": "FR", "as_name": "OVH SAS", "as_number": "16276"},
        "start_at": now, "stop_at": now
    })
}

#[test]
fn machines_register_login_push_alerts_and_delete_decisions() {
    let s = Server::start();
    // Registration from a peer outside auto-register-cidrs: created, not validated.
    let (st, _) = read(
        agent()
            .post(format!("{}/v1/watchers", s.url))
            .send_json(json!({"machine_id": "agent1", "password": "pw-agent-1"})),
    );
    assert_eq!(st, 201);
    let (st, _) = read(
        agent()
            .post(format!("{}/v1/watchers", s.url))
            .send_json(json!({"machine_id": "agent1", "password": "x"})),
    );
    assert_eq!(st, 403);
    let (st, _) = read(
        agent()
            .post(format!("{}/v1/watchers", s.url))
            .send_json(json!({"machine_id": 5})),
    );
    assert_eq!(st, 422);
    let (st, v) = login(&s, "agent1", "pw-agent-1");
    assert_eq!(
        (st, v["code"].as_i64(), v["message"].as_str()),
        (401, Some(401), Some("machine agent1 not validated"))
    );
    s.state.auth.validate_machine("agent1").expect("validate");
    assert_eq!(login(&s, "agent1", "bad").0, 401);
    let (st, v) = login(&s, "agent1", "pw-agent-1");
    assert_eq!((st, v["code"].as_i64()), (200, Some(200)));
    let token = v["token"].as_str().expect("token").to_owned();
    assert!(v["expire"].as_str().expect("expire").ends_with('Z'));
    // The token is HS256 with claim id.
    use base64::Engine;
    let claims = token.split('.').nth(1).expect("claims");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(claims["id"], "agent1");
    // A User-Agent that is not name/version cannot log in.
    let (st, _) = read(
        agent()
            .post(format!("{}/v1/watchers/login", s.url))
            .header("User-Agent", "curl")
            .send_json(json!({"machine_id": "agent1", "password": "pw-agent-1"})),
    );
    assert_eq!(st, 401);
    let bearer = format!("Bearer {token}");
    // An alert carrying its decision: stored as is, until = stop_at + duration.
    let with = alert(
        "192.0.2.50",
        json!([{"duration": "1h", "origin": "cscli", "scenario": "manual", "scope": "Ip", "type": "ban", "value": "192.0.2.50"}]),
    );
    let (st, body) = read(
        agent()
            .post(format!("{}/v1/alerts", s.url))
            .header("Authorization", &bearer)
            .send_json(json!([with])),
    );
    assert_eq!((st, body.as_str()), (201, r#"["1"]"#));
    // An alert without decisions goes through the profiles (default: 4h ban).
    let without = alert("192.0.2.51", Value::Null);
    let (st, body) = read(
        agent()
            .post(format!("{}/v1/alerts", s.url))
            .header("Authorization", &bearer)
            .send_json(json!([without])),
    );
    assert_eq!((st, body.as_str()), (201, r#"["2"]"#));
    let key = s.bouncer("fw");
    let (_, body) = get(&s, "/v1/decisions?ip=192.0.2.51", &key);
    assert!(
        body.contains("\"origin\":\"crowdsec\"") && body.contains("crowdsecurity/ssh-bf"),
        "{body}"
    );
    assert!(body.contains("3h59m5") || body.contains("4h0m0s"), "{body}");
    // Whitelisted (private) sources without decisions are dropped.
    let (st, body) = read(
        agent()
            .post(format!("{}/v1/alerts", s.url))
            .header("Authorization", &bearer)
            .send_json(json!([alert("10.1.2.3", Value::Null)])),
    );
    assert_eq!((st, body.as_str()), (201, "[]"));
    // Alerts round trip.
    let (st, body) = read(
        agent()
            .get(format!(
                "{}/v1/alerts?has_active_decision=true&include_capi=false&limit=100",
                s.url
            ))
            .header("Authorization", &bearer)
            .call(),
    );
    assert_eq!(st, 200, "{body}");
    let alerts: Value = serde_json::from_str(&body).expect("alerts");
    assert_eq!(alerts.as_array().expect("array").len(), 2);
    assert_eq!(alerts[0]["machine_id"], "agent1");
    assert_eq!(alerts[1]["source"]["cn"], "FR");
    assert_eq!(alerts[1]["decisions"][0]["origin"], "cscli");
    let (st, body) = read(
        agent()
            .get(format!("{}/v1/alerts/1", s.url))
            .header("Authorization", &bearer)
            .call(),
    );
    assert_eq!(st, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("alert")["events_count"],
        6
    );
    assert_eq!(
        read(
            agent()
                .get(format!("{}/v1/alerts/99", s.url))
                .header("Authorization", &bearer)
                .call()
        )
        .0,
        404
    );
    assert_eq!(
        read(
            agent()
                .get(format!("{}/v1/alerts?bogus=1", s.url))
                .header("Authorization", &bearer)
                .call()
        )
        .0,
        500
    );
    // Delete by ip: nbDeleted as a string, then seen as deleted by the bouncer.
    assert_eq!(
        stream(&s, &key, true)["new"].as_array().expect("new").len(),
        2
    );
    let (st, body) = read(
        agent()
            .delete(format!("{}/v1/decisions?ip=192.0.2.50", s.url))
            .header("Authorization", &bearer)
            .call(),
    );
    assert_eq!((st, body.as_str()), (200, r#"{"nbDeleted":"1"}"#));
    assert_eq!(values(&stream(&s, &key, false), "deleted"), ["192.0.2.50"]);
    let (st, _) = read(
        agent()
            .delete(format!("{}/v1/decisions?bogus=1", s.url))
            .header("Authorization", &bearer)
            .call(),
    );
    assert_eq!(st, 500);
    assert_eq!(
        read(
            agent()
                .delete(format!("{}/v1/decisions/999", s.url))
                .header("Authorization", &bearer)
                .call()
        )
        .0,
        404
    );
    // Heartbeat and usage metrics (JWT or key).
    assert_eq!(
        read(
            agent()
                .get(format!("{}/v1/heartbeat", s.url))
                .header("Authorization", &bearer)
                .call()
        ),
        (200, String::new())
    );
    let m = json!({"remediation_components": [{"type": "fw", "metrics": []}]});
    assert_eq!(
        read(
            agent()
                .post(format!("{}/v1/usage-metrics", s.url))
                .header("X-Api-Key", &key)
                .send_json(&m)
        )
        .0,
        201
    );
    assert_eq!(
        read(
            agent()
                .post(format!("{}/v1/usage-metrics", s.url))
                .header("Authorization", &bearer)
                .send_json(&m)
        )
        .0,
        201
    );
    assert_eq!(
        read(
            agent()
                .post(format!("{}/v1/usage-metrics", s.url))
                .send_json(&m)
        )
        .0,
        403
    );
}

#[test]
fn bad_input_is_4xx_with_a_message_and_changes_nothing() {
    let s = Server::start();
    s.machine("m", "pw-m-123");
    let (_, v) = login(&s, "m", "pw-m-123");
    let bearer = format!("Bearer {}", v["token"].as_str().expect("token"));
    let post = |body: &str| {
        read(
            agent()
                .post(format!("{}/v1/alerts", s.url))
                .header("Authorization", &bearer)
                .header("Content-Type", "application/json")
                .send(body),
        )
    };
    let (st, body) = post("{not json");
    assert_eq!(st, 400);
    assert!(body.contains("message"), "{body}");
    assert_eq!(post(r#"{"an":"object"}"#).0, 400);
    let bad_ip = alert(
        "192.0.2.60",
        json!([{"duration": "1h", "scope": "Ip", "type": "ban", "value": "999.1.1.1"}]),
    );
    let (st, body) = post(&json!([bad_ip]).to_string());
    assert_eq!(st, 422, "{body}");
    let bad_range = alert(
        "192.0.2.60",
        json!([{"duration": "1h", "scope": "Range", "type": "ban", "value": "1.2.3.4/99"}]),
    );
    assert_eq!(post(&json!([bad_range]).to_string()).0, 422);
    let bad_duration = alert(
        "192.0.2.60",
        json!([{"duration": "forever", "scope": "Ip", "type": "ban", "value": "192.0.2.60"}]),
    );
    assert_eq!(post(&json!([bad_duration]).to_string()).0, 422);
    let mut missing = alert("192.0.2.60", Value::Null);
    missing.as_object_mut().expect("object").remove("scenario");
    assert_eq!(post(&json!([missing]).to_string()).0, 422);
    // Oversized: past the 50 MiB limit.
    let huge = format!("[\"{}\"]", "x".repeat(51 << 20));
    assert_too_large(
        agent()
            .post(format!("{}/v1/alerts", s.url))
            .header("Authorization", &bearer)
            .header("Content-Type", "application/json")
            .send(&huge),
    );
    // Unauthenticated and forged tokens.
    assert_eq!(
        read(
            agent()
                .post(format!("{}/v1/alerts", s.url))
                .send_json(json!([]))
        )
        .0,
        401
    );
    assert_eq!(
        read(
            agent()
                .get(format!("{}/v1/alerts", s.url))
                .header("Authorization", "Bearer a.b.c")
                .call()
        )
        .0,
        401
    );
    assert!(s.state.store.read().is_empty(), "nothing was stored");
    // Registration body limit (2 MiB).
    let big = json!({"machine_id": "x", "password": "y".repeat(3 << 20)});
    let r = agent()
        .post(format!("{}/v1/watchers", s.url))
        .send_json(big);
    assert_too_large(r);
    assert!(s.state.auth.machine("x").is_none());
}

#[test]
fn key_sharing_binds_addresses_and_key_files_load() {
    let dir = std::env::temp_dir().join(format!("garrison-keys-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("fw.key");
    std::fs::write(&file, "0123456789abcdef-secret-key\n").expect("key file");
    let f = file.display().to_string();
    let s = Server::start_with(move |l| {
        l.bouncer_key_files.insert("firewall".into(), f);
    });
    let (st, _) = get(
        &s,
        "/v1/decisions/stream?startup=true",
        "0123456789abcdef-secret-key",
    );
    assert_eq!(st, 200);
    let b = s.state.auth.bouncers();
    assert_eq!(b.len(), 1);
    assert_eq!(
        (
            b[0].name.as_str(),
            b[0].ip_address.as_str(),
            b[0].bouncer_type.as_str()
        ),
        ("firewall", "127.0.0.1", "test-bouncer")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn cli(s: &Server, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args(args)
        .env("GARRISON_SOCKET", &s.socket)
        .output()
        .expect("run garrison");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_manages_decisions_bouncers_machines_over_the_socket() {
    let s = Server::start();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&s.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    let (ok, out, err) = cli(&s, &["bouncers", "add", "fw", "-o", "raw"]);
    assert!(ok, "{err}");
    let key = out.trim().to_owned();
    assert_eq!(key.len(), 43);
    let (ok, out, err) = cli(
        &s,
        &[
            "decisions",
            "add",
            "--ip",
            "192.0.2.77",
            "--duration",
            "2h",
            "--reason",
            "test ban",
        ],
    );
    assert!(
        ok && out.contains("Decision successfully added"),
        "{out}{err}"
    );
    let (_, body) = get(&s, "/v1/decisions?ip=192.0.2.77", &key);
    assert!(
        body.contains("\"origin\":\"cscli\"")
            && body.contains("test ban")
            && (body.contains("1h59m5") || body.contains("2h0m0s")),
        "{body}"
    );
    let (ok, out, _) = cli(&s, &["decisions", "list", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert!(ok);
    assert_eq!(v["decisions"][0]["machine_id"], "cscli");
    let (ok, out, _) = cli(&s, &["decisions", "list"]);
    assert!(
        ok && out.contains("192.0.2.77") && out.contains("cscli"),
        "{out}"
    );
    // Protected addresses are refused with the reason.
    s.state.store.set_protected(vec![(
        "10.0.0.0/8".parse().expect("net"),
        std::sync::Arc::from("private"),
    )]);
    let (ok, _, err) = cli(&s, &["decisions", "add", "--ip", "10.0.0.1"]);
    assert!(!ok && err.contains("protected"), "{err}");
    // Import CSV.
    let csv = s.dir.join("import.csv");
    std::fs::write(
        &csv,
        "value,duration,reason\n192.0.2.80,1h,list\n192.0.2.81,,list\n",
    )
    .expect("csv");
    let (ok, out, err) = cli(
        &s,
        &["decisions", "import", "-i", csv.to_str().expect("path")],
    );
    assert!(ok && out.contains("Imported 2 of 2"), "{out}{err}");
    assert!(
        get(&s, "/v1/decisions?ip=192.0.2.81", &key)
            .1
            .contains("cscli-import")
    );
    let (ok, out, _) = cli(&s, &["decisions", "delete", "--ip", "192.0.2.77"]);
    assert!(ok && out.contains("1 decision(s) deleted"), "{out}");
    assert_eq!(get(&s, "/v1/decisions?ip=192.0.2.77", &key).1, "null");
    let (ok, out, _) = cli(&s, &["alerts", "list"]);
    assert!(ok && out.contains("test ban"), "{out}");
    let (ok, out, _) = cli(&s, &["alerts", "inspect", "1"]);
    assert!(ok && out.contains("Scope:Value  : Ip:192.0.2.77"), "{out}");
    let (ok, out, err) = cli(&s, &["machines", "add", "agent", "--password", "pw-pw-pw"]);
    assert!(ok, "{out}{err}");
    assert_eq!(login(&s, "agent", "pw-pw-pw").0, 200);
    let (ok, out, _) = cli(&s, &["machines", "list", "-o", "json"]);
    assert!(ok && out.contains("\"is_validated\": true"), "{out}");
    let (ok, out, _) = cli(&s, &["bouncers", "list"]);
    assert!(ok && out.contains("fw"), "{out}");
    assert!(cli(&s, &["bouncers", "delete", "fw"]).0);
    assert_eq!(get(&s, "/v1/decisions", &key).0, 403);
    let (ok, out, _) = cli(&s, &["lapi", "status"]);
    assert!(ok && out.contains("is up"), "{out}");
    // The admin routes are not on TCP.
    assert_eq!(
        read(agent().get(format!("{}/v1/garrison/health", s.url)).call()).0,
        404
    );
}

#[test]
fn cli_says_when_the_daemon_is_not_running() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_garrison"))
        .args([
            "decisions",
            "list",
            "--socket",
            "/nonexistent/garrison.sock",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is garrison running? socket /nonexistent/garrison.sock"),
        "{err}"
    );
}

/// An oversized body is refused: 413 with a message, or the connection closed by the
/// server once it answered 413 before the client finished sending.
fn assert_too_large(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) {
    match r {
        Ok(mut r) => {
            assert_eq!(r.status().as_u16(), 413);
            let body = r.body_mut().read_to_string().unwrap_or_default();
            assert!(body.contains("larger than"), "{body}");
        }
        Err(ureq::Error::Io(e)) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{e}"
        ),
        Err(e) => panic!("{e}"),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// A GET with hyper itself, because ureq inflates gzip responses and drops their
/// `Content-Encoding`: (status, headers, body bytes as sent).
fn raw_get(s: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, hyper::HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt as _;
    let addr = s.url.strip_prefix("http://").expect("http URL").to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        let mut req = hyper::Request::get(path).header("Host", &addr);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let resp = send.send_request(req).await.expect("response");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes().to_vec();
        (parts.status.as_u16(), parts.headers, body)
    })
}

#[test]
fn gzip_request_bodies_are_inflated_and_responses_never_compressed() {
    let s = Server::start();
    s.machine("gz", "pw-gz-123");
    let (_, v) = login(&s, "gz", "pw-gz-123");
    let bearer = format!("Bearer {}", v["token"].as_str().expect("token"));
    let post_gz = |body: Vec<u8>| {
        read(
            agent()
                .post(format!("{}/v1/alerts", s.url))
                .header("Authorization", &bearer)
                .header("Content-Type", "application/json")
                .header("Content-Encoding", "gzip")
                .send(&body[..]),
        )
    };
    // A gzipped alert (as agents may send) is stored like a plain one.
    let a = alert(
        "192.0.2.70",
        json!([{"duration": "1h", "origin": "cscli", "scenario": "gzipped", "scope": "Ip", "type": "ban", "value": "192.0.2.70"}]),
    );
    let (st, body) = post_gz(gzip(json!([a]).to_string().as_bytes()));
    assert_eq!((st, body.as_str()), (201, r#"["1"]"#));
    let key = s.bouncer("fw");
    let (_, body) = get(&s, "/v1/decisions?ip=192.0.2.70", &key);
    assert!(body.contains("\"scenario\":\"gzipped\""), "{body}");
    // Labelled gzip but not gzip: 400 with a message, nothing stored.
    let (st, body) = post_gz(json!([alert("192.0.2.71", Value::Null)]).to_string().into());
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("message"), "{body}");
    let (_, body) = get(&s, "/v1/decisions?ip=192.0.2.71", &key);
    assert_eq!(body, "null");
    // The body limit counts inflated bytes: 3 MiB of zeros (a few KiB gzipped) exceed the
    // 2 MiB registration limit.
    let bomb = gzip(
        &json!({"machine_id": "bomb", "password": "0".repeat(3 << 20)})
            .to_string()
            .into_bytes(),
    );
    assert!(bomb.len() < 64 << 10);
    assert_too_large(
        agent()
            .post(format!("{}/v1/watchers", s.url))
            .header("Content-Encoding", "gzip")
            .header("Content-Type", "application/json")
            .send(&bomb[..]),
    );
    assert!(s.state.auth.machine("bomb").is_none());
    // Clients offering gzip still get plain JSON, byte for byte.
    for path in [
        "/v1/decisions?ip=192.0.2.70",
        "/v1/decisions/stream?startup=true",
    ] {
        let (st, headers, body) = raw_get(
            &s,
            path,
            &[("X-Api-Key", key.as_str()), ("Accept-Encoding", "gzip, br")],
        );
        assert_eq!(st, 200, "{path}");
        assert!(
            headers.get("content-encoding").is_none(),
            "{path}: {headers:?}"
        );
        let v: Value = serde_json::from_slice(&body).expect("plain JSON");
        assert!(v.to_string().contains("192.0.2.70"), "{path}: {v}");
    }
}

#[test]
fn decisions_carry_stable_uuids_in_the_stream_and_alerts_and_delete_by_uuid() {
    let s = Server::start();
    s.machine("u", "pw-u-1234");
    let (_, v) = login(&s, "u", "pw-u-1234");
    let bearer = format!("Bearer {}", v["token"].as_str().expect("token"));
    let two = alert(
        "192.0.2.80",
        json!([
            {"duration": "1h", "origin": "cscli", "scenario": "manual", "scope": "Ip", "type": "ban", "value": "192.0.2.80"},
            {"duration": "1h", "origin": "cscli", "scenario": "manual", "scope": "Ip", "type": "ban", "value": "192.0.2.81"}
        ]),
    );
    let (st, _) = read(
        agent()
            .post(format!("{}/v1/alerts", s.url))
            .header("Authorization", &bearer)
            .send_json(json!([two])),
    );
    assert_eq!(st, 201);
    let lone = s.decide("Ip", "192.0.2.82", 3600, "lists");
    let key = s.bouncer("fw");
    // The stream: every decision has a uuid, between type and value (Go's field order).
    let (st, raw) = get(&s, "/v1/decisions/stream?startup=true", &key);
    assert_eq!(st, 200);
    let order = regex::Regex::new(
        r#"\{"duration":"[^"]+","id":\d+,"origin":"[^"]+","scenario":"[^"]+","scope":"Ip","type":"ban","uuid":"[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}","value":"[^"]+"\}"#,
    )
    .expect("regex");
    assert_eq!(order.find_iter(&raw).count(), 3, "{raw}");
    let new: Value = serde_json::from_str(&raw).expect("stream");
    let by_value = |v: &str| -> (i64, String) {
        let d = new["new"]
            .as_array()
            .expect("new")
            .iter()
            .find(|d| d["value"] == v)
            .unwrap_or_else(|| panic!("{v} not in {new}"));
        (
            d["id"].as_i64().expect("id"),
            d["uuid"].as_str().expect("uuid").to_owned(),
        )
    };
    let (id80, u80) = by_value("192.0.2.80");
    let (_, u81) = by_value("192.0.2.81");
    let (id82, u82) = by_value("192.0.2.82");
    assert_eq!(id82, lone);
    assert!(u80 != u81 && u81 != u82 && u80 != u82);
    // GET /v1/decisions does not select it, as in CrowdSec.
    let (_, body) = get(&s, "/v1/decisions?ip=192.0.2.80", &key);
    assert!(!body.contains("uuid"), "{body}");
    // The alert's decisions carry the same uuids.
    let (st, body) = read(
        agent()
            .get(format!("{}/v1/alerts/1", s.url))
            .header("Authorization", &bearer)
            .call(),
    );
    assert_eq!(st, 200, "{body}");
    let alert: Value = serde_json::from_str(&body).expect("alert");
    let uuids: Vec<&str> = alert["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|d| d["uuid"].as_str().expect("uuid"))
        .collect();
    assert_eq!(uuids, [u80.as_str(), u81.as_str()]);
    // Derived from what the database keeps (its namespace row, the decision's id and
    // creation time), so a restarted daemon serves the same uuids.
    let ns = s
        .state
        .store
        .cursor("lapi:decision-uuid-namespace")
        .expect("namespace stored");
    let ns = uuid::Uuid::parse_str(&ns).expect("namespace is a UUID");
    let created = s.state.store.read().get(id80).expect("decision").created_at;
    assert_eq!(
        garrison::api::wire::DecisionUuids::new(*ns.as_bytes())
            .of(id80, created)
            .to_string(),
        u80
    );
    // DELETE /v1/decisions?uuid=: exactly that decision; unknown or malformed: none.
    let delete = |q: &str| {
        read(
            agent()
                .delete(format!("{}/v1/decisions?{q}", s.url))
                .header("Authorization", &bearer)
                .call(),
        )
    };
    let nb = |n: &str| (200, format!(r#"{{"nbDeleted":"{n}"}}"#));
    assert_eq!(delete("uuid=00000000-0000-8000-8000-000000000000"), nb("0"));
    assert_eq!(delete("uuid=not-a-uuid"), nb("0"));
    assert_eq!(delete(&format!("uuid={u81}")), nb("1"));
    assert_eq!(values(&stream(&s, &key, false), "deleted"), ["192.0.2.81"]);
    assert_eq!(delete(&format!("uuid={u80}&uuid={u82}")), nb("2"));
    let (_, body) = get(&s, "/v1/decisions", &key);
    assert_eq!(body, "null");
}
