//! `tinsel pub`, `sub` and `rr`: Mosquitto-compatible command-line clients on
//! `tinsel-client`.
//!
//! Arguments are taken raw from clap and parsed Mosquitto's way (`-h` is the host, `-p` the
//! port, `-V` the protocol version; `--help` prints the help), after the defaults file.

use std::ffi::OsString;
use std::process::ExitCode;

mod args;
mod common;
mod format;
mod help;
mod json;
mod props;
mod publish;
mod request;
mod subscribe;

use args::{Kind, Parsed};

/// `tinsel pub` arguments: taken raw and parsed Mosquitto's way (`-h` is the host).
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true, disable_version_flag = true)]
pub(crate) struct PubArgs {
    /// mosquitto_pub's options; see `tinsel pub --help`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<OsString>,
}

/// `tinsel sub` arguments.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true, disable_version_flag = true)]
pub(crate) struct SubArgs {
    /// mosquitto_sub's options; see `tinsel sub --help`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<OsString>,
}

/// `tinsel rr` arguments.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true, disable_version_flag = true)]
pub(crate) struct RrArgs {
    /// mosquitto_rr's options; see `tinsel rr --help`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<OsString>,
}

/// Parses, printing help or the error; `Err` carries the exit code.
fn parse(kind: Kind, raw: Vec<OsString>) -> Result<Box<args::Config>, ExitCode> {
    match args::parse(kind, raw) {
        Ok(Parsed::Run(c)) => Ok(c),
        Ok(Parsed::Help) => {
            print!("{}", help::help(kind));
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("Error: {}", e.message);
            if e.usage {
                eprintln!("{}", help::usage(kind));
            } else {
                eprintln!("Use 'tinsel {} --help' to see usage.", kind.name());
            }
            Err(ExitCode::FAILURE)
        }
    }
}

fn runtime_run(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `tinsel pub`.
pub(crate) fn run_pub(args: PubArgs) -> ExitCode {
    match parse(Kind::Pub, args.args) {
        Ok(c) => runtime_run(publish::run(*c)),
        Err(code) => code,
    }
}

/// Runs `tinsel sub`.
pub(crate) fn run_sub(args: SubArgs) -> ExitCode {
    match parse(Kind::Sub, args.args) {
        Ok(c) => runtime_run(subscribe::run(*c)),
        Err(code) => code,
    }
}

/// Runs `tinsel rr`.
pub(crate) fn run_rr(args: RrArgs) -> ExitCode {
    match parse(Kind::Rr, args.args) {
        Ok(c) => runtime_run(request::run(*c)),
        Err(code) => code,
    }
}
