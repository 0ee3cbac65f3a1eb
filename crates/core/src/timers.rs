//! Timers: the clock every room keeps its deadlines on, the connections' deadlines
//! (CONNECT timeout, keep alive), and the tick that runs every room's due timers.
//!
//! Each room keeps its own deadlines in order (sessions, retained messages, wills: one
//! entry per item that has a deadline; connections: here), so a tick looks only at what is
//! due, never at every connection or session.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use tinsel_codec::ReasonCode;

use crate::connections::{ConnId, ConnState};
use crate::router::Router;

/// A point on the timers' clock: milliseconds since the router started, never 0 (0 means
/// no timer). u64 milliseconds outlast any broker.
pub(crate) type Millis = u64;

/// The timers' clock: converts the host's instants to [`Millis`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) started: Instant,
}

impl Clock {
    pub(crate) fn millis(self, at: Instant) -> Millis {
        let ms = at.saturating_duration_since(self.started).as_millis();
        Millis::try_from(ms).unwrap_or(Millis::MAX).max(1)
    }

    /// The timers' key for a deadline: the millisecond after it, so that a timer found due
    /// (key <= now) is past its deadline.
    pub(crate) fn key(self, at: Instant) -> Millis {
        self.millis(at).saturating_add(1)
    }
}

/// Takes the entries of `timers` that are due at `now_ms`, earliest first.
pub(crate) fn pop_due<T: Ord>(
    timers: &mut BTreeSet<(Millis, T)>,
    now_ms: Millis,
) -> Vec<(Millis, T)> {
    let mut due = Vec::new();
    while timers.first().is_some_and(|(at, _)| *at <= now_ms) {
        due.extend(timers.pop_first());
    }
    due
}

/// When to look at a connection next.
#[derive(Debug, Default)]
pub(crate) struct ConnTimers {
    /// One entry per watched connection at most (its key is in `Conn::timer`). Checked
    /// lazily: a connection that sent packets since is put back at its new deadline, so
    /// packets cost nothing here.
    by_due: BTreeSet<(Millis, ConnId)>,
    /// CONNECT deadlines of new connections, in the order they were accepted (the timeout
    /// is the same for all, so this is also deadline order: accepting costs a push). An
    /// entry whose connection has a keep-alive timer by then is skipped. Bounded by the
    /// connections accepted within the last `connect_timeout`.
    connect: VecDeque<(Millis, ConnId)>,
}

impl ConnTimers {
    /// Watches a new connection's CONNECT deadline.
    pub(crate) fn connect_deadline(&mut self, clock: Clock, id: ConnId, at: Instant) {
        self.connect.push_back((clock.key(at), id));
    }

    /// Puts connection `id`'s timer at `at`, in place of `slot`'s (its `Conn::timer`).
    pub(crate) fn set(&mut self, clock: Clock, id: ConnId, slot: &mut Millis, at: Instant) {
        let ms = clock.key(at);
        self.forget(id, *slot);
        *slot = ms;
        self.by_due.insert((ms, id));
    }

    /// Forgets connection `id`'s timer at `slot` (0: none).
    pub(crate) fn forget(&mut self, id: ConnId, slot: Millis) {
        if slot != 0 {
            self.by_due.remove(&(slot, id));
        }
    }

    /// Takes the due entries: connections to look at, with the timer key each had (None
    /// for a CONNECT deadline).
    fn due(&mut self, now_ms: Millis) -> Vec<(Option<Millis>, ConnId)> {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.connect.front()
            && at <= now_ms
        {
            self.connect.pop_front();
            due.push((None, id));
        }
        // After a burst of connections, give the memory back.
        let (len, cap) = (self.connect.len(), self.connect.capacity());
        if cap > 1024 && len < cap / 4 {
            self.connect.shrink_to(len * 2);
        }
        due.extend(
            pop_due(&mut self.by_due, now_ms)
                .into_iter()
                .map(|(at, id)| (Some(at), id)),
        );
        due
    }

    /// Watched connections, for tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_due.len()
    }

    /// CONNECT deadlines not yet passed, for tests.
    #[cfg(test)]
    pub(crate) fn connect_len(&self) -> usize {
        self.connect.len()
    }
}

/// Keep alive is enforced at one and a half times the interval [MQTT-3.1.2-22].
pub(crate) fn keep_alive_limit(keep_alive: u16) -> Duration {
    Duration::from_millis(u64::from(keep_alive) * 1500)
}

impl Router {
    /// Runs every due timer: CONNECT timeout, keep alive (1.5 times the interval), will
    /// delay, session expiry, retained message expiry, `$SYS`. `bytes_received` and
    /// `bytes_sent` are the host's totals, for `$SYS`.
    pub fn tick(&mut self, now: Instant, bytes_received: u64, bytes_sent: u64) {
        self.sys.stats.bytes_received = bytes_received;
        self.sys.stats.bytes_sent = bytes_sent;
        self.check_connections(now);
        for will in self.wills.due(self.clock, now) {
            self.publish_will(now, will);
        }
        for client in self.sessions.due(self.clock, now) {
            self.end_session(now, &client);
        }
        self.retained.expire(self.clock, now);
        if self.sys.due(now) {
            self.publish_sys(now);
        }
    }

    /// Closes the connections past their CONNECT or keep-alive deadline; puts back the
    /// ones that sent packets since.
    fn check_connections(&mut self, now: Instant) {
        let connect_timeout = Duration::from_secs(self.settings.limits.connect_timeout);
        let mut to_close = Vec::new();
        let mut later = Vec::new();
        for (at, id) in self.timers.due(self.clock.millis(now)) {
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            if at.is_some_and(|at| c.timer == at) {
                c.timer = 0;
            }
            // Closing, or watched by a later timer of its own.
            if c.closing || c.timer != 0 {
                continue;
            }
            let idle = now.saturating_duration_since(c.last_rx);
            match c.state {
                ConnState::AwaitingConnect | ConnState::Authenticating(_)
                    if idle >= connect_timeout =>
                {
                    to_close.push((id, None, "no CONNECT in time"));
                }
                ConnState::AwaitingConnect | ConnState::Authenticating(_) => {
                    later.push((id, c.last_rx + connect_timeout));
                }
                ConnState::Connected(_) if c.keep_alive > 0 => {
                    let limit = keep_alive_limit(c.keep_alive);
                    if idle > limit {
                        let reason = Some(ReasonCode::KEEP_ALIVE_TIMEOUT);
                        to_close.push((id, reason, "keep alive timeout"));
                    } else {
                        // Packets came since: its deadline moved.
                        later.push((id, c.last_rx + limit));
                    }
                }
                // No keep alive: nothing to watch once connected.
                ConnState::Connected(_) => {}
            }
        }
        for (id, at) in later {
            self.set_conn_timer(id, at);
        }
        for (id, reason, why) in to_close {
            self.close(now, id, reason, true, why);
        }
    }

    /// Puts connection `id`'s timer at `at` (rounded up to the next millisecond).
    pub(crate) fn set_conn_timer(&mut self, id: ConnId, at: Instant) {
        if let Some(c) = self.conns.get_mut(id) {
            self.timers.set(self.clock, id, &mut c.timer, at);
        }
    }
}
