//! The lights device: an MQTT client that obeys the control topic.

use std::time::Duration;

use bytes::Bytes;
use tinsel_client::{
    Backoff, ByteStr, Client, ClientOptions, Event, Events, Properties, Publish, QoS,
    SubscriptionOptions, TlsOptions, Will,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{Command, Error, Scenario};

/// What the status topic says while the device is offline (its will).
pub const STATUS_OFFLINE: &str = "offline";
/// What the status topic says while the lights are on.
pub const STATUS_ON: &str = "on";
/// What the status topic says while the lights are off.
pub const STATUS_OFF: &str = "off";

/// How long the device waits for its goodbye (status `offline`, DISCONNECT) at shutdown.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);

/// The lights as the page shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DeviceState {
    /// The lights are on. They always start off.
    pub on: bool,
    /// The device is connected to the broker.
    pub connected: bool,
    /// The device has subscribed to the control topic at least once.
    pub subscribed: bool,
}

/// The lights device.
///
/// ```no_run
/// # async fn demo() -> Result<(), tinsel_lights::Error> {
/// use tinsel_lights::{Device, Scenario};
/// let device = Device::new("127.0.0.1", 1883, Scenario::default());
/// let state = device.state(); // a watch of DeviceState, for the page
/// device.run(tokio_util::sync::CancellationToken::new()).await
/// # }
/// ```
#[derive(Debug)]
pub struct Device {
    host: String,
    port: u16,
    scenario: Scenario,
    tls: Option<TlsOptions>,
    backoff: Backoff,
    state: watch::Sender<DeviceState>,
}

impl Device {
    /// A device for the broker at `host:port`, lights off.
    pub fn new(host: impl Into<String>, port: u16, scenario: Scenario) -> Device {
        Device {
            host: host.into(),
            port,
            scenario,
            tls: None,
            backoff: Backoff {
                initial: Duration::from_millis(250),
                max: Duration::from_secs(10),
            },
            state: watch::Sender::new(DeviceState::default()),
        }
    }

    /// Connects over TLS with these settings (the broker's port must be a TLS listener).
    pub fn with_tls(mut self, tls: TlsOptions) -> Device {
        self.tls = Some(tls);
        self
    }

    /// Follows the device's state (for the control page and for tests).
    pub fn state(&self) -> watch::Receiver<DeviceState> {
        self.state.subscribe()
    }

    /// The broker's address as `host:port`.
    pub fn broker(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn options(&self) -> ClientOptions {
        let m = &self.scenario.mqtt;
        let mut opts =
            ClientOptions::new(self.host.clone(), self.port).with_client_id(m.client_id.clone());
        opts.keep_alive = Duration::from_secs(30);
        opts.connect_timeout = Duration::from_secs(10);
        opts.username = m.username.clone();
        opts.password = m.password.clone().map(Bytes::from);
        opts.reconnect = Some(self.backoff);
        opts.tls = self.tls.clone();
        // Validated topic names are valid MQTT strings; without one the will is skipped.
        opts.will = ByteStr::try_from(m.status_topic.as_str())
            .ok()
            .map(|topic| Will {
                topic,
                payload: Bytes::from_static(STATUS_OFFLINE.as_bytes()),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties::default(),
            });
        opts
    }

    /// Runs until `shutdown` is cancelled: connects (retrying with back-off until the broker
    /// answers), subscribes to the control topic, and switches the lights on each command.
    /// At shutdown it sets its status to `offline` and disconnects.
    ///
    /// Errors only on what retrying cannot fix: the broker refusing the subscription.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let mut attempt = 0u32;
        loop {
            let connected = tokio::select! {
                r = Client::connect(self.options()) => r,
                () = shutdown.cancelled() => return Ok(()),
            };
            let (client, events) = match connected {
                Ok(c) => c,
                Err(e) => {
                    let delay = self.backoff.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(
                        "lights: cannot reach the broker at {}: {e}; retrying in {:.1}s",
                        self.broker(),
                        delay.as_secs_f64()
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => continue,
                        () = shutdown.cancelled() => return Ok(()),
                    }
                }
            };
            attempt = 0;
            match self.serve(&client, events, &shutdown).await? {
                Served::Shutdown => {
                    self.goodbye(&client).await;
                    return Ok(());
                }
                // The client gave up (it should not, with reconnect on): start over.
                Served::ClientClosed => {
                    self.state.send_modify(|s| s.connected = false);
                    tokio::select! {
                        () = tokio::time::sleep(self.backoff.delay(0)) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                }
            }
        }
    }

    async fn serve(
        &self,
        client: &Client,
        mut events: Events,
        shutdown: &CancellationToken,
    ) -> Result<Served, Error> {
        let topic = self.scenario.mqtt.control_topic.clone();
        let suback = tokio::select! {
            r = client.subscribe(vec![(topic.clone(), SubscriptionOptions::new(QoS::AtLeastOnce))]) => r?,
            () = shutdown.cancelled() => return Ok(Served::Shutdown),
        };
        if let Some(code) = suback.reasons.iter().find(|r| !r.is_success()) {
            return Err(Error::SubscriptionRefused {
                topic,
                code: code.0,
            });
        }
        // The log never names the control topic or the words: in a lab the learner watches
        // this terminal, and finding them is the exercise.
        tracing::info!("lights: connected to the broker at {}", self.broker());
        self.state.send_modify(|s| {
            s.connected = true;
            s.subscribed = true;
        });
        self.publish_status(client).await;
        // The first event is this connection's own CONNACK, already handled above.
        let mut first = true;
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                () = shutdown.cancelled() => return Ok(Served::Shutdown),
            };
            match event {
                None => return Ok(Served::ClientClosed),
                Some(Event::Connected(_)) if std::mem::take(&mut first) => {}
                Some(Event::Connected(_)) => {
                    tracing::info!("lights: reconnected to {}", self.broker());
                    self.state.send_modify(|s| s.connected = true);
                    self.publish_status(client).await;
                }
                Some(Event::Disconnected(e)) => {
                    first = false;
                    tracing::warn!("lights: lost the broker ({e}); reconnecting");
                    self.state.send_modify(|s| s.connected = false);
                }
                Some(Event::Message(publish)) => {
                    first = false;
                    self.handle(client, &publish).await;
                }
                Some(_) => {}
            }
        }
    }

    async fn handle(&self, client: &Client, publish: &Publish) {
        if publish.topic.as_str() != self.scenario.mqtt.control_topic {
            return;
        }
        let Some(command) = self.scenario.words.parse(&publish.payload) else {
            tracing::info!(
                "lights: ignored a message that is not a command: {:?}",
                String::from_utf8_lossy(&publish.payload)
            );
            return;
        };
        let on = command == Command::On;
        let changed = self.state.send_if_modified(|s| {
            let changed = s.on != on;
            s.on = on;
            changed
        });
        if changed {
            tracing::info!("lights: switched {}", if on { "on" } else { "off" });
            self.publish_status(client).await;
        }
    }

    /// Publishes the lights' state, retained, without waiting for the acknowledgement (the
    /// event loop must keep reading for it to arrive).
    async fn publish_status(&self, client: &Client) {
        let status = if self.state.borrow().on {
            STATUS_ON
        } else {
            STATUS_OFF
        };
        if let Err(e) = self.send_status(client, status).await {
            tracing::warn!("lights: cannot publish the status: {e}");
        }
    }

    async fn send_status(&self, client: &Client, status: &'static str) -> Result<(), Error> {
        let topic = ByteStr::try_from(self.scenario.mqtt.status_topic.as_str()).map_err(|_| {
            tinsel_client::Error::InvalidTopic(self.scenario.mqtt.status_topic.clone())
        })?;
        client
            .send_publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: true,
                topic,
                packet_id: 0,
                properties: Properties::default(),
                payload: Bytes::from_static(status.as_bytes()),
            })
            .await?;
        Ok(())
    }

    /// Says `offline` (a normal DISCONNECT discards the will) and disconnects.
    async fn goodbye(&self, client: &Client) {
        self.state.send_modify(|s| s.connected = false);
        let bye = async {
            let topic = &self.scenario.mqtt.status_topic;
            let _ = client
                .publish(topic, STATUS_OFFLINE, QoS::AtLeastOnce, true)
                .await;
            let _ = client.disconnect().await;
        };
        let _ = tokio::time::timeout(GOODBYE_WAIT, bye).await;
    }
}

enum Served {
    Shutdown,
    ClientClosed,
}
