//! The `garrison` command.

fn main() -> std::process::ExitCode {
    garrison::cli::main()
}
