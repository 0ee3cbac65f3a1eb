//! `tinsel lab`: the whole Wareville lab in one command: the broker (recording its traffic),
//! the lights with their control page, and the saboteur.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tinsel_broker::{Broker, Config, Error as BrokerError, ListenerConfig};
use tinsel_lights::{CancellationToken, Device, Scenario, page, saboteur};

use crate::lights_cmd::{bind_http, init_logging, joined, load_scenario, runtime, shutdown_signal};

/// The capture's file name, in `--out`.
const CAPTURE_FILE: &str = "challenge.pcapng";

/// How long the lights and the page get to say goodbye before the broker stops.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Start the whole lab: broker (with traffic capture), lights, control page, saboteur.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The broker's port.
    #[arg(long, default_value_t = 1883, value_name = "P")]
    mqtt_port: u16,
    /// The control page's port.
    #[arg(long, default_value_t = 8080, value_name = "H")]
    http_port: u16,
    /// The flag shown once the lights are on (overrides the scenario's).
    #[arg(long, value_name = "TEXT", env = "TINSEL_FLAG", hide_env_values = true)]
    flag: Option<String>,
    /// Where the capture (challenge.pcapng) goes.
    #[arg(long, default_value = ".", value_name = "DIR")]
    out: PathBuf,
    /// Scenario file (TOML); the built-in Wareville scenario when not given.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Address the broker and the page listen on (`0.0.0.0` to reach them from other
    /// machines, e.g. a learner's VM).
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    bind: IpAddr,
}

/// Runs the lab until Ctrl-C (or SIGTERM).
pub(crate) fn run(args: Args) -> ExitCode {
    init_logging("info,tinsel_broker=warn");
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tinsel lab: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(lab(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tinsel lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn lab(args: Args) -> anyhow::Result<()> {
    let scenario = load_scenario(args.scenario.as_deref(), args.flag)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create the output directory {}", args.out.display()))?;
    let capture = args.out.join(CAPTURE_FILE);

    let config = Config {
        listeners: vec![ListenerConfig {
            address: args.bind.to_string(),
            port: args.mqtt_port,
            ..ListenerConfig::default()
        }],
        capture: Some(capture.clone()),
        ..Config::default()
    };
    let broker = Broker::bind(config).await.map_err(|e| match e {
        BrokerError::Bind { .. } => anyhow::anyhow!(
            "cannot start the broker: {e} (is another broker on port {}? pick another with --mqtt-port)",
            args.mqtt_port
        ),
        BrokerError::Capture { .. } => {
            anyhow::anyhow!("{e} (pick a writable directory with --out)")
        }
        e => anyhow::anyhow!("cannot start the broker: {e}"),
    })?;
    let broker_addr = broker
        .local_addrs()
        .first()
        .copied()
        .context("the broker has no listener")?;
    let http = bind_http(&args.bind.to_string(), args.http_port).await?;
    let http_addr = http.local_addr()?;

    // The lights and the saboteur reach the broker on loopback when it listens everywhere.
    let connect_ip = if broker_addr.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        broker_addr.ip()
    };
    let connect_host = connect_ip.to_string();

    let stop_broker = CancellationToken::new();
    let stop_lights = CancellationToken::new();
    let mut broker_task = tokio::spawn(broker.run(stop_broker.clone().cancelled_owned()));

    let device = Device::new(connect_host.clone(), broker_addr.port(), scenario.clone());
    let mut device_state = device.state();
    let router = page::router(
        &scenario,
        &display_addr(broker_addr),
        device.state(),
        stop_lights.clone(),
    );
    let mut page_task = tokio::spawn(page::serve(http, router, stop_lights.clone()));
    let mut device_task = tokio::spawn(device.run(stop_lights.clone()));
    let mut saboteur_task = {
        let scenario = scenario.clone();
        let stop = stop_lights.clone();
        tokio::spawn(async move {
            // The villain strikes once the lights listen, so the capture shows both.
            tokio::select! {
                r = device_state.wait_for(|s| s.subscribed) => { if r.is_err() { return Ok(()); } }
                () = stop.cancelled() => return Ok(()),
            }
            saboteur::run(&connect_host, broker_addr.port(), &scenario, stop).await
        })
    };

    print_banner(&scenario, broker_addr, http_addr, &capture);

    let mut saboteur_done = false;
    let failure = loop {
        tokio::select! {
            () = shutdown_signal() => break None,
            r = &mut broker_task => break Some(match r {
                Ok(Ok(())) => Err(anyhow::anyhow!("the broker stopped")),
                Ok(Err(e)) => Err(anyhow::Error::from(e).context("the broker failed")),
                Err(e) => Err(anyhow::anyhow!("internal error: {e}")),
            }),
            r = &mut device_task => break Some(joined(r).context("the lights failed")),
            r = &mut page_task => break Some(joined(r).context("the control page failed")),
            r = &mut saboteur_task, if !saboteur_done => {
                saboteur_done = true;
                match joined(r) {
                    Ok(()) => println!("[lab] the saboteur has struck: the lights are off. Your turn."),
                    Err(e) => eprintln!("[lab] the saboteur failed: {e:#}"),
                }
            }
        }
    };

    println!("[lab] stopping...");
    stop_lights.cancel();
    let _ = tokio::time::timeout(STOP_GRACE, async {
        let _ = (&mut device_task).await;
        let _ = (&mut page_task).await;
        if !saboteur_done {
            let _ = (&mut saboteur_task).await;
        }
    })
    .await;
    // Let the broker read the lights' goodbye (status offline, DISCONNECT) before it stops,
    // so the capture ends cleanly.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_broker.cancel();
    if !broker_task.is_finished() {
        let _ = tokio::time::timeout(STOP_GRACE * 2, &mut broker_task).await;
    }
    println!("[lab] the capture is in {}", capture.display());
    match failure {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// `localhost:P` for a loopback address (what the learner types), else the address.
fn display_addr(addr: SocketAddr) -> String {
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

fn print_banner(
    scenario: &Scenario,
    broker: SocketAddr,
    http: SocketAddr,
    capture: &std::path::Path,
) {
    let port = broker.port();
    let page_host = if http.ip().is_unspecified() || http.ip().is_loopback() {
        format!("localhost:{}", http.port())
    } else {
        http.to_string()
    };
    let port_arg = if port == 1883 {
        String::new()
    } else {
        format!(" -p {port}")
    };
    let decode_as = if port == 1883 {
        String::new()
    } else {
        format!(" -d tcp.port=={port},mqtt")
    };
    let wireshark_hint = if port == 1883 {
        String::new()
    } else {
        format!(
            "\n       Port {port} is not MQTT's usual 1883: in Wireshark use Analyze > Decode As...,\
             \n       TCP port {port} as MQTT."
        )
    };
    let capture = capture.display();
    println!(
        "\n  {title}: a Tinsel lab\n\
         \n  MQTT broker        {broker}  (listening on {broker_raw})\
         \n  The lights' window http://{page_host}/\
         \n  Traffic capture    {capture}  (recording)\
         \n\
         \n  Someone has switched the lights off. What to do:\
         \n    1. Open the lights' window in a browser: http://{page_host}/\
         \n    2. Open the capture in Wireshark and apply the display filter `mqtt`\
         \n       (or: tshark -r {capture}{decode_as} -Y mqtt -V){wireshark_hint}\
         \n    3. Find the topic the lights listen to, and how they were switched off.\
         \n    4. Switch them back on:\
         \n         mosquitto_pub -h localhost{port_arg} -t \"<topic>\" -m \"<message>\"\
         \n       and watch the window.\
         \n\
         \n  Ctrl-C stops the lab.\n",
        title = scenario.title,
        broker = display_addr(broker),
        broker_raw = broker,
    );
}
