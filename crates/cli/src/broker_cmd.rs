//! Placeholder: this subcommand is being written.

use std::process::ExitCode;

/// Arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs the subcommand.
pub(crate) fn run(_args: Args) -> ExitCode {
    eprintln!("tinsel: this subcommand is not built yet");
    ExitCode::FAILURE
}
