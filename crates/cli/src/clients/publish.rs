//! `tinsel pub`.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use tinsel_client::{Client, Error, PublishToken};
use tinsel_codec::{ByteStr, Disconnect, Properties, Publish};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::args::{Config, Message};
use super::common;

/// Publishes pipelined by `-l` that may be awaiting completion at once; beyond this the
/// reader waits for the oldest (the client's own in-flight window is smaller still).
const PIPELINE: usize = 1024;

fn publish_packet(c: &Config, topic: &ByteStr, payload: Bytes) -> Publish {
    Publish {
        dup: false,
        qos: c.qos,
        retain: c.retain,
        topic: topic.clone(),
        packet_id: 0,
        properties: if c.version.is_v5() {
            c.props.publish.clone()
        } else {
            Properties::default()
        },
        payload,
    }
}

/// Reads the message for `-m`, `-f`, `-s`, `-n`; `None` for `-l`.
pub(crate) async fn read_message(c: &Config) -> Result<Option<Bytes>, String> {
    Ok(match c.message.as_ref() {
        Some(Message::Text(t)) => Some(Bytes::from(t.clone())),
        Some(Message::Null) | None => Some(Bytes::new()),
        Some(Message::File(path)) => match tokio::fs::read(path).await {
            Ok(b) => Some(Bytes::from(b)),
            Err(e) => {
                return Err(format!(
                    "Error: Unable to read file \"{}\": {e}.",
                    path.display()
                ));
            }
        },
        Some(Message::Stdin) => {
            let mut buf = Vec::new();
            tokio::io::stdin()
                .read_to_end(&mut buf)
                .await
                .map_err(|e| format!("Error: Unable to read standard input: {e}."))?;
            Some(Bytes::from(buf))
        }
        Some(Message::Lines) => None,
    })
}

/// A publish the broker refused is a warning, and the run goes on, as in mosquitto_pub;
/// any other failure ends the run.
fn warn_refused(c: &Config, r: Result<(), Error>) -> Result<(), Error> {
    match r {
        Err(Error::PublishRefused {
            packet_id, reason, ..
        }) => {
            if !c.quiet {
                eprintln!(
                    "Warning: Publish {packet_id} failed: {}.",
                    common::reason_text(reason)
                );
            }
            Ok(())
        }
        other => other,
    }
}

pub(crate) async fn run(c: Config) -> ExitCode {
    let message = match read_message(&c).await {
        Ok(m) => m,
        Err(line) => return common::fail(&c, line),
    };
    let opts = match common::options(&c) {
        Ok(o) => o,
        Err(line) => return common::fail(&c, format!("Error: {line}")),
    };
    let topic = match c.topic.as_deref().map(ByteStr::try_from) {
        Some(Ok(t)) => t,
        _ => return common::fail(&c, "Error: Invalid topic."),
    };
    let (client, events) = match Client::connect(opts).await {
        Ok(x) => x,
        Err(e) => return common::connect_error(&c, &e),
    };
    // Nothing to receive: dropping the events lets the connection task never wait on us.
    drop(events);
    let work = async {
        match message {
            Some(payload) => {
                let mut r = Ok(());
                for i in 0..c.repeat {
                    if i > 0 && c.repeat_delay > 0.0 {
                        tokio::time::sleep(Duration::from_secs_f64(c.repeat_delay)).await;
                    }
                    r = warn_refused(
                        &c,
                        client
                            .publish_with(publish_packet(&c, &topic, payload.clone()))
                            .await,
                    );
                    if r.is_err() {
                        break;
                    }
                }
                r
            }
            None => lines(&c, &client, &topic).await,
        }
    };
    // SIGINT / SIGTERM (e.g. while -l waits for input): stop, say goodbye, exit 0.
    let result = tokio::select! {
        r = work => r,
        () = common::stop_signal() => Ok(()),
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => common::fail(&c, format!("Error: {e}")),
    };
    let d = Disconnect {
        properties: if c.version.is_v5() {
            c.props.disconnect.clone()
        } else {
            Properties::default()
        },
        ..Disconnect::default()
    };
    let _ = client.disconnect_with(d).await;
    code
}

/// `-l`: one message per line of standard input, pipelined. Packet identifiers are
/// reused once acknowledged, so this goes on for as many lines as there are.
async fn lines(c: &Config, client: &Client, topic: &ByteStr) -> Result<(), Error> {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut pending: VecDeque<PublishToken> = VecDeque::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = stdin.read_until(b'\n', &mut line).await?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let token = client
            .send_publish(publish_packet(c, topic, Bytes::copy_from_slice(&line)))
            .await?;
        pending.push_back(token);
        while pending.len() >= PIPELINE {
            if let Some(t) = pending.pop_front() {
                warn_refused(c, t.wait().await)?;
            }
        }
    }
    for t in pending {
        warn_refused(c, t.wait().await)?;
    }
    Ok(())
}
