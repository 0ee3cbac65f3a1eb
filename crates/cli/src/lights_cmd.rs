//! `tinsel lights`: the smart-lights device and its control page.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tinsel_lights::{CancellationToken, Device, Scenario, page};
use tokio::net::TcpListener;

/// Run the Wareville smart-lights device: an MQTT client that obeys the control topic, and
/// its live control page.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    port: u16,
    /// Serve the control page on this port.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// Serve the control page on this address.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    http_bind: String,
    /// Scenario file (TOML); the built-in Wareville scenario when not given.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// The flag shown once the lights are on (overrides the scenario's).
    #[arg(long, value_name = "TEXT", env = "TINSEL_FLAG", hide_env_values = true)]
    flag: Option<String>,
}

/// Runs the device and its page until Ctrl-C (or SIGTERM).
pub(crate) fn run(args: Args) -> ExitCode {
    init_logging("info");
    let scenario = match load_scenario(args.scenario.as_deref(), args.flag) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tinsel lights: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tinsel lights: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let http = bind_http(&args.http_bind, args.http_port).await?;
        let page_url = format!("http://{}/", http.local_addr()?);
        let device = Device::new(args.host.clone(), args.port, scenario.clone());
        let stop = CancellationToken::new();
        let router = page::router(&scenario, &device.broker(), device.state(), stop.clone());
        let mut page_task = tokio::spawn(page::serve(http, router, stop.clone()));
        let mut device_task = tokio::spawn(device.run(stop.clone()));
        println!("{}: control page at {page_url}", scenario.title);
        println!(
            "the lights obey {:?} on the broker at {}:{}",
            scenario.mqtt.control_topic, args.host, args.port
        );
        let failure = tokio::select! {
            () = shutdown_signal() => None,
            r = &mut device_task => Some(joined(r)),
            r = &mut page_task => Some(joined(r)),
        };
        stop.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let _ = (&mut device_task).await;
            let _ = (&mut page_task).await;
        })
        .await;
        match failure {
            Some(Err(e)) => Err(e),
            _ => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tinsel lights: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The scenario from `path` (or Wareville), with `flag` if given.
pub(crate) fn load_scenario(path: Option<&Path>, flag: Option<String>) -> anyhow::Result<Scenario> {
    let scenario = match path {
        Some(path) => Scenario::load(path)?,
        None => Scenario::default(),
    };
    Ok(match flag {
        Some(flag) => scenario.with_flag(flag)?,
        None => scenario,
    })
}

/// Binds the control page's listener, with an error that says what to do.
pub(crate) async fn bind_http(addr: &str, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((addr, port)).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot serve the control page on {addr}:{port}: {e} (is the port in use? pick another with --http-port)"
        )
    })
}

/// Turns a finished task into its outcome.
pub(crate) fn joined(
    r: Result<Result<(), tinsel_lights::Error>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(anyhow::anyhow!("internal error: {e}")),
    }
}

/// A multi-threaded runtime.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Logs to stderr; `RUST_LOG` overrides `default`.
pub(crate) fn init_logging(default: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
