//! `tinsel bench`: load-test an MQTT broker, or compare Tinsel, Mosquitto and rumqttd.

use std::io::IsTerminal;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use tinsel_bench::{BenchConfig, Scenario, Transport, compare};
use tinsel_codec::{ProtocolVersion, QoS};

/// Load scenarios and the comparison suite.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  tinsel bench p2p -n 10 --qos 1 --duration 10\n  tinsel bench fanout -n 50 --count 10000 --broker-pid $(pidof mosquitto) --json\n  tinsel bench conn -n 10000 --duration 5\n  tinsel bench p2p -p 8883 --transport tls --cafile ca.crt --qos 1 --count 10000\n  tinsel bench compare --quick"
)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open N connections, hold them for --duration, report connect rate and broker memory.
    Conn(RunArgs),
    /// N publishers, no subscriber: the broker's ingest cost.
    Pub(RunArgs),
    /// N subscribers on --filter (default `<prefix>/#`) for --duration; pair with `pub`.
    Sub(RunArgs),
    /// N publisher/subscriber pairs, one topic per pair.
    P2p(RunArgs),
    /// N publishers to one wildcard subscriber.
    Fanin(RunArgs),
    /// One publisher (--publishers) to N subscribers.
    Fanout(RunArgs),
    /// N publishers to a `$share` group of --subscribers members.
    Shared(RunArgs),
    /// Start Tinsel, Mosquitto and rumqttd and run the same suite against each.
    Compare(CompareArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Broker host.
    #[arg(short = 'H', long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(short, long, default_value_t = 1883)]
    port: u16,
    /// The scenario's N: connections, pairs, publishers or subscribers.
    #[arg(short = 'n', long = "clients", default_value_t = 10)]
    clients: u32,
    /// Publishers (fanout: default 1; shared, pub: default N).
    #[arg(long)]
    publishers: Option<u32>,
    /// Subscribers (shared: default min(N, 4), at least 2; fanin: default 1).
    #[arg(long)]
    subscribers: Option<u32>,
    /// QoS of publishes and subscriptions.
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload size in bytes (at least 24).
    #[arg(short, long, default_value_t = 64)]
    size: usize,
    /// Messages per second per publisher (default: as fast as the broker takes them).
    #[arg(short, long)]
    rate: Option<f64>,
    /// Unacknowledged QoS 1/2 publishes per publisher.
    #[arg(short, long, default_value_t = 100)]
    window: u16,
    /// MQTT version: 3.1.1, 5 or 3.1.
    #[arg(short = 'V', long = "mqtt", default_value = "3.1.1")]
    mqtt: String,
    /// Messages per publisher.
    #[arg(short, long)]
    count: Option<u64>,
    /// Seconds to publish (conn: to hold; sub: to listen). Default 10 s without --count.
    #[arg(short, long)]
    duration: Option<f64>,
    /// Hard cap on the whole run in seconds; exceeding it is an error.
    #[arg(long, default_value_t = 300.0)]
    time_limit: f64,
    /// Seconds without deliveries after which the drain ends.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// Source addresses 127.0.0.1..N to spread connections over (0: one per 10,000).
    #[arg(long, default_value_t = 0)]
    source_addrs: u8,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: u32,
    /// Keep alive in seconds (idle connections ping).
    #[arg(long, default_value_t = 300)]
    keep_alive: u16,
    /// Topic prefix; each run uses `<prefix>/<run id>/...`.
    #[arg(long, default_value = "tinsel-bench")]
    topic_prefix: String,
    /// Topic filter for the sub scenario.
    #[arg(long)]
    filter: Option<String>,
    /// The broker's pid: report its CPU seconds, messages per CPU-second and RSS.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Load generator threads (0: the CPUs this process may run on).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Never draw the progress line.
    #[arg(long)]
    no_progress: bool,
    /// How to reach the broker: tcp, tls, ws (WebSocket) or wss (WebSocket over TLS).
    #[arg(long, default_value = "tcp", value_parser = parse_transport)]
    transport: Transport,
    /// TLS: the CA certificate(s), PEM, that signed the broker's certificate.
    #[arg(long, value_name = "FILE")]
    cafile: Option<PathBuf>,
    /// TLS: the name the broker's certificate must carry.
    #[arg(long, default_value = "localhost", value_name = "NAME")]
    tls_server_name: String,
    /// WebSocket: the listener's path.
    #[arg(long, default_value = "/mqtt", value_name = "PATH")]
    ws_path: String,
    /// Persistent sessions: CONNECT without Clean Session (MQTT 5: a 300 s session expiry,
    /// ended at the end of the run), so a broker with persistence stores them.
    #[arg(long)]
    persistent: bool,
    /// User name every connection sends (as mosquitto_pub's -u).
    #[arg(short = 'u', long)]
    username: Option<String>,
    /// Password every connection sends with its user name (as mosquitto_pub's -P).
    #[arg(short = 'P', long = "pw", requires = "username")]
    password: Option<String>,
}

fn parse_transport(s: &str) -> Result<Transport, String> {
    Transport::ALL
        .into_iter()
        .find(|t| t.name() == s)
        .ok_or_else(|| format!("{s:?}: use tcp, tls, ws or wss"))
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// Short runs and 2,000 idle connections instead of 19,900 (about a minute and a half).
    #[arg(long)]
    quick: bool,
    /// Brokers to compare.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tinsel,mosquitto,rumqttd"
    )]
    brokers: Vec<String>,
    /// CPU placements: pinned (broker on core 0, load on core 1) and/or unpinned.
    #[arg(long, value_delimiter = ',', default_value = "pinned,unpinned")]
    modes: Vec<String>,
    /// Only these suite cases (default: all).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// The tinsel binary to benchmark (default: this one).
    #[arg(long)]
    tinsel: Option<PathBuf>,
    /// Mosquitto's broker.
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    mosquitto: PathBuf,
    /// rumqttd (default: ~/.cache/tinsel-bench/rumqttd/bin/rumqttd).
    #[arg(long)]
    rumqttd: Option<PathBuf>,
    /// Where results.md, results.json and the charts go.
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
    /// Print each measurement as it finishes.
    #[arg(short, long)]
    verbose: bool,
    /// Measure nothing: render results.md and the charts again from this results.json.
    #[arg(long, value_name = "RESULTS_JSON")]
    render: Option<PathBuf>,
    /// Run brokers and load generator under `nice -n N` (negative needs root): on a shared
    /// machine it keeps other work from taking their CPU.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    nice: i32,
    /// Run each case N rounds (brokers taking turns) and show medians: single runs of
    /// latency and connect rate move by a third on a shared machine.
    #[arg(long, default_value_t = 1, value_name = "N")]
    repeat: u32,
    /// Rounds of each latency case (latency-q1-1k, -10k, -50k), brokers taking turns in
    /// every round, independent of --repeat; reported as median, range and every round
    /// (default 9; with --quick 3).
    #[arg(long, value_name = "N")]
    latency_rounds: Option<u32>,
    /// Seconds of each latency round (default 5; with --quick 2).
    #[arg(long, value_name = "SECS")]
    latency_duration: Option<f64>,
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> ExitCode {
    let (scenario, a) = match args.command {
        Command::Compare(c) => return run_compare(c),
        Command::Conn(a) => (Scenario::Conn, a),
        Command::Pub(a) => (Scenario::Pub, a),
        Command::Sub(a) => (Scenario::Sub, a),
        Command::P2p(a) => (Scenario::P2p, a),
        Command::Fanin(a) => (Scenario::Fanin, a),
        Command::Fanout(a) => (Scenario::Fanout, a),
        Command::Shared(a) => (Scenario::Shared, a),
    };
    let json = a.json;
    let result = config(scenario, a).and_then(|cfg| {
        // The load generator opens as many sockets as the broker accepts.
        crate::fds::prepare(cfg.connection_count());
        tinsel_bench::run(&cfg).map_err(|e| e.to_string())
    });
    match result {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("tinsel bench: cannot write JSON: {e}"),
                }
            } else {
                print!("{}", report.human());
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "ok": false, "errors": [e] }));
            }
            eprintln!("tinsel bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn secs(v: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| format!("--{flag} must be a non-negative number of seconds"))
}

fn config(scenario: Scenario, a: RunArgs) -> Result<BenchConfig, String> {
    let broker = (a.host.as_str(), a.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", a.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", a.host))?;
    let mut cfg = BenchConfig::new(scenario, broker);
    cfg.clients = a.clients;
    cfg.publishers = a.publishers;
    cfg.subscribers = a.subscribers;
    cfg.qos = QoS::from_u8(a.qos).unwrap_or_default();
    cfg.payload_size = a.size;
    cfg.rate = a.rate;
    cfg.window = a.window;
    cfg.version = match a.mqtt.as_str() {
        "3.1.1" | "311" | "4" => ProtocolVersion::V311,
        "5" | "5.0" => ProtocolVersion::V5,
        "3.1" | "31" | "3" => ProtocolVersion::V31,
        other => return Err(format!("--mqtt {other}: use 3.1.1, 5 or 3.1")),
    };
    cfg.count = a.count;
    cfg.duration = a.duration.map(|d| secs(d, "duration")).transpose()?;
    if cfg.count.is_none() && cfg.duration.is_none() && scenario != Scenario::Conn {
        cfg.duration = Some(Duration::from_secs(10));
    }
    cfg.time_limit = secs(a.time_limit, "time-limit")?;
    cfg.drain_timeout = secs(a.drain, "drain")?;
    cfg.source_addrs = a.source_addrs;
    cfg.connect_concurrency = a.connect_concurrency;
    cfg.keep_alive = a.keep_alive;
    cfg.topic_prefix = a.topic_prefix;
    cfg.filter = a.filter;
    cfg.broker_pid = a.broker_pid;
    cfg.threads = a.threads;
    cfg.progress = !a.no_progress && std::io::stderr().is_terminal();
    cfg.transport = a.transport;
    cfg.cafile = a.cafile;
    cfg.tls_server_name = a.tls_server_name;
    cfg.ws_path = a.ws_path;
    cfg.persistent = a.persistent;
    cfg.username = a.username;
    cfg.password = a.password;
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn run_compare(c: CompareArgs) -> ExitCode {
    if let Some(json) = &c.render {
        return compare_outcome(compare::render(json, &c.out));
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let tinsel = match c.tinsel.map(Ok).unwrap_or_else(std::env::current_exe) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tinsel bench compare: cannot find the tinsel binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = compare::CompareConfig {
        quick: c.quick,
        brokers: c.brokers,
        modes: c.modes,
        cases: c.cases,
        tinsel,
        mosquitto: c.mosquitto,
        rumqttd: c
            .rumqttd
            .unwrap_or_else(|| home.join(".cache/tinsel-bench/rumqttd/bin/rumqttd")),
        out: c.out,
        verbose: c.verbose,
        nice: c.nice,
        repeat: c.repeat,
        latency_rounds: c.latency_rounds.unwrap_or(if c.quick {
            3
        } else {
            compare::DEFAULT_LATENCY_ROUNDS
        }),
        latency_duration: c.latency_duration,
    };
    compare_outcome(compare::run(&cfg))
}

/// Prints a comparison's summary, or its error as one line.
fn compare_outcome(result: Result<impl std::fmt::Display, impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tinsel bench compare: {e}");
            ExitCode::FAILURE
        }
    }
}
