//! The Tinsel broker's protocol state machine.
//!
//! `tinsel-core` holds everything a broker decides: connections' protocol state, sessions,
//! QoS flows, subscriptions (shared ones too), retained messages, wills, timers and `$SYS`.
//! It performs **no I/O and reads no clock**: packets and the time go in as arguments,
//! encoded bytes for each connection and work for the host come out. The tokio shell
//! (`tinsel-broker`) owns sockets, threads and the clock; tests and the simulation harness
//! drive the same core with simulated time.
//!
//! # Call order
//!
//! One [`Router`] serves the whole broker. Its host:
//!
//! 1. [`Router::accept_on`] when a connection arrives on a listener (from the network, or
//!    a [`Origin::Link`] such as a bridge; [`Router::accept`] for listener 0): returns its
//!    [`ConnId`] and the connection's [`Outbox`].
//! 2. [`Router::handle`] for every decoded packet, [`Router::decode_error`] when the bytes
//!    are malformed, each with the current time.
//! 3. [`Router::wake`] wakes the connections that have new output. Each connection takes
//!    its encoded packets from its [`Outbox`], which also says whether to close it after
//!    writing them.
//! 4. [`Router::take_work`] after handling: authentications the host runs off the event
//!    loop (answered with [`Router::authenticated`]) and records for the store (answered
//!    with [`Router::durable`], which releases the acknowledgements that waited for them).
//! 5. [`Router::tick`] a few times a second: CONNECT timeout, keep alive, will delay,
//!    session expiry, retained message expiry, `$SYS`.
//! 6. [`Router::connection_lost`] when the socket is gone (or was closed as asked).
//!
//! # Rooms
//!
//! The router only dispatches; each concern is a part that owns its state, in a file named
//! for it:
//!
//! | file | owns |
//! |---|---|
//! | `connections.rs` | every connection's protocol state (version, keep alive, limits the client set, outbox) |
//! | `listener.rs` | what each listener asks of its connections: versions, mount point, topic aliases |
//! | `connect.rs` | CONNECT/CONNACK: authentication, takeover, session present, assigned ids, resume |
//! | `sessions.rs`, `session.rs` | sessions by client id, their expiry timers; one session's in-flight window and queue |
//! | `publish.rs` | inbound PUBLISH at QoS 0/1/2, topic aliases from the client, PUBREL |
//! | `rate.rs` | each client's publish rate buckets |
//! | `deliver.rs` | routing a message to its subscribers: per-subscriber forms, in-flight windows, queues |
//! | `backpressure.rs` | which subscribers make publishers wait |
//! | `subscriptions.rs`, `subscribe.rs` | the subscription tree and shared groups; SUBSCRIBE/UNSUBSCRIBE |
//! | `retained.rs` | retained messages and their expiry |
//! | `will.rs` | wills waiting for their delay |
//! | `timers.rs`, `tick.rs` | the timers' clock; the tick that runs every room's due timers and `$SYS` |
//! | `close.rs` | DISCONNECT, closing, session end |
//! | `sys.rs` | counters and `$SYS` |
//! | `histogram.rs`, `top_topics.rs` | delivery latency in fixed buckets; the busiest topics (a bounded sketch) |
//! | `inspect.rs` | read-only views for operators: clients, subscriptions, retained messages, queues |
//! | `access.rs` | the access seam: who may connect, publish, subscribe, receive |
//! | `durable.rs` | the durability seam: records the store must keep, acknowledgements held for them |
//! | `restore.rs` | what a store kept, put back at start ([`Router::restore`]) |
//! | `outbox.rs` | a connection's encoded output, shared with its connection task |
//!
//! # Bounds
//!
//! Every queue is bounded and says what happens when it is full:
//!
//! - per session, messages waiting for an offline client or for its Receive Maximum:
//!   `limits.max_queued_messages` and `limits.max_queued_bytes`; when full the newest
//!   message is dropped (QoS 0 is never queued for an offline client);
//! - per connection, QoS 0 messages not yet written: `limits.max_queued_messages`; further
//!   ones are dropped. Before that, from half of it, the publishers feeding a subscriber
//!   that is still reading are asked to wait ([`Router::take_pressure`]);
//! - messages in flight: the client's Receive Maximum (MQTT 5) or `limits.max_inflight`;
//! - incoming QoS 2 awaiting PUBREL, and acknowledgements held for the store:
//!   `limits.max_inflight` per connection, beyond that DISCONNECT 0x93;
//! - packets that arrive while a CONNECT is being authenticated: [`MAX_EARLY`]
//!   per connection, beyond that the connection closes;
//! - what one client may publish: `limits.max_publish_rate` and
//!   `limits.max_publish_bytes_rate`; beyond them the host stops reading from it
//!   ([`Router::take_throttle`]) or it is disconnected (0x96), as
//!   `limits.publish_rate_action` says;
//! - subscriptions per session: `limits.max_subscriptions`; further filters are refused in
//!   the SUBACK (0x97);
//! - work for the host ([`Router::take_work`]): what one batch of packets produced; the
//!   host takes it after every batch.

mod access;
mod backpressure;
mod client_ids;
mod close;
mod connect;
mod connections;
mod deliver;
mod durable;
mod histogram;
mod identity;
mod inspect;
mod level_map;
mod listener;
mod message;
mod outbox;
mod packet_log;
mod publish;
mod rate;
mod restore;
mod retained;
pub mod retained_tree;
mod router;
mod session;
mod sessions;
mod settings;
mod subscribe;
mod subscriptions;
mod sys;
mod tick;
mod timers;
mod top_topics;
pub mod topic_tree;
mod will;
mod wills;

#[cfg(test)]
mod tests;

/// Hash maps on the hot paths: seeded per process (foldhash), several times faster than
/// SipHash for the short keys used here (client ids, topic levels, connection ids).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Hash sets on the hot paths; see [`FastMap`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

pub use access::{
    AllowAll, AuthDecision, Authenticator, Authorizer, ConnectInfo, Identity, Verdict,
};
pub use connections::{ConnId, MAX_EARLY, Origin};
pub use durable::{Record, Ticket};
pub use histogram::{BUCKET_BOUNDS, Histogram};
pub use inspect::{
    ClientDetail, ClientView, MAX_PAGE, Page, QueueDepths, RetainedView, SubscriptionView,
};
pub use listener::{ListenerId, ListenerSettings, NO_LISTENER, Protocols};
pub use outbox::{Offer, Outbox, Parked, Taken};
pub use restore::{Restored, RestoredInflight, RestoredSession, RestoredWill};
pub use router::{Router, Work};
pub use settings::{Limits, RateAction, Settings};
pub use sys::{DropCause, Snapshot, Stats, version};
pub use top_topics::{MAX_TOPIC as TOP_TOPIC_MAX_LEN, SLOTS as TOP_TOPIC_SLOTS, TopicCount};
