//! An async MQTT 3.1 / 3.1.1 / 5.0 client on tokio, built on `tinsel-codec`.
//!
//! [`Client::connect`] opens the connection (TCP, Unix socket or TLS through rustls), sends
//! CONNECT and waits for CONNACK; a background task then owns the connection. The
//! [`Client`] handle publishes (QoS 0, 1 and 2, with an in-flight window), subscribes and
//! unsubscribes; [`Events`] yields received messages and connection changes.
//!
//! For long-running users, [`ClientOptions::reconnect`] makes the task reconnect with
//! exponential back-off after a lost connection, resend unacknowledged publishes and
//! restore subscriptions the broker forgot.
//!
//! ```no_run
//! use tinsel_client::{Client, ClientOptions, Event};
//! use tinsel_codec::{QoS, SubscriptionOptions};
//!
//! # async fn demo() -> Result<(), tinsel_client::Error> {
//! let opts = ClientOptions::new("127.0.0.1", 1883).with_client_id("lights");
//! let (client, mut events) = Client::connect(opts).await?;
//! client
//!     .subscribe(vec![("lights/#".into(), SubscriptionOptions::default())])
//!     .await?;
//! client.publish("lights/state", "on", QoS::AtLeastOnce, true).await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(m) = event {
//!         println!("{}: {:?}", m.topic, m.payload);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! It does not persist sessions to disk, and it does not implement MQTT 5 enhanced
//! authentication (AUTH).

mod client;
mod error;
mod options;
mod session;
mod transport;
mod websocket;

pub use client::{Client, Event, Events, PublishToken};
pub use error::Error;
pub use options::{Backoff, ClientOptions, PacketLog, PacketLogFn, TlsOptions};
pub use tinsel_codec::{
    ByteStr, ConnAck, Disconnect, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
    RetainHandling, SubAck, SubscriptionOptions, UnsubAck, Will,
};
