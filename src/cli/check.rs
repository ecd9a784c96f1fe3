//! `garrison check`: compile everything, print a summary or the diagnostics.

use std::path::Path;
use std::process::ExitCode;

/// Runs `garrison check`.
pub fn run(config: Option<&Path>, timings: bool) -> ExitCode {
    match crate::compile::compile_path(config) {
        Ok(compiled) => {
            print!("{}", compiled.summary());
            if timings {
                print!("{}", compiled.timings);
            }
            ExitCode::SUCCESS
        }
        Err(diags) => {
            eprint!("{diags}");
            eprintln!(
                "\n{} error{} found; nothing was changed.",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}
