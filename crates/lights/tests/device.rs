//! The lights device against a real broker (Mosquitto, the reference): it obeys the exact
//! words, reports its state retained, and survives the broker going away.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tinsel_client::{Client, ClientOptions, Event, Events, QoS, SubscriptionOptions};
use tinsel_lights::{Device, DeviceState, Scenario};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(15);

struct Mosquitto {
    child: Child,
    _dir: std::path::PathBuf,
}

impl Mosquitto {
    /// Starts Mosquitto on `port`. A missing Mosquitto fails the test rather than skipping
    /// it: the README's test command (scripts/test) installs it.
    fn start(port: u16) -> Mosquitto {
        let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("mosquitto not installed: run scripts/install-test-peers");
        let dir =
            std::env::temp_dir().join(format!("tinsel-lights-mosq-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        let child = Command::new(exe)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
        Mosquitto { child, _dir: dir }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_state(rx: &mut watch::Receiver<DeviceState>, what: impl Fn(&DeviceState) -> bool) {
    tokio::time::timeout(WAIT, rx.wait_for(|s| what(s)))
        .await
        .expect("timed out waiting for the device")
        .unwrap();
}

async fn observer(port: u16, topic: &str) -> (Client, Events) {
    let opts = ClientOptions::new("127.0.0.1", port).with_client_id("observer");
    let (client, mut events) = Client::connect(opts).await.unwrap();
    assert!(matches!(events.recv().await, Some(Event::Connected(_))));
    client
        .subscribe(vec![(
            topic.into(),
            SubscriptionOptions::new(QoS::AtLeastOnce),
        )])
        .await
        .unwrap();
    (client, events)
}

/// Publishes `word` to `topic` at QoS 1 (so the device sees them in the order sent).
async fn send(client: &Client, topic: &str, word: &'static str) {
    client
        .publish(topic, word, QoS::AtLeastOnce, false)
        .await
        .unwrap();
}

/// Asks the device to shut down and waits until its task has ended without an error.
async fn stop(shutdown: &CancellationToken, task: JoinHandle<Result<(), tinsel_lights::Error>>) {
    shutdown.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the device did not stop in time")
        .expect("the device task panicked")
        .expect("the device failed");
}

/// The next message's payload, as text.
async fn next_message(events: &mut Events) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(Event::Message(p)) => return String::from_utf8_lossy(&p.payload).into_owned(),
                Some(_) => {}
                None => panic!("observer closed"),
            }
        }
    })
    .await
    .expect("timed out waiting for a message")
}

#[tokio::test]
async fn obeys_exact_words_and_reports_its_state() {
    let port = free_port();
    let _broker = Mosquitto::start(port);
    let scenario = Scenario::default();
    let control = scenario.mqtt.control_topic.clone();
    let status = scenario.mqtt.status_topic.clone();
    let device = Device::new("127.0.0.1", port, scenario);
    let mut state = device.state();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(device.run(shutdown.clone()));
    wait_state(&mut state, |s| s.connected && s.subscribed && !s.on).await;

    let (client, mut events) = observer(port, &status).await;
    assert_eq!(next_message(&mut events).await, "off", "retained status");

    client
        .publish(&control, "on", QoS::AtMostOnce, false)
        .await
        .unwrap();
    wait_state(&mut state, |s| s.on).await;
    assert_eq!(next_message(&mut events).await, "on");

    // Other words do nothing: not the case, not spaces, not other topics. The device reports
    // only changes, so each near-miss is sent while obeying it would change the lights, and
    // is followed by the real word for the state the lights are already in: a near-miss
    // obeyed adds two status messages (its own and the real word's), which the exact
    // sequence below ("off", "on", then "offline") does not allow.
    // The lights are on: words that look like "off".
    for word in ["OFF", "Off", "off ", " off", "lights off", ""] {
        send(&client, &control, word).await;
    }
    send(&client, &format!("{control}/x"), "off").await;
    send(&client, &control, "on").await;
    send(&client, &control, "off").await;
    wait_state(&mut state, |s| !s.on).await;
    assert_eq!(next_message(&mut events).await, "off");
    // The lights are off: words that look like "on".
    for word in ["ON", "On", " on", "on ", "lights on", ""] {
        send(&client, &control, word).await;
    }
    send(&client, &format!("{control}/x"), "on").await;
    send(&client, &control, "off").await;
    send(&client, &control, "on").await;
    wait_state(&mut state, |s| s.on).await;
    assert_eq!(next_message(&mut events).await, "on");

    // Shutdown says goodbye: status offline, retained. Any status between the last "on" and
    // this one came from a near-miss the device obeyed.
    stop(&shutdown, task).await;
    assert_eq!(
        next_message(&mut events).await,
        "offline",
        "a status change that no command above asked for"
    );
    assert!(!state.borrow().connected);
}

#[tokio::test]
async fn waits_for_the_broker_and_reconnects_after_losing_it() {
    let port = free_port();
    let device = Device::new("127.0.0.1", port, Scenario::default());
    let mut state = device.state();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(device.run(shutdown.clone()));

    // No broker yet: the device keeps trying.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!state.borrow().connected);
    let broker = Mosquitto::start(port);
    wait_state(&mut state, |s| s.connected && s.subscribed).await;

    // The broker dies and comes back: the device notices, reconnects and obeys again.
    drop(broker);
    wait_state(&mut state, |s| !s.connected).await;
    let _broker = Mosquitto::start(port);
    wait_state(&mut state, |s| s.connected).await;
    let (client, _events) = observer(port, "unused").await;
    let control = Scenario::default().mqtt.control_topic;
    // The subscription may be restored just after CONNACK: repeat until it is obeyed.
    tokio::time::timeout(WAIT, async {
        while !state.borrow().on {
            client
                .publish(&control, "on", QoS::AtLeastOnce, false)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the device did not obey after reconnecting");

    stop(&shutdown, task).await;
}
