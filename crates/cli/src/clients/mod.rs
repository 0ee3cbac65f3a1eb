//! Placeholder: `tinsel pub`, `sub` and `rr` are being written.

use std::process::ExitCode;

/// `tinsel pub` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct PubArgs {}
/// `tinsel sub` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct SubArgs {}
/// `tinsel rr` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct RrArgs {}

/// Runs `tinsel pub`.
pub(crate) fn run_pub(_args: PubArgs) -> ExitCode {
    ExitCode::FAILURE
}
/// Runs `tinsel sub`.
pub(crate) fn run_sub(_args: SubArgs) -> ExitCode {
    ExitCode::FAILURE
}
/// Runs `tinsel rr`.
pub(crate) fn run_rr(_args: RrArgs) -> ExitCode {
    ExitCode::FAILURE
}
