//! The result of one run: what was sent and received, how fast, how late, and what the
//! broker process spent. Serialises to the JSON that `tinsel bench --json` prints.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::Scenario;

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario.
    pub scenario: Scenario,
    /// Broker address.
    pub broker: String,
    /// How the connections reached it.
    pub transport: crate::Transport,
    /// Protocol version (`3.1.1`, `5.0`).
    pub mqtt: String,
    /// QoS of publishes and subscriptions.
    pub qos: u8,
    /// Payload bytes per message.
    pub payload_bytes: usize,
    /// Publisher connections.
    pub publishers: u32,
    /// Subscriber connections.
    pub subscribers: u32,
    /// Messages per second per publisher, `null` for unlimited.
    pub rate_per_publisher: Option<f64>,
    /// In-flight window per publisher (QoS 1/2).
    pub window: u16,
    /// Seconds from the start signal until the publishers finished (acks included).
    pub publish_s: f64,
    /// Seconds from the start signal until the last message arrived.
    pub receive_s: f64,
    /// Messages the publishers wrote.
    pub sent: u64,
    /// QoS 1/2 messages the broker acknowledged (PUBACK or PUBCOMP).
    pub acked: u64,
    /// Deliveries expected (sent times subscribers per message), `null` when unknown.
    pub expected: Option<u64>,
    /// Benchmark messages the subscribers received, duplicates included.
    pub received: u64,
    /// Expected deliveries that never arrived (for `sub`: gaps in the sequence numbers).
    pub lost: u64,
    /// Deliveries of a message the same subscriber (or shared group) already had.
    pub duplicates: u64,
    /// Messages that arrived after a later one from the same publisher.
    pub reordered: u64,
    /// Messages without a benchmark payload (from other clients).
    pub foreign: u64,
    /// Messages written per second.
    pub send_rate: f64,
    /// Messages received per second.
    pub receive_rate: f64,
    /// End-to-end latency, microseconds; `null` when nothing arrived.
    pub latency_us: Option<Latency>,
    /// Connection setup figures (every scenario).
    pub connect: ConnectStats,
    /// The broker process, when its pid was given.
    pub broker_process: Option<BrokerStats>,
    /// CPU seconds this load generator used during the measured part.
    pub load_cpu_s: f64,
    /// Problems: loss at QoS 1/2, duplicates at QoS 2, failed connections, broker errors.
    pub errors: Vec<String>,
    /// True when `errors` is empty.
    pub ok: bool,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Latency {
    /// Percentiles of a histogram recorded in nanoseconds; `None` if it is empty.
    pub(crate) fn from_ns(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Latency {
            min: us(h.min()),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        })
    }
}

/// How connection setup went.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ConnectStats {
    /// Connections attempted.
    pub attempted: u32,
    /// Connections that got a successful CONNACK (and SUBACK for subscribers).
    pub connected: u32,
    /// Connections that failed.
    pub failed: u32,
    /// Seconds from the first connect to the last CONNACK.
    pub seconds: f64,
    /// Connections per second.
    pub rate: f64,
    /// Source addresses used.
    pub source_addrs: u32,
    /// Per connection, from `connect` to the CONNACK (and SUBACK for subscribers), µs.
    pub latency_us: Option<Latency>,
}

/// What the broker process spent, from /proc.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BrokerStats {
    /// Its pid.
    pub pid: u32,
    /// CPU seconds (user + system) during the measured part.
    pub cpu_s: f64,
    /// Deliveries (or, without subscribers, publishes) per broker CPU-second.
    pub msgs_per_cpu_s: Option<f64>,
    /// Broker CPU use over the measured part, in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    /// Seconds the broker's threads waited for a CPU during the measured part (other
    /// processes, or the load generator, had it).
    pub cpu_wait_s: f64,
    /// RSS before this run's connections opened, KiB.
    pub rss_kib_before: u64,
    /// RSS with every connection open (for `conn`: after they settled), KiB.
    pub rss_kib_loaded: u64,
    /// RSS at the end of the measured part, KiB.
    pub rss_kib_after: u64,
    /// (loaded - before) / connections, KiB: memory per connection.
    pub rss_per_conn_kib: Option<f64>,
}

impl Report {
    /// A few lines for a terminal.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} against {} over {} (MQTT {}, QoS {}, {} B payload): {} publishers, {} subscribers",
            self.scenario.name(),
            self.broker,
            self.transport.name(),
            self.mqtt,
            self.qos,
            self.payload_bytes,
            self.publishers,
            self.subscribers
        );
        let c = &self.connect;
        let _ = writeln!(
            s,
            "  connect: {}/{} in {:.3} s = {:.0} conn/s ({} source addresses)",
            c.connected, c.attempted, c.seconds, c.rate, c.source_addrs
        );
        if let Some(l) = &c.latency_us {
            let _ = writeln!(
                s,
                "  connect latency µs: p50 {:.0}, p99 {:.0}, max {:.0}",
                l.p50, l.p99, l.max
            );
        }
        if self.scenario != Scenario::Conn {
            let _ = writeln!(
                s,
                "  sent {} in {:.3} s = {:.0} msg/s; received {} in {:.3} s = {:.0} msg/s",
                self.sent,
                self.publish_s,
                self.send_rate,
                self.received,
                self.receive_s,
                self.receive_rate
            );
            let _ = writeln!(
                s,
                "  expected {}, lost {}, duplicates {}, reordered {}, foreign {}",
                self.expected.map_or("?".to_string(), |e| e.to_string()),
                self.lost,
                self.duplicates,
                self.reordered,
                self.foreign
            );
        }
        if let Some(l) = &self.latency_us {
            let _ = writeln!(
                s,
                "  latency µs: min {:.0}, p50 {:.0}, p90 {:.0}, p99 {:.0}, p99.9 {:.0}, max {:.0}",
                l.min, l.p50, l.p90, l.p99, l.p999, l.max
            );
        }
        if let Some(b) = &self.broker_process {
            let _ = write!(
                s,
                "  broker pid {}: {:.2} CPU s ({:.2} cores, waited {:.2} s for a CPU)",
                b.pid, b.cpu_s, b.cpu_cores, b.cpu_wait_s
            );
            if let Some(m) = b.msgs_per_cpu_s {
                let _ = write!(s, ", {m:.0} msg per CPU-second");
            }
            let _ = write!(
                s,
                ", RSS {} -> {} -> {} KiB",
                b.rss_kib_before, b.rss_kib_loaded, b.rss_kib_after
            );
            if let Some(p) = b.rss_per_conn_kib {
                let _ = write!(s, " ({p:.2} KiB per connection)");
            }
            s.push('\n');
        }
        let _ = writeln!(s, "  load generator: {:.2} CPU s", self.load_cpu_s);
        for e in &self.errors {
            let _ = writeln!(s, "  ERROR: {e}");
        }
        s
    }
}
