//! `tinsel man DIR`: writes a man page for `tinsel` and each of its subcommands.

use std::path::PathBuf;
use std::process::ExitCode;

/// Write the man pages of tinsel and every subcommand (tinsel.1, tinsel-broker.1, ...) to a
/// directory, e.g. /usr/local/share/man/man1.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The directory to write them to (created if missing).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// Writes the pages, generated from the same definitions as `--help`.
pub(crate) fn run(args: Args, command: clap::Command) -> ExitCode {
    let written = std::fs::create_dir_all(&args.dir)
        .and_then(|()| clap_mangen::generate_to(command, &args.dir));
    match written {
        Ok(()) => {
            println!(
                "man pages written to {} (read one with `man -l {}`)",
                args.dir.display(),
                args.dir.join("tinsel-broker.1").display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tinsel man: cannot write to {}: {e}", args.dir.display());
            ExitCode::FAILURE
        }
    }
}
