//! Bridges: this broker's messages carried to and from another broker, with Mosquitto's
//! semantics and configuration (see `docs/bridges.md`).
//!
//! Each bridge is one task that owns two ends:
//!
//! - a client connection to the remote broker (`tinsel-client`), subscribed there to the
//!   remote filters of the `in` and `both` lines;
//! - a session on this broker (`link.rs`, an [`tinsel_core::Origin::Link`] connection),
//!   subscribed here to the local filters of the `out` and `both` lines.
//!
//! What the remote sends is published here as the bridge's client; what this broker routes
//! to the bridge's session is published on the remote, topics renamed as `topics.rs` says.
//! A QoS 1/2 message going out is acknowledged to this broker only once the remote broker
//! acknowledged it: until then it stays in the session's in-flight window, and is sent
//! again after a reconnection. So with `cleansession false` (a persistent session on both
//! brokers) no QoS 1/2 message is lost while the remote is away or restarts.
//!
//! Bounds: the bridge holds at most `limits.max_inflight` unacknowledged QoS 1/2 messages
//! (its Receive Maximum here); the rest wait in its session's queue
//! (`limits.max_queued_messages` / `max_queued_bytes`), where, when full, the newest message
//! is dropped and counted in `$SYS/broker/messages/dropped`. QoS 0 messages waiting while
//! the remote is away are bounded by `max_queued_messages` too, then dropped. Coming in,
//! the client library holds at most 1,024 messages for the bridge; while a subscriber here
//! is congested the bridge stops taking them, and TCP slows the remote broker down.
//!
//! Loops: the session here subscribes with No Local (what the bridge publishes here is not
//! sent back to it); towards the remote, MQTT 5 bridges subscribe with No Local, MQTT 3
//! ones set the bridge bit (`try_private`), which Mosquitto and Tinsel honour the same way.

mod conf;
mod config;
mod link;
mod topics;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tinsel_client::{Client, ClientOptions, Event, Events, TlsOptions};
use tinsel_codec::{
    ByteStr, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS, ReasonCode,
    RetainHandling, SubscriptionOptions, Will,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

pub(crate) use conf::{Read, directive};
pub use config::{BridgeConfig, RestartTimeout, TopicLine, TopicTable};
pub(crate) use config::{Checked, check_all};
use link::Link;
pub use topics::Direction;

use crate::shared::Shared;

/// Starts one task per bridge; each ends when `stop` says so.
pub(crate) fn start_all(
    shared: &Arc<Shared>,
    bridges: Vec<Checked>,
    receive_max: u16,
    stop: &watch::Sender<bool>,
    done: &mpsc::Sender<()>,
) {
    for b in bridges {
        let task = Bridge {
            shared: shared.clone(),
            receive_max: receive_max.max(1),
            b,
            pending: Vec::new(),
            private: true,
        };
        tokio::spawn(task.run(stop.subscribe(), done.clone()));
    }
}

/// A QoS 1/2 message from this broker not yet acknowledged by the remote one.
struct Pending {
    /// Its packet identifier in the bridge's session here.
    pid: u16,
    /// As it goes to the remote broker.
    publish: Publish,
    /// Handed to the current remote connection (false: send after the next connect).
    sent: bool,
}

/// How a connection to the remote broker ended.
enum Ended {
    /// Lost or refused: try again after the restart timeout.
    Lost(String),
    /// The broker stops, or closed the bridge's session here.
    Stop,
    /// The first address answers again (while connected to another, `round_robin false`):
    /// go back to it at once.
    Primary,
}

struct Bridge {
    shared: Arc<Shared>,
    receive_max: u16,
    b: Checked,
    /// At most `receive_max` (the session's in-flight window here).
    pending: Vec<Pending>,
    /// The remote accepted the bridge bit (or was not asked yet).
    private: bool,
}

impl Bridge {
    async fn run(mut self, mut stop: watch::Receiver<bool>, _done: mpsc::Sender<()>) {
        let cfg = &self.b.config;
        let clean = cfg.local_cleansession.unwrap_or(cfg.cleansession);
        let credentials = (cfg.local_username.as_deref(), cfg.local_password.as_deref());
        let mut link = match Link::open(
            self.shared.clone(),
            &self.b.name,
            &self.b.local_clientid,
            clean,
            self.receive_max,
            self.receive_max,
            credentials,
        ) {
            Ok(l) => l,
            Err(e) => return warn!("bridge {}: {e}", self.b.name),
        };
        let first = link.recv().await;
        let accepted = first
            .packets
            .iter()
            .any(|p| matches!(p, Packet::ConnAck(a) if a.reason == ReasonCode::SUCCESS));
        if !accepted {
            warn!(
                "bridge {}: this broker refused the bridge's session {:?} (its access rules?)",
                self.b.name, self.b.local_clientid
            );
            link.close("refused");
            return;
        }
        self.notify_local(false);
        let (base, cap) = self.b.restart;
        let mut delay = base;
        let mut index = 0usize;
        loop {
            let (host, port) = self.b.addresses[index].clone();
            info!("bridge {}: connecting to {host}:{port}", self.b.name);
            let connected = tokio::select! {
                r = Client::connect(self.options(&host, port)) => r,
                _ = stopped(&mut stop) => break,
            };
            let ended = match connected {
                Ok((client, events)) => {
                    info!("bridge {}: connected to {host}:{port}", self.b.name);
                    delay = base;
                    // As Mosquitto with `round_robin false`: while on a fail-over address,
                    // look now and then whether the first one is back.
                    let primary = (index != 0 && !self.b.config.round_robin)
                        .then(|| self.b.addresses[0].clone());
                    let ended = self
                        .serve(&mut link, &client, events, &mut stop, primary)
                        .await;
                    if matches!(ended, Ended::Stop | Ended::Primary) {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(1), client.disconnect()).await;
                    }
                    self.notify_local(false);
                    ended
                }
                Err(e) => {
                    let refused_bit = self.private
                        && self.b.version != ProtocolVersion::V5
                        && self.b.config.try_private
                        && e.reason_code() == Some(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
                    if refused_bit {
                        // As Mosquitto: the remote does not know the bridge bit; try without.
                        self.private = false;
                    }
                    Ended::Lost(e.to_string())
                }
            };
            let why = match ended {
                Ended::Stop => break,
                Ended::Lost(why) => why,
                Ended::Primary => {
                    info!("bridge {}: the first address answers again", self.b.name);
                    index = 0;
                    continue;
                }
            };
            // Fail over: the next address after each failure.
            index = (index + 1) % self.b.addresses.len();
            warn!(
                "bridge {}: connection to {host}:{port} failed or lost ({why}); trying again \
                 in {:.1} s",
                self.b.name,
                delay.as_secs_f64()
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut stop) => break,
            }
            delay = next_delay(delay, base, cap);
        }
        link.close("bridge stopped");
    }

    /// The options of a connection to `host:port`.
    fn options(&self, host: &str, port: u16) -> ClientOptions {
        let cfg = &self.b.config;
        let v5 = self.b.version.is_v5();
        let mut o = ClientOptions::new(host, port)
            .with_client_id(self.b.remote_clientid.clone())
            .with_version(self.b.version)
            .with_keep_alive(Duration::from_secs(u64::from(cfg.keepalive_interval)))
            .with_clean_start(cfg.cleansession)
            .with_max_inflight(self.receive_max)
            .with_connect_timeout(Duration::from_secs(10));
        o.nodelay = true;
        o.bridge = !v5 && cfg.try_private && self.private;
        if let Some(u) = &cfg.remote_username {
            let password = cfg
                .remote_password
                .as_ref()
                .map(|p| Bytes::copy_from_slice(p.as_bytes()));
            o = o.with_credentials(u.clone(), password);
        }
        if v5 {
            let mut p = Properties::default();
            let m = p.make_mut();
            m.session_expiry_interval = (!cfg.cleansession).then_some(u32::MAX);
            m.receive_maximum = Some(self.receive_max);
            o.connect_properties = p;
        }
        if cfg.bridge_max_packet_size > 0 {
            o.max_packet_size = cfg.bridge_max_packet_size;
        }
        if cfg.notifications
            && !cfg.notifications_local_only
            && let Ok(topic) = ByteStr::try_from(self.b.notification_topic.as_str())
        {
            o.will = Some(Will {
                topic,
                payload: Bytes::from_static(b"0"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties::default(),
            });
        }
        if cfg.bridge_cafile.is_some() || cfg.bridge_capath.is_some() {
            o.tls = Some(TlsOptions {
                ca_file: cfg.bridge_cafile.clone(),
                ca_path: cfg.bridge_capath.clone(),
                cert_file: cfg.bridge_certfile.clone(),
                key_file: cfg.bridge_keyfile.clone(),
                insecure: cfg.bridge_insecure,
                version: cfg.bridge_tls_version.clone(),
                alpn: cfg.bridge_alpn.clone(),
                server_name: None,
            });
        }
        o
    }

    /// Carries messages both ways until the connection to the remote ends.
    async fn serve(
        &mut self,
        link: &mut Link,
        client: &Client,
        mut events: Events,
        stop: &mut watch::Receiver<bool>,
        primary: Option<(String, u16)>,
    ) -> Ended {
        let mut look =
            tokio::time::interval_at(tokio::time::Instant::now() + PRIMARY_RETRY, PRIMARY_RETRY);
        self.on_connect(link, client);
        let mut acks: JoinSet<(u16, bool)> = JoinSet::new();
        // What the previous connection did not get acknowledged, in order.
        for i in 0..self.pending.len() {
            if !self.pending[i].sent {
                let mut p = self.pending[i].publish.clone();
                p.dup = true;
                self.pending[i].sent = send(client, &mut acks, self.pending[i].pid, p).await;
            }
        }
        let ended = loop {
            tokio::select! {
                // Within the core's Receive Maximum for the link (see `link.rs`); the core's
                // acknowledgements arrive through `link.recv()`.
                ev = events.recv(), if link.has_room() => match ev {
                    Some(Event::Message(p)) => {
                        let topic = topics::map_in(&self.b.rules, &p.topic);
                        let Ok(topic) = ByteStr::try_from(topic.as_str()) else {
                            continue;
                        };
                        let mut p = p;
                        p.topic = topic;
                        strip(&mut p.properties);
                        let packets = link.publish(p);
                        if link.send(packets) {
                            link.wait_uncongested().await;
                        }
                    }
                    Some(Event::Connected(_)) => {}
                    Some(Event::Disconnected(e)) => break Ended::Lost(e.to_string()),
                    None => break Ended::Lost("the client closed".into()),
                    Some(_) => {}
                },
                out = link.recv() => {
                    for packet in out.packets {
                        self.on_core_packet(link, client, &mut acks, packet).await;
                    }
                    if out.closed {
                        break Ended::Stop;
                    }
                }
                Some(done) = acks.join_next(), if !acks.is_empty() => {
                    if let Ok((pid, ok)) = done {
                        self.acknowledged(link, pid, ok);
                    }
                }
                _ = look.tick(), if primary.is_some() => {
                    if let Some((host, port)) = &primary
                        && answers(host, *port).await
                    {
                        break Ended::Primary;
                    }
                }
                _ = stopped(stop) => break Ended::Stop,
            }
        };
        // The connection is gone: what it acknowledged still counts, the rest is sent again.
        drop(events);
        if matches!(ended, Ended::Lost(_)) {
            while let Some(done) = acks.join_next().await {
                if let Ok((pid, ok)) = done {
                    self.acknowledged(link, pid, ok);
                }
            }
        } else {
            // Leaving a live connection: whatever it has not acknowledged yet is sent again
            // on the next one (a duplicate at worst).
            acks.abort_all();
            for p in &mut self.pending {
                p.sent = false;
            }
        }
        ended
    }

    /// A new connection to the remote: state, subscriptions there and here.
    fn on_connect(&mut self, link: &mut Link, client: &Client) {
        let cfg = &self.b.config;
        if cfg.notifications && !cfg.notifications_local_only {
            let c = client.clone();
            let state = self.state_message(true);
            tokio::spawn(async move { c.send_publish(state).await });
        }
        self.notify_local(true);
        let v5 = self.b.version.is_v5();
        let inbound: Vec<(String, SubscriptionOptions)> = self
            .b
            .rules
            .iter()
            .filter(|r| r.direction.inbound())
            .map(|r| {
                let options = SubscriptionOptions {
                    qos: QoS::from_u8(r.qos).unwrap_or(QoS::AtMostOnce),
                    no_local: v5,
                    retain_as_published: v5,
                    retain_handling: RetainHandling::SendAtSubscribe,
                };
                (r.remote.clone(), options)
            })
            .collect();
        let stale: Vec<String> = if cfg.bridge_attempt_unsubscribe {
            self.b
                .rules
                .iter()
                .filter(|r| !r.direction.inbound() && !inbound.iter().any(|(f, _)| *f == r.remote))
                .map(|r| r.remote.clone())
                .collect()
        } else {
            Vec::new()
        };
        // In a task of its own: waiting for SUBACK here could deadlock with a persistent
        // session whose backlog fills the event queue first.
        let (c, name) = (client.clone(), self.b.name.clone());
        tokio::spawn(async move {
            if !stale.is_empty() {
                let _ = c.unsubscribe(stale).await;
            }
            if inbound.is_empty() {
                return;
            }
            match c.subscribe(inbound).await {
                Ok(ack) if ack.reasons.iter().all(|r| r.is_success()) => {}
                Ok(ack) => warn!(
                    "bridge {name}: the remote broker refused a subscription: {:?}",
                    ack.reasons
                ),
                Err(e) => warn!("bridge {name}: subscribing on the remote broker: {e}"),
            }
        });
        let outbound: Vec<(String, u8)> = self
            .b
            .rules
            .iter()
            .filter(|r| r.direction.out())
            .map(|r| (r.local.clone(), r.qos))
            .collect();
        link.subscribe(&outbound);
    }

    /// A packet the core sent the bridge's session.
    async fn on_core_packet(
        &mut self,
        link: &mut Link,
        client: &Client,
        acks: &mut JoinSet<(u16, bool)>,
        packet: Packet,
    ) {
        match packet {
            Packet::Publish(mut p) => {
                let topic = topics::map_out(&self.b.rules, &p.topic);
                let Ok(topic) = ByteStr::try_from(topic.as_str()) else {
                    return;
                };
                p.topic = topic;
                p.retain &= self.b.config.bridge_outgoing_retain;
                strip(&mut p.properties);
                let pid = p.packet_id;
                if p.qos == QoS::AtMostOnce {
                    let _ = client.send_publish(p).await;
                    return;
                }
                p.dup = false;
                self.pending.retain(|q| q.pid != pid);
                let sent = send(client, acks, pid, p.clone()).await;
                self.pending.push(Pending {
                    pid,
                    publish: p,
                    sent,
                });
            }
            // The second half of this broker's QoS 2 flow towards the bridge.
            Packet::PubRel(r) => {
                link.send([Packet::PubComp(PubResp::new(r.packet_id))]);
            }
            _ => {}
        }
    }

    /// The remote broker acknowledged (or, `ok` false, did not get) message `pid`.
    fn acknowledged(&mut self, link: &mut Link, pid: u16, ok: bool) {
        let Some(i) = self.pending.iter().position(|p| p.pid == pid) else {
            return;
        };
        if !ok {
            self.pending[i].sent = false;
            return;
        }
        let p = self.pending.remove(i);
        let ack = match p.publish.qos {
            QoS::ExactlyOnce => Packet::PubRec(PubResp::new(pid)),
            _ => Packet::PubAck(PubResp::new(pid)),
        };
        link.send([ack]);
    }

    fn state_message(&self, up: bool) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: ByteStr::try_from(self.b.notification_topic.as_str())
                .unwrap_or_else(|_| ByteStr::from_static("$SYS/broker/connection/bridge/state")),
            packet_id: 0,
            properties: Properties::default(),
            payload: Bytes::from_static(if up { b"1" } else { b"0" }),
        }
    }

    /// Publishes the bridge's state here (retained), when notifications are on.
    fn notify_local(&self, up: bool) {
        if !self.b.config.notifications {
            return;
        }
        let p = self.state_message(up);
        let mut state = self.shared.lock();
        state.router.publish(Instant::now(), &p);
        self.shared.wake(&mut state, None);
    }
}

/// How often a bridge on a fail-over address looks whether the first one is back.
const PRIMARY_RETRY: Duration = Duration::from_secs(5);

/// True if something accepts TCP connections at `host:port` (within a second).
async fn answers(host: &str, port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect((host, port));
    matches!(
        tokio::time::timeout(Duration::from_secs(1), connect).await,
        Ok(Ok(_))
    )
}

/// Resolves once the broker stops (the watch's guard is not held across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}

/// Hands a QoS 1/2 message to the remote connection; its acknowledgement comes through
/// `acks`. False if the connection is gone already.
async fn send(client: &Client, acks: &mut JoinSet<(u16, bool)>, pid: u16, p: Publish) -> bool {
    match client.send_publish(p).await {
        Ok(token) => {
            acks.spawn(async move { (pid, token.wait().await.is_ok()) });
            true
        }
        Err(_) => false,
    }
}

/// Properties that belong to one hop, not to the message.
fn strip(p: &mut Properties) {
    if p.is_empty() {
        return;
    }
    let m = p.make_mut();
    m.topic_alias = None;
    m.subscription_identifiers.clear();
}

/// The next restart timeout: Mosquitto's "decorrelated jitter" (a random time between the
/// base and three times the last one, capped); fixed when base and cap are equal.
fn next_delay(last: Duration, base: Duration, cap: Duration) -> Duration {
    if base >= cap {
        return base;
    }
    let high = (last * 3).max(base + Duration::from_millis(1));
    let next = base + (high - base).mul_f64(rand::random_range(0.0..1.0));
    next.min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delay_stays_between_base_and_cap() {
        let (base, cap) = (Duration::from_secs(5), Duration::from_secs(30));
        let mut d = base;
        for _ in 0..100 {
            d = next_delay(d, base, cap);
            assert!(d >= base && d <= cap, "{d:?}");
        }
        let one = Duration::from_secs(1);
        assert_eq!(next_delay(one, one, one), one);
    }
}
