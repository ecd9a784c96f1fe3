//! The table's structure (sets, chains, rules), created with `nft -f`, and its inspection
//! over netlink (table probe, rule counters, deletion).

use super::EnforceError;
use super::elements::SetKind;
use super::netlink::{self, MsgBuf, Netlink};
use crate::config::model::{Hook, NftAction, Nftables};
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_GETRULE: u16 = 7;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_USE: u16 = 3;
const NFTA_TABLE_HANDLE: u16 = 4;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFTA_LOOKUP_SET: u16 = 1;

/// The regular chain that rejects (TCP reset, else ICMP administratively prohibited).
const REJECT_CHAIN: &str = "reject-banned";

/// Checks that `table` can be written into an nft script as is.
pub(crate) fn check_table_name(table: &str) -> Result<(), EnforceError> {
    match table_name_problem(table) {
        None => Ok(()),
        Some(_) => Err(EnforceError::InvalidTableName(table.to_string())),
    }
}

/// Words nft's parser reads as keywords where a table name stands (found the hard way:
/// `table inet gt` is a syntax error, and nft accepts no quoting of names).
const NFT_KEYWORDS: &[&str] = &[
    "eq",
    "ne",
    "lt",
    "gt",
    "le",
    "ge",
    "and",
    "or",
    "xor",
    "not",
    "table",
    "chain",
    "set",
    "map",
    "element",
    "rule",
    "add",
    "delete",
    "insert",
    "create",
    "flush",
    "list",
    "reset",
    "rename",
    "replace",
    "describe",
    "monitor",
    "export",
    "import",
    "inet",
    "ip",
    "ip6",
    "arp",
    "bridge",
    "netdev",
    "filter",
    "nat",
    "route",
    "accept",
    "drop",
    "reject",
    "queue",
    "continue",
    "return",
    "jump",
    "goto",
    "counter",
    "limit",
    "log",
    "meta",
    "ct",
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "hook",
    "priority",
    "policy",
    "type",
    "flags",
    "timeout",
    "comment",
    "elements",
    "handle",
    "position",
    "index",
    "define",
    "include",
    "counters",
    "quotas",
    "quota",
    "ruleset",
    "tables",
    "chains",
    "sets",
    "maps",
    "flowtable",
    "ether",
];

/// Why `table` cannot name garrison's table, if it cannot (`garrison check` reports it).
pub fn table_name_problem(table: &str) -> Option<String> {
    let shaped = (1..=64).contains(&table.len())
        && table.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !shaped {
        return Some(format!(
            "`{table}` is not a valid nftables table name: up to 64 letters, digits, `_` and `-`, starting with a letter or `_`"
        ));
    }
    if NFT_KEYWORDS.contains(&table.to_ascii_lowercase().as_str()) {
        return Some(format!(
            "`{table}` is an nftables keyword, which nft does not accept as a table name"
        ));
    }
    None
}

/// The configured hooks, each once.
fn hooks(cfg: &Nftables) -> Vec<Hook> {
    let mut out = Vec::new();
    for h in &cfg.hooks {
        if !out.contains(h) {
            out.push(*h);
        }
    }
    out
}

fn hook_name(h: Hook) -> &'static str {
    match h {
        Hook::Input => "input",
        Hook::Forward => "forward",
    }
}

/// The nft script that makes the table match the configuration while keeping the sets and
/// their elements: sets are added if missing (an existing set of another type makes the
/// script fail: then [`replace_script`] is used), chains are recreated with their rules.
/// The whole script is one transaction, so traffic is never unfiltered in between.
pub(crate) fn structure_script(cfg: &Nftables) -> String {
    let t = &cfg.table;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "add table inet {t} {{ comment \"bans enforced by garrison; changes here are reverted\"; }}"
    );
    for set in SetKind::ALL {
        let (ty, flags, what) = match set {
            SetKind::Ipv4 => ("ipv4_addr", "timeout", "IPv4 addresses"),
            SetKind::Ipv6 => ("ipv6_addr", "timeout", "IPv6 addresses"),
            SetKind::Ipv4Ranges => ("ipv4_addr", "interval, timeout", "IPv4 ranges"),
            SetKind::Ipv6Ranges => ("ipv6_addr", "interval, timeout", "IPv6 ranges"),
        };
        let _ = writeln!(
            s,
            "add set inet {t} {} {{ type {ty}; flags {flags}; comment \"{what} banned by garrison\"; }}",
            set.name()
        );
    }
    // Drop every chain garrison may have made (`add` first so that flush/delete cannot fail
    // on a missing chain), the base chains before the chain they jump to.
    for chain in ["input", "forward", REJECT_CHAIN] {
        let _ = writeln!(
            s,
            "add chain inet {t} {chain}\nflush chain inet {t} {chain}\ndelete chain inet {t} {chain}"
        );
    }
    let verdict = match cfg.action {
        NftAction::Drop => "drop".to_string(),
        NftAction::Reject => {
            let _ = writeln!(s, "add chain inet {t} {REJECT_CHAIN}");
            let _ = writeln!(
                s,
                "add rule inet {t} {REJECT_CHAIN} meta l4proto tcp reject with tcp reset"
            );
            let _ = writeln!(
                s,
                "add rule inet {t} {REJECT_CHAIN} reject with icmpx admin-prohibited"
            );
            format!("jump {REJECT_CHAIN}")
        }
    };
    for h in hooks(cfg) {
        let chain = hook_name(h);
        let _ = writeln!(
            s,
            "add chain inet {t} {chain} {{ type filter hook {chain} priority {}; policy accept; }}",
            cfg.priority
        );
        for set in SetKind::ALL {
            let proto = if set.is_v4() { "ip" } else { "ip6" };
            let _ = writeln!(
                s,
                "add rule inet {t} {chain} {proto} saddr @{} counter {verdict}",
                set.name()
            );
        }
    }
    s
}

/// Number of rules [`structure_script`] creates.
#[cfg(test)]
fn expected_rules(cfg: &Nftables) -> usize {
    let reject = if cfg.action == NftAction::Reject {
        2
    } else {
        0
    };
    hooks(cfg).len() * SetKind::ALL.len() + reject
}

/// The nft script that recreates the table from scratch (its elements are lost), in one
/// transaction.
pub(crate) fn replace_script(cfg: &Nftables) -> String {
    let t = &cfg.table;
    format!(
        "add table inet {t}\ndelete table inet {t}\n{}",
        structure_script(cfg)
    )
}

/// Runs `nft -f -` with `script` on stdin.
pub(crate) fn run_nft(script: &str, what: &str) -> Result<(), EnforceError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(EnforceError::NftMissing)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error shows up as nft's failure below.
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(EnforceError::NftMissing)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(EnforceError::Nft {
            what: what.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The table's identity: a handle that changes when it is recreated, and its use count
/// (chains + sets), which drops when one is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableProbe {
    pub handle: u64,
    pub uses: u32,
}

/// Asks the kernel for the table; `None` when it does not exist.
pub(crate) fn probe_table(
    nl: &mut Netlink,
    buf: &mut MsgBuf,
    table: &str,
) -> Result<Option<TableProbe>, EnforceError> {
    buf.clear();
    let seq = nl.next_seqs(1);
    let off = buf.begin_msg(
        netlink::nft_type(NFT_MSG_GETTABLE),
        netlink::NLM_F_REQUEST,
        seq,
        netlink::NFPROTO_INET,
        0,
    );
    buf.attr_str(NFTA_TABLE_NAME, table);
    buf.end_msg(off);
    let mut probe = TableProbe { handle: 0, uses: 0 };
    let res = nl.request(buf, seq, false, |m| {
        for (ty, p) in m.nft_attrs() {
            match ty {
                NFTA_TABLE_HANDLE => probe.handle = netlink::be64(p).unwrap_or(0),
                NFTA_TABLE_USE => probe.uses = netlink::be32(p).unwrap_or(0),
                _ => {}
            }
        }
    })?;
    match res {
        Ok(()) => Ok(Some(probe)),
        Err(libc::ENOENT) => Ok(None),
        Err(e) => Err(EnforceError::kernel(
            format!("look up table inet {table}"),
            e,
        )),
    }
}

/// A rule of garrison's table with its counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounter {
    /// The chain (`input`, `forward`, `reject-banned`).
    pub chain: String,
    /// The set the rule matches, if any.
    pub set: Option<String>,
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

/// The table's rules with their counters, in order.
pub(crate) fn dump_rules(
    nl: &mut Netlink,
    buf: &mut MsgBuf,
    table: &str,
) -> Result<Vec<RuleCounter>, EnforceError> {
    buf.clear();
    let seq = nl.next_seqs(1);
    let off = buf.begin_msg(
        netlink::nft_type(NFT_MSG_GETRULE),
        netlink::NLM_F_REQUEST | netlink::NLM_F_DUMP,
        seq,
        netlink::NFPROTO_INET,
        0,
    );
    buf.attr_str(NFTA_RULE_TABLE, table);
    buf.end_msg(off);
    let mut rules = Vec::new();
    let res = nl.request(buf, seq, true, |m| {
        let mut r = RuleCounter {
            chain: String::new(),
            set: None,
            packets: 0,
            bytes: 0,
        };
        let mut ours = false;
        for (ty, p) in m.nft_attrs() {
            match ty {
                NFTA_RULE_TABLE => ours = netlink::cstr(p) == table,
                NFTA_RULE_CHAIN => r.chain = netlink::cstr(p).to_string(),
                NFTA_RULE_EXPRESSIONS => read_exprs(p, &mut r),
                _ => {}
            }
        }
        if ours {
            rules.push(r);
        }
    })?;
    match res {
        Ok(()) => Ok(rules),
        Err(libc::ENOENT) => Ok(Vec::new()),
        Err(e) => Err(EnforceError::kernel(
            format!("list the rules of table inet {table}"),
            e,
        )),
    }
}

fn read_exprs(list: &[u8], r: &mut RuleCounter) {
    for (ty, expr) in netlink::attrs(list) {
        if ty != NFTA_LIST_ELEM {
            continue;
        }
        let mut name = "";
        let mut data: &[u8] = &[];
        for (ty, p) in netlink::attrs(expr) {
            match ty {
                NFTA_EXPR_NAME => name = netlink::cstr(p),
                NFTA_EXPR_DATA => data = p,
                _ => {}
            }
        }
        for (ty, p) in netlink::attrs(data) {
            match (name, ty) {
                ("counter", NFTA_COUNTER_BYTES) => r.bytes = netlink::be64(p).unwrap_or(0),
                ("counter", NFTA_COUNTER_PACKETS) => r.packets = netlink::be64(p).unwrap_or(0),
                ("lookup", NFTA_LOOKUP_SET) => r.set = Some(netlink::cstr(p).to_string()),
                _ => {}
            }
        }
    }
}

/// Deletes the table in one transaction. `Ok(false)` when there was none.
pub(crate) fn delete_table(
    nl: &mut Netlink,
    buf: &mut MsgBuf,
    table: &str,
) -> Result<bool, EnforceError> {
    buf.clear();
    let begin = nl.next_seqs(3);
    buf.batch_begin(begin);
    let off = buf.begin_msg(
        netlink::nft_type(NFT_MSG_DELTABLE),
        netlink::NLM_F_REQUEST | netlink::ACK,
        begin + 1,
        netlink::NFPROTO_INET,
        0,
    );
    buf.attr_str(NFTA_TABLE_NAME, table);
    buf.end_msg(off);
    buf.batch_end(begin + 2);
    let errors = nl.transact(buf, begin, begin + 1)?;
    match errors.failed.first() {
        None => Ok(true),
        Some(&(_, libc::ENOENT)) => Ok(false),
        Some(&(_, e)) => Err(EnforceError::kernel(
            format!("delete table inet {table}"),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::List;

    #[test]
    fn script_has_sets_chains_and_rules() {
        let cfg = Nftables {
            hooks: List(vec![Hook::Input, Hook::Forward]),
            priority: -5,
            action: NftAction::Reject,
            ..Nftables::default()
        };
        let s = structure_script(&cfg);
        assert!(s.contains(
            "add set inet garrison banned-ipv4-ranges { type ipv4_addr; flags interval, timeout;"
        ));
        assert!(s.contains("add chain inet garrison forward { type filter hook forward priority -5; policy accept; }"));
        assert!(s.contains(
            "add rule inet garrison input ip6 saddr @banned-ipv6 counter jump reject-banned"
        ));
        assert!(s.contains("reject with icmpx admin-prohibited"));
        assert_eq!(s.matches("add rule").count(), expected_rules(&cfg));
        assert!(
            s.find("delete chain inet garrison reject-banned")
                < s.find("add rule inet garrison reject-banned")
        );
    }

    #[test]
    fn table_names_are_checked() {
        assert!(check_table_name("garrison").is_ok());
        assert!(check_table_name("my_fw-2").is_ok());
        for bad in ["", "2fw", "a b", "x;flush ruleset", "a\"b", &"a".repeat(65)] {
            assert!(check_table_name(bad).is_err(), "{bad}");
        }
    }
}
