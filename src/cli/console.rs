//! `garrison console enroll KEY`: attaches this machine to a CrowdSec console account.
//!
//! It talks to the Central API directly with the credentials in the state directory
//! (registering first when there are none, as `cscli capi register` would), so it works
//! whether the daemon runs or not; the daemon picks the same credentials up.

use crate::capi::client::{CREDENTIALS_FILE, Client, Credentials};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `garrison console ...`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Configuration file (for `daemon.state-dir` and `central.url`).
    #[arg(long, short, env = "GARRISON_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: ConsoleCmd,
}

#[derive(Debug, Subcommand)]
enum ConsoleCmd {
    /// Enroll this machine in a console account with the key shown in the console.
    Enroll {
        /// The attachment key.
        key: String,
        /// The name the console shows for this machine.
        #[arg(long)]
        name: Option<String>,
        /// Tags the console shows (repeat for several).
        #[arg(long = "tags", short = 't')]
        tags: Vec<String>,
        /// Enroll again even if already enrolled.
        #[arg(long)]
        overwrite: bool,
    },
}

/// Runs `garrison console`.
pub fn run(args: &ConsoleArgs) -> ExitCode {
    let ConsoleCmd::Enroll {
        key,
        name,
        tags,
        overwrite,
    } = &args.cmd;
    match enroll(
        args.config.as_deref(),
        key,
        name.as_deref(),
        tags,
        *overwrite,
    ) {
        Ok(machine) => {
            println!(
                "Enrolled machine {machine}: accept it in the console (https://app.crowdsec.net/)."
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn enroll(
    config: Option<&Path>,
    key: &str,
    name: Option<&str>,
    tags: &[String],
    overwrite: bool,
) -> Result<String, String> {
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err("the attachment key is letters and digits only".into());
    }
    let rs = crate::compile::compile_path(config)
        .map_err(|d| format!("cannot read the configuration:\n{d}"))?
        .ruleset;
    let central = &rs.config.central;
    if !central.enable {
        eprintln!(
            "note: `central enable` is off: the machine is enrolled, but garrison pulls and shares nothing until it is on."
        );
    }
    let path = Path::new(&rs.config.daemon.state_dir).join(CREDENTIALS_FILE);
    let mut client = Client::new(
        &central.url,
        Duration::from_secs(30),
        crate::blocklists::fetch::SIZE_LIMIT,
    );
    let creds = match Credentials::read(&path)? {
        Some(c) => c,
        None => {
            let c = Credentials::generate(&central.url)?;
            client
                .register(&c)
                .map_err(|e| format!("registering with {}: {e}", central.url))?;
            c.write(&path)?;
            eprintln!(
                "Registered with the Central API as {} ({}).",
                c.login,
                path.display()
            );
            c
        }
    };
    let scenarios: Vec<String> = rs.scenarios.iter().map(|s| s.name.to_string()).collect();
    client
        .login(&creds, &scenarios)
        .map_err(|e| format!("logging in to {}: {e}", central.url))?;
    client
        .enroll(key, name, tags, overwrite)
        .map_err(|e| format!("enrolling: {e}"))?;
    Ok(creds.login)
}
