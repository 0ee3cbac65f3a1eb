//! `GET /metrics`: the broker's counters in the Prometheus text exposition format
//! (version 0.0.4).
//!
//! Everything is read under one lock of the router (its counters, and one pass over the
//! sessions for the queue depths) plus the shell's atomic counters and, with persistence,
//! the store's sync times. Families:
//!
//! - connections: `tinsel_connections` (MQTT clients), `tinsel_connections_open` (sockets),
//!   `tinsel_connections_accepted_total`, `tinsel_connections_refused_total{reason}`
//!   (`max_connections` or `listener_max_connections` on accept, else the CONNACK's reason
//!   code by name);
//! - messages: `tinsel_messages_{received,sent}_total{qos}`,
//!   `tinsel_payload_bytes_{received,sent}_total{qos}`,
//!   `tinsel_messages_dropped_total{cause}`, `tinsel_bytes_{received,sent}_total` (sockets);
//! - state: `tinsel_retained_messages`, `tinsel_sessions{state}`, `tinsel_subscriptions`,
//!   `tinsel_queued_messages`, `tinsel_queued_messages_max`, `tinsel_inflight_messages`;
//! - histograms: `tinsel_delivery_latency_seconds`, and `tinsel_store_sync_seconds` when
//!   persistence is on;
//! - `tinsel_uptime_seconds`, `tinsel_build_info{version}`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use tinsel_codec::ReasonCode;
use tinsel_core::{BUCKET_BOUNDS, DropCause, Histogram};

use super::Ops;

/// The content type Prometheus expects for the text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// CONNACK reason codes listed at 0 before any refusal (others appear when they happen).
const USUAL_REFUSALS: [ReasonCode; 7] = [
    ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
    ReasonCode::BAD_USER_NAME_OR_PASSWORD,
    ReasonCode::NOT_AUTHORIZED,
    ReasonCode::SERVER_BUSY,
    ReasonCode::BAD_AUTHENTICATION_METHOD,
    ReasonCode::UNSPECIFIED_ERROR,
];

/// Prometheus metric kinds used here.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// Writes one metric family: its HELP and TYPE lines and its samples (`labels` may be
/// empty, as `""`, or `key="value",...`).
fn family(out: &mut String, name: &str, kind: Kind, help: &str, samples: &[(&str, u64)]) {
    let kind = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    };
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// Writes a histogram family: cumulative `_bucket{le=...}` series, `_sum` and `_count`.
fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (le, n) in BUCKET_BOUNDS.iter().zip(h.cumulative()) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let count = h.count();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", h.sum_seconds());
    let _ = writeln!(out, "{name}_count {count}");
}

/// A label value for a refusal's reason code: its name in snake case
/// (`bad_user_name_or_password`), or `code_0xNN` for a code without one.
pub(super) fn reason_label(reason: ReasonCode) -> String {
    match reason.description() {
        Some(d) => d
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect(),
        None => format!("code_0x{:02x}", reason.0),
    }
}

/// The metrics page.
pub(super) async fn handler(State(ops): State<Ops>) -> impl IntoResponse {
    let body = render(&ops);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}

fn render(ops: &Ops) -> String {
    let shared = &ops.shared;
    let (snap, refusals, queues) = {
        let state = shared.lock();
        let r = &state.router;
        (
            r.snapshot(Instant::now()),
            r.refusals().to_vec(),
            r.queue_depths(0),
        )
    };
    let sync_times = shared.store.get().map(|s| s.running.sync_times());
    let bytes_in = shared.bytes_in.load(Ordering::Relaxed);
    let bytes_out = shared.bytes_out.load(Ordering::Relaxed);
    let counts = shared.connection_counts();
    let st = &snap.stats;
    let as_u64 = |n: usize| n as u64;
    let offline = snap.clients_total.saturating_sub(snap.clients_connected);

    let mut o = String::with_capacity(8192);
    use Kind::{Counter, Gauge};
    family(
        &mut o,
        "tinsel_connections",
        Gauge,
        "MQTT clients connected (CONNECT accepted).",
        &[("", as_u64(snap.clients_connected))],
    );
    family(
        &mut o,
        "tinsel_connections_open",
        Gauge,
        "Network connections open, including those that have not sent CONNECT yet.",
        &[("", as_u64(counts.open))],
    );
    family(
        &mut o,
        "tinsel_connections_accepted_total",
        Counter,
        "Network connections accepted.",
        &[("", counts.accepted)],
    );
    let mut refused = vec![
        (
            "reason=\"max_connections\"".to_owned(),
            counts.refused_max_connections,
        ),
        (
            "reason=\"listener_max_connections\"".to_owned(),
            counts.refused_listener_max_connections,
        ),
    ];
    // The usual reasons are there from the start, at 0, so that `rate()` sees them begin.
    let mut reasons: Vec<(ReasonCode, u64)> = USUAL_REFUSALS.iter().map(|&r| (r, 0)).collect();
    for (reason, n) in refusals {
        match reasons.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, m)) => *m = n,
            None => reasons.push((reason, n)),
        }
    }
    for (reason, n) in reasons {
        refused.push((format!("reason=\"{}\"", reason_label(reason)), n));
    }
    let refused: Vec<(&str, u64)> = refused.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    family(
        &mut o,
        "tinsel_connections_refused_total",
        Counter,
        "Connections refused: closed on accept (max_connections, listener_max_connections) \
         or CONNECT refused, by the CONNACK's reason code.",
        &refused,
    );
    let by_qos = |v: [u64; 3]| {
        [
            ("qos=\"0\"", v[0]),
            ("qos=\"1\"", v[1]),
            ("qos=\"2\"", v[2]),
        ]
    };
    family(
        &mut o,
        "tinsel_messages_received_total",
        Counter,
        "PUBLISH packets received from clients, by QoS.",
        &by_qos(st.received),
    );
    family(
        &mut o,
        "tinsel_messages_sent_total",
        Counter,
        "PUBLISH packets queued for sending to clients, by the QoS they are sent at.",
        &by_qos(st.sent),
    );
    family(
        &mut o,
        "tinsel_payload_bytes_received_total",
        Counter,
        "Payload bytes of the PUBLISH packets received, by QoS.",
        &by_qos(st.received_payload),
    );
    family(
        &mut o,
        "tinsel_payload_bytes_sent_total",
        Counter,
        "Payload bytes of the PUBLISH packets sent, by QoS.",
        &by_qos(st.sent_payload),
    );
    let dropped: Vec<(String, u64)> = DropCause::ALL
        .iter()
        .zip(st.dropped)
        .map(|(c, n)| (format!("cause=\"{}\"", c.name()), n))
        .collect();
    let dropped: Vec<(&str, u64)> = dropped.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    family(
        &mut o,
        "tinsel_messages_dropped_total",
        Counter,
        "Messages not sent to a subscriber, by cause.",
        &dropped,
    );
    family(
        &mut o,
        "tinsel_bytes_received_total",
        Counter,
        "Bytes read from MQTT connections.",
        &[("", bytes_in)],
    );
    family(
        &mut o,
        "tinsel_bytes_sent_total",
        Counter,
        "Bytes written to MQTT connections.",
        &[("", bytes_out)],
    );
    family(
        &mut o,
        "tinsel_retained_messages",
        Gauge,
        "Retained messages held.",
        &[("", as_u64(snap.retained))],
    );
    family(
        &mut o,
        "tinsel_sessions",
        Gauge,
        "Sessions, by whether a client is connected to them.",
        &[
            ("state=\"connected\"", as_u64(snap.clients_connected)),
            ("state=\"offline\"", as_u64(offline)),
        ],
    );
    family(
        &mut o,
        "tinsel_subscriptions",
        Gauge,
        "Subscriptions, shared ones included.",
        &[("", as_u64(snap.subscriptions))],
    );
    family(
        &mut o,
        "tinsel_queued_messages",
        Gauge,
        "Messages waiting in session queues (offline clients, Receive Maximum used up).",
        &[("", as_u64(queues.queued))],
    );
    family(
        &mut o,
        "tinsel_queued_messages_max",
        Gauge,
        "Messages waiting in the deepest session queue.",
        &[("", as_u64(queues.queued_max))],
    );
    family(
        &mut o,
        "tinsel_inflight_messages",
        Gauge,
        "Outgoing QoS 1 and 2 messages not yet acknowledged by their subscribers.",
        &[("", as_u64(queues.inflight))],
    );
    histogram(
        &mut o,
        "tinsel_delivery_latency_seconds",
        "From accepting a PUBLISH to putting its copy in a subscriber's connection \
         output: 0 when sent at once, the wait of a queued message.",
        &st.delivery_latency,
    );
    if let Some(h) = &sync_times {
        histogram(
            &mut o,
            "tinsel_store_sync_seconds",
            "Time of each sync of the persistence log to disk.",
            h,
        );
    }
    family(
        &mut o,
        "tinsel_uptime_seconds",
        Gauge,
        "Seconds since the broker started.",
        &[("", snap.uptime.as_secs())],
    );
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    family(
        &mut o,
        "tinsel_build_info",
        Gauge,
        "Always 1; the version is in the label.",
        &[(&version, 1)],
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_has_help_type_and_samples() {
        let mut o = String::new();
        family(
            &mut o,
            "x_total",
            Kind::Counter,
            "Xs.",
            &[("", 3), ("a=\"b\"", 4)],
        );
        assert_eq!(
            o,
            "# HELP x_total Xs.\n# TYPE x_total counter\nx_total 3\nx_total{a=\"b\"} 4\n"
        );
    }

    #[test]
    fn a_histogram_is_cumulative_with_sum_and_count() {
        let mut h = Histogram::default();
        h.record(std::time::Duration::from_millis(2));
        h.record(std::time::Duration::from_secs(100));
        let mut o = String::new();
        histogram(&mut o, "x_seconds", "Xs.", &h);
        assert!(o.contains("# TYPE x_seconds histogram\n"), "{o}");
        assert!(o.contains("x_seconds_bucket{le=\"0.001\"} 0\n"), "{o}");
        assert!(o.contains("x_seconds_bucket{le=\"0.0025\"} 1\n"), "{o}");
        assert!(o.contains("x_seconds_bucket{le=\"60\"} 1\n"), "{o}");
        assert!(o.contains("x_seconds_bucket{le=\"+Inf\"} 2\n"), "{o}");
        assert!(o.contains("x_seconds_sum 100.002\n"), "{o}");
        assert!(o.contains("x_seconds_count 2\n"), "{o}");
    }

    #[test]
    fn refusal_reasons_are_label_values() {
        assert_eq!(
            reason_label(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            "bad_user_name_or_password"
        );
        assert_eq!(reason_label(ReasonCode::NOT_AUTHORIZED), "not_authorized");
        assert_eq!(reason_label(ReasonCode(0x7f)), "code_0x7f");
    }
}
