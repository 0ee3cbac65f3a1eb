//! The side-by-side comparison: start each broker with equivalent settings on a free
//! 127.0.0.1 port, run the same suite against it (each case in a fresh broker, the load
//! generator as a child `tinsel bench` process), pinned and unpinned, and write
//! `results.md`, `results.json` and one SVG chart per placement.
//!
//! Equivalent settings: no persistence, no `$SYS` updates, unlimited (or very large)
//! queues and in-flight windows, no connection throttling, TCP_NODELAY, quiet logs.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::BenchError;

mod chart;
mod latency;

pub use latency::DEFAULT_ROUNDS as DEFAULT_LATENCY_ROUNDS;

/// What to compare and where to write.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// Short runs (3 s) and 2,000 idle connections.
    pub quick: bool,
    /// Brokers: any of `tinsel`, `mosquitto`, `rumqttd`.
    pub brokers: Vec<String>,
    /// Placements: `pinned` (broker on core 0, load on core 1), `unpinned`.
    pub modes: Vec<String>,
    /// Case ids to run; empty runs the whole suite.
    pub cases: Vec<String>,
    /// The tinsel binary: runs the load generator, and `tinsel broker`.
    pub tinsel: PathBuf,
    /// Mosquitto's broker binary.
    pub mosquitto: PathBuf,
    /// rumqttd's binary.
    pub rumqttd: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// Print each measurement as it finishes.
    pub verbose: bool,
    /// Scheduling niceness for brokers and load generator (`nice -n`); negative values
    /// (root only) keep other work on a shared machine from taking their CPU.
    pub nice: i32,
    /// Rounds of each case (at least 1), every broker once per round, one after the other:
    /// the tables show each figure's median over the rounds, and the targets its range.
    /// The latency cases have their own count, [`CompareConfig::latency_rounds`].
    pub repeat: u32,
    /// Rounds of each latency case (at least 1), the brokers taking turns in every round.
    pub latency_rounds: u32,
    /// Seconds of each latency round; `None`: 5 (`quick`: 2).
    pub latency_duration: Option<f64>,
}

/// One case of the suite.
#[derive(Debug, Clone)]
struct Case {
    id: &'static str,
    title: &'static str,
    args: Vec<String>,
}

/// Idle connections for the memory case. The file-descriptor hard limit here is 20,000
/// per process (broker and load generator alike), so 20,000 exactly cannot be opened.
const IDLE_CONNS: u32 = 19_900;

/// The cases; latency rounds last `latency_s` seconds.
fn suite(quick: bool, latency_s: f64) -> Vec<Case> {
    let d = if quick { "3" } else { "10" };
    let idle = if quick { 2_000 } else { IDLE_CONNS };
    let a = |s: String| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let mut cases = vec![
        Case {
            id: "p2p-q0",
            title: "p2p QoS 0, 10 pairs",
            args: a(format!(
                "p2p -n 10 --qos 0 --size 64 --duration {d} --time-limit 90"
            )),
        },
        Case {
            id: "p2p-q1",
            title: "p2p QoS 1, 10 pairs",
            args: a(format!(
                "p2p -n 10 --qos 1 --size 64 --window 100 --duration {d} --time-limit 90"
            )),
        },
        Case {
            id: "p2p-q2",
            title: "p2p QoS 2, 10 pairs",
            args: a(format!(
                "p2p -n 10 --qos 2 --size 64 --window 100 --duration {d} --time-limit 90"
            )),
        },
        Case {
            id: "fanout-q0",
            title: "fan-out 1→50 QoS 0",
            args: a(format!(
                "fanout -n 50 --qos 0 --size 64 --duration {d} --time-limit 90"
            )),
        },
        Case {
            id: "idle-conn",
            title: "idle connections",
            args: a(format!(
                "conn -n {idle} --duration 3 --connect-concurrency 100 --time-limit 120"
            )),
        },
    ];
    cases.extend(latency::cases(latency_s));
    cases
}

/// A broker process under test.
struct Running {
    child: Child,
    port: u16,
    command: String,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL after two seconds.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, BenchError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// Writes `name`'s config for `port` into `dir` and returns its command line.
fn broker_command(
    cfg: &CompareConfig,
    name: &str,
    port: u16,
    dir: &Path,
) -> Result<Vec<String>, BenchError> {
    let write = |file: &str, text: String| -> Result<String, BenchError> {
        let p = dir.join(file);
        std::fs::write(&p, text)?;
        Ok(p.display().to_string())
    };
    Ok(match name {
        "tinsel" => {
            let conf = write(
                "tinsel.toml",
                format!(
                    "sys_interval = 0\n\n[[listeners]]\naddress = \"127.0.0.1\"\nport = {port}\n\n\
                     [limits]\nmax_inflight = 65535\nmax_queued_messages = 1000000\n\
                     max_queued_bytes = 0\nmax_connections = 100000\n\n[logging]\nlevel = \"warn\"\n"
                ),
            )?;
            vec![
                cfg.tinsel.display().to_string(),
                "broker".into(),
                "-c".into(),
                conf,
            ]
        }
        "mosquitto" => {
            let conf = write(
                "mosquitto.conf",
                format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                     sys_interval 0\nmax_inflight_messages 0\nmax_queued_messages 0\n\
                     max_connections -1\nset_tcp_nodelay true\nlog_dest stderr\n\
                     log_type error\nconnection_messages false\n"
                ),
            )?;
            vec![cfg.mosquitto.display().to_string(), "-c".into(), conf]
        }
        "rumqttd" => {
            let conf = write(
                "rumqttd.toml",
                format!(
                    "id = 0\n\n[router]\nid = 0\nmax_connections = 100000\n\
                     max_outgoing_packet_count = 100000\nmax_segment_size = 104857600\n\
                     max_segment_count = 10\n\n[v4.1]\nname = \"v4-1\"\n\
                     listen = \"127.0.0.1:{port}\"\nnext_connection_delay_ms = 0\n\
                     [v4.1.connections]\nconnection_timeout_ms = 60000\n\
                     max_payload_size = 1048576\nmax_inflight_count = 1000\n\
                     dynamic_filters = true\n"
                ),
            )?;
            vec![cfg.rumqttd.display().to_string(), "-c".into(), conf]
        }
        other => {
            return Err(BenchError::Config(format!(
                "unknown broker {other:?}: use tinsel, mosquitto or rumqttd"
            )));
        }
    })
}

fn start_broker(
    cfg: &CompareConfig,
    name: &str,
    pinned: bool,
    dir: &Path,
) -> Result<Running, BenchError> {
    let port = free_port()?;
    let mut argv = broker_command(cfg, name, port, dir)?;
    if pinned {
        argv.splice(0..0, ["taskset".to_string(), "-c".into(), "0".into()]);
    }
    if cfg.nice != 0 {
        argv.splice(
            0..0,
            ["nice".to_string(), "-n".into(), cfg.nice.to_string()],
        );
    }
    let log = std::fs::File::create(dir.join(format!("{name}-{port}.log")))?;
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| BenchError::Config(format!("cannot start {}: {e}", argv[0])))?;
    let mut running = Running {
        child,
        port,
        command: argv.join(" "),
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(BenchError::Config(format!(
                "{name} exited at start ({status}); log in {}",
                dir.display()
            )));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(running);
        }
        if Instant::now() > deadline {
            running.stop();
            return Err(BenchError::Config(format!(
                "{name} is not listening after 10 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One measurement's outcome.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Measurement {
    mode: String,
    broker: String,
    case: String,
    /// Which round of the case (0-based; see [`CompareConfig::repeat`]).
    #[serde(default)]
    round: u32,
    broker_command: String,
    bench_command: String,
    report: Option<Value>,
    error: Option<String>,
}

fn run_case(
    cfg: &CompareConfig,
    broker: &str,
    mode: &str,
    case: &Case,
    round: u32,
    dir: &Path,
) -> Measurement {
    let pinned = mode == "pinned";
    let mut m = Measurement {
        mode: mode.into(),
        broker: broker.into(),
        case: case.id.into(),
        round,
        broker_command: String::new(),
        bench_command: String::new(),
        report: None,
        error: None,
    };
    let running = match start_broker(cfg, broker, pinned, dir) {
        Ok(r) => r,
        Err(e) => {
            m.error = Some(e.to_string());
            return m;
        }
    };
    m.broker_command = running.command.clone();
    let mut argv: Vec<String> = Vec::new();
    if cfg.nice != 0 {
        argv.extend(["nice".to_string(), "-n".into(), cfg.nice.to_string()]);
    }
    if pinned {
        argv.extend(["taskset", "-c", "1"].map(String::from));
    }
    argv.push(cfg.tinsel.display().to_string());
    argv.push("bench".into());
    argv.extend(case.args.iter().cloned());
    argv.extend([
        "-p".to_string(),
        running.port.to_string(),
        "--broker-pid".into(),
        running.pid().to_string(),
        "--json".into(),
        "--no-progress".into(),
    ]);
    if pinned {
        argv.extend(["--threads", "1"].map(String::from));
    }
    m.bench_command = argv.join(" ");
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    running.stop();
    match out {
        Ok(o) => match serde_json::from_slice::<Value>(&o.stdout) {
            Ok(v) => {
                if v.get("ok") != Some(&Value::Bool(true)) {
                    m.error = Some(
                        v.get("errors")
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| "run failed".into()),
                    );
                }
                if v.get("scenario").is_some() {
                    m.report = Some(v);
                }
            }
            Err(_) => {
                m.error = Some(format!(
                    "no JSON from the load generator: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
        },
        Err(e) => m.error = Some(format!("cannot run {}: {e}", argv[0])),
    }
    m
}

/// What `results.json` holds: the run's settings and every measurement, enough to render
/// `results.md` and the charts again ([`render`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Saved {
    quick: bool,
    nice: i32,
    #[serde(default = "one")]
    repeat: u32,
    /// Rounds of the latency cases; absent in results from before they had their own count
    /// (they then ran `repeat` rounds).
    #[serde(default)]
    latency_rounds: Option<u32>,
    /// Seconds of each latency round (absent: as long as the other cases).
    #[serde(default)]
    latency_duration: Option<f64>,
    brokers: Vec<String>,
    modes: Vec<String>,
    cases: Vec<String>,
    machine: String,
    versions: String,
    took_s: f64,
    measurements: Vec<Measurement>,
    /// Every latency figure: median, range and each round (written for readers of the
    /// JSON; computed again from `measurements` when rendering).
    #[serde(default)]
    latency: Vec<latency::Summary>,
}

impl Saved {
    /// Rounds that `case` ran.
    fn rounds(&self, case: &str) -> u32 {
        if latency::is_latency(case) {
            self.latency_rounds.unwrap_or(self.repeat)
        } else {
            self.repeat
        }
    }

    /// Results from before the latency cases were split by rate name the 10k one
    /// `latency-q1`: they are shown as `latency-q1-10k`.
    fn upgrade(&mut self) {
        for c in &mut self.cases {
            *c = latency::resolve(c).to_string();
        }
        for m in &mut self.measurements {
            m.case = latency::resolve(&m.case).to_string();
        }
    }
}

/// A results file from before `repeat` ran each case once.
fn one() -> u32 {
    1
}

/// Writes `results.md`, `results.json` and the charts for `saved` into `out`.
fn write_outputs(out: &Path, saved: &mut Saved) -> Result<(), BenchError> {
    saved.upgrade();
    let latency_s = saved
        .latency_duration
        .unwrap_or(if saved.quick { 3.0 } else { 10.0 });
    let cfg = CompareConfig {
        quick: saved.quick,
        brokers: saved.brokers.clone(),
        modes: saved.modes.clone(),
        cases: saved.cases.clone(),
        tinsel: PathBuf::from("tinsel"),
        mosquitto: PathBuf::from("mosquitto"),
        rumqttd: PathBuf::from("rumqttd"),
        out: out.to_path_buf(),
        verbose: false,
        nice: saved.nice,
        repeat: saved.repeat,
        latency_rounds: saved.latency_rounds.unwrap_or(saved.repeat),
        latency_duration: Some(latency_s),
    };
    let cases: Vec<Case> = suite(saved.quick, latency_s)
        .into_iter()
        .filter(|c| saved.cases.iter().any(|id| id == c.id))
        .collect();
    std::fs::create_dir_all(out)?;
    saved.latency = latency::summaries(&saved.measurements, &saved.modes, &cases, &saved.brokers);
    let md = markdown(&cfg, &cases, saved);
    std::fs::write(out.join("results.md"), &md)?;
    let json = serde_json::to_string_pretty(saved)
        .map_err(|e| BenchError::Io(std::io::Error::other(e)))?;
    std::fs::write(out.join("results.json"), json)?;
    for mode in &saved.modes {
        let rows = chart_rows(&cfg, &cases, &saved.measurements, mode);
        let path = out.join(format!("chart-{mode}.svg"));
        chart::draw(
            &path,
            &format!("{mode}: × Mosquitto (higher is better)"),
            &saved.brokers,
            &rows,
        )
        .map_err(|e| BenchError::Io(std::io::Error::other(e.to_string())))?;
    }
    Ok(())
}

/// Renders `results.md` and the charts again from a saved `results.json` into `out`
/// (after a change to the report layout, without measuring again).
pub fn render(results_json: &Path, out: &Path) -> Result<String, BenchError> {
    let text = std::fs::read_to_string(results_json)?;
    let mut saved: Saved = serde_json::from_str(&text).map_err(|e| {
        BenchError::Config(format!(
            "{}: not a compare results file: {e}",
            results_json.display()
        ))
    })?;
    write_outputs(out, &mut saved)?;
    Ok(format!(
        "wrote {}/results.md and chart-*.svg",
        out.display()
    ))
}

/// Runs the suite and writes the results; returns a short summary.
pub fn run(cfg: &CompareConfig) -> Result<String, BenchError> {
    let latency_s = cfg
        .latency_duration
        .unwrap_or_else(|| latency::default_duration(cfg.quick));
    if !(latency_s > 0.0 && latency_s <= 60.0) {
        return Err(BenchError::Config(format!(
            "--latency-duration {latency_s}: use a number of seconds above 0, at most 60"
        )));
    }
    let all = suite(cfg.quick, latency_s);
    for name in &cfg.cases {
        if !all.iter().any(|c| c.id == latency::resolve(name)) {
            let ids: Vec<&str> = all.iter().map(|c| c.id).collect();
            return Err(BenchError::Config(format!(
                "no such case {name:?}: use {} (latency-q1 is latency-q1-10k)",
                ids.join(", ")
            )));
        }
    }
    let cases: Vec<Case> = all
        .into_iter()
        .filter(|c| cfg.cases.is_empty() || cfg.cases.iter().any(|id| latency::resolve(id) == c.id))
        .collect();
    for b in &cfg.brokers {
        let path = match b.as_str() {
            "tinsel" => &cfg.tinsel,
            "mosquitto" => &cfg.mosquitto,
            "rumqttd" => &cfg.rumqttd,
            other => {
                return Err(BenchError::Config(format!(
                    "unknown broker {other:?}: use tinsel, mosquitto or rumqttd"
                )));
            }
        };
        if !path.exists() {
            return Err(BenchError::Config(format!(
                "{b}: {} not found (see bench/compare.sh for how to install it)",
                path.display()
            )));
        }
    }
    for m in &cfg.modes {
        if m != "pinned" && m != "unpinned" {
            return Err(BenchError::Config(format!(
                "unknown mode {m:?}: use pinned, unpinned"
            )));
        }
    }
    if cfg.repeat == 0 || cfg.latency_rounds == 0 {
        return Err(BenchError::Config(
            "--repeat 0 or --latency-rounds 0 measures nothing: use 1 or more".into(),
        ));
    }
    let dir = std::env::temp_dir().join(format!("tinsel-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let mut results = Vec::new();
    let mut measure = |mode: &str, case: &Case, round: u32, rounds: u32| {
        for broker in &cfg.brokers {
            let m = run_case(cfg, broker, mode, case, round, &dir);
            if cfg.verbose {
                eprintln!(
                    "[{:>5.0} s] {mode} {} {broker}{}: {}",
                    started.elapsed().as_secs_f64(),
                    case.id,
                    if rounds > 1 {
                        format!(" (round {})", round + 1)
                    } else {
                        String::new()
                    },
                    summary_line(&m)
                );
            }
            results.push(m);
        }
    };
    let (paced, others): (Vec<&Case>, Vec<&Case>) =
        cases.iter().partition(|c| latency::is_latency(c.id));
    for mode in &cfg.modes {
        // Brokers take turns within each round, so a slow minute on the shared machine
        // lands on all of them rather than on one broker's every run.
        for case in &others {
            for round in 0..cfg.repeat {
                measure(mode, case, round, cfg.repeat);
            }
        }
        // The latency cases' rounds go round the cases too: a slow minute then lands on one
        // round of each case, not on several rounds of one.
        for round in 0..cfg.latency_rounds {
            for case in &paced {
                measure(mode, case, round, cfg.latency_rounds);
            }
        }
    }
    let mut saved = Saved {
        quick: cfg.quick,
        nice: cfg.nice,
        repeat: cfg.repeat,
        latency_rounds: Some(cfg.latency_rounds),
        latency_duration: Some(latency_s),
        brokers: cfg.brokers.clone(),
        modes: cfg.modes.clone(),
        cases: cases.iter().map(|c| c.id.to_string()).collect(),
        machine: machine(),
        versions: versions(cfg),
        took_s: started.elapsed().as_secs_f64(),
        measurements: results,
        latency: Vec::new(),
    };
    write_outputs(&cfg.out, &mut saved)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(format!(
        "wrote {}/results.md, results.json and chart-*.svg in {:.0} s",
        cfg.out.display(),
        started.elapsed().as_secs_f64()
    ))
}

/// A report's error list (a JSON array of strings) with repeats counted:
/// `8× publisher: ...; subscriber: ...`. Anything else is returned as it is.
fn grouped_errors(e: &str) -> String {
    let Ok(list) = serde_json::from_str::<Vec<String>>(e) else {
        return e.to_string();
    };
    let mut groups: Vec<(String, usize)> = Vec::new();
    for item in list {
        match groups.iter_mut().find(|(g, _)| *g == item) {
            Some((_, n)) => *n += 1,
            None => groups.push((item, 1)),
        }
    }
    groups
        .into_iter()
        .map(|(g, n)| if n > 1 { format!("{n}× {g}") } else { g })
        .collect::<Vec<_>>()
        .join("; ")
}

fn summary_line(m: &Measurement) -> String {
    let mut s = String::new();
    if let Some(r) = &m.report {
        for (label, v) in metrics(r) {
            let _ = write!(s, "{label} {} ", fmt_num(v));
        }
    }
    if let Some(e) = &m.error {
        let _ = write!(s, "ERROR {}", grouped_errors(e));
    }
    s
}

/// The figures a report contributes: (metric, value).
fn metrics(r: &Value) -> Vec<(&'static str, f64)> {
    let f = |p: &str| r.pointer(p).and_then(Value::as_f64);
    let mut v = Vec::new();
    if r.get("scenario").and_then(Value::as_str) == Some("conn") {
        if let Some(x) = f("/broker_process/rss_per_conn_kib") {
            v.push(("KiB/conn", x));
        }
        if let Some(x) = f("/connect/rate") {
            v.push(("conn/s", x));
        }
        // The wall-clock rate is bounded by the load generator's own connect cost; this is
        // what each connection cost the broker.
        if let (Some(n), Some(cpu)) = (f("/connect/connected"), f("/broker_process/cpu_s"))
            && cpu > 0.0
        {
            v.push(("conn/CPU-s", n / cpu));
        }
        if let Some(x) = f("/connect/latency_us/p99") {
            v.push(("connect p99 µs", x));
        }
        // Near 1 the generator limits the wall-clock rate; well below, the two sides wait
        // for each other (see docs/benchmarks/README.md).
        if let (Some(cpu), Some(secs)) = (f("/load_cpu_s"), f("/connect/seconds"))
            && secs > 0.0
        {
            v.push(("load cores", cpu / secs));
        }
        return v;
    }
    if let Some(x) = f("/receive_rate") {
        v.push(("msg/s", x));
    }
    if let Some(x) = f("/broker_process/msgs_per_cpu_s") {
        v.push(("msg/CPU-s", x));
    }
    if let Some(x) = f("/broker_process/cpu_cores") {
        v.push(("cores", x));
    }
    if let (Some(w), Some(p), Some(r)) = (
        f("/broker_process/cpu_wait_s"),
        f("/publish_s"),
        f("/receive_s"),
    ) {
        let secs = p.max(r);
        if secs > 0.0 {
            v.push(("wait cores", w / secs));
        }
    }
    for (label, key) in [
        ("p50 µs", "p50"),
        ("p99 µs", "p99"),
        ("p99.9 µs", "p999"),
        ("max µs", "max"),
    ] {
        if let Some(x) = f(&format!("/latency_us/{key}")) {
            v.push((label, x));
        }
    }
    if let (Some(lost), Some(exp)) = (f("/lost"), f("/expected")) {
        if exp > 0.0 {
            v.push(("loss %", 100.0 * lost / exp));
        }
    }
    // How busy the load generator was: near its core count it, not the broker, limits.
    if let (Some(cpu), Some(p), Some(r)) = (f("/load_cpu_s"), f("/publish_s"), f("/receive_s")) {
        let secs = p.max(r);
        if secs > 0.0 {
            v.push(("load cores", cpu / secs));
        }
    }
    v
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        let s = format!("{v:.0}");
        // Thousands separators make six-digit rates readable.
        let (neg, digits) = s
            .strip_prefix('-')
            .map_or((false, s.as_str()), |d| (true, d));
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        if neg { format!("-{out}") } else { out }
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A broker's runs of one case in one placement, every round.
fn runs<'a>(
    results: &'a [Measurement],
    mode: &'a str,
    case: &'a str,
    broker: &'a str,
) -> impl Iterator<Item = &'a Measurement> {
    results
        .iter()
        .filter(move |m| m.mode == mode && m.case == case && m.broker == broker)
}

/// One metric of a broker's runs of a case, sorted; a run without it (it failed) is left out.
fn samples(
    results: &[Measurement],
    mode: &str,
    case: &str,
    broker: &str,
    metric: &str,
) -> Vec<f64> {
    let mut v: Vec<f64> = runs(results, mode, case, broker)
        .filter_map(|m| {
            metrics(m.report.as_ref()?)
                .into_iter()
                .find(|(l, _)| *l == metric)
                .map(|(_, v)| v)
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The median over the rounds (of an even count, the mean of the middle two).
fn value(
    results: &[Measurement],
    mode: &str,
    case: &str,
    broker: &str,
    metric: &str,
) -> Option<f64> {
    median(&samples(results, mode, case, broker, metric))
}

fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Metrics shown per case, and whether higher is better (`None`: no ratio makes sense).
fn case_metrics(case: &str) -> &'static [(&'static str, Option<bool>)] {
    match case {
        "idle-conn" => &[
            ("KiB/conn", Some(false)),
            ("conn/s", Some(true)),
            ("conn/CPU-s", Some(true)),
            ("connect p99 µs", Some(false)),
            ("load cores", None),
        ],
        c if latency::is_latency(c) => &[
            ("p50 µs", Some(false)),
            ("p99 µs", Some(false)),
            ("p99.9 µs", Some(false)),
            ("max µs", Some(false)),
            ("msg/s", Some(true)),
            ("msg/CPU-s", Some(true)),
            ("cores", None),
            ("wait cores", None),
            ("load cores", None),
        ],
        _ => &[
            ("msg/CPU-s", Some(true)),
            ("msg/s", Some(true)),
            ("cores", None),
            ("wait cores", None),
            ("load cores", None),
            ("p99 µs", Some(false)),
            ("loss %", None),
        ],
    }
}

/// `value / mosquitto` (or the inverse when lower is better).
fn ratio(v: Option<f64>, base: Option<f64>, higher_better: bool) -> Option<f64> {
    let (v, b) = (v?, base?);
    if v <= 0.0 || b <= 0.0 {
        return None;
    }
    Some(if higher_better { v / b } else { b / v })
}

fn chart_rows(
    cfg: &CompareConfig,
    cases: &[Case],
    results: &[Measurement],
    mode: &str,
) -> Vec<(String, Vec<Option<f64>>)> {
    let mut rows = Vec::new();
    for case in cases {
        let shown: &[(&str, bool)] = match case.id {
            "idle-conn" => &[("KiB/conn", false), ("conn/s", true), ("conn/CPU-s", true)],
            c if latency::is_latency(c) => &[("p99 µs", false), ("p99.9 µs", false)],
            _ => &[("msg/CPU-s", true), ("msg/s", true)],
        };
        for (metric, hb) in shown {
            let base = value(results, mode, case.id, "mosquitto", metric);
            let vals = cfg
                .brokers
                .iter()
                .map(|b| ratio(value(results, mode, case.id, b, metric), base, *hb))
                .collect();
            rows.push((format!("{} {metric}", case.id), vals));
        }
    }
    rows
}

fn markdown(cfg: &CompareConfig, cases: &[Case], saved: &Saved) -> String {
    let results = &saved.measurements[..];
    let mut s = String::new();
    let _ = writeln!(s, "# Broker comparison\n");
    let _ = writeln!(
        s,
        "Generated by `tinsel bench compare{}{}{}{}` on {} in {:.0} s. {}\n",
        if cfg.quick { " --quick" } else { "" },
        if cfg.nice != 0 {
            format!(" --nice {}", cfg.nice)
        } else {
            String::new()
        },
        if saved.repeat > 1 {
            format!(" --repeat {}", saved.repeat)
        } else {
            String::new()
        },
        match (saved.latency_rounds, saved.latency_duration) {
            (Some(n), Some(d)) => format!(" --latency-rounds {n} --latency-duration {d}"),
            _ => String::new(),
        },
        saved.machine,
        saved.took_s,
        saved.versions
    );
    let _ = writeln!(
        s,
        "64-byte payloads, MQTT 3.1.1. Each measurement starts a fresh broker. *pinned*: broker on \
         core 0 (`taskset -c 0`), load generator on core 1 with one thread; *unpinned*: no \
         placement, load generator with two threads. msg/CPU-s = deliveries per broker CPU-second \
         (utime + stime from /proc); cores = broker CPU seconds per wall second; wait cores = \
         seconds the broker was runnable but waiting for a CPU, per wall second (other work on \
         the machine); load cores = the load generator's CPU seconds per wall second; ratios are \
         against Mosquitto in the same run (for latency and memory: Mosquitto's figure divided \
         by the broker's, so above 1 is better).\n"
    );
    let latency_rounds = saved.rounds("latency-q1-10k");
    if saved.repeat > 1 || latency_rounds > 1 {
        let _ = writeln!(
            s,
            "Each throughput and connection case ran {} round(s) and each latency case {} \
             round(s), the brokers one after the other in each round; every figure is the \
             median of a broker's rounds (the targets table adds their range, the latency \
             section every round).\n",
            saved.repeat, latency_rounds
        );
    }
    for mode in &cfg.modes {
        let _ = writeln!(s, "## {mode}\n");
        let _ = write!(s, "| case | metric |");
        for b in &cfg.brokers {
            let _ = write!(s, " {b} |");
        }
        for b in cfg.brokers.iter().filter(|b| *b != "mosquitto") {
            let _ = write!(s, " {b} ÷ mosquitto |");
        }
        let _ = writeln!(s);
        let ncols =
            2 + cfg.brokers.len() + cfg.brokers.iter().filter(|b| *b != "mosquitto").count();
        let _ = writeln!(s, "|{}", "---|".repeat(ncols));
        for case in cases {
            for (metric, hb) in case_metrics(case.id) {
                let _ = write!(s, "| {} | {metric} |", case.title);
                for b in &cfg.brokers {
                    let mut all = runs(results, mode, case.id, b).peekable();
                    let failed = all.peek().is_some() && all.all(|m| m.report.is_none());
                    let cell = if failed {
                        "failed".to_string()
                    } else {
                        value(results, mode, case.id, b, metric).map_or("–".into(), fmt_num)
                    };
                    let _ = write!(s, " {cell} |");
                }
                let base = value(results, mode, case.id, "mosquitto", metric);
                for b in cfg.brokers.iter().filter(|b| *b != "mosquitto") {
                    let r =
                        hb.and_then(|hb| ratio(value(results, mode, case.id, b, metric), base, hb));
                    let _ = write!(s, " {} |", r.map_or("–".into(), |r| format!("{r:.2}×")));
                }
                let _ = writeln!(s);
            }
        }
        let _ = writeln!(s, "\n![{mode}](chart-{mode}.svg)\n");
    }
    latency::markdown(&mut s, &saved.latency, latency_rounds);
    let problems: Vec<&Measurement> = results.iter().filter(|m| m.error.is_some()).collect();
    let _ = writeln!(s, "## Errors and delivery checks\n");
    if problems.is_empty() {
        let _ = writeln!(s, "None: no loss at QoS 1 or 2, no failed runs.\n");
    } else {
        for m in problems {
            let _ = writeln!(
                s,
                "- {}: {}",
                run_name(m, saved.rounds(&m.case)),
                grouped_errors(m.error.as_deref().unwrap_or_default())
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "QoS 0 loss (allowed by the protocol), per run:\n");
    for m in results {
        if let Some(r) = &m.report {
            let lost = r.get("lost").and_then(Value::as_u64).unwrap_or(0);
            let dup = r.get("duplicates").and_then(Value::as_u64).unwrap_or(0);
            let re = r.get("reordered").and_then(Value::as_u64).unwrap_or(0);
            if lost + dup + re > 0 {
                let _ = writeln!(
                    s,
                    "- {}: lost {lost}, duplicates {dup}, reordered {re} of {}",
                    run_name(m, saved.rounds(&m.case)),
                    r.get("expected").map(Value::to_string).unwrap_or_default()
                );
            }
        }
    }
    let _ = writeln!(s, "\n## Targets, tinsel against the same run\n");
    targets(&mut s, cfg, cases, results);
    let _ = writeln!(s, "\n## Exact commands\n");
    let _ = writeln!(
        s,
        "Ports and pids differ per run; config files were written to a temporary folder:\n"
    );
    let _ = writeln!(s, "```");
    for m in results.iter().filter(|m| m.round == 0) {
        let _ = writeln!(s, "# {} {} {}", m.mode, m.case, m.broker);
        let _ = writeln!(s, "{}", m.broker_command);
        let _ = writeln!(s, "{}", m.bench_command);
    }
    if saved.repeat > 1 || latency_rounds > 1 {
        let _ = writeln!(
            s,
            "# each of these ran {} times (rounds), the latency cases {} times",
            saved.repeat, latency_rounds
        );
    }
    let _ = writeln!(s, "```\n\nBroker configurations (port substituted):\n");
    let tmp = std::env::temp_dir().join(format!("tinsel-compare-cfg-{}", std::process::id()));
    if std::fs::create_dir_all(&tmp).is_ok() {
        for b in &cfg.brokers {
            if broker_command(cfg, b, 1883, &tmp).is_ok() {
                for f in ["tinsel.toml", "mosquitto.conf", "rumqttd.toml"] {
                    if f.starts_with(b.as_str()) {
                        if let Ok(t) = std::fs::read_to_string(tmp.join(f)) {
                            let _ = writeln!(s, "`{f}`:\n\n```\n{t}```\n");
                        }
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&tmp);
    }
    s
}

/// `pinned p2p-q1 tinsel`, and the round when there were several.
fn run_name(m: &Measurement, repeat: u32) -> String {
    let mut name = format!("{} {} {}", m.mode, m.case, m.broker);
    if repeat > 1 {
        let _ = write!(name, " (round {})", m.round + 1);
    }
    name
}

fn targets(s: &mut String, cfg: &CompareConfig, cases: &[Case], results: &[Measurement]) {
    if !cfg.brokers.iter().any(|b| b == "tinsel") {
        let _ = writeln!(s, "Tinsel was not part of this run.");
        return;
    }
    let _ = writeln!(
        s,
        "| target | placement | tinsel | mosquitto | rumqttd | tinsel ÷ mosquitto | met? |\n\
         |---|---|---|---|---|---|---|"
    );
    let v = |mode: &str, case: &str, b: &str, metric: &str| value(results, mode, case, b, metric);
    let mut row = |name: &str,
                   mode: &str,
                   case: &str,
                   metric: &str,
                   test: &dyn Fn(f64, f64, Option<f64>) -> bool| {
        let higher_better = case_metrics(case)
            .iter()
            .find(|(l, _)| *l == metric)
            .and_then(|(_, hb)| *hb)
            .unwrap_or(true);
        let (t, m, r) = (
            v(mode, case, "tinsel", metric),
            v(mode, case, "mosquitto", metric),
            v(mode, case, "rumqttd", metric),
        );
        let met = match (t, m) {
            (Some(t), Some(m)) => Some(test(t, m, r)),
            _ => None,
        };
        // The median, and with several rounds the range it came from.
        let c = |b: &str| {
            let all = samples(results, mode, case, b, metric);
            match (median(&all), all.first(), all.last()) {
                (Some(x), Some(lo), Some(hi)) if all.len() > 1 => {
                    format!("{} ({}–{})", fmt_num(x), fmt_num(*lo), fmt_num(*hi))
                }
                (Some(x), _, _) => fmt_num(x),
                _ => "–".to_string(),
            }
        };
        let verdict = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(
            s,
            "| {name} | {mode} | {} | {} | {} | {} | {verdict} |",
            c("tinsel"),
            c("mosquitto"),
            c("rumqttd"),
            // For latency and memory, Mosquitto's figure over Tinsel's: above 1 is better.
            ratio(t, m, higher_better).map_or("–".into(), |r| format!("{r:.2}×"))
        );
    };
    for mode in &cfg.modes {
        for (case, factor) in [("p2p-q0", 4.0), ("p2p-q1", 6.0), ("fanout-q0", 11.0)] {
            row(
                &format!("{case}: msg per broker CPU-s ≥ {factor}× Mosquitto and > rumqttd"),
                mode,
                case,
                "msg/CPU-s",
                &|t, m, r| t >= factor * m && r.is_none_or(|r| t > r),
            );
        }
    }
    if cfg.modes.iter().any(|m| m == "unpinned") {
        for case in ["p2p-q0", "p2p-q1", "fanout-q0"] {
            row(
                &format!("{case}: throughput ≥ 2× Mosquitto and > rumqttd"),
                "unpinned",
                case,
                "msg/s",
                &|t, m, r| t >= 2.0 * m && r.is_none_or(|r| t > r),
            );
        }
    }
    for mode in &cfg.modes {
        for case in cases.iter().filter(|c| latency::is_latency(c.id)) {
            for metric in ["p99 µs", "p99.9 µs"] {
                row(
                    &format!("{case}: {metric} ≤ Mosquitto", case = case.id),
                    mode,
                    case.id,
                    metric,
                    &|t, m, _| t <= m,
                );
            }
        }
    }
    for mode in &cfg.modes {
        row(
            "RSS KiB per idle connection ≤ Mosquitto",
            mode,
            "idle-conn",
            "KiB/conn",
            &|t, m, _| t <= m,
        );
    }
    for mode in &cfg.modes {
        row(
            "connect rate ≥ 2× Mosquitto",
            mode,
            "idle-conn",
            "conn/s",
            &|t, m, _| t >= 2.0 * m,
        );
        row(
            "connections per broker CPU-s ≥ 2× Mosquitto",
            mode,
            "idle-conn",
            "conn/CPU-s",
            &|t, m, _| t >= 2.0 * m,
        );
    }
    let bad: Vec<String> = results
        .iter()
        .filter(|m| m.broker == "tinsel")
        .filter_map(|m| {
            let r = m.report.as_ref()?;
            let qos = r.get("qos").and_then(Value::as_u64)?;
            let n = ["lost", "duplicates", "reordered"]
                .iter()
                .map(|k| r.get(*k).and_then(Value::as_u64).unwrap_or(0))
                .sum::<u64>();
            (qos > 0 && n > 0).then(|| format!("{} {}", m.mode, m.case))
        })
        .collect();
    let ran_acked = results.iter().any(|m| {
        m.broker == "tinsel"
            && m.report
                .as_ref()
                .and_then(|r| r.get("qos").and_then(Value::as_u64))
                .is_some_and(|q| q > 0)
    });
    let _ = writeln!(
        s,
        "| no loss, duplicates or reordering at QoS 1 and 2 | all | {} | | | | {} |",
        if bad.is_empty() {
            "none".to_string()
        } else {
            bad.join(", ")
        },
        if !ran_acked {
            "not measured"
        } else if bad.is_empty() {
            "yes"
        } else {
            "**no**"
        }
    );
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), Linux {kernel}")
}

fn versions(cfg: &CompareConfig) -> String {
    let mut v = Vec::new();
    for b in &cfg.brokers {
        let text = match b.as_str() {
            "mosquitto" => Command::new(&cfg.mosquitto)
                .arg("-h")
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .map(|l| l.trim().to_string())
                }),
            "rumqttd" => Some("rumqttd 0.20.0".to_string()),
            "tinsel" => Some(format!("tinsel {}", env!("CARGO_PKG_VERSION"))),
            _ => None,
        };
        if let Some(t) = text {
            v.push(t);
        }
    }
    format!("Brokers: {}.", v.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(fmt_num(1_234_567.4), "1,234,567");
        assert_eq!(fmt_num(123.0), "123");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(0.716), "0.72");
    }

    #[test]
    fn ratios_read_higher_as_better() {
        assert_eq!(ratio(Some(4.0), Some(2.0), true), Some(2.0));
        assert_eq!(ratio(Some(1.0), Some(4.0), false), Some(4.0));
        assert_eq!(ratio(Some(0.0), Some(4.0), true), None);
        assert_eq!(ratio(None, Some(4.0), true), None);
    }

    #[test]
    fn metrics_come_from_the_report_json() {
        let r = serde_json::json!({
            "scenario": "p2p", "receive_rate": 1000.0, "publish_s": 2.0, "receive_s": 2.0,
            "load_cpu_s": 0.5, "lost": 10, "expected": 100,
            "broker_process": {"msgs_per_cpu_s": 5000.0, "cpu_cores": 0.9, "cpu_wait_s": 0.2},
            "latency_us": {"p99": 42.0}
        });
        let m: std::collections::HashMap<_, _> = metrics(&r).into_iter().collect();
        assert_eq!(m["msg/s"], 1000.0);
        assert_eq!(m["msg/CPU-s"], 5000.0);
        assert_eq!(m["p99 µs"], 42.0);
        assert_eq!(m["loss %"], 10.0);
        assert_eq!(m["load cores"], 0.25);
        assert_eq!(m["wait cores"], 0.1);
        let c = serde_json::json!({"scenario": "conn", "load_cpu_s": 0.1,
            "connect": {"rate": 900.0, "connected": 100, "seconds": 0.2,
                        "latency_us": {"p99": 1500.0}},
            "broker_process": {"rss_per_conn_kib": 0.7, "cpu_s": 0.5}});
        let m: std::collections::HashMap<_, _> = metrics(&c).into_iter().collect();
        assert_eq!((m["conn/s"], m["KiB/conn"]), (900.0, 0.7));
        assert_eq!(m["conn/CPU-s"], 200.0);
        assert_eq!(m["connect p99 µs"], 1500.0);
        assert_eq!(m["load cores"], 0.5);
    }

    fn p99_run(broker: &str, round: u32, p99: Option<f64>) -> Measurement {
        Measurement {
            mode: "pinned".into(),
            broker: broker.into(),
            case: "latency-q1".into(),
            round,
            broker_command: String::new(),
            bench_command: String::new(),
            report: p99.map(|p| serde_json::json!({"scenario": "p2p", "latency_us": {"p99": p}})),
            error: p99.is_none().then(|| "run failed".to_string()),
        }
    }

    #[test]
    fn figures_are_the_median_of_the_rounds_and_failed_rounds_are_left_out() {
        let runs = [
            p99_run("tinsel", 0, Some(500.0)),
            p99_run("mosquitto", 0, Some(400.0)),
            p99_run("tinsel", 1, Some(300.0)),
            p99_run("mosquitto", 1, None),
            p99_run("tinsel", 2, Some(350.0)),
            p99_run("mosquitto", 2, Some(480.0)),
        ];
        let v = |b| value(&runs, "pinned", "latency-q1", b, "p99 µs");
        assert_eq!(v("tinsel"), Some(350.0));
        assert_eq!(v("mosquitto"), Some(440.0));
        assert_eq!(v("rumqttd"), None);
        assert_eq!(
            samples(&runs, "pinned", "latency-q1", "tinsel", "p99 µs"),
            [300.0, 350.0, 500.0]
        );
    }
}
