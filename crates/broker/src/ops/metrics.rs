//! `GET /metrics`: the broker's counters in the Prometheus text exposition format
//! (version 0.0.4).
//!
//! Everything is read under one short lock of the router (its counters, no scan) plus the
//! shell's atomic counters. Delivery latency histograms are not exported yet.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::Ops;

/// The content type Prometheus expects for the text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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

/// The metrics page.
pub(super) async fn handler(State(ops): State<Ops>) -> impl IntoResponse {
    let body = render(&ops);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}

fn render(ops: &Ops) -> String {
    let shared = &ops.shared;
    let snap = shared.lock().router.snapshot(Instant::now());
    let bytes_in = shared.bytes_in.load(Ordering::Relaxed);
    let bytes_out = shared.bytes_out.load(Ordering::Relaxed);
    let counts = shared.connection_counts();
    let st = &snap.stats;
    let as_u64 = |n: usize| n as u64;
    let offline = snap.clients_total.saturating_sub(snap.clients_connected);

    let mut o = String::with_capacity(4096);
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
    family(
        &mut o,
        "tinsel_connections_refused_total",
        Counter,
        "Network connections closed on accept, by reason.",
        &[
            ("reason=\"max_connections\"", counts.refused_max_connections),
            (
                "reason=\"listener_max_connections\"",
                counts.refused_listener_max_connections,
            ),
        ],
    );
    family(
        &mut o,
        "tinsel_messages_received_total",
        Counter,
        "PUBLISH packets received from clients.",
        &[("", st.messages_received)],
    );
    family(
        &mut o,
        "tinsel_messages_sent_total",
        Counter,
        "PUBLISH packets queued for sending to clients.",
        &[("", st.messages_sent)],
    );
    family(
        &mut o,
        "tinsel_messages_dropped_total",
        Counter,
        "Messages dropped: queue full, too large for the subscriber, or expired.",
        &[("", st.messages_dropped)],
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
}
