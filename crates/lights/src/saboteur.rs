//! The saboteur: the villain's client, which switches the lights off at the start of a lab.

use std::time::Duration;

use bytes::Bytes;
use tinsel_client::{Client, ClientOptions, QoS, TlsOptions};
use tokio_util::sync::CancellationToken;

use crate::{Error, Scenario};

/// Connects as the scenario's saboteur (over TLS with `tls`), performs its actions in
/// order (each after its delay), and disconnects. Returns early, without error, if
/// `shutdown` is cancelled.
pub async fn run(
    host: &str,
    port: u16,
    tls: Option<TlsOptions>,
    scenario: &Scenario,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let actions = &scenario.saboteur.actions;
    if actions.is_empty() {
        return Ok(());
    }
    let mut opts =
        ClientOptions::new(host, port).with_client_id(scenario.saboteur.client_id.clone());
    opts.connect_timeout = Duration::from_secs(10);
    opts.tls = tls;
    opts.username = scenario
        .saboteur
        .username
        .clone()
        .or_else(|| scenario.mqtt.username.clone());
    opts.password = scenario
        .saboteur
        .password
        .clone()
        .or_else(|| scenario.mqtt.password.clone())
        .map(Bytes::from);
    let work = async {
        let (client, mut events) = Client::connect(opts).await?;
        // Nothing to read, but the event queue must not fill up.
        let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
        for action in actions {
            tokio::time::sleep(Duration::from_millis(action.after_ms)).await;
            let qos = QoS::from_u8(action.qos).unwrap_or(QoS::AtMostOnce);
            let topic = action.topic(scenario);
            client
                .publish(topic, action.payload.clone(), qos, action.retain)
                .await?;
            // Not what or where: finding that in the capture is the learner's job.
            tracing::debug!("saboteur: published {:?} to {topic}", action.payload);
        }
        client.disconnect().await?;
        drain.abort();
        Ok::<(), Error>(())
    };
    tokio::select! {
        r = work => r,
        () = shutdown.cancelled() => Ok(()),
    }
}
