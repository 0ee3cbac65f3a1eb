//! `GET /dashboard`: a live page of the broker's activity, and the small JSON it polls.
//!
//! The page, its script and its style are built into the binary (`include_str!`) and load
//! nothing from elsewhere. Every response carries a strict Content-Security-Policy
//! ([`CSP`]: only this origin, no inline script or style, no framing), so the page works
//! offline and an injected script has nowhere to run.
//!
//! `GET /dashboard/data` needs no admin token, like `/metrics`: the page is for whoever
//! can reach the operations listener, which should be bound to a private address. Beyond
//! what `/metrics` tells, it names the busiest topics and the clients with the deepest
//! queues (at most [`TOP`] of each); it changes nothing. The browser computes the rates
//! from the counters' differences between polls.
//!
//! Cost: one lock of the router per poll, with one pass over the sessions for the
//! deepest queues (see [`tinsel_core::Router::queue_depths`]).

use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::Ops;
use super::admin::client_json;

/// Topics and clients the page lists.
pub(super) const TOP: usize = 10;

/// The Content-Security-Policy of every dashboard response.
pub(super) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

pub(super) fn routes() -> axum::Router<Ops> {
    axum::Router::new()
        .route(
            "/dashboard",
            get(|| async { asset(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/dashboard/dashboard.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/dashboard/dashboard.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/dashboard/data", get(data))
}

/// Headers every dashboard response carries.
fn secured(mut r: Response, content_type: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    secured(body.into_response(), content_type)
}

/// What the page polls: counters (the page makes rates of them), gauges, the busiest
/// topics and the deepest queues.
async fn data(State(ops): State<Ops>) -> Response {
    let shared = &ops.shared;
    let (snap, topics, queues) = {
        let state = shared.lock();
        let r = &state.router;
        (
            r.snapshot(Instant::now()),
            r.top_topics(TOP),
            r.queue_depths(TOP),
        )
    };
    let st = &snap.stats;
    let counts = shared.connection_counts();
    let topics: Vec<_> = topics
        .iter()
        .map(|t| json!({ "topic": t.topic, "count": t.count, "error": t.error }))
        .collect();
    let deepest: Vec<_> = queues.deepest.iter().map(client_json).collect();
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": snap.uptime.as_secs(),
        "connections": snap.clients_connected,
        "connections_open": counts.open,
        "sessions": {
            "connected": snap.clients_connected,
            "offline": snap.clients_total.saturating_sub(snap.clients_connected),
        },
        "subscriptions": snap.subscriptions,
        "retained": snap.retained,
        "messages": {
            "received": st.messages_received(),
            "sent": st.messages_sent(),
            "dropped": st.messages_dropped(),
        },
        "bytes": {
            "received": shared.bytes_in.load(std::sync::atomic::Ordering::Relaxed),
            "sent": shared.bytes_out.load(std::sync::atomic::Ordering::Relaxed),
        },
        "queued": queues.queued,
        "queued_max": queues.queued_max,
        "inflight": queues.inflight,
        "topics": topics,
        "topic_slots": tinsel_core::TOP_TOPIC_SLOTS,
        "deepest": deepest,
    });
    secured(axum::Json(body).into_response(), "application/json")
}
