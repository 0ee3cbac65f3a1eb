//! Sessions by client id, and when the disconnected ones expire.
//!
//! A session (see [`crate::session`]) lives from the CONNECT that creates it until a clean
//! start replaces it, its connection closes with Session Expiry Interval 0, or its expiry
//! interval passes while it is disconnected [MQTT-3.1.2-23].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::FastMap;
use crate::connections::ConnId;
use crate::session::{NEVER_EXPIRES, Session};
use crate::timers::{Clock, Millis, pop_due};

/// Every session, by client id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    /// Boxed, like connections: the map's spare capacity then costs a pointer per slot.
    map: FastMap<Arc<str>, Box<Session>>,
    /// When disconnected sessions with an expiry interval end: one entry per such session
    /// (removed when it reconnects or ends).
    timers: BTreeSet<(Millis, Arc<str>)>,
}

/// When a disconnected session ends on its own (None: never, or it is connected).
fn due(clock: Clock, s: &Session) -> Option<Millis> {
    if s.conn.is_some() || s.expiry == NEVER_EXPIRES || s.expiry == 0 {
        return None;
    }
    let at = s
        .disconnected_at?
        .checked_add(Duration::from_secs(u64::from(s.expiry)))?;
    Some(clock.key(at))
}

impl Sessions {
    pub(crate) fn get(&self, client: &str) -> Option<&Session> {
        self.map.get(client).map(|s| &**s)
    }

    pub(crate) fn get_mut(&mut self, client: &str) -> Option<&mut Session> {
        self.map.get_mut(client).map(|s| &mut **s)
    }

    pub(crate) fn contains(&self, client: &str) -> bool {
        self.map.contains_key(client)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Every session, in no particular order (for the operators' views in `inspect.rs`).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Session)> {
        self.map.iter().map(|(c, s)| (c, &**s))
    }

    /// True if `client` has a session with a connection attached.
    pub(crate) fn is_online(&self, client: &str) -> bool {
        self.map.get(client).is_some_and(|s| s.conn.is_some())
    }

    /// The connection attached to `client`'s session, if any.
    pub(crate) fn conn_of(&self, client: &str) -> Option<ConnId> {
        self.map.get(client).and_then(|s| s.conn)
    }

    /// Attaches connection `conn` to `client`'s session, creating it if there is none:
    /// the session stops expiring.
    pub(crate) fn attach(
        &mut self,
        clock: Clock,
        client: &Arc<str>,
        conn: ConnId,
        expiry: u32,
        now: Instant,
    ) -> &mut Session {
        self.forget_timer(clock, client);
        let session = self
            .map
            .entry(client.clone())
            .or_insert_with(|| Box::new(Session::new(expiry, now)));
        session.conn = Some(conn);
        session.expiry = expiry;
        session.disconnected_at = None;
        session.last_progress = now;
        session
    }

    /// Detaches connection `conn` from `client`'s session (if it is still the one
    /// attached): the session starts expiring. Returns its expiry interval.
    pub(crate) fn detach(
        &mut self,
        clock: Clock,
        client: &Arc<str>,
        conn: ConnId,
        now: Instant,
    ) -> Option<u32> {
        let session = self.map.get_mut(client)?;
        if session.conn != Some(conn) {
            return None;
        }
        session.conn = None;
        session.disconnected_at = Some(now);
        if let Some(at) = due(clock, session) {
            self.timers.insert((at, client.clone()));
        }
        Some(session.expiry)
    }

    /// Adds `session`, disconnected since `now` (a session a store kept, at restart).
    pub(crate) fn insert_disconnected(
        &mut self,
        clock: Clock,
        client: Arc<str>,
        mut session: Session,
        now: Instant,
    ) {
        self.forget_timer(clock, &client);
        session.conn = None;
        session.disconnected_at = Some(now);
        if let Some(at) = due(clock, &session) {
            self.timers.insert((at, client.clone()));
        }
        self.map.insert(client, Box::new(session));
    }

    /// Takes `client`'s session out of the expiry timers (it reconnects or ends).
    fn forget_timer(&mut self, clock: Clock, client: &Arc<str>) {
        if let Some(at) = self.map.get(client).and_then(|s| due(clock, s)) {
            self.timers.remove(&(at, client.clone()));
        }
    }

    /// Removes `client`'s session.
    pub(crate) fn remove(&mut self, clock: Clock, client: &Arc<str>) -> Option<Box<Session>> {
        self.forget_timer(clock, client);
        self.map.remove(client)
    }

    /// The sessions whose expiry interval has passed.
    pub(crate) fn due(&mut self, clock: Clock, now: Instant) -> Vec<Arc<str>> {
        let now_ms = clock.millis(now);
        let mut ended = Vec::new();
        for (_, client) in pop_due(&mut self.timers, now_ms) {
            // Entries leave when a session reconnects or ends; checked all the same.
            if self
                .map
                .get(&client)
                .and_then(|s| due(clock, s))
                .is_some_and(|d| d <= now_ms)
            {
                ended.push(client);
            }
        }
        ended
    }
}

#[cfg(test)]
impl Sessions {
    /// Sessions with an expiry deadline.
    pub(crate) fn timers_len(&self) -> usize {
        self.timers.len()
    }

    /// Sessions with a connection attached, counted by a scan.
    pub(crate) fn online_count(&self) -> usize {
        self.map.values().filter(|s| s.conn.is_some()).count()
    }
}
