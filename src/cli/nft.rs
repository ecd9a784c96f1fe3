//! `garrison nft`: inspect or remove garrison's nftables table (in the current network
//! namespace).

use crate::enforce::{self, Inspector, SetKind};
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `garrison nft`.
#[derive(Debug, clap::Args)]
pub struct NftArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: NftCommand,
}

/// `garrison nft` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum NftCommand {
    /// Show the table: its sets with element counts, and the rules' counters.
    Status(TableArgs),
    /// Delete garrison's table, and so every ban it enforces.
    Remove(TableArgs),
}

/// Which table.
#[derive(Debug, clap::Args)]
pub struct TableArgs {
    /// Configuration file, for `enforcement.nftables.table`; the embedded default when absent.
    #[arg(long, short, env = "GARRISON_CONFIG")]
    pub config: Option<PathBuf>,
    /// The table's name (family `inet`); overrides the configuration.
    #[arg(long)]
    pub table: Option<String>,
}

impl TableArgs {
    /// The table name, from `--table` or the configuration.
    fn table(&self) -> Result<String, ExitCode> {
        if let Some(t) = &self.table {
            return Ok(t.clone());
        }
        match crate::config::load(self.config.as_deref()) {
            Ok(loaded) => Ok(loaded.config.enforcement.nftables.table),
            Err(diags) => {
                eprint!("{diags}");
                Err(ExitCode::FAILURE)
            }
        }
    }
}

/// Runs `garrison nft`.
pub fn run(args: &NftArgs) -> ExitCode {
    let (NftCommand::Status(t) | NftCommand::Remove(t)) = &args.command;
    let table = match t.table() {
        Ok(t) => t,
        Err(code) => return code,
    };
    let res = match args.command {
        NftCommand::Status(_) => status(&table),
        NftCommand::Remove(_) => remove(&table),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn remove(table: &str) -> Result<(), enforce::EnforceError> {
    let present = Inspector::open(table)?.table_exists()?;
    enforce::remove_table(table)?;
    if present {
        println!("table inet {table} removed");
    } else {
        println!("table inet {table} was not there");
    }
    Ok(())
}

fn status(table: &str) -> Result<(), enforce::EnforceError> {
    let mut ins = Inspector::open(table)?;
    if !ins.table_exists()? {
        println!("table inet {table}: absent (garrison is not enforcing here)");
        return Ok(());
    }
    println!("table inet {table}");
    let rules = ins.rules()?;
    println!(
        "  {:<20} {:>10} {:>12} {:>14}",
        "set", "elements", "packets", "bytes"
    );
    for set in SetKind::ALL {
        let n = ins.count(set)?;
        let (packets, bytes) = rules
            .iter()
            .filter(|r| r.set.as_deref() == Some(set.name()))
            .fold((0, 0), |(p, b), r| (p + r.packets, b + r.bytes));
        let n = n.map_or("missing".to_string(), |n| n.to_string());
        println!("  {:<20} {n:>10} {packets:>12} {bytes:>14}", set.name());
    }
    let mut chains: Vec<&str> = rules.iter().map(|r| r.chain.as_str()).collect();
    chains.dedup();
    for chain in chains {
        let n = rules.iter().filter(|r| r.chain == chain).count();
        println!("  chain {chain}: {n} rule{}", if n == 1 { "" } else { "s" });
    }
    println!("  (packets and bytes: all chains' rules matching the set; ranges count once)");
    Ok(())
}
