//! The admin API (JSON), behind `Authorization: Bearer TOKEN`.
//!
//! Without a configured token every route answers 403 with a message that says how to
//! turn it on; a missing or wrong token gets 401. Lists are pages (`limit`, at most
//! [`tinsel_core::MAX_PAGE`], and the `after` cursor the previous page returned as `next`).
//!
//! - `GET /api/v1/clients?prefix=&username=&after=&limit=`: sessions with their connected
//!   flag, by client id prefix and (exact) user name;
//! - `GET /api/v1/clients/{id}`: one client: protocol, address, keep alive, queue,
//!   in-flight messages, subscriptions;
//! - `POST /api/v1/clients/{id}/disconnect`: closes the client's connection (MQTT 5
//!   clients get DISCONNECT 0x98, Administrative action; the will is sent);
//! - `GET /api/v1/subscriptions?client=&filter=&after=&limit=`: subscriptions by client id
//!   prefix and filter prefix;
//! - `GET /api/v1/retained?prefix=&after=&limit=`: topics of retained messages;
//! - `GET /api/v1/retained/{topic}`, `DELETE /api/v1/retained/{topic}`: one retained
//!   message (the topic's slashes stay as they are in the path);
//! - `POST /api/v1/publish` with `{"topic", "payload", "qos", "retain"}`: publishes as
//!   the broker (no access check: the token is the operator's).
//!
//! Every error is JSON, `{"error": "what is wrong"}`, malformed queries and bodies too.

use std::time::Instant;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tinsel_codec::{ByteStr, Publish, QoS, RetainHandling};
use tinsel_core::{ClientView, SubscriptionView};
use tracing::info;

use super::Ops;

/// Page size when the request names none.
const DEFAULT_PAGE: usize = 100;

pub(super) fn routes(ops: Ops) -> axum::Router<Ops> {
    axum::Router::new()
        .route("/clients", get(clients))
        .route("/clients/{id}", get(client))
        .route("/clients/{id}/disconnect", post(disconnect))
        .route("/subscriptions", get(subscriptions))
        .route("/retained", get(retained))
        .route(
            "/retained/{*topic}",
            get(retained_one).delete(retained_delete),
        )
        .route("/publish", post(publish))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(ops, authorize))
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such admin API route: see docs/operations.md",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take that method: see docs/operations.md",
    )
}

/// A JSON 400 that says what is wrong with the query.
fn bad_query(e: QueryRejection) -> Response {
    error(StatusCode::BAD_REQUEST, e.body_text())
}

/// A JSON error: `{"error": message}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Compares without stopping at the first difference, so that the time taken does not
/// tell how much of a guessed token is right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn authorize(State(ops): State<Ops>, request: Request, next: Next) -> Response {
    let Some(token) = &ops.token else {
        return error(
            StatusCode::FORBIDDEN,
            "the admin API is disabled: give it a token with http.token in the \
             configuration, --http-token or TINSEL_HTTP_TOKEN",
        );
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same_secret(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send Authorization: Bearer TOKEN",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

/// `?prefix=&after=&limit=` (and `username=` for clients).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    prefix: String,
    username: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// A client as lists show it.
pub(super) fn client_json(c: &ClientView) -> serde_json::Value {
    json!({
        "client_id": &*c.client_id,
        "connected": c.connected,
        "username": c.username.as_deref(),
        "session_expiry": c.session_expiry,
        "subscriptions": c.subscriptions,
        "queued": c.queued,
        "inflight": c.inflight,
    })
}

fn subscription_json(s: &SubscriptionView) -> serde_json::Value {
    let o = &s.options;
    json!({
        "client_id": &*s.client_id,
        "filter": &*s.filter,
        "qos": o.qos.as_u8(),
        "no_local": o.no_local,
        "retain_as_published": o.retain_as_published,
        "retain_handling": match o.retain_handling {
            RetainHandling::SendAtSubscribe => 0,
            RetainHandling::SendIfNew => 1,
            RetainHandling::DoNotSend => 2,
        },
        "identifier": s.identifier,
    })
}

async fn clients(State(ops): State<Ops>, q: Result<Query<PageQuery>, QueryRejection>) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e),
    };
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    let page = ops.shared.lock().router.clients_page(
        &q.prefix,
        q.username.as_deref(),
        q.after.as_deref(),
        limit,
    );
    let clients: Vec<_> = page.items.iter().map(client_json).collect();
    Json(json!({ "clients": clients, "next": page.next })).into_response()
}

async fn client(State(ops): State<Ops>, Path(id): Path<String>) -> Response {
    let Some(d) = ops.shared.lock().router.client_detail(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no session for client {id:?}"),
        );
    };
    let mut body = client_json(&d.client);
    let subscriptions: Vec<_> = d.subscriptions.iter().map(subscription_json).collect();
    let extra = json!({
        "queued_bytes": d.queued_bytes,
        "protocol": d.protocol.map(|p| p.to_string()),
        "address": d.address.map(|a| a.to_string()),
        "keep_alive": d.keep_alive,
        "receive_maximum": d.receive_maximum,
        "subscriptions": subscriptions,
        "subscriptions_more": d.subscriptions_more,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    Json(body).into_response()
}

/// `?client=&filter=&after=&limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionQuery {
    #[serde(default)]
    client: String,
    #[serde(default)]
    filter: String,
    after: Option<String>,
    limit: Option<usize>,
}

async fn subscriptions(
    State(ops): State<Ops>,
    q: Result<Query<SubscriptionQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e),
    };
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    let page = ops.shared.lock().router.subscriptions_page(
        &q.client,
        &q.filter,
        q.after.as_deref(),
        limit,
    );
    let items: Vec<_> = page.items.iter().map(subscription_json).collect();
    Json(json!({ "subscriptions": items, "next": page.next })).into_response()
}

async fn disconnect(State(ops): State<Ops>, Path(id): Path<String>) -> Response {
    let shared = &ops.shared;
    let closed = {
        let mut state = shared.lock();
        let closed = state.router.disconnect_client(Instant::now(), &id);
        shared.wake(&mut state, None);
        closed
    };
    if closed {
        info!(client = %id, "disconnected by the admin API");
        Json(json!({ "disconnected": id })).into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            format!("client {id:?} is not connected"),
        )
    }
}

async fn retained(State(ops): State<Ops>, q: Result<Query<PageQuery>, QueryRejection>) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e),
    };
    if q.username.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "retained messages have no username",
        );
    }
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    let page = ops.shared.lock().router.retained_page(
        Instant::now(),
        &q.prefix,
        q.after.as_deref(),
        limit,
    );
    let topics: Vec<&str> = page.items.iter().map(|t| &**t).collect();
    Json(json!({ "topics": topics, "next": page.next })).into_response()
}

async fn retained_one(State(ops): State<Ops>, Path(topic): Path<String>) -> Response {
    let found = ops
        .shared
        .lock()
        .router
        .retained_get(Instant::now(), &topic);
    let Some(m) = found else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no retained message on {topic:?}"),
        );
    };
    Json(json!({
        "topic": &*m.topic,
        "payload": std::str::from_utf8(&m.payload).ok(),
        "payload_base64": base64::engine::general_purpose::STANDARD.encode(&m.payload),
        "qos": m.qos.as_u8(),
        "expires_in": m.expires_in,
        "content_type": m.content_type,
    }))
    .into_response()
}

async fn retained_delete(State(ops): State<Ops>, Path(topic): Path<String>) -> Response {
    let shared = &ops.shared;
    let deleted = {
        let mut state = shared.lock();
        let deleted = state.router.retained_delete(Instant::now(), &topic);
        shared.wake(&mut state, None);
        deleted
    };
    if deleted {
        info!(topic = %topic, "retained message deleted by the admin API");
        Json(json!({ "deleted": topic })).into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            format!("no retained message on {topic:?}"),
        )
    }
}

/// The body of `POST /api/v1/publish`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    topic: String,
    /// UTF-8 text; empty with `retain` deletes the topic's retained message.
    #[serde(default)]
    payload: String,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
}

async fn publish(
    State(ops): State<Ops>,
    req: Result<Json<PublishRequest>, JsonRejection>,
) -> Response {
    let req = match req {
        Ok(Json(req)) => req,
        Err(e) => return error(e.status(), e.body_text()),
    };
    if !tinsel_codec::topic::valid_topic_name(&req.topic) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "{:?} is not a topic name a message can be published to",
                req.topic
            ),
        );
    }
    let qos = match req.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        n => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("qos is 0, 1 or 2; not {n}"),
            );
        }
    };
    let max = ops.shared.max_packet_size as usize;
    if req.payload.len() + req.topic.len() > max {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the message is larger than limits.max_packet_size ({max} bytes)"),
        );
    }
    let Ok(topic) = ByteStr::try_from(req.topic.as_str()) else {
        return error(StatusCode::BAD_REQUEST, "the topic is too long");
    };
    let mut p = Publish::new(topic, Bytes::from(req.payload));
    p.qos = qos;
    p.retain = req.retain;
    let shared = &ops.shared;
    {
        let mut state = shared.lock();
        state.router.publish(Instant::now(), &p);
        shared.wake(&mut state, None);
    }
    Json(json!({ "published": &*req.topic })).into_response()
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }
}
