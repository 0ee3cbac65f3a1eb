//! The Wareville smart-lights device, its live control page, the saboteur, and the
//! scenario files that describe a lab.
//!
//! The lab is a teaching scenario: a string of Christmas lights is controlled over MQTT, a
//! villain has switched them off, and the learner finds in a traffic capture how to switch
//! them back on. This crate provides the pieces `tinsel lights` and `tinsel lab` put
//! together:
//!
//! - [`Scenario`]: what the lab is about (topics, words, flag, looks, story, saboteur),
//!   from a TOML file or the built-in Wareville default.
//! - [`Device`]: the lights, an MQTT client that obeys the control topic, reports its state
//!   (retained) and reconnects with back-off.
//! - [`page`]: the control page, served over HTTP, updated live with server-sent events.
//! - [`saboteur`]: the villain's client, which switches the lights off once.
//!
//! The flag is only ever held by the page server, and it leaves it only in the live
//! updates sent after the lights are on: it is never published over MQTT, never written
//! into the page's HTML or scripts, and never answered while the lights are off.
//!
//! This crate runs no broker; `tinsel lab` starts one.

pub mod device;
mod error;
pub mod page;
pub mod saboteur;
pub mod scenario;

pub use device::{Device, DeviceState};
pub use error::Error;
pub use scenario::{Command, Scenario};
/// The shutdown signal the device, page and saboteur take (re-exported from `tokio-util`).
pub use tokio_util::sync::CancellationToken;
