//! The two hot loops: a publisher and a subscriber, each one task owning one connection.
//!
//! Both batch: a publisher fills its write buffer with up to [`WRITE_BATCH`] bytes of
//! PUBLISH packets (patched copies of one pre-encoded template) and writes them in one
//! call; a subscriber reads up to [`crate::conn::READ_CHUNK`] bytes in one call, handles
//! every whole packet in them, and writes all the acknowledgements in one call. One clock
//! read per batch stamps (or timestamps) every message in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::BenchError;
use crate::conn::{
    Conn, Incoming, READ_CHUNK, WRITE_BATCH, consume, next_incoming, put_ack, read_target,
};
use crate::payload::{self, Stamp};
use crate::tracker::Tracker;

/// After the last publish, how long a publisher waits for a broker that reads nothing
/// before it gives up (an overloaded broker may pause reading for a while; one that
/// stopped for good fails the run).
const WRITE_STALL: Duration = Duration::from_secs(10);

/// Counters the progress bar and the drain logic read while the run goes on.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) connected: AtomicU64,
}

/// One publisher's job.
#[derive(Debug, Clone)]
pub(crate) struct PubPlan {
    pub(crate) id: u32,
    /// An encoded PUBLISH with the right topic, QoS and payload size.
    pub(crate) template: Bytes,
    /// Where the payload starts in `template`.
    pub(crate) payload_off: usize,
    /// Where the packet identifier is in `template` (QoS 1 and 2).
    pub(crate) packet_id_off: Option<usize>,
    pub(crate) qos: u8,
    pub(crate) rate: Option<f64>,
    pub(crate) window: u32,
    pub(crate) count: Option<u64>,
    pub(crate) duration: Option<Duration>,
    /// Once everything is sent, how long to wait without any acknowledgement before giving
    /// up on the missing ones.
    pub(crate) ack_timeout: Duration,
}

/// What a publisher did.
#[derive(Debug)]
pub(crate) struct PubOutcome {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) error: Option<BenchError>,
}

/// Packet identifiers awaiting acknowledgement: one bit each.
struct Outstanding(Vec<u64>);

impl Outstanding {
    fn new() -> Outstanding {
        Outstanding(vec![0; 1024])
    }
    fn contains(&self, id: u16) -> bool {
        self.0[usize::from(id) / 64] & (1 << (id % 64)) != 0
    }
    fn insert(&mut self, id: u16) {
        self.0[usize::from(id) / 64] |= 1 << (id % 64);
    }
    /// Clears `id`; false if it was not outstanding.
    fn remove(&mut self, id: u16) -> bool {
        let had = self.contains(id);
        self.0[usize::from(id) / 64] &= !(1 << (id % 64));
        had
    }
}

/// Publishes `plan` from `go` on until its count or duration is reached (or `cancel`),
/// then waits for every QoS 1/2 acknowledgement.
pub(crate) async fn publisher(
    mut conn: Conn,
    plan: PubPlan,
    go: Instant,
    cancel: CancellationToken,
    live: Arc<Live>,
) -> PubOutcome {
    let mut st = PubState {
        seq: 0,
        acked: 0,
        inflight: 0,
        next_id: 1,
        outstanding: Outstanding::new(),
        reported: 0,
    };
    let error = publish_loop(&mut conn, &plan, go, &cancel, &live, &mut st)
        .await
        .err();
    live.sent.fetch_add(st.seq - st.reported, Ordering::Relaxed);
    if error.is_none() {
        conn.disconnect().await;
    }
    PubOutcome {
        sent: st.seq,
        acked: st.acked,
        error,
    }
}

struct PubState {
    seq: u64,
    acked: u64,
    inflight: u32,
    next_id: u16,
    outstanding: Outstanding,
    reported: u64,
}

async fn publish_loop(
    conn: &mut Conn,
    plan: &PubPlan,
    go: Instant,
    cancel: &CancellationToken,
    live: &Live,
    st: &mut PubState,
) -> Result<(), BenchError> {
    tokio::time::sleep_until(go.into()).await;
    let stop_at = plan.duration.map(|d| go + d);
    // MQTT 5 brokers say how many unacknowledged publishes they accept.
    let window = plan.window.min(u32::from(conn.receive_maximum)).max(1);
    let tlen = plan.template.len();
    // Last time the broker took bytes or acknowledged something (or we were still
    // producing): bounds the wait at the end.
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        let producing = !cancel.is_cancelled()
            && plan.count.is_none_or(|c| st.seq < c)
            && stop_at.is_none_or(|t| now < t);
        if producing {
            last_progress = now;
        }
        let mut rate_wake = None;
        let mut can_produce = false;
        if producing {
            let mut budget = plan.count.map_or(u64::MAX, |c| c - st.seq);
            if let Some(r) = plan.rate {
                // Message k is due at go + k / rate; the first one at go.
                let due = (now.duration_since(go).as_secs_f64() * r) as u64 + 1;
                budget = budget.min(due.saturating_sub(st.seq));
            }
            let sent_ns = payload::now_ns();
            while budget > 0
                && conn.wbuf.len() < WRITE_BATCH
                && (plan.qos == 0 || st.inflight < window)
            {
                let base = conn.wbuf.len();
                conn.wbuf.put_slice(&plan.template);
                let msg = &mut conn.wbuf[base..base + tlen];
                if let Some(off) = plan.packet_id_off {
                    while st.outstanding.contains(st.next_id) {
                        st.next_id = st.next_id.checked_add(1).unwrap_or(1);
                    }
                    let id = st.next_id;
                    st.next_id = st.next_id.checked_add(1).unwrap_or(1);
                    st.outstanding.insert(id);
                    st.inflight += 1;
                    msg[off..off + 2].copy_from_slice(&id.to_be_bytes());
                }
                payload::stamp(
                    &mut msg[plan.payload_off..],
                    Stamp {
                        publisher: plan.id,
                        seq: st.seq,
                        sent_ns,
                    },
                );
                st.seq += 1;
                budget -= 1;
            }
            can_produce = budget > 0 && (plan.qos == 0 || st.inflight < window);
            if budget == 0 && plan.count.is_none_or(|c| st.seq < c) {
                if let Some(r) = plan.rate {
                    rate_wake = Some(go + Duration::from_secs_f64(st.seq as f64 / r));
                }
            }
        }
        let unwritten = conn.wbuf.len();
        let flushed = conn.try_flush(now)?;
        if conn.wbuf.len() < unwritten {
            last_progress = now;
        }
        // One shared-counter update per batch, for the progress line and the drain.
        if st.seq != st.reported {
            live.sent.fetch_add(st.seq - st.reported, Ordering::Relaxed);
            st.reported = st.seq;
        }
        let finished_sending = !producing || plan.count.is_some_and(|c| st.seq >= c);
        if finished_sending && !conn.wants_write() && st.inflight == 0 {
            return Ok(());
        }
        let stalled = now.duration_since(last_progress);
        if finished_sending && conn.wants_write() && stalled >= WRITE_STALL {
            return Err(BenchError::Stalled(format!(
                "it read nothing from a publisher for {} s",
                WRITE_STALL.as_secs()
            )));
        }
        if finished_sending && !conn.wants_write() && stalled >= plan.ack_timeout {
            return Err(BenchError::Stalled(format!(
                "{} publishes still unacknowledged {:.1} s after the last acknowledgement",
                st.inflight,
                plan.ack_timeout.as_secs_f64()
            )));
        }
        if flushed && can_produce {
            // Nothing blocks: let other connections run, then write the next batch.
            tokio::task::yield_now().await;
            continue;
        }
        conn.ping_if_idle(now);
        let mut wake = conn.ping_due();
        if let Some(t) = rate_wake {
            wake = wake.min(t);
        }
        if let Some(t) = stop_at.filter(|_| producing) {
            wake = wake.min(t);
        }
        if finished_sending {
            let bound = if !conn.wants_write() {
                plan.ack_timeout
            } else {
                WRITE_STALL
            };
            wake = wake.min(last_progress + bound);
        }
        let want_write = conn.wants_write();
        let target = read_target(&mut conn.rbuf, &mut conn.layer);
        target.reserve(READ_CHUNK);
        // Split borrows: the read future needs the stream mutably, `writable` shares it.
        let (mut rd, wr) = conn.stream.split();
        tokio::select! {
            biased;
            r = rd.read_buf(target) => {
                if r? == 0 {
                    return Err(BenchError::Closed("the broker closed a publisher".into()));
                }
                conn.after_read()?;
                let before = st.acked;
                handle_acks(conn, st)?;
                if st.acked != before {
                    last_progress = Instant::now();
                }
            }
            r = wr.writable(), if want_write => r?,
            () = tokio::time::sleep_until(wake.into()) => {}
            () = cancel.cancelled(), if producing => {}
        }
    }
}

/// Handles the acknowledgements buffered in `conn.rbuf`.
fn handle_acks(conn: &mut Conn, st: &mut PubState) -> Result<(), BenchError> {
    let mut pos = 0;
    while let Some(inc) = next_incoming(&conn.rbuf, &mut pos, conn.version)? {
        match inc {
            Incoming::Ack(tinsel_codec::PacketType::PubAck, id)
            | Incoming::Ack(tinsel_codec::PacketType::PubComp, id) => {
                if st.outstanding.remove(id) {
                    st.inflight -= 1;
                    st.acked += 1;
                }
            }
            Incoming::Ack(tinsel_codec::PacketType::PubRec, id) => {
                put_ack(&mut conn.wbuf, tinsel_codec::PacketType::PubRel, id);
            }
            Incoming::Disconnect => {
                return Err(BenchError::Closed(
                    "the broker sent DISCONNECT to a publisher".into(),
                ));
            }
            Incoming::Ack(..) | Incoming::Other | Incoming::Publish { .. } => {}
        }
    }
    consume(&mut conn.rbuf, pos);
    Ok(())
}

/// Receives until `cancel`, acknowledging QoS 1/2 messages and recording every benchmark
/// payload in a [`Tracker`].
pub(crate) async fn subscriber(
    mut conn: Conn,
    cancel: CancellationToken,
    live: Arc<Live>,
) -> (Tracker, Option<BenchError>) {
    let mut tracker = Tracker::new();
    let error = subscribe_loop(&mut conn, &cancel, &live, &mut tracker)
        .await
        .err();
    if error.is_none() {
        conn.disconnect().await;
    }
    (tracker, error)
}

async fn subscribe_loop(
    conn: &mut Conn,
    cancel: &CancellationToken,
    live: &Live,
    tracker: &mut Tracker,
) -> Result<(), BenchError> {
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let want_write = conn.wants_write();
        let ping = conn.ping_due();
        let target = read_target(&mut conn.rbuf, &mut conn.layer);
        target.reserve(READ_CHUNK);
        // Split borrows: the read future needs the stream mutably, `writable` shares it.
        let (mut rd, wr) = conn.stream.split();
        tokio::select! {
            biased;
            r = rd.read_buf(target) => {
                if r? == 0 {
                    return Err(BenchError::Closed("the broker closed a subscriber".into()));
                }
                conn.after_read()?;
                let before = tracker.total;
                handle_messages(conn, tracker)?;
                live.received.fetch_add(tracker.total - before, Ordering::Relaxed);
            }
            r = wr.writable(), if want_write => r?,
            () = tokio::time::sleep_until(ping.into()) => {}
            () = cancel.cancelled() => return Ok(()),
        }
        let now = Instant::now();
        conn.ping_if_idle(now);
        conn.try_flush(now)?;
    }
}

/// Records and acknowledges the messages buffered in `conn.rbuf`.
fn handle_messages(conn: &mut Conn, tracker: &mut Tracker) -> Result<(), BenchError> {
    use tinsel_codec::PacketType as T;
    let now_ns = payload::now_ns();
    let mut pos = 0;
    while let Some(inc) = next_incoming(&conn.rbuf, &mut pos, conn.version)? {
        match inc {
            Incoming::Publish {
                qos,
                packet_id,
                payload: p,
            } => {
                tracker.record(payload::read(p), now_ns);
                match qos {
                    1 => put_ack(&mut conn.wbuf, T::PubAck, packet_id),
                    2 => put_ack(&mut conn.wbuf, T::PubRec, packet_id),
                    _ => {}
                }
            }
            Incoming::Ack(T::PubRel, id) => put_ack(&mut conn.wbuf, T::PubComp, id),
            Incoming::Disconnect => {
                return Err(BenchError::Closed(
                    "the broker sent DISCONNECT to a subscriber".into(),
                ));
            }
            Incoming::Ack(..) | Incoming::Other => {}
        }
    }
    consume(&mut conn.rbuf, pos);
    Ok(())
}
