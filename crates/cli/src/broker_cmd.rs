//! `tinsel broker`: run the MQTT broker.

use std::path::PathBuf;
use std::process::ExitCode;

use tinsel_broker::Format;
use tinsel_broker::{Broker, Config, Error, ListenerConfig, LogFormat, LoggingConfig};

use crate::fds;
use crate::service::{self, StopSignals};

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
    /// Serve metrics, health checks and the admin API over HTTP on this address
    /// (IP:PORT, or a port on 127.0.0.1). Off by default.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// The bearer token of the admin API (/api/v1/...); without one it is disabled.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "TINSEL_HTTP_TOKEN",
        hide_env_values = true
    )]
    http_token: Option<String>,
    /// Log level: off, error, warn, info, debug or trace, optionally per module
    /// ("info,tinsel_core=debug"). RUST_LOG overrides it.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// How log lines are written: text (Mosquitto-like) or json (one object a line).
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Append the log to this file instead of standard error.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
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
    if let Some(addr) = &args.http {
        // A bare port means the loopback interface: exposing the admin API takes an IP.
        config.http.address = Some(match addr.parse::<u16>() {
            Ok(port) => format!("127.0.0.1:{port}"),
            Err(_) => addr.clone(),
        });
    }
    if args.http_token.is_some() {
        config.http.token = args.http_token.clone();
    }
    if let Some(level) = &args.log_level {
        config.logging.level = level.clone();
    }
    match args.log_format.as_deref() {
        Some("json") => config.logging.format = LogFormat::Json,
        Some(_) => config.logging.format = LogFormat::Text,
        None => {}
    }
    if args.log_file.is_some() {
        config.logging.file = args.log_file.clone();
    }
    // The flags may have made it invalid (a bad --http address, an empty token).
    if let Err(e) = config.check() {
        print_error(&e);
        return ExitCode::FAILURE;
    }
    // A level that names no level is a mistake to report, not a broker that logs nothing.
    let filter = match log_filter(&config.logging, args.verbose) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tinsel broker: {e}");
            return ExitCode::from(2);
        }
    };
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
    // tokio reads TOKIO_WORKER_THREADS itself and panics on a value it cannot use.
    if let Err(e) = check_worker_threads(std::env::var_os("TOKIO_WORKER_THREADS")) {
        eprintln!("tinsel broker: {e}");
        return ExitCode::FAILURE;
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
    // From here on SIGTERM and Ctrl-C stop the broker cleanly, also during its start.
    let stop = match runtime.block_on(async { StopSignals::install() }) {
        Ok(s) => s.wait(),
        Err(e) => {
            eprintln!("tinsel broker: cannot catch SIGTERM and SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = init_logging(&config.logging, &filter) {
        eprintln!("tinsel broker: {e}");
        return ExitCode::FAILURE;
    }

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
    let result = runtime.block_on(async move {
        let mut stop = stop;
        let broker = tokio::select! {
            biased;
            () = &mut stop => {
                tracing::info!("stopped before the listeners were bound");
                return Ok(());
            }
            b = Broker::bind(config) => b?,
        };
        broker
            .on_ready(|addrs| {
                let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                service::ready(&format!(
                    "accepting MQTT connections on {}",
                    addrs.join(", ")
                ));
            })
            .run(stop)
            .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// Checks `TOKIO_WORKER_THREADS` (the broker's worker threads; unset: one per CPU it may
/// run on), which tokio would otherwise reject with a panic.
fn check_worker_threads(value: Option<std::ffi::OsString>) -> Result<(), String> {
    let Some(value) = value else {
        return Ok(());
    };
    match value.to_str().map(str::parse::<usize>) {
        Some(Ok(n)) if n > 0 => Ok(()),
        _ => Err(format!(
            "TOKIO_WORKER_THREADS={} is not a number of threads: set a whole number above 0, \
             or unset it for one worker thread per CPU",
            value.to_string_lossy()
        )),
    }
}

/// Levels a log filter may name.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a log filter: comma-separated `LEVEL` or `TARGET=LEVEL` directives. Stricter
/// than tracing's own parser, which takes a mistyped level ("inof") for a module name and
/// then logs nothing.
fn check_filter(filter: &str) -> Result<(), String> {
    for directive in filter.split(',').map(str::trim) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.is_empty() => level,
            Some(_) => directive,
            None => directive,
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "invalid log level {directive:?} in {filter:?}: use one of {} \
                 (optionally per module: \"info,tinsel_core=debug\")",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// The log filter in force: `-v` means debug; RUST_LOG overrides the configuration.
fn log_filter(logging: &LoggingConfig, verbose: bool) -> Result<String, String> {
    if verbose || logging.verbose {
        return Ok("debug".to_owned());
    }
    match std::env::var("RUST_LOG") {
        Ok(f) => {
            check_filter(&f).map_err(|e| format!("RUST_LOG: {e}"))?;
            Ok(f)
        }
        Err(_) => {
            check_filter(&logging.level)?;
            Ok(logging.level.clone())
        }
    }
}

/// Installs the log subscriber: `filter` (see [`log_filter`]), text or JSON lines,
/// standard error or an appended file.
fn init_logging(logging: &LoggingConfig, filter: &str) -> Result<(), String> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;

    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("invalid log level {filter:?}: {e}"))?;
    let (writer, ansi) = match &logging.file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
            // Each event is formatted first and written with one call: appended lines
            // from several threads do not interleave.
            (BoxMakeWriter::new(std::sync::Arc::new(file)), false)
        }
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match logging.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        _ => builder.with_ansi(ansi).try_init(),
    };
    Ok(())
}

/// One line: a configuration line's error as `FILE:LINE: what is wrong`, others prefixed
/// with the command.
fn print_error(e: &Error) {
    match e {
        Error::ConfigLine { .. } => eprintln!("{e}"),
        _ => eprintln!("tinsel broker: {e}"),
    }
}
