//! `garrison blocklists list|refresh [NAME]`: the running daemon's third-party lists, over
//! its Unix socket.

use super::lapi::{Conn, Ctx, Output, finish, query, s, table};
use crate::store::now_millis;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::Value;
use std::process::ExitCode;

/// `garrison blocklists ...`.
#[derive(Debug, Args)]
pub struct BlocklistsArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: BlocklistsCmd,
}

#[derive(Debug, Subcommand)]
enum BlocklistsCmd {
    /// Every list: its size, when it was last refreshed, its last error.
    List,
    /// Refresh one list (or all) now, and show the outcome.
    Refresh {
        /// The list's name (all lists when absent).
        name: Option<String>,
    },
}

/// Runs `garrison blocklists`.
pub fn run(args: &BlocklistsArgs) -> ExitCode {
    finish(Ctx::new(&args.conn).and_then(|c| {
        let v = match &args.cmd {
            BlocklistsCmd::List => c.ok(Method::GET, "/v1/garrison/blocklists", None)?,
            BlocklistsCmd::Refresh { name } => {
                let q: Vec<(&str, String)> = name.iter().map(|n| ("name", n.clone())).collect();
                c.ok(
                    Method::POST,
                    &format!("/v1/garrison/blocklists/refresh{}", query(&q)),
                    None,
                )?
            }
        };
        if c.output != Output::Table {
            c.json(&v);
            return Ok(());
        }
        let mut lists = v
            .get("blocklists")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let central = v.get("central").filter(|c| !c.is_null());
        if let Some(c) = central {
            lists.extend(central_rows(c));
        }
        if lists.is_empty() {
            println!("No blocklist configured.");
            return Ok(());
        }
        let now = now_millis();
        let mut t = table(&[
            "Name",
            "Source",
            "Size",
            "Refreshed",
            "Added",
            "Removed",
            "Invalid",
            "Refused",
            "Last error",
        ]);
        for l in &lists {
            t.add_row(vec![
                s(l, "name"),
                s(l, "source"),
                s(l, "size"),
                age(l.get("last_refresh").and_then(Value::as_i64), now),
                s(l, "added"),
                s(l, "removed"),
                s(l, "invalid"),
                s(l, "refused"),
                s(l, "last_error"),
            ]);
        }
        println!("{t}");
        if let Some(c) = central {
            println!(
                "Central API {}: machine {}, last pull {}, signals sent {}, queued {}, dropped {}{}",
                s(c, "url"),
                match s(c, "machine_id") {
                    m if m.is_empty() => "not registered".to_owned(),
                    m => m,
                },
                age(c.get("last_pull").and_then(Value::as_i64), now),
                s(c, "signals_sent"),
                s(c, "signals_queued"),
                s(c, "signals_dropped"),
                match c.get("share_signals").and_then(Value::as_bool) {
                    Some(false) => " (signal sharing off)",
                    _ => "",
                },
            );
        }
        Ok(())
    }))
}

/// The Central API's lists as rows of the table: the community blocklist, then each
/// subscribed list.
fn central_rows(c: &Value) -> Vec<Value> {
    let mut rows = vec![serde_json::json!({
        "name": "CAPI (community)",
        "source": c.get("url"),
        "size": c.get("community_size"),
        "last_refresh": c.get("last_pull"),
        "added": c.get("added"),
        "removed": c.get("removed"),
        "invalid": c.get("invalid"),
        "refused": c.get("refused"),
        "last_error": c.get("last_error"),
    })];
    if let Some(lists) = c.get("lists").and_then(Value::as_array) {
        rows.extend(lists.iter().map(|l| {
            let mut l = l.clone();
            if let Some(o) = l.as_object_mut() {
                let name = format!("CAPI list {}", s(&Value::Object(o.clone()), "name"));
                o.insert("name".into(), name.into());
            }
            l
        }));
    }
    rows
}

/// `5m ago`, `3h ago`, `never`.
fn age(at: Option<i64>, now: i64) -> String {
    let Some(at) = at else {
        return "never".into();
    };
    let secs = (now - at).max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86400 => format!("{}h{:02}m ago", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h ago", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages_read_well() {
        assert_eq!(super::age(None, 0), "never");
        assert_eq!(super::age(Some(0), 59_000), "59s ago");
        assert_eq!(super::age(Some(0), 7_380_000), "2h03m ago");
        assert_eq!(super::age(Some(0), 90_000_000), "1d01h ago");
    }
}
