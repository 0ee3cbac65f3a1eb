//! `tinsel`: the MQTT broker, its clients, the password tool, the Wareville lights lab and the
//! benchmark, in one command.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod bench_cmd;
mod broker_cmd;
mod clients;
mod fds;
mod lab_cmd;
mod lab_tls;
mod lights_cmd;
mod man_cmd;
mod passwd_cmd;
mod service;

/// Tinsel: an MQTT broker, clients, a smart-lights lab and a benchmark.
#[derive(Debug, Parser)]
#[command(name = "tinsel", version, about, propagate_version = false)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the MQTT broker (MQTT 3.1, 3.1.1 and 5.0).
    Broker(broker_cmd::Args),
    /// Publish a message, like mosquitto_pub.
    Pub(clients::PubArgs),
    /// Subscribe and print messages, like mosquitto_sub.
    Sub(clients::SubArgs),
    /// Send a request and wait for its response, like mosquitto_rr.
    Rr(clients::RrArgs),
    /// Run the Wareville smart-lights device and its control page.
    Lights(lights_cmd::Args),
    /// Start the whole Wareville lab: broker, lights, saboteur and traffic capture.
    Lab(lab_cmd::Args),
    /// Measure MQTT brokers under load.
    Bench(bench_cmd::Args),
    /// Manage a password file, like mosquitto_passwd.
    Passwd(passwd_cmd::Args),
    /// Write the man pages of tinsel and its subcommands to a directory.
    Man(man_cmd::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Broker(args) => broker_cmd::run(args),
        Command::Pub(args) => clients::run_pub(args),
        Command::Sub(args) => clients::run_sub(args),
        Command::Rr(args) => clients::run_rr(args),
        Command::Lights(args) => lights_cmd::run(args),
        Command::Lab(args) => lab_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Passwd(args) => passwd_cmd::run(args),
        Command::Man(args) => man_cmd::run(args, Cli::command()),
    }
}
