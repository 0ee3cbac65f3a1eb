//! A bridge's session on this broker: an in-process connection ([`Origin::Link`]) that
//! speaks MQTT 5 to the core through the same paths as a network client. It subscribes to
//! the bridge's `out` filters (No Local, Retain As Published) and publishes what the remote
//! broker sends in; its output is read from its outbox instead of a socket.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tinsel_codec::{
    ByteStr, Connect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS, RetainHandling,
    Subscribe, SubscriptionOptions, decode_packet,
};
use tinsel_core::{ConnId, Origin, Outbox};

use crate::shared::Shared;

/// While the link waits for a congested subscriber, how often it looks again.
const PAUSE_POLL: Duration = Duration::from_millis(50);

/// The link's end of the core.
pub(crate) struct Link {
    shared: Arc<Shared>,
    id: ConnId,
    outbox: Outbox,
    /// Output taken but not yet decoded (never more than one partial packet).
    rbuf: BytesMut,
    /// Packet identifiers of the QoS 1/2 messages the link publishes. The core answers
    /// each before the next batch is read, so they never wrap onto one still in use.
    next_id: u16,
    /// Acknowledgements the core owes the link for what it published here (one per QoS 1
    /// message, two per QoS 2: PUBREC and PUBCOMP). Kept within `window`, the broker's Receive Maximum for clients: beyond it
    /// (acknowledgements held for the store, in `sync` persistence) the core would close the
    /// link.
    unacked: usize,
    window: usize,
    closed: bool,
}

/// What the core sent the link.
pub(crate) struct Output {
    pub(crate) packets: Vec<Packet>,
    /// The core closed the link (shutdown, or a takeover of its client id).
    pub(crate) closed: bool,
}

impl Link {
    /// Connects the bridge's session `client_id`: persistent (never expiring) unless
    /// `clean`, taking at most `receive_max` unacknowledged QoS 1/2 messages at once.
    pub(crate) fn open(
        shared: Arc<Shared>,
        name: &str,
        client_id: &str,
        clean: bool,
        receive_max: u16,
        window: u16,
        credentials: (Option<&str>, Option<&str>),
    ) -> Result<Link, String> {
        let mut properties = Properties::default();
        let p = properties.make_mut();
        p.session_expiry_interval = (!clean).then_some(u32::MAX);
        p.receive_maximum = Some(receive_max.max(1));
        let connect = Connect {
            protocol: ProtocolVersion::V5,
            clean_start: clean,
            keep_alive: 0,
            properties,
            client_id: bytestr(client_id)?,
            will: None,
            username: credentials.0.map(bytestr).transpose()?,
            password: credentials
                .1
                .map(|p| bytes::Bytes::copy_from_slice(p.as_bytes())),
            bridge: true,
        };
        let (id, outbox) = {
            let mut state = shared.lock();
            let now = Instant::now();
            let (id, outbox) = state.router.accept(now, Origin::Link(Arc::from(name)));
            state
                .router
                .handle(now, id, Packet::Connect(Box::new(connect)));
            shared.wake(&mut state, Some(id));
            (id, outbox)
        };
        Ok(Link {
            shared,
            id,
            outbox,
            rbuf: BytesMut::new(),
            next_id: 0,
            unacked: 0,
            window: usize::from(window.max(1)),
            closed: false,
        })
    }

    /// Hands packets to the core, all under one lock. True if a subscriber of what was
    /// published is congested: the caller should [`Link::wait_uncongested`] before more.
    pub(crate) fn send(&mut self, packets: impl IntoIterator<Item = Packet>) -> bool {
        let mut state = self.shared.lock();
        let now = Instant::now();
        // Pressure raised by something else is not this link's.
        state.router.take_pressure();
        for p in packets {
            state.router.handle(now, self.id, p);
        }
        let pressure = state.router.take_pressure();
        self.shared.wake(&mut state, Some(self.id));
        pressure
    }

    /// A message from the remote broker, as the link publishes it here (a fresh packet
    /// identifier at QoS 1 and 2, which the core acknowledges to the link; at QoS 2 the
    /// PUBREL follows at once). Returns the packets to [`Link::send`].
    pub(crate) fn publish(&mut self, mut p: Publish) -> Vec<Packet> {
        p.dup = false;
        p.packet_id = 0;
        if p.qos != QoS::AtMostOnce {
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            p.packet_id = self.next_id;
            // QoS 2 makes two acknowledgements (PUBREC, PUBCOMP), each counted by the core.
            self.unacked += if p.qos == QoS::ExactlyOnce { 2 } else { 1 };
        }
        let pid = p.packet_id;
        let qos2 = p.qos == QoS::ExactlyOnce;
        let mut out = vec![Packet::Publish(p)];
        if qos2 {
            out.push(Packet::PubRel(PubResp::new(pid)));
        }
        out
    }

    /// True while the link may publish another QoS 1/2 message here (see `unacked`).
    pub(crate) fn has_room(&self) -> bool {
        self.unacked < self.window
    }

    /// Subscribes the link to `filters` (No Local, Retain As Published; retained messages
    /// sent at once, as Mosquitto does on each connection of a bridge).
    pub(crate) fn subscribe(&mut self, filters: &[(String, u8)]) {
        let filters: Vec<(ByteStr, SubscriptionOptions)> = filters
            .iter()
            .filter_map(|(f, qos)| {
                let options = SubscriptionOptions {
                    qos: QoS::from_u8(*qos)?,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendAtSubscribe,
                };
                Some((ByteStr::try_from(f.as_str()).ok()?, options))
            })
            .collect();
        if filters.is_empty() {
            return;
        }
        self.send([Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters,
        })]);
    }

    /// Waits until no subscriber is congested (a congested one that takes its backlog
    /// wakes it early).
    pub(crate) async fn wait_uncongested(&self) {
        loop {
            let eased = self.shared.eased.notified();
            if !self.shared.lock().router.congested(Instant::now()) {
                return;
            }
            let _ = tokio::time::timeout(PAUSE_POLL, eased).await;
        }
    }

    /// Waits for what the core sent, decoded.
    pub(crate) async fn recv(&mut self) -> Output {
        if self.closed {
            return Output {
                packets: Vec::new(),
                closed: true,
            };
        }
        let taken = poll_fn(|cx| {
            let t = self.outbox.take(Some(cx.waker()));
            if t.bytes.is_empty() && !t.close {
                Poll::Pending
            } else {
                Poll::Ready(t)
            }
        })
        .await;
        if taken.watched {
            self.shared.eased.notify_waiters();
        }
        self.rbuf.extend_from_slice(&taken.bytes);
        let mut packets = Vec::new();
        loop {
            match decode_packet(&mut self.rbuf, ProtocolVersion::V5, u32::MAX) {
                Ok(Some(p)) => {
                    if matches!(
                        p,
                        Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_)
                    ) {
                        self.unacked = self.unacked.saturating_sub(1);
                    }
                    packets.push(p);
                }
                Ok(None) => break,
                Err(e) => {
                    // The core encodes what the codec decodes; this would be a bug.
                    tracing::error!("bridge link: cannot decode the broker's output: {e}");
                    self.rbuf.clear();
                    break;
                }
            }
        }
        self.closed = taken.close;
        Output {
            packets,
            closed: taken.close,
        }
    }

    /// Leaves the core: the session stays (unless clean) with what it still holds.
    pub(crate) fn close(&mut self, why: &str) {
        let mut state = self.shared.lock();
        state.router.connection_lost(Instant::now(), self.id, why);
        self.shared.wake(&mut state, None);
        self.closed = true;
    }
}

fn bytestr(s: &str) -> Result<ByteStr, String> {
    ByteStr::try_from(s).map_err(|_| format!("\"{s}\" is too long for MQTT"))
}
