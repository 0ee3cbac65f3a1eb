//! Read-only views of the router for operators (the admin API), and closing a connection
//! on an operator's request.
//!
//! Every view returns one bounded page in a stable order (by client id, by topic) with a
//! cursor for the next: a response never grows with the broker. Building a page scans the
//! sessions or the retained tree once (O(n log page) under the router's lock, no copy of
//! the whole set), which is what an operator's occasional request may cost.

use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tinsel_codec::{ByteStr, ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions};

use crate::connections::Origin;
use crate::router::Router;
use crate::session::Session;
use crate::top_topics::TopicCount;

/// The largest page a view returns, whatever the caller asks for.
pub const MAX_PAGE: usize = 1000;

/// One client as the admin API lists it: a session, connected or not.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientView {
    /// The client identifier.
    pub client_id: Arc<str>,
    /// Whether a connection is attached to the session.
    pub connected: bool,
    /// The identity its rights are looked up by (the user name, usually).
    pub username: Option<Arc<str>>,
    /// The Session Expiry Interval in seconds (`u32::MAX`: never).
    pub session_expiry: u32,
    /// Its subscriptions.
    pub subscriptions: usize,
    /// Messages queued for it (offline, or waiting for its Receive Maximum).
    pub queued: usize,
    /// Its outgoing QoS 1/2 messages not yet acknowledged.
    pub inflight: usize,
}

/// One page of a view, in ascending order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page<T> {
    /// At most the page size asked for (and at most [`MAX_PAGE`]).
    pub items: Vec<T>,
    /// The key to pass as `after` for the next page; None when this page is the last.
    pub next: Option<String>,
}

/// Keeps the `limit` smallest keys offered that sort after `after`, and whether more than
/// that were offered. The caller filters by prefix before offering.
struct Smallest<'a, K: Ord> {
    heap: BinaryHeap<K>,
    limit: usize,
    after: Option<&'a K>,
    more: bool,
}

impl<'a, K: Ord> Smallest<'a, K> {
    fn new(limit: usize, after: Option<&'a K>) -> Smallest<'a, K> {
        let limit = limit.clamp(1, MAX_PAGE);
        Smallest {
            heap: BinaryHeap::with_capacity(limit + 1),
            limit,
            after,
            more: false,
        }
    }

    /// True if `key` sorts after the cursor (lets the caller skip building a key that
    /// cannot be on the page).
    fn after_cursor<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
    {
        self.after.is_none_or(|a| key > a.borrow())
    }

    fn offer(&mut self, key: K) {
        if self.after.is_some_and(|a| key <= *a) {
            return;
        }
        if self.heap.len() == self.limit {
            self.more = true;
            if self.heap.peek().is_some_and(|top| key >= *top) {
                return;
            }
        }
        self.heap.push(key);
        if self.heap.len() > self.limit {
            self.heap.pop();
        }
    }

    /// The keys kept, ascending, and whether a next page exists.
    fn finish(self) -> (Vec<K>, bool) {
        (self.heap.into_sorted_vec(), self.more)
    }
}

/// One subscription as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionView {
    /// The subscriber.
    pub client_id: Arc<str>,
    /// The filter as the client wrote it (`$share/group/...` included).
    pub filter: Arc<str>,
    /// The options granted (QoS already capped by the broker).
    pub options: SubscriptionOptions,
    /// Its MQTT 5 subscription identifier.
    pub identifier: Option<u32>,
}

/// One client in detail: its session, its connection if it has one, its subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientDetail {
    /// What the list shows.
    pub client: ClientView,
    /// Payload bytes of the queued messages.
    pub queued_bytes: usize,
    /// The connection's protocol version (None while offline).
    pub protocol: Option<ProtocolVersion>,
    /// Where the connection comes from (None while offline).
    pub address: Option<Origin>,
    /// The effective keep alive in seconds (None while offline).
    pub keep_alive: Option<u16>,
    /// The client's Receive Maximum (None while offline).
    pub receive_maximum: Option<u16>,
    /// Its subscriptions, by filter; at most [`MAX_PAGE`] (see `subscriptions_more`).
    pub subscriptions: Vec<SubscriptionView>,
    /// It has more subscriptions than listed here.
    pub subscriptions_more: bool,
}

/// A retained message as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetainedView {
    /// The topic.
    pub topic: Arc<str>,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// Seconds until it expires (None: never).
    pub expires_in: Option<u32>,
    /// Its MQTT 5 Content Type.
    pub content_type: Option<String>,
}

/// Queues over every session (see [`Router::queue_depths`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueDepths {
    /// Messages queued, over every session.
    pub queued: usize,
    /// The deepest session queue.
    pub queued_max: usize,
    /// Outgoing QoS 1/2 messages in flight, over every session.
    pub inflight: usize,
    /// The sessions with the most queued and in-flight messages, deepest first (ties by
    /// client id); sessions with none are left out.
    pub deepest: Vec<ClientView>,
}

fn client_view(client: &Arc<str>, s: &Session) -> ClientView {
    ClientView {
        client_id: client.clone(),
        connected: s.conn.is_some(),
        username: s.username.clone(),
        session_expiry: s.expiry,
        subscriptions: s.subscriptions.filters().count(),
        queued: s.queue.len(),
        inflight: s.inflight.len(),
    }
}

impl Router {
    /// The clients (sessions, connected or not) whose id starts with `prefix`, whose user
    /// name is `username` if one is given, and whose id sorts after `after`, ascending, at
    /// most `limit` (1 to [`MAX_PAGE`]).
    pub fn clients_page(
        &self,
        prefix: &str,
        username: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Page<ClientView> {
        let after: Option<Arc<str>> = after.map(Arc::from);
        let mut pick = Smallest::new(limit, after.as_ref());
        for (client, s) in self.sessions.iter() {
            if client.starts_with(prefix)
                && username.is_none_or(|u| s.username.as_deref() == Some(u))
                && pick.after_cursor(&**client)
            {
                pick.offer(client.clone());
            }
        }
        let (keys, more) = pick.finish();
        let next = more.then(|| keys.last().map(|k| k.to_string())).flatten();
        let items = keys
            .iter()
            .filter_map(|client| Some(client_view(client, self.sessions.get(client)?)))
            .collect();
        Page { items, next }
    }

    /// One client in detail; None if it has no session.
    pub fn client_detail(&self, client: &str) -> Option<ClientDetail> {
        let s = self.sessions.get(client)?;
        let id: &Arc<str> = &Arc::from(client);
        let conn = s.conn.and_then(|c| self.conns.get(c));
        let mut subscriptions = Vec::new();
        let mut subscriptions_more = false;
        for (filter, entry) in s.subscriptions.iter() {
            if subscriptions.len() == MAX_PAGE {
                subscriptions_more = true;
                break;
            }
            subscriptions.push(SubscriptionView {
                client_id: id.clone(),
                filter: filter.clone(),
                options: entry.options,
                identifier: entry.id,
            });
        }
        Some(ClientDetail {
            client: client_view(id, s),
            queued_bytes: s.queued_bytes,
            protocol: conn.map(|c| c.version),
            address: conn.map(|c| c.origin.clone()),
            keep_alive: conn.map(|c| c.keep_alive),
            receive_maximum: conn.map(|c| c.receive_max),
            subscriptions,
            subscriptions_more,
        })
    }

    /// The subscriptions of clients whose id starts with `client_prefix`, with filters
    /// that start with `filter_prefix`, by client id then filter, after the cursor `after`
    /// (a previous page's `next`: the client id and the filter joined by U+0000, which no
    /// MQTT string holds), at most `limit` (1 to [`MAX_PAGE`]).
    pub fn subscriptions_page(
        &self,
        client_prefix: &str,
        filter_prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Page<SubscriptionView> {
        let after: Option<(Arc<str>, Arc<str>)> = after.map(|a| {
            let (c, f) = a.split_once('\0').unwrap_or((a, ""));
            (Arc::from(c), Arc::from(f))
        });
        let mut pick = Smallest::new(limit, after.as_ref());
        for (client, s) in self.sessions.iter() {
            if !client.starts_with(client_prefix) {
                continue;
            }
            // Whole clients before the cursor's are skipped without looking at filters.
            if after.as_ref().is_some_and(|(c, _)| client < c) {
                continue;
            }
            for filter in s.subscriptions.filters() {
                if filter.starts_with(filter_prefix) {
                    pick.offer((client.clone(), filter.clone()));
                }
            }
        }
        let (keys, more) = pick.finish();
        let next = more
            .then(|| keys.last().map(|(c, f)| format!("{c}\0{f}")))
            .flatten();
        let items = keys
            .into_iter()
            .filter_map(|(client, filter)| {
                let s = self.sessions.get(&client)?;
                let entry = s.subscriptions.iter().find(|(f, _)| **f == filter)?.1;
                Some(SubscriptionView {
                    client_id: client,
                    filter,
                    options: entry.options,
                    identifier: entry.id,
                })
            })
            .collect();
        Page { items, next }
    }

    /// The topics of the retained messages that start with `prefix` and sort after
    /// `after`, ascending, at most `limit` (1 to [`MAX_PAGE`]). Topics starting with `$`
    /// are listed only when `prefix` starts with `$` and names a whole first level
    /// (`$SYS/`), as a subscription would see them.
    pub fn retained_page(
        &self,
        now: Instant,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Page<Arc<str>> {
        // The narrowest filter that covers every topic with this prefix: its whole levels
        // followed by `#` (a partial last level is checked here).
        let filter = match prefix.rfind('/') {
            Some(i) => format!("{}/#", &prefix[..i]),
            None => "#".to_owned(),
        };
        let after: Option<Arc<str>> = after.map(Arc::from);
        let mut pick = Smallest::new(limit, after.as_ref());
        self.retained.for_each_match(&filter, |topic, m| {
            let topic: &str = topic;
            if topic.starts_with(prefix) && pick.after_cursor(topic) && !m.expired(now) {
                pick.offer(Arc::from(topic));
            }
        });
        let (items, more) = pick.finish();
        let next = more.then(|| items.last().map(|k| k.to_string())).flatten();
        Page { items, next }
    }

    /// The retained message of `topic` (None if there is none, or it expired).
    pub fn retained_get(&self, now: Instant, topic: &str) -> Option<RetainedView> {
        let m = self.retained.get(topic)?;
        if m.expired(now) {
            return None;
        }
        let expires_in = m.properties().message_expiry_interval.map(|e| {
            let elapsed = now.saturating_duration_since(m.received).as_secs();
            e.saturating_sub(u32::try_from(elapsed).unwrap_or(u32::MAX))
        });
        Some(RetainedView {
            topic: Arc::from(topic),
            payload: m.payload().clone(),
            qos: m.qos(),
            expires_in,
            content_type: m.properties().content_type.as_ref().map(|c| c.to_string()),
        })
    }

    /// Deletes the retained message of `topic`, as an empty retained PUBLISH would (the
    /// store is told). False if there was none.
    pub fn retained_delete(&mut self, now: Instant, topic: &str) -> bool {
        if self.retained_get(now, topic).is_none() {
            return false;
        }
        let Ok(topic) = ByteStr::try_from(topic) else {
            return false;
        };
        let mut p = Publish::new(topic, Bytes::new());
        p.retain = true;
        self.store_retained(now, &p);
        true
    }

    /// Messages queued and in flight over every session, and the `top` deepest sessions.
    /// Scans every session (O(sessions + top log top) under the router's lock): for a
    /// scrape or a dashboard poll every few seconds, not for every message.
    pub fn queue_depths(&self, top: usize) -> QueueDepths {
        let mut d = QueueDepths::default();
        // Smallest of (Reverse(depth), client): the deepest, ties by client id.
        let mut pick = Smallest::new(top, None);
        for (client, s) in self.sessions.iter() {
            let (q, f) = (s.queue.len(), s.inflight.len());
            d.queued += q;
            d.inflight += f;
            d.queued_max = d.queued_max.max(q);
            if top > 0 && q + f > 0 {
                pick.offer((std::cmp::Reverse(q + f), client.clone()));
            }
        }
        let (keys, _) = pick.finish();
        d.deepest = keys
            .iter()
            .filter_map(|(_, client)| Some(client_view(client, self.sessions.get(client)?)))
            .collect();
        d
    }

    /// The `n` topics clients published to most since the start, highest first (see
    /// `top_topics.rs`: counts are estimates once more than [`crate::TOP_TOPIC_SLOTS`]
    /// topics were seen).
    pub fn top_topics(&self, n: usize) -> Vec<TopicCount> {
        self.sys.topics.top(n)
    }

    /// CONNECTs refused so far, by the CONNACK's reason code, in the order first seen.
    pub fn refusals(&self) -> &[(ReasonCode, u64)] {
        &self.sys.refused
    }

    /// Closes the connection of `client` as an operator asked: MQTT 5 clients get
    /// DISCONNECT 0x98 (Administrative action), the will is sent as after a takeover, and
    /// the session stays unless it expires with its connection. False if the client is not
    /// connected.
    pub fn disconnect_client(&mut self, now: Instant, client: &str) -> bool {
        let Some(conn) = self.sessions.conn_of(client) else {
            return false;
        };
        let reason = Some(ReasonCode::ADMINISTRATIVE_ACTION);
        self.close(now, conn, reason, true, "disconnected by an administrator");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(
        keys: &[&str],
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<String>, Option<String>) {
        let after: Option<Arc<str>> = after.map(Arc::from);
        let mut pick = Smallest::new(limit, after.as_ref());
        for k in keys {
            if k.starts_with(prefix) {
                pick.offer(Arc::<str>::from(*k));
            }
        }
        let (items, more) = pick.finish();
        let next = more.then(|| items.last().map(|k| k.to_string())).flatten();
        (items.iter().map(|k| k.to_string()).collect(), next)
    }

    #[test]
    fn pages_in_order_with_a_cursor() {
        let keys = ["d", "a", "c", "e", "b", "x1"];
        assert_eq!(
            page(&keys, "", None, 2),
            (vec!["a".into(), "b".into()], Some("b".into()))
        );
        assert_eq!(
            page(&keys, "", Some("b"), 2),
            (vec!["c".into(), "d".into()], Some("d".into()))
        );
        assert_eq!(
            page(&keys, "", Some("d"), 2),
            (vec!["e".into(), "x1".into()], None)
        );
        assert_eq!(page(&keys, "x", None, 10), (vec!["x1".into()], None));
        assert_eq!(page(&keys, "", Some("x1"), 10), (vec![], None));
    }

    #[test]
    fn a_page_is_bounded() {
        let keys: Vec<String> = (0..5000).map(|i| format!("c{i:05}")).collect();
        let refs: Vec<&str> = keys.iter().map(|s| s.as_str()).collect();
        let (items, next) = page(&refs, "", None, usize::MAX);
        assert_eq!(items.len(), MAX_PAGE);
        assert_eq!(next.as_deref(), Some("c00999"));
    }
}
