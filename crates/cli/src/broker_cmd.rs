//! `tinsel broker`: run the MQTT broker.

use std::path::PathBuf;
use std::process::ExitCode;

use tinsel_broker::config::Format;
use tinsel_broker::{Broker, Config, Error, ListenerConfig};

use crate::fds;

/// Run the MQTT broker. With no arguments it listens on 127.0.0.1:1883, like Mosquitto 2.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Listen on this port (on 127.0.0.1), replacing the configured listeners.
    #[arg(short = 'p', long)]
    port: Option<u16>,
    /// Read the configuration from this file: Tinsel's TOML or a Mosquitto configuration
    /// file, told apart by their content.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration file given with -c, print the effective configuration as
    /// TOML and exit (0 when it is valid).
    #[arg(long)]
    check: bool,
    /// Log every packet in and out.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Record every packet in and out to this pcapng file.
    #[arg(long, value_name = "FILE")]
    capture: Option<PathBuf>,
    /// Keep sessions, queued and in-flight messages and retained messages in this
    /// directory across restarts (turns persistence on; see docs/persistence.md).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

/// Runs the broker until Ctrl-C (or SIGTERM).
pub(crate) fn run(args: Args) -> ExitCode {
    if args.check && args.config.is_none() {
        eprintln!("tinsel broker: --check needs a file to check: tinsel broker --check -c FILE");
        return ExitCode::from(2);
    }
    let mut format = None;
    let mut config = match &args.config {
        Some(path) => match Config::read(path) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("warning: {w}");
                }
                format = Some(loaded.format);
                loaded.config
            }
            Err(e) => {
                print_error(&e);
                return ExitCode::FAILURE;
            }
        },
        None => Config::default(),
    };
    if let Some(port) = args.port {
        config.listeners = vec![ListenerConfig {
            port,
            ..ListenerConfig::default()
        }];
    }
    if args.capture.is_some() {
        config.capture = args.capture.clone();
    }
    if let Some(dir) = &args.data {
        config.persistence.enabled = Some(true);
        config.persistence.location = Some(dir.clone());
    }
    if args.check {
        let path = args
            .config
            .as_deref()
            .unwrap_or_else(|| std::path::Path::new("?"));
        let read_as = match format {
            Some(Format::Mosquitto) => "Mosquitto's format",
            _ => "TOML",
        };
        println!(
            "# {} is valid ({read_as}); the effective configuration:\n",
            path.display()
        );
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    let verbose = args.verbose || config.logging.verbose;
    let filter = if verbose {
        "debug".to_owned()
    } else {
        std::env::var("RUST_LOG").unwrap_or_else(|_| config.logging.level.clone())
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tinsel broker: invalid log level {filter:?}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();

    let max = config.limits.max_connections as u64;
    match fds::prepare(max) {
        Some(room) if room.short => tracing::warn!(
            "the open-file limit ({}) is below limits.max_connections ({max}): connections \
             will be refused before that; raise the hard limit (`ulimit -Hn`, systemd's \
             LimitNOFILE) or lower max_connections",
            room.limit
        ),
        Some(room) if room.raised => {
            tracing::debug!("open-file limit raised to {}", room.limit)
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tinsel broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let broker = Broker::bind(config).await?;
        broker.run(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// One line: a configuration line's error as `FILE:LINE: what is wrong`, others prefixed
/// with the command.
fn print_error(e: &Error) {
    match e {
        Error::ConfigLine { .. } => eprintln!("{e}"),
        _ => eprintln!("tinsel broker: {e}"),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
