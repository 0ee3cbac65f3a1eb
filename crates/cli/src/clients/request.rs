//! `tinsel rr`: publish a request naming a response topic (and, in MQTT 5, correlation
//! data), wait for the matching response and print it.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use tinsel_client::{Client, Event};
use tinsel_codec::{ByteStr, Properties, Publish, SubscriptionOptions};

use super::args::Config;
use super::common;
use super::publish::read_message;
use super::subscribe::{TIMED_OUT, print, printer};

/// Correlation data for this request: unique enough to tell our response from others'.
fn correlation() -> Bytes {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Bytes::from(format!("tinsel-rr-{}-{nanos:x}", std::process::id()))
}

pub(crate) async fn run(c: Config) -> ExitCode {
    let payload = match read_message(&c).await {
        Ok(m) => m.unwrap_or_default(),
        Err(line) => return common::fail(&c, line),
    };
    let opts = match common::options(&c) {
        Ok(o) => o,
        Err(line) => return common::fail(&c, format!("Error: {line}")),
    };
    let (Some(req_topic), Some(resp_topic)) = (c.topic.clone(), c.response_topic.clone()) else {
        return common::fail(
            &c,
            "Error: a request topic (-t) and a response topic (-e) are needed.",
        );
    };
    let deadline = c
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(u64::from(s)));
    let work = async {
        let (client, mut events) = match Client::connect(opts).await {
            Ok(x) => x,
            Err(e) => return common::connect_error(&c, &e),
        };
        let sub_opts = SubscriptionOptions {
            qos: c.qos,
            ..SubscriptionOptions::default()
        };
        let sub_props = if c.version.is_v5() {
            c.props.subscribe.clone()
        } else {
            Properties::default()
        };
        match client
            .subscribe_with(vec![(resp_topic.clone(), sub_opts)], sub_props)
            .await
        {
            Ok(ack) if ack.reasons.iter().all(|r| r.is_success()) => {}
            Ok(_) => {
                return common::fail(
                    &c,
                    "Error: the broker refused the response topic subscription.",
                );
            }
            Err(e) => return common::fail(&c, format!("Error: {e}")),
        }
        let mut props = if c.version.is_v5() {
            c.props.publish.clone()
        } else {
            Properties::default()
        };
        let corr = if c.version.is_v5() {
            props.make_mut().response_topic = ByteStr::try_from(resp_topic.as_str()).ok();
            let corr = props.correlation_data.clone().unwrap_or_else(correlation);
            props.make_mut().correlation_data = Some(corr.clone());
            Some(corr)
        } else {
            None
        };
        let Ok(topic) = ByteStr::try_from(req_topic.as_str()) else {
            return common::fail(&c, "Error: Invalid request topic.");
        };
        let request = Publish {
            dup: false,
            qos: c.qos,
            retain: false,
            topic,
            packet_id: 0,
            properties: props,
            payload,
        };
        // Publish from a task: its acknowledgement needs the connection task, which may be
        // waiting to hand us events.
        let publisher = {
            let client = client.clone();
            tokio::spawn(async move { client.publish_with(request).await })
        };
        let printer = printer(&c);
        let code = loop {
            match events.recv().await {
                None => {
                    break common::fail(
                        &c,
                        "Error: the connection closed before a response arrived.",
                    );
                }
                Some(Event::Message(m)) => {
                    if m.topic != resp_topic.as_str() || (c.no_retain && m.retain) {
                        continue;
                    }
                    // A response that carries correlation data must carry ours.
                    if let (Some(want), Some(got)) = (&corr, &m.properties.correlation_data) {
                        if want != got {
                            continue;
                        }
                    }
                    break if print(&c, &printer, &m) {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    };
                }
                Some(Event::Disconnected(e)) => break common::fail(&c, format!("Error: {e}")),
                Some(_) => continue,
            }
        };
        if let Ok(Err(e)) = publisher.await {
            if code == ExitCode::SUCCESS {
                return common::fail(&c, format!("Error: request not delivered: {e}"));
            }
        }
        let _ = client.disconnect().await;
        code
    };
    let bounded = async {
        match deadline {
            Some(d) => match tokio::time::timeout_at(d, work).await {
                Ok(code) => code,
                Err(_) => {
                    if !c.quiet {
                        eprintln!("Timed out");
                    }
                    ExitCode::from(TIMED_OUT)
                }
            },
            None => work.await,
        }
    };
    tokio::select! {
        code = bounded => code,
        // Interrupted while waiting: exit 0 as mosquitto_rr does. The connection is dropped
        // without DISCONNECT, so a will given with --will-topic is published.
        () = common::stop_signal() => ExitCode::SUCCESS,
    }
}
