//! `tinsel lab`: the whole Wareville lab in one command: the broker (recording its traffic),
//! the lights with their control page, and the saboteur. A scenario may add a TLS listener
//! (certificates in `lab_tls.rs`) and lock the broker with a password file written here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tinsel_auth::{DEFAULT_ITERATIONS, HashKind, PasswordEditor, PasswordHash};
use tinsel_broker::config::{AccessConfig, Transport};
use tinsel_broker::{Broker, Config, Error as BrokerError, ListenerConfig};
use tinsel_client::TlsOptions;
use tinsel_lights::{CancellationToken, Device, Scenario, page, saboteur};

use crate::lab_tls::{self, LabTls};
use crate::lights_cmd::{bind_http, init_logging, joined, load_scenario, runtime, shutdown_signal};

/// The capture's file name, in `--out`.
const CAPTURE_FILE: &str = "challenge.pcapng";

/// The password file of a scenario that refuses anonymous clients, in `--out`.
const PASSWORD_FILE: &str = "lab-passwd";

/// How long the lights and the page get to say goodbye before the broker stops.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Start the whole lab: broker (with traffic capture), lights, control page, saboteur.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The broker's port.
    #[arg(long, default_value_t = 1883, value_name = "P")]
    mqtt_port: u16,
    /// Add a TLS listener on this port (the scenario's `[tls]` says who uses it; by
    /// default the lights do). Unless the scenario names its own, a CA and a certificate
    /// for localhost are made in `--out`.
    #[arg(long, value_name = "P")]
    tls_port: Option<u16>,
    /// The control page's port.
    #[arg(long, default_value_t = 8080, value_name = "H")]
    http_port: u16,
    /// The flag shown once the lights are on (overrides the scenario's).
    #[arg(long, value_name = "TEXT", env = "TINSEL_FLAG", hide_env_values = true)]
    flag: Option<String>,
    /// Where the capture (challenge.pcapng) goes, and the TLS certificates and password
    /// file when the scenario needs them.
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
    let mut scenario = load_scenario(args.scenario.as_deref(), args.flag)?;
    if let Some(port) = args.tls_port {
        scenario = scenario.with_tls_port(port);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create the output directory {}", args.out.display()))?;
    let capture = args.out.join(CAPTURE_FILE);

    let mut listeners = vec![ListenerConfig {
        address: args.bind.to_string(),
        port: args.mqtt_port,
        ..ListenerConfig::default()
    }];
    let tls = match &scenario.tls {
        Some(settings) => {
            let files = lab_tls::prepare(settings, &args.out, args.bind)?;
            listeners.push(ListenerConfig {
                address: args.bind.to_string(),
                port: settings.port,
                transport: Transport::Tls,
                certfile: Some(files.certfile.clone()),
                keyfile: Some(files.keyfile.clone()),
                ..ListenerConfig::default()
            });
            Some(files)
        }
        None => None,
    };
    let access = if scenario.broker.allow_anonymous {
        AccessConfig::default()
    } else {
        AccessConfig {
            allow_anonymous: Some(false),
            password_file: Some(write_password_file(&scenario, &args.out)?),
            ..AccessConfig::default()
        }
    };
    let config = Config {
        listeners,
        capture: Some(capture.clone()),
        access,
        ..Config::default()
    };
    let tls_port = scenario.tls.as_ref().map(|t| t.port);
    let broker = Broker::bind(config).await.map_err(|e| match &e {
        BrokerError::Bind { addr, .. } => {
            let (port, flag) = match tls_port {
                Some(p) if addr.ends_with(&format!(":{p}")) => (p, "--tls-port"),
                _ => (args.mqtt_port, "--mqtt-port"),
            };
            anyhow::anyhow!(
                "cannot start the broker: {e} (is another broker on port {port}? pick another with {flag})"
            )
        }
        BrokerError::Capture { .. } => {
            anyhow::anyhow!("{e} (pick a writable directory with --out)")
        }
        e => anyhow::anyhow!("cannot start the broker: {e}"),
    })?;
    let addrs = broker.local_addrs();
    let broker_addr = addrs
        .first()
        .copied()
        .context("the broker has no listener")?;
    // The TLS listener is the second, when there is one.
    let tls_addr = tls.as_ref().and_then(|_| addrs.get(1).copied());
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

    // Who connects over TLS, to the TLS port, checking the lab's CA.
    let over_tls = |uses: bool| match (&tls, tls_addr) {
        (Some(files), Some(addr)) if uses => Some((
            addr.port(),
            TlsOptions {
                ca_file: Some(files.cafile.clone()),
                ..TlsOptions::default()
            },
        )),
        _ => None,
    };
    let settings = scenario.tls.clone().unwrap_or_default();
    let (lights_tls, saboteur_tls) = (
        over_tls(scenario.tls.is_some() && settings.lights),
        over_tls(scenario.tls.is_some() && settings.saboteur),
    );
    let mut device = Device::new(
        connect_host.clone(),
        lights_tls.as_ref().map_or(broker_addr.port(), |(p, _)| *p),
        scenario.clone(),
    );
    if let Some((_, options)) = &lights_tls {
        device = device.with_tls(options.clone());
    }
    let device_addr = match (&lights_tls, tls_addr) {
        (Some(_), Some(addr)) => addr,
        _ => broker_addr,
    };
    let mut device_state = device.state();
    let router = page::router(
        &scenario,
        &display_addr(device_addr),
        device.state(),
        stop_lights.clone(),
    );
    let mut page_task = tokio::spawn(page::serve(http, router, stop_lights.clone()));
    let mut device_task = tokio::spawn(device.run(stop_lights.clone()));
    let mut saboteur_task = {
        let scenario = scenario.clone();
        let stop = stop_lights.clone();
        let (port, options) = match saboteur_tls {
            Some((port, options)) => (port, Some(options)),
            None => (broker_addr.port(), None),
        };
        tokio::spawn(async move {
            // The villain strikes once the lights listen, so the capture shows both.
            tokio::select! {
                r = device_state.wait_for(|s| s.subscribed) => { if r.is_err() { return Ok(()); } }
                () = stop.cancelled() => return Ok(()),
            }
            saboteur::run(&connect_host, port, options, &scenario, stop).await
        })
    };

    print_banner(&Banner {
        scenario: &scenario,
        broker: broker_addr,
        tls: tls.as_ref().zip(tls_addr),
        http: http_addr,
        capture: &capture,
    });

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

/// What the banner tells the learner.
struct Banner<'a> {
    scenario: &'a Scenario,
    broker: SocketAddr,
    /// The TLS listener's files and address, if there is one.
    tls: Option<(&'a LabTls, SocketAddr)>,
    http: SocketAddr,
    capture: &'a std::path::Path,
}

fn print_banner(b: &Banner<'_>) {
    let port = b.broker.port();
    let http = b.http;
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
    let login = !b.scenario.broker.allow_anonymous;
    let credentials = if login {
        " -u \"<user name>\" -P \"<password>\""
    } else {
        ""
    };
    let login_hint = if login {
        "\n       The broker only lets in clients that log in. The lights do: their CONNECT\
         \n       carries a user name and a password."
    } else {
        ""
    };
    let settings = b.scenario.tls.clone().unwrap_or_default();
    let tls_hint = match (b.tls.is_some(), settings.lights, settings.saboteur) {
        (false, ..) | (true, false, false) => "",
        (true, true, false) => {
            "\n       The lights talk to the broker over TLS: in the capture their traffic is\
             \n       encrypted, but not everybody's is."
        }
        (true, false, true) => {
            "\n       The saboteur came over TLS: what it sent is encrypted in the capture,\
             \n       but look at what the broker passed on to the lights."
        }
        (true, true, true) => {
            "\n       The lights and the saboteur both use TLS: the capture shows nothing\
             \n       readable of them (this one is a demonstration, not a puzzle)."
        }
    };
    let (tls_line, tls_step) = match b.tls {
        Some((files, addr)) => (
            format!(
                "\n  MQTT over TLS      {}  (CA certificate: {})",
                display_addr(addr),
                files.cafile.display()
            ),
            format!(
                "\n       or over TLS (nothing of it readable in the capture):\
                 \n         mosquitto_pub -h localhost -p {} --cafile {}{credentials} -t \"<topic>\" -m \"<message>\"",
                addr.port(),
                files.cafile.display()
            ),
        ),
        None => (String::new(), String::new()),
    };
    let capture = b.capture.display();
    println!(
        "\n  {title}: a Tinsel lab\n\
         \n  MQTT broker        {broker}  (listening on {broker_raw}){tls_line}\
         \n  The lights' window http://{page_host}/\
         \n  Traffic capture    {capture}  (recording)\
         \n\
         \n  Someone has switched the lights off. What to do:\
         \n    1. Open the lights' window in a browser: http://{page_host}/\
         \n    2. Open the capture in Wireshark and apply the display filter `mqtt`\
         \n       (or: tshark -r {capture}{decode_as} -Y mqtt -V){wireshark_hint}\
         \n    3. Find the topic the lights listen to, and how they were switched off.{tls_hint}{login_hint}\
         \n    4. Switch them back on:\
         \n         mosquitto_pub -h localhost{port_arg}{credentials} -t \"<topic>\" -m \"<message>\"{tls_step}\
         \n       and watch the window.\
         \n\
         \n  Ctrl-C stops the lab.\n",
        title = b.scenario.title,
        broker = display_addr(b.broker),
        broker_raw = b.broker,
    );
}

/// Writes the password file of a scenario that refuses anonymous clients: its logins,
/// hashed as `tinsel passwd` (and `mosquitto_passwd`) hash them by default.
fn write_password_file(scenario: &Scenario, out: &std::path::Path) -> anyhow::Result<PathBuf> {
    let mut file = PasswordEditor::new();
    for (user, password) in scenario.logins() {
        let hash = PasswordHash::new(
            HashKind::Sha512Pbkdf2,
            DEFAULT_ITERATIONS,
            password.as_bytes(),
        )
        .with_context(|| format!("cannot hash the password of {user:?}"))?;
        file.set(user, &hash)
            .with_context(|| format!("the scenario's user name {user:?}"))?;
    }
    let path = out.join(PASSWORD_FILE);
    file.save(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
