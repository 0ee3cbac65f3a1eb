//! `tinsel sub`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use tinsel_client::{Backoff, Client, Event};
use tinsel_codec::{Disconnect, Properties, QoS, SubscriptionOptions, topic};

use super::args::Config;
use super::common;
use super::format::{self, Output, Printer};

/// mosquitto_sub's exit code when `-W` expires.
pub(crate) const TIMED_OUT: u8 = 27;

/// The printer for `-v`, `-F`, `-N`, `--pretty`.
pub(crate) fn printer(c: &Config) -> Printer {
    let output = match &c.format {
        // Validated while parsing the arguments.
        Some(f) => Output::Format(format::parse(f).unwrap_or_default()),
        None if c.verbose => Output::Verbose,
        None => Output::Payload,
    };
    Printer {
        output,
        eol: c.eol,
        pretty: c.pretty,
    }
}

/// Prints one message; `false` if standard output is gone.
pub(crate) fn print(c: &Config, printer: &Printer, m: &tinsel_codec::Publish) -> bool {
    let mut buf = Vec::with_capacity(m.payload.len() + 64);
    let now = chrono::Local::now();
    if let Some(e) = printer.render(m, &now, &mut buf) {
        if !c.quiet {
            eprintln!("{e}");
        }
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&buf).and_then(|()| out.flush()).is_ok()
}

fn disconnect_packet(c: &Config) -> Disconnect {
    Disconnect {
        properties: if c.version.is_v5() {
            c.props.disconnect.clone()
        } else {
            Properties::default()
        },
        ..Disconnect::default()
    }
}

pub(crate) async fn run(c: Config) -> ExitCode {
    let mut opts = match common::options(&c) {
        Ok(o) => o,
        Err(line) => return common::fail(&c, format!("Error: {line}")),
    };
    // Like mosquitto_sub, keep going when the broker goes away: reconnect and resubscribe.
    opts.reconnect = Some(Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(30),
    });
    let deadline = c
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(u64::from(s)));
    let timed_out = || {
        if !c.quiet {
            eprintln!("Timed out");
        }
        ExitCode::from(TIMED_OUT)
    };
    let connecting = Client::connect(opts);
    let connected = match deadline {
        Some(d) => match tokio::time::timeout_at(d, connecting).await {
            Ok(r) => r,
            Err(_) => return timed_out(),
        },
        None => connecting.await,
    };
    let (client, mut events) = match connected {
        Ok(x) => x,
        Err(e) => return common::connect_error(&c, &e),
    };
    let printer = printer(&c);
    let options = SubscriptionOptions {
        qos: c.qos,
        no_local: c.no_local,
        retain_as_published: c.retain_as_published,
        ..SubscriptionOptions::default()
    };
    let filters: Vec<(String, SubscriptionOptions)> =
        c.topics.iter().map(|t| (t.clone(), options)).collect();
    let sub_props = if c.version.is_v5() {
        c.props.subscribe.clone()
    } else {
        Properties::default()
    };
    // Subscribe (and, like mosquitto_sub, unsubscribe -U right behind it, without waiting
    // for the SUBACK) while reading events: the acknowledgements need the connection task,
    // which may be waiting to hand us events. `join!` polls the SUBSCRIBE first, so it is
    // queued first.
    let sub = {
        let client = client.clone();
        let unsub = c.unsubscribe.clone();
        let unsub_props = if c.version.is_v5() {
            c.props.unsubscribe.clone()
        } else {
            Properties::default()
        };
        let debug = c.debug;
        tokio::spawn(async move {
            let s = async {
                let r = client.subscribe_with(filters, sub_props).await;
                if let (true, Ok(ack)) = (debug, &r) {
                    let codes: Vec<String> = ack.reasons.iter().map(|r| r.0.to_string()).collect();
                    println!("Subscribed (mid: {}): {}", ack.packet_id, codes.join(", "));
                }
                r
            };
            let u = async {
                if unsub.is_empty() {
                    Ok(None)
                } else {
                    client.unsubscribe_with(unsub, unsub_props).await.map(Some)
                }
            };
            let (s, u) = tokio::join!(s, u);
            s.and_then(|ack| u.map(|_| ack))
        })
    };
    let mut sub = Some(sub);
    let mut count = 0u32;
    let mut removals = Vec::new();
    let stop = common::stop_signal();
    tokio::pin!(stop);
    let code = loop {
        let next = async {
            if let Some(s) = sub.as_mut() {
                tokio::select! {
                    r = s => Err(r),
                    e = events.recv() => Ok(e),
                }
            } else {
                Ok(events.recv().await)
            }
        };
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, next).await.ok(),
                None => Some(next.await),
            }
        };
        // SIGINT / SIGTERM: disconnect cleanly (no will) and exit 0, as mosquitto_sub does.
        let next = tokio::select! {
            n = next => match n {
                Some(n) => n,
                None => break timed_out(),
            },
            () = &mut stop => break ExitCode::SUCCESS,
        };
        let event = match next {
            Err(joined) => {
                sub = None;
                let ack = match joined {
                    Ok(Ok(ack)) => ack,
                    Ok(Err(e)) => break common::fail(&c, format!("Error: {e}")),
                    Err(_) => break common::fail(&c, "Error: subscribe task failed"),
                };
                if ack.reasons.iter().all(|r| !r.is_success()) {
                    break common::fail(&c, "All subscription requests were denied.");
                }
                if c.exit_after_sub {
                    break ExitCode::SUCCESS;
                }
                continue;
            }
            Ok(None) => break common::fail(&c, "Error: the connection closed"),
            Ok(Some(e)) => e,
        };
        let m = match event {
            Event::Message(m) => m,
            Event::Disconnected(e) => {
                if c.debug {
                    println!("Connection lost: {e}; reconnecting");
                }
                continue;
            }
            _ => continue,
        };
        if c.filter_out.iter().any(|f| topic::matches(f, &m.topic)) {
            continue;
        }
        if c.remove_retained && m.retain {
            let client = client.clone();
            let t = m.topic.to_string();
            removals.push(tokio::spawn(async move {
                client
                    .publish(&t, bytes::Bytes::new(), QoS::AtLeastOnce, true)
                    .await
            }));
        }
        if c.retained_only && !m.retain {
            break ExitCode::SUCCESS;
        }
        if c.no_retain && m.retain {
            continue;
        }
        if c.random_filter < 100.0 && rand_percent() >= c.random_filter {
            continue;
        }
        if !print(&c, &printer, &m) {
            break ExitCode::FAILURE;
        }
        count += 1;
        if c.count > 0 && count >= c.count {
            break ExitCode::SUCCESS;
        }
    };
    for r in removals {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        client.disconnect_with(disconnect_packet(&c)),
    )
    .await;
    code
}

/// A uniform number in [0, 100), from the clock and a counter: good enough to sample
/// messages, and it needs no extra dependency.
fn rand_percent() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() % 1_000_000) as f64 / 10_000.0
}
