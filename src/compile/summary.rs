//! The summary `garrison check` prints on success.

use super::{Compiled, Ruleset};
use crate::rules::model::Stage;
use std::fmt::Write;

impl Compiled {
    /// A human-readable summary of what is active.
    pub fn summary(&self) -> String {
        self.ruleset.summary()
    }
}

impl Ruleset {
    /// A human-readable summary of what is active. Two configurations that compile to the
    /// same ruleset print the same summary (except the file name), whatever their format.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "configuration OK: {}", self.config_name);
        let _ = writeln!(
            s,
            "collections ({}): {}",
            self.collections.len(),
            self.collections.join(", ")
        );
        let total: usize = self.stages.iter().map(Vec::len).sum();
        let _ = writeln!(s, "parsers ({total}):");
        for stage in Stage::ALL {
            let names: Vec<&str> = self.stages[stage as usize]
                .iter()
                .map(|p| &*p.name)
                .collect();
            let _ = writeln!(s, "  {:<7} {}", stage.as_str(), names.join(", "));
        }
        let _ = writeln!(s, "scenarios ({}):", self.scenarios.len());
        for sc in &self.scenarios {
            let kind = format!("{:?}", sc.kind).to_lowercase();
            let shape = match (sc.capacity, sc.leakspeed, sc.duration) {
                (c, Some(l), _) if c > 0 => format!("capacity {c}, leak {l}"),
                (_, _, Some(d)) => format!("duration {d}"),
                (_, Some(l), _) => format!("lifetime {l}"),
                _ => String::new(),
            };
            let bh = sc
                .blackhole
                .map(|b| format!(", blackhole {b}"))
                .unwrap_or_default();
            let rem = if sc.remediation {
                ""
            } else {
                ", no remediation"
            };
            let _ = writeln!(s, "  {:<32} {kind:<11} {shape}{bh}{rem}", sc.name);
        }
        let _ = writeln!(s, "profiles ({}):", self.profiles.len());
        for p in &self.profiles {
            let ds: Vec<String> = p
                .decisions
                .iter()
                .map(|d| {
                    format!(
                        "{} {}{}",
                        d.decision_type,
                        d.duration,
                        d.scope
                            .map(|s| format!(" {s:?}").to_lowercase())
                            .unwrap_or_default()
                    )
                })
                .collect();
            let esc = p
                .escalation
                .as_ref()
                .map(|e| format!(", escalation x{} up to {}", e.factor, e.max))
                .unwrap_or_default();
            let _ = writeln!(s, "  {:<32} {}{esc}", p.name, ds.join(", "));
        }
        let _ = writeln!(s, "acquisitions ({}):", self.config.acquisitions.len());
        for a in &self.config.acquisitions {
            let src = if !a.files.is_empty() {
                format!("files {}", a.files.0.join(" "))
            } else if !a.journald.is_empty() {
                format!("journald {}", a.journald.0.join(" "))
            } else if let Some(l) = &a.syslog {
                format!("syslog {:?} {}", l.protocol, l.listen).to_lowercase()
            } else {
                String::new()
            };
            let _ = writeln!(s, "  type={:<9} {src}", a.log_type);
        }
        let wl = &self.whitelist;
        let cidrs: Vec<String> = wl.cidrs.iter().map(|(c, _)| c.to_string()).collect();
        let _ = writeln!(
            s,
            "whitelists: {} ranges ({}), {} expressions",
            cidrs.len(),
            cidrs.join(" "),
            wl.expressions.len()
        );
        let e = &self.config.enforcement;
        let hooks: Vec<String> = e
            .nftables
            .hooks
            .iter()
            .map(|h| format!("{h:?}").to_lowercase())
            .collect();
        let _ = writeln!(
            s,
            "enforcement: {}nftables table inet {}, hooks {}, priority {}, {:?}{}",
            if !e.enable {
                "disabled; "
            } else if e.dry_run {
                "dry-run; "
            } else {
                ""
            },
            e.nftables.table,
            hooks.join("+"),
            e.nftables.priority,
            e.nftables.action,
            if e.admin_cidrs.is_empty() {
                String::new()
            } else {
                format!(", {} admin ranges protected", e.admin_cidrs.len())
            }
        );
        let l = &self.config.lapi;
        let _ = writeln!(
            s,
            "local api: {}",
            if l.enable {
                format!(
                    "{}{}",
                    l.listen,
                    if l.tls.is_some() { " (tls)" } else { "" }
                )
            } else {
                "disabled".into()
            }
        );
        let _ = writeln!(s, "blocklists: {}", self.config.blocklists.len());
        let _ = writeln!(
            s,
            "metrics: {}",
            if self.config.metrics.enable {
                self.config.metrics.listen.clone()
            } else {
                "disabled".into()
            }
        );
        s
    }
}
