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

use tinsel_codec::ReasonCode;

use crate::retained::expired;
use crate::router::Router;

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

/// Keeps the `limit` smallest keys offered that are above `after` and start with `prefix`,
/// and whether more than that were offered.
struct Smallest<'a> {
    heap: BinaryHeap<Arc<str>>,
    limit: usize,
    after: Option<&'a str>,
    prefix: &'a str,
    more: bool,
}

impl<'a> Smallest<'a> {
    fn new(limit: usize, after: Option<&'a str>, prefix: &'a str) -> Smallest<'a> {
        let limit = limit.clamp(1, MAX_PAGE);
        Smallest {
            heap: BinaryHeap::with_capacity(limit + 1),
            limit,
            after,
            prefix,
            more: false,
        }
    }

    /// True if `key` belongs to the page being built (without keeping it).
    fn wanted(&self, key: &str) -> bool {
        key.starts_with(self.prefix) && self.after.is_none_or(|a| key > a)
    }

    fn offer(&mut self, key: &Arc<str>) {
        if !self.wanted(key) {
            return;
        }
        if self.heap.len() == self.limit {
            if self.heap.peek().is_some_and(|top| **key >= **top) {
                self.more = true;
                return;
            }
            self.more = true;
        }
        self.heap.push(key.clone());
        if self.heap.len() > self.limit {
            self.heap.pop();
        }
    }

    /// The keys kept, ascending, and the cursor of the next page.
    fn finish(self) -> (Vec<Arc<str>>, Option<String>) {
        let keys = self.heap.into_sorted_vec();
        let next = if self.more {
            keys.last().map(|k| k.to_string())
        } else {
            None
        };
        (keys, next)
    }
}

impl Router {
    /// The clients (sessions, connected or not) whose id starts with `prefix` and sorts
    /// after `after`, ascending, at most `limit` (1 to [`MAX_PAGE`]).
    pub fn clients_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Page<ClientView> {
        let mut pick = Smallest::new(limit, after, prefix);
        for (client, _) in self.sessions.iter() {
            pick.offer(client);
        }
        let (keys, next) = pick.finish();
        let items = keys
            .into_iter()
            .filter_map(|client| {
                let s = self.sessions.get(&client)?;
                Some(ClientView {
                    connected: s.conn.is_some(),
                    username: s.username.clone(),
                    session_expiry: s.expiry,
                    subscriptions: s.subscriptions.filters().count(),
                    queued: s.queue.len(),
                    inflight: s.inflight.len(),
                    client_id: client,
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
        // followed by `#` (a partial last level is checked by `Smallest`).
        let filter = match prefix.rfind('/') {
            Some(i) => format!("{}/#", &prefix[..i]),
            None => "#".to_owned(),
        };
        let mut pick = Smallest::new(limit, after, prefix);
        self.retained.for_each_match(&filter, |m| {
            let topic: &str = &m.publish.topic;
            if pick.wanted(topic) && !expired(&m.publish, m.received, now) {
                pick.offer(&Arc::from(topic));
            }
        });
        let (items, next) = pick.finish();
        Page { items, next }
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
        let keys: Vec<Arc<str>> = keys.iter().map(|k| Arc::from(*k)).collect();
        let mut pick = Smallest::new(limit, after, prefix);
        for k in &keys {
            pick.offer(k);
        }
        let (items, next) = pick.finish();
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
