//! The tick: runs every room's due timers (CONNECT timeout, keep alive, will delay, session
//! expiry, retained message expiry) and publishes `$SYS` when it is due.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tinsel_codec::{ByteStr, Properties, Publish, QoS, ReasonCode};

use crate::connections::{ConnId, ConnState};
use crate::router::Router;
use crate::sys::topics;
use crate::timers::keep_alive_limit;

impl Router {
    /// Runs every due timer: CONNECT timeout, keep alive (1.5 times the interval), will
    /// delay, session expiry, retained message expiry, `$SYS`. `bytes_received` and
    /// `bytes_sent` are the host's totals, for `$SYS`.
    pub fn tick(&mut self, now: Instant, bytes_received: u64, bytes_sent: u64) {
        self.sys.stats.bytes_received = bytes_received;
        self.sys.stats.bytes_sent = bytes_sent;
        self.check_connections(now);
        self.publish_due_wills(now);
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

impl Router {
    /// Publishes every `$SYS` topic, retained, to its subscribers.
    pub(crate) fn publish_sys(&mut self, now: Instant) {
        for (topic, value) in topics(&self.snapshot(now)) {
            let p = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: true,
                topic: ByteStr::from_static(topic),
                packet_id: 0,
                properties: Properties::default(),
                payload: Bytes::from(value),
            };
            self.store_retained(now, &p);
            self.route(now, None, p);
        }
    }
}
