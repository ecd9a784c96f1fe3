//! The command line: parsing with clap, one function per subcommand.

mod blocklists;
mod check;
mod console;
pub mod explain;
pub mod lapi;
mod metrics;
pub mod nft;
mod records;
pub mod replay;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// garrison: a declarative, CrowdSec-compatible intrusion-prevention appliance.
#[derive(Debug, Parser)]
#[command(name = "garrison", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile the configuration and rules; print a summary or every error.
    Check {
        /// Configuration file (`.kdl` or `.json`); the embedded default when absent.
        #[arg(long, short, env = "GARRISON_CONFIG")]
        config: Option<PathBuf>,
        /// Print how long each compilation step took.
        #[arg(long)]
        timings: bool,
    },
    /// Run the daemon: watch the logs, detect, decide, enforce, serve the Local API.
    Run(crate::daemon::RunArgs),
    /// Print the daemon's metrics as tables (from its metrics endpoint).
    Metrics(metrics::MetricsArgs),
    /// Replay log files through the engine (forensic mode, on the lines' own time).
    Replay(replay::ReplayArgs),
    /// Show, line by line, which parsers ran, the fields they set, and where it poured.
    Explain(explain::ExplainArgs),
    /// Inspect or remove garrison's nftables table.
    Nft(nft::NftArgs),
    /// Print the JSON Schema of the configuration.
    Schema,
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Decisions of the running daemon: list, add, delete, import.
    Decisions(lapi::DecisionsArgs),
    /// Alerts of the running daemon: list, inspect.
    Alerts(lapi::AlertsArgs),
    /// Bouncers (API keys) of the Local API: list, add, delete.
    Bouncers(lapi::BouncersArgs),
    /// Machines (agents) of the Local API: list, add, validate, delete.
    Machines(lapi::MachinesArgs),
    /// The Local API's status.
    Lapi(lapi::LapiArgs),
    /// Third-party blocklists of the running daemon: list, refresh.
    Blocklists(blocklists::BlocklistsArgs),
    /// CrowdSec console: enroll this machine.
    Console(console::ConsoleArgs),
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, timings } => check::run(config.as_deref(), timings),
        Command::Run(args) => crate::daemon::run(&args),
        Command::Metrics(args) => metrics::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Nft(args) => nft::run(&args),
        Command::Schema => {
            println!("{}", crate::schema::config_schema_json());
            ExitCode::SUCCESS
        }
        Command::DefaultConfig => {
            print!("{}", crate::config::DEFAULT_CONFIG);
            ExitCode::SUCCESS
        }
        Command::Decisions(args) => lapi::decisions(&args),
        Command::Alerts(args) => lapi::alerts(&args),
        Command::Bouncers(args) => lapi::bouncers(&args),
        Command::Machines(args) => lapi::machines(&args),
        Command::Lapi(args) => lapi::lapi(&args),
        Command::Blocklists(args) => blocklists::run(&args),
        Command::Console(args) => console::run(&args),
    }
}
