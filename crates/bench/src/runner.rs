//! Runs one scenario: opens the connections, starts every publisher at once, drains, and
//! turns what the tasks saw into a [`Report`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use tinsel_codec::{ByteStr, Properties, Publish, QoS, encode_packet};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::conn::{Conn, ConnOpts};
use crate::load::{Live, PubOutcome, PubPlan, publisher, subscriber};
use crate::procstat::{self, ProcSample};
use crate::report::{BrokerStats, ConnectStats, Latency, Report};
use crate::tracker::{Stream, Tracker, new_histogram};
use crate::wire::WireOpts;
use crate::{BenchConfig, BenchError, Scenario, payload};

/// Connections one source address carries before the next one is used (the ephemeral
/// port range holds about 28,000 per address).
const CONNS_PER_SOURCE: u32 = 10_000;

/// The first explicit source port when connections are spread over source addresses.
const FIRST_SOURCE_PORT: usize = 10_000;

/// Time between "everyone connected" and the start signal, so every task is parked.
const START_DELAY: Duration = Duration::from_millis(50);

/// Time the `conn` scenario lets the broker settle before reading its memory.
const SETTLE: Duration = Duration::from_millis(1000);

/// Runs `cfg` on its own tokio runtime and returns its report.
pub fn run(cfg: &BenchConfig) -> Result<Report, BenchError> {
    cfg.validate()?;
    let threads = match cfg.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    let live = Arc::new(Live::default());
    let bar = cfg
        .progress
        .then(|| crate::progress::start(cfg, live.clone()));
    let limit = cfg.time_limit;
    let deadline = Instant::now() + limit;
    // Traffic runs stop themselves before `deadline` and still report; this outer cap
    // catches what cannot (a connect that never finishes).
    let backstop = limit + cfg.drain_timeout + Duration::from_secs(5);
    let result = rt.block_on(async {
        match tokio::time::timeout(backstop, run_async(cfg, live.clone(), deadline)).await {
            Ok(r) => r,
            Err(_) => Err(BenchError::TimeLimit(limit.as_secs())),
        }
    });
    if let Some(bar) = bar {
        bar.finish();
    }
    // Tasks still running after a time-limit error are dropped with the runtime; a
    // bounded wait keeps a stuck socket from holding the process.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn run_async(
    cfg: &BenchConfig,
    live: Arc<Live>,
    deadline: Instant,
) -> Result<Report, BenchError> {
    match cfg.scenario {
        Scenario::Conn => match tokio::time::timeout_at(deadline.into(), run_conn(cfg, live)).await
        {
            Ok(r) => r,
            Err(_) => Err(BenchError::TimeLimit(cfg.time_limit.as_secs())),
        },
        _ => run_traffic(cfg, live, deadline).await,
    }
}

/// A short id for this run's topics and client ids.
fn run_id() -> String {
    let mixed = payload::now_ns() ^ (u64::from(std::process::id()) << 40);
    format!("{:08x}", (mixed ^ (mixed >> 32)) as u32)
}

/// The source addresses to spread `total` connections over.
fn sources(cfg: &BenchConfig, total: u32) -> Vec<Option<IpAddr>> {
    let ip = cfg.broker.ip();
    let wanted = match cfg.source_addrs {
        0 => total.div_ceil(CONNS_PER_SOURCE).max(1),
        n => u32::from(n),
    };
    if wanted <= 1 || !ip.is_loopback() || !ip.is_ipv4() {
        return vec![None];
    }
    (1..=wanted.min(254))
        .map(|i| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8))))
        .collect()
}

/// What to do right after a connection opens.
#[derive(Clone)]
enum Setup {
    Nothing,
    Subscribe(Arc<dyn Fn(u32) -> String + Send + Sync>, QoS),
}

/// Where and how fast connections are opened.
#[derive(Clone, Copy)]
struct Opener<'a> {
    opts: &'a ConnOpts,
    sources: &'a [Option<IpAddr>],
    concurrency: u32,
    live: &'a Arc<Live>,
}

/// Connections opened by [`open_many`], in order (a failed one is `None`), the errors,
/// and how long each successful one took from `connect` to its CONNACK (and SUBACK).
struct Opened {
    conns: Vec<Option<Conn>>,
    errors: Vec<BenchError>,
    latency: Histogram<u64>,
}

/// Opens `n` connections, at most `concurrency` at a time.
///
/// Every connection is a task waiting for a permit, and a finished one hands its permit
/// to the next: the generator answers a batch of CONNACKs, then opens a batch of new
/// connections, so brokers see connections arrive in bursts, as after a restart. (A
/// fixed pool of openers, each opening its next connection the moment one is done, gave a
/// steady trickle instead; measured, it cost every broker more CPU per connection.)
async fn open_many(
    how: &Opener<'_>,
    n: u32,
    first_source: usize,
    id: impl Fn(u32) -> String,
    setup: Setup,
) -> Opened {
    let Opener {
        opts,
        sources,
        concurrency,
        live,
    } = *how;
    let sem = Arc::new(Semaphore::new(concurrency as usize));
    let mut set = JoinSet::new();
    for i in 0..n {
        let sem = sem.clone();
        let opts = opts.clone();
        let k = first_source + i as usize;
        // Explicit source ports below the ephemeral range (32768 and up), one per
        // connection and address; past the range the kernel picks (port 0).
        let port = u16::try_from(FIRST_SOURCE_PORT + k / sources.len())
            .ok()
            .filter(|p| *p < 32_768)
            .unwrap_or(0);
        let source = sources[k % sources.len()].map(|ip| (ip, port));
        let client_id = id(i);
        let setup = setup.clone();
        let live = live.clone();
        set.spawn(async move {
            let _permit = sem.acquire().await;
            let t = Instant::now();
            let r = async {
                let mut c = Conn::open(&opts, source, &client_id).await?;
                if let Setup::Subscribe(filter, qos) = &setup {
                    c.subscribe(&filter(i), *qos).await?;
                }
                Ok::<Conn, BenchError>(c)
            }
            .await;
            let took = r
                .is_ok()
                .then(|| u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            if r.is_ok() {
                live.connected.fetch_add(1, Ordering::Relaxed);
            }
            (i, r, took)
        });
    }
    let mut out = Opened {
        conns: (0..n).map(|_| None).collect(),
        errors: Vec::new(),
        latency: new_histogram(),
    };
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, r, took)) => {
                if let Some(ns) = took {
                    out.latency.saturating_record(ns.max(1));
                }
                match r {
                    Ok(c) => out.conns[i as usize] = Some(c),
                    Err(e) => out.errors.push(e),
                }
            }
            Err(e) => out.errors.push(BenchError::Io(std::io::Error::other(e))),
        }
    }
    out
}

fn sample_broker(cfg: &BenchConfig) -> Option<ProcSample> {
    cfg.broker_pid.and_then(procstat::sample)
}

fn conn_opts(cfg: &BenchConfig) -> Result<ConnOpts, BenchError> {
    let wire = WireOpts::new(
        cfg.transport,
        cfg.broker,
        cfg.cafile.as_deref(),
        &cfg.tls_server_name,
        &cfg.ws_path,
    )?;
    Ok(ConnOpts {
        broker: cfg.broker,
        version: cfg.version,
        keep_alive: cfg.keep_alive,
        persistent: cfg.persistent,
        username: cfg
            .username
            .as_deref()
            .map(ByteStr::try_from)
            .transpose()
            .map_err(|_| BenchError::Config("the user name is not a valid MQTT string".into()))?,
        password: cfg.password.clone().map(Bytes::from),
        wire: Arc::new(wire),
    })
}

/// `conn`: open, settle, measure, hold, reset.
async fn run_conn(cfg: &BenchConfig, live: Arc<Live>) -> Result<Report, BenchError> {
    let run = run_id();
    let n = cfg.clients;
    let srcs = sources(cfg, n);
    let before = sample_broker(cfg);
    let load_before = procstat::sample_self();
    let t0 = Instant::now();
    let opts = conn_opts(cfg)?;
    let how = Opener {
        opts: &opts,
        sources: &srcs,
        concurrency: cfg.connect_concurrency,
        live: &live,
    };
    let opened = open_many(&how, n, 0, |i| format!("tb{run}c{i}"), Setup::Nothing).await;
    let (conns, errors) = (opened.conns, opened.errors);
    let connect_s = t0.elapsed().as_secs_f64();
    let connected = conns.iter().filter(|c| c.is_some()).count() as u32;
    tokio::time::sleep(SETTLE).await;
    let loaded = sample_broker(cfg);
    if let Some(hold) = cfg.duration.and_then(|d| d.checked_sub(SETTLE)) {
        tokio::time::sleep(hold).await;
    }
    let after = sample_broker(cfg);
    let load_after = procstat::sample_self();
    // Reset instead of a FIN handshake: thousands of connections in TIME_WAIT would use
    // up the ephemeral ports of the next run.
    for c in conns.into_iter().flatten() {
        let _ = socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO));
    }
    let mut errs: Vec<String> = Vec::new();
    if !errors.is_empty() {
        errs.push(format!(
            "{} of {n} connections failed; first: {}",
            errors.len(),
            errors[0]
        ));
    }
    let connect = ConnectStats {
        attempted: n,
        connected,
        failed: n - connected,
        seconds: connect_s,
        rate: if connect_s > 0.0 {
            f64::from(connected) / connect_s
        } else {
            0.0
        },
        source_addrs: srcs.len() as u32,
        latency_us: Latency::from_ns(&opened.latency),
    };
    let broker_process = broker_stats(cfg, before, loaded, after, connected, None);
    Ok(Report {
        scenario: cfg.scenario,
        broker: cfg.broker.to_string(),
        transport: cfg.transport,
        mqtt: cfg.version.to_string(),
        qos: cfg.qos.as_u8(),
        payload_bytes: cfg.payload_size,
        publishers: 0,
        subscribers: 0,
        rate_per_publisher: None,
        window: cfg.window,
        publish_s: 0.0,
        receive_s: 0.0,
        sent: 0,
        acked: 0,
        expected: None,
        received: 0,
        lost: 0,
        duplicates: 0,
        reordered: 0,
        foreign: 0,
        send_rate: 0.0,
        receive_rate: 0.0,
        latency_us: None,
        connect,
        broker_process,
        load_cpu_s: cpu_delta(load_before, load_after),
        ok: errs.is_empty(),
        errors: errs,
    })
}

fn cpu_delta(a: Option<ProcSample>, b: Option<ProcSample>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => b.cpu_since(&a),
        _ => 0.0,
    }
}

/// Broker figures from three samples; `msgs` is what its CPU time is divided by.
fn broker_stats(
    cfg: &BenchConfig,
    before: Option<ProcSample>,
    loaded: Option<ProcSample>,
    after: Option<ProcSample>,
    conns: u32,
    msgs_and_secs: Option<(u64, f64)>,
) -> Option<BrokerStats> {
    let (pid, before, loaded, after) = (cfg.broker_pid?, before?, loaded?, after?);
    let cpu_s = after.cpu_since(&loaded);
    let (msgs_per_cpu_s, cpu_cores) = match msgs_and_secs {
        Some((m, secs)) => (
            (cpu_s > 0.0).then(|| m as f64 / cpu_s),
            if secs > 0.0 { cpu_s / secs } else { 0.0 },
        ),
        None => (None, 0.0),
    };
    Some(BrokerStats {
        pid,
        cpu_s: if msgs_and_secs.is_some() {
            cpu_s
        } else {
            loaded.cpu_since(&before)
        },
        msgs_per_cpu_s,
        cpu_cores,
        cpu_wait_s: if msgs_and_secs.is_some() {
            (after.wait_s - loaded.wait_s).max(0.0)
        } else {
            (loaded.wait_s - before.wait_s).max(0.0)
        },
        rss_kib_before: before.rss_kib,
        rss_kib_loaded: loaded.rss_kib,
        rss_kib_after: after.rss_kib,
        rss_per_conn_kib: (conns > 0)
            .then(|| (loaded.rss_kib as f64 - before.rss_kib as f64) / f64::from(conns)),
    })
}

/// An encoded PUBLISH for `topic` with a zeroed payload of `size` bytes, and where its
/// payload and packet identifier are.
fn template(cfg: &BenchConfig, topic: &str) -> Result<(Bytes, usize, Option<usize>), BenchError> {
    let size = cfg.payload_size;
    let qos = cfg.qos;
    let p = Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::try_from(topic)
            .map_err(|_| BenchError::Config(format!("invalid topic {topic:?}")))?,
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
        properties: Properties::default(),
        payload: Bytes::from(vec![0u8; size]),
    };
    let mut buf = BytesMut::new();
    encode_packet(&p.into(), cfg.version, &mut buf)
        .map_err(|e| BenchError::Config(format!("cannot encode PUBLISH: {e}")))?;
    let payload_off = buf.len() - size;
    let layout = || BenchError::Config("unexpected PUBLISH layout from the codec".into());
    let props_len = usize::from(cfg.version.is_v5());
    if props_len == 1 && buf[payload_off - 1] != 0 {
        return Err(layout());
    }
    let id_off = if qos == QoS::AtMostOnce {
        None
    } else {
        let off = payload_off - props_len - 2;
        if buf[off..off + 2] != [0, 1] {
            return Err(layout());
        }
        Some(off)
    };
    Ok((buf.freeze(), payload_off, id_off))
}

/// Every scenario that moves messages.
async fn run_traffic(
    cfg: &BenchConfig,
    live: Arc<Live>,
    deadline: Instant,
) -> Result<Report, BenchError> {
    let run = run_id();
    let base = format!("{}/{run}", cfg.topic_prefix);
    let npub = cfg.publisher_count();
    let nsub = cfg.subscriber_count();
    let scenario = cfg.scenario;
    let srcs = sources(cfg, npub + nsub);
    let opts = conn_opts(cfg)?;

    let filter: Arc<dyn Fn(u32) -> String + Send + Sync> = {
        let base = base.clone();
        let user = cfg
            .filter
            .clone()
            .unwrap_or(format!("{}/#", cfg.topic_prefix));
        Arc::new(move |i| match scenario {
            Scenario::P2p => format!("{base}/p2p/{i}"),
            Scenario::Fanin => format!("{base}/fanin/+"),
            Scenario::Fanout => format!("{base}/fanout"),
            Scenario::Shared => format!("$share/tinsel-bench/{base}/shared/+"),
            _ => user.clone(),
        })
    };
    let topic = |i: u32| match scenario {
        Scenario::Fanout => format!("{base}/fanout"),
        s => format!("{base}/{}/{i}", s.name()),
    };

    let t0 = Instant::now();
    let before = sample_broker(cfg);
    let how = Opener {
        opts: &opts,
        sources: &srcs,
        concurrency: cfg.connect_concurrency,
        live: &live,
    };
    let subs = open_many(
        &how,
        nsub,
        0,
        |i| format!("tb{run}s{i}"),
        Setup::Subscribe(filter, cfg.qos),
    )
    .await;
    let pubs = open_many(
        &how,
        npub,
        nsub as usize,
        |i| format!("tb{run}p{i}"),
        Setup::Nothing,
    )
    .await;
    let mut latency = subs.latency;
    let _ = latency.add(&pubs.latency);
    let (subs, mut errors) = (subs.conns, subs.errors);
    let pubs_conns = pubs.conns;
    errors.extend(pubs.errors);
    let connect_s = t0.elapsed().as_secs_f64();
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    let connect = ConnectStats {
        attempted: npub + nsub,
        connected: npub + nsub,
        failed: 0,
        seconds: connect_s,
        rate: f64::from(npub + nsub) / connect_s.max(1e-9),
        source_addrs: srcs.len() as u32,
        latency_us: Latency::from_ns(&latency),
    };

    let mut plans = Vec::with_capacity(npub as usize);
    for i in 0..npub {
        let (template, payload_off, packet_id_off) = template(cfg, &topic(i))?;
        plans.push(PubPlan {
            id: i,
            template,
            payload_off,
            packet_id_off,
            qos: cfg.qos.as_u8(),
            rate: cfg.rate,
            window: u32::from(cfg.window),
            count: cfg.count,
            duration: cfg.duration,
            ack_timeout: cfg.drain_timeout,
        });
    }

    let loaded = sample_broker(cfg);
    let load_before = procstat::sample_self();
    let cancel = CancellationToken::new();
    // At the time limit (less the time publishers may wait for their last acknowledgements)
    // everything stops and the run reports what it has, as a failure.
    let cut_short = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (cancel, cut_short) = (cancel.clone(), cut_short.clone());
        let soft = deadline
            .checked_sub(cfg.drain_timeout + Duration::from_secs(1))
            .unwrap_or(deadline);
        tokio::spawn(async move {
            tokio::time::sleep_until(soft.into()).await;
            cut_short.store(true, Ordering::Relaxed);
            cancel.cancel();
        })
    };
    let go = Instant::now() + START_DELAY;
    let go_ns = payload::now_ns() + START_DELAY.as_nanos() as u64;
    let mut sub_tasks = Vec::with_capacity(nsub as usize);
    for c in subs.into_iter().flatten() {
        sub_tasks.push(tokio::spawn(subscriber(c, cancel.clone(), live.clone())));
    }
    let mut pub_tasks = Vec::with_capacity(npub as usize);
    for (c, plan) in pubs_conns.into_iter().flatten().zip(plans) {
        pub_tasks.push(tokio::spawn(publisher(
            c,
            plan,
            go,
            cancel.clone(),
            live.clone(),
        )));
    }

    let mut outcomes: Vec<PubOutcome> = Vec::with_capacity(pub_tasks.len());
    for t in pub_tasks {
        outcomes.push(t.await.unwrap_or_else(|e| PubOutcome {
            sent: 0,
            acked: 0,
            error: Some(BenchError::Io(std::io::Error::other(e))),
        }));
    }
    if scenario == Scenario::Sub {
        if let Some(d) = cfg.duration {
            tokio::time::sleep_until((go + d).into()).await;
        }
    }
    let publish_end = Instant::now();
    let sent: Vec<u64> = outcomes.iter().map(|o| o.sent).collect();
    let total_sent: u64 = sent.iter().sum();
    let expected = match scenario {
        Scenario::P2p | Scenario::Fanin | Scenario::Shared => Some(total_sent),
        Scenario::Fanout => Some(total_sent * u64::from(nsub)),
        Scenario::Pub => Some(0),
        Scenario::Sub | Scenario::Conn => None,
    };
    if let Some(exp) = expected.filter(|_| scenario != Scenario::Sub) {
        drain(&live, exp, cfg.drain_timeout, &cancel).await;
    }
    cancel.cancel();
    let mut trackers = Vec::with_capacity(sub_tasks.len());
    let mut errs: Vec<String> = Vec::new();
    for t in sub_tasks {
        match t.await {
            Ok((tr, err)) => {
                if let Some(e) = err {
                    errs.push(format!("subscriber: {e}"));
                }
                trackers.push(tr);
            }
            Err(e) => errs.push(format!("subscriber task: {e}")),
        }
    }
    let after = sample_broker(cfg);
    let load_after = procstat::sample_self();
    watchdog.abort();
    if cut_short.load(Ordering::Relaxed) {
        errs.push(format!(
            "time limit of {} s reached: the run was cut short",
            cfg.time_limit.as_secs()
        ));
    }
    for o in &outcomes {
        if let Some(e) = &o.error {
            errs.push(format!("publisher: {e}"));
        }
    }

    let mut latency = new_histogram();
    let (mut received, mut foreign, mut last_ns) = (0u64, 0u64, 0u64);
    for t in &trackers {
        let _ = latency.add(&t.latency);
        received += t.total - t.foreign;
        foreign += t.foreign;
        last_ns = last_ns.max(t.last_ns);
    }
    let (lost, duplicates, reordered) = tally(scenario, &trackers, &sent);
    let publish_s = publish_end.duration_since(go).as_secs_f64();
    let receive_s = if last_ns > go_ns {
        (last_ns - go_ns) as f64 / 1e9
    } else {
        0.0
    };
    let qos = cfg.qos.as_u8();
    if qos > 0 && lost > 0 {
        errs.push(format!("QoS {qos}: {lost} messages lost"));
    }
    if qos == 2 && duplicates > 0 {
        errs.push(format!("QoS 2: {duplicates} messages delivered twice"));
    }
    let acked: u64 = outcomes.iter().map(|o| o.acked).sum();
    if qos > 0 && acked < total_sent && errs.is_empty() {
        errs.push(format!(
            "QoS {qos}: {} publishes never acknowledged",
            total_sent - acked
        ));
    }
    let counted = if nsub > 0 { received } else { total_sent };
    let measured_s = if nsub > 0 {
        receive_s.max(publish_s)
    } else {
        publish_s
    };
    let broker_process = broker_stats(
        cfg,
        before,
        loaded,
        after,
        npub + nsub,
        Some((counted, measured_s)),
    );
    Ok(Report {
        scenario,
        broker: cfg.broker.to_string(),
        transport: cfg.transport,
        mqtt: cfg.version.to_string(),
        qos,
        payload_bytes: cfg.payload_size,
        publishers: npub,
        subscribers: nsub,
        rate_per_publisher: cfg.rate,
        window: cfg.window,
        publish_s,
        receive_s,
        sent: total_sent,
        acked,
        expected,
        received,
        lost,
        duplicates,
        reordered,
        foreign,
        send_rate: total_sent as f64 / publish_s.max(1e-9),
        receive_rate: received as f64 / receive_s.max(1e-9),
        latency_us: Latency::from_ns(&latency),
        connect,
        broker_process,
        load_cpu_s: cpu_delta(load_before, load_after),
        ok: errs.is_empty(),
        errors: errs,
    })
}

/// Waits until `expected` deliveries arrived, none arrived for `idle`, or `cancel`.
async fn drain(live: &Live, expected: u64, idle: Duration, cancel: &CancellationToken) {
    let mut last = live.received.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    loop {
        let now = live.received.load(Ordering::Relaxed);
        if now >= expected || cancel.is_cancelled() {
            return;
        }
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= idle {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Loss, duplicates and reordering over every (subscriber, publisher) stream that should
/// exist. `sent[p]` is what publisher `p` wrote.
fn tally(scenario: Scenario, trackers: &[Tracker], sent: &[u64]) -> (u64, u64, u64) {
    let (mut lost, mut dups, mut reord) = (0u64, 0u64, 0u64);
    let mut add = |s: Option<&Stream>, sent: Option<u64>| {
        let empty = Stream::default();
        let s = s.unwrap_or(&empty);
        lost += match sent {
            Some(n) => n.saturating_sub(s.unique),
            None => s.gaps(),
        };
        dups += s.duplicates;
        reord += s.reordered;
    };
    match scenario {
        Scenario::P2p => {
            for (i, t) in trackers.iter().enumerate() {
                add(t.streams.get(&(i as u32)), sent.get(i).copied());
            }
        }
        Scenario::Fanin | Scenario::Fanout => {
            for t in trackers {
                for (p, &n) in sent.iter().enumerate() {
                    add(t.streams.get(&(p as u32)), Some(n));
                }
            }
        }
        Scenario::Shared => {
            let mut merged: HashMap<u32, Stream> = HashMap::new();
            for t in trackers {
                for (p, s) in &t.streams {
                    merged.entry(*p).or_default().merge(s);
                }
            }
            for (p, &n) in sent.iter().enumerate() {
                add(merged.get(&(p as u32)), Some(n));
            }
        }
        Scenario::Sub => {
            for t in trackers {
                for s in t.streams.values() {
                    add(Some(s), None);
                }
            }
        }
        Scenario::Pub | Scenario::Conn => {}
    }
    (lost, dups, reord)
}
