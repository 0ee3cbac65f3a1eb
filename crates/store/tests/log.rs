//! The log on its own: records come back, a torn tail is cut, corruption elsewhere is an
//! error naming the file and the offset, compaction bounds the file, a full disk delays
//! acknowledgements without harming what was synced.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tinsel_codec::{ByteStr, Publish, QoS, SubscriptionOptions};
use tinsel_core::{Record, Restored, RestoredInflight, Ticket};
use tinsel_store::sim::LossyFs;
use tinsel_store::{Error, Options, Running, Store};

/// Without zeros written ahead: the file ends where the log does.
fn options() -> Options {
    let mut o = Options::new("/data");
    o.preallocate = 0;
    o
}

/// With zeros written ahead, a few frames at a time.
fn ahead() -> Options {
    let mut o = Options::new("/data");
    o.preallocate = 256;
    o
}

fn log_path() -> PathBuf {
    Path::new("/data").join("tinsel.log")
}

fn open(fs: &LossyFs, o: Options) -> (Running, Restored, mpsc::Receiver<Ticket>) {
    let (store, restored) = Store::open(Arc::new(fs.clone()), o).expect("opens");
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let running = store
        .start(move |t| {
            let _ = tx.lock().unwrap().send(t);
        })
        .expect("starts");
    (running, restored, rx)
}

/// Submits `records` and waits until they are synced.
fn commit(s: &Running, rx: &mpsc::Receiver<Ticket>, records: Vec<Record>, ticket: Ticket) {
    s.submit(records, ticket);
    loop {
        let t = rx.recv_timeout(Duration::from_secs(10)).expect("synced");
        if t >= ticket {
            return;
        }
    }
}

fn msg(topic: &str, payload: &str, qos: QoS) -> Publish {
    let mut p = Publish::new(
        ByteStr::from_static_owned(topic),
        Bytes::from(payload.to_owned()),
    );
    p.qos = qos;
    p.packet_id = 7;
    p
}

trait FromOwned {
    fn from_static_owned(s: &str) -> ByteStr;
}

impl FromOwned for ByteStr {
    fn from_static_owned(s: &str) -> ByteStr {
        ByteStr::from_utf8(Bytes::from(s.to_owned())).expect("UTF-8")
    }
}

fn session(client: &str) -> Vec<Record> {
    vec![
        Record::SessionOpened {
            client: client.into(),
            expiry: u32::MAX,
        },
        Record::Subscribed {
            client: client.into(),
            filter: "t/#".into(),
            options: SubscriptionOptions::new(QoS::ExactlyOnce),
            id: Some(9),
        },
    ]
}

fn accepted(p: &Publish, to: &[&str]) -> Record {
    Record::Accepted {
        message: p.clone(),
        sessions: to.iter().map(|&c| c.into()).collect(),
    }
}

fn sent(client: &str, pid: u16, p: &Publish) -> Record {
    Record::Sent {
        client: client.into(),
        packet_id: pid,
        topic: p.topic.clone(),
        payload: p.payload.clone(),
        qos: p.qos,
    }
}

fn delivered(client: &str, pid: u16, released: bool) -> Record {
    Record::Delivered {
        client: client.into(),
        packet_id: pid,
        released,
    }
}

fn payloads(r: &Restored, client: &str) -> (Vec<String>, Vec<(u16, String)>) {
    let s = r
        .sessions
        .iter()
        .find(|s| &*s.client == client)
        .expect("session back");
    let queued = s
        .queued
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    let inflight = s
        .inflight
        .iter()
        .map(|(pid, f)| match f {
            RestoredInflight::Publish(p) => {
                (*pid, String::from_utf8_lossy(&p.payload).into_owned())
            }
            RestoredInflight::Release => (*pid, "<release>".to_owned()),
        })
        .collect();
    (queued, inflight)
}

#[test]
fn what_was_synced_comes_back_as_the_core_restores_it() {
    let fs = LossyFs::new(1);
    let (s, restored, rx) = open(&fs, options());
    assert!(restored.sessions.is_empty());
    let (a, b, c) = (
        msg("t/1", "a", QoS::AtLeastOnce),
        msg("t/2", "b", QoS::ExactlyOnce),
        msg("t/3", "c", QoS::ExactlyOnce),
    );
    let mut records = session("s1");
    records.extend(session("s2"));
    // `a` goes to both: s1 gets it at once (its Sent comes first), s2 queues it.
    records.push(sent("s1", 1, &a));
    records.push(accepted(&a, &["s1", "s2"]));
    records.push(accepted(&b, &["s1"]));
    records.push(accepted(&c, &["s1"]));
    records.push(Record::Qos2Received {
        client: "s2".into(),
        packet_id: 40,
    });
    commit(&s, &rx, records, 10);
    // s1 acknowledges `a`, gets `b` (PUBREC: release phase) and `c`.
    let records = vec![
        delivered("s1", 1, false),
        sent("s1", 2, &b),
        sent("s1", 3, &c),
        delivered("s1", 2, true),
        Record::Retained {
            topic: ByteStr::from_static("r"),
            message: Some(msg("r", "kept", QoS::AtMostOnce)),
        },
    ];
    commit(&s, &rx, records, 20);
    s.stop();

    let (_s, r, _) = open(&fs, options());
    assert_eq!(
        payloads(&r, "s1"),
        (vec![], vec![(2, "<release>".into()), (3, "c".into())])
    );
    assert_eq!(payloads(&r, "s2"), (vec!["a".into()], vec![]));
    let s2 = r.sessions.iter().find(|s| &*s.client == "s2").unwrap();
    assert_eq!(s2.incoming_qos2, [40]);
    assert_eq!(s2.subscriptions.len(), 1);
    assert_eq!(s2.subscriptions[0].2, Some(9));
    assert_eq!(r.retained.len(), 1);
    assert_eq!(&r.retained[0].payload[..], b"kept");
}

/// The file's length after each synced commit.
fn three_frames(fs: &LossyFs) -> Vec<usize> {
    let (s, _, rx) = open(fs, options());
    let mut ends = Vec::new();
    for (i, client) in ["a", "b", "c"].into_iter().enumerate() {
        commit(&s, &rx, session(client), i as u64 + 1);
        ends.push(fs.contents(&log_path()).unwrap().len());
    }
    s.stop();
    ends
}

#[test]
fn a_torn_tail_is_cut_and_the_log_goes_on_after_it() {
    let fs = LossyFs::new(2);
    let ends = three_frames(&fs);
    let mut data = fs.contents(&log_path()).unwrap();
    // Half of a fourth frame: its header says more than there is.
    data.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
    fs.set_contents(&log_path(), data);
    let (s, r, rx) = open(&fs, options());
    assert_eq!(r.sessions.len(), 3);
    assert_eq!(fs.contents(&log_path()).unwrap().len(), ends[2], "tail cut");
    commit(&s, &rx, session("d"), 1);
    s.stop();
    let (_s, r, _) = open(&fs, options());
    assert_eq!(r.sessions.len(), 4);
}

#[test]
fn a_torn_last_frame_of_the_right_length_is_cut_too() {
    let fs = LossyFs::new(3);
    let ends = three_frames(&fs);
    let mut data = fs.contents(&log_path()).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xFF;
    fs.set_contents(&log_path(), data);
    let (_s, r, _) = open(&fs, options());
    assert_eq!(r.sessions.len(), 2);
    assert_eq!(fs.contents(&log_path()).unwrap().len(), ends[1]);
}

#[test]
fn corruption_before_the_end_names_the_file_and_the_offset() {
    let fs = LossyFs::new(4);
    let ends = three_frames(&fs);
    let mut data = fs.contents(&log_path()).unwrap();
    // A byte of the second frame's body.
    data[ends[0] + 12] ^= 0x01;
    fs.set_contents(&log_path(), data.clone());
    let err = Store::open(Arc::new(fs.clone()), options()).expect_err("corrupt");
    match &err {
        Error::Corrupt { file, offset, .. } => {
            assert_eq!(file, &log_path());
            assert_eq!(*offset, ends[0] as u64);
        }
        other => panic!("not a corruption error: {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("/data/tinsel.log"), "{text}");
    assert!(text.contains(&format!("offset {}", ends[0])), "{text}");
    // The file is left as it was for the operator.
    assert_eq!(fs.contents(&log_path()).unwrap(), data);
}

#[test]
fn compaction_keeps_the_log_bounded_under_steady_load() {
    let fs = LossyFs::new(5);
    let mut o = options();
    o.compact_at = 64 * 1024;
    let (s, _, rx) = open(&fs, o.clone());
    commit(&s, &rx, session("s"), 1);
    let payload = "x".repeat(500);
    let mut ticket = 1;
    let mut largest = 0;
    // Steady load: each message is accepted, sent and acknowledged; one in ten stays.
    for i in 0..2000u32 {
        let p = msg("t/x", &format!("{i} {payload}"), QoS::AtLeastOnce);
        let pid = (i % 60000) as u16 + 1;
        let mut records = vec![sent("s", pid, &p), accepted(&p, &["s"])];
        if i % 10 != 0 {
            records.push(delivered("s", pid, false));
        }
        ticket += 1;
        commit(&s, &rx, records, ticket);
        largest = largest.max(fs.contents(&log_path()).unwrap().len());
    }
    s.stop();
    // 2000 messages of ~500 bytes is ~1 MB written; the live ones are 200.
    assert!(largest < 400 * 1024, "log grew to {largest} bytes");
    let (_s, r, _) = open(&fs, o);
    let (queued, inflight) = payloads(&r, "s");
    assert!(queued.is_empty());
    assert_eq!(inflight.len(), 200);
}

#[test]
fn a_full_disk_holds_acknowledgements_and_the_store_recovers_when_space_returns() {
    let fs = LossyFs::new(6);
    let (s, _, rx) = open(&fs, options());
    commit(&s, &rx, session("s"), 1);
    let used = fs.contents(&log_path()).unwrap().len();
    fs.set_capacity(Some(used + 10));
    s.submit(
        vec![accepted(&msg("t/1", "big", QoS::AtLeastOnce), &["s"])],
        2,
    );
    // Not acknowledged while the disk is full.
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    assert!(s.failing());
    // What was synced is whole: a restart now finds the session and nothing torn.
    assert_eq!(fs.contents(&log_path()).unwrap().len(), used);
    fs.set_capacity(None);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(2));
    assert!(!s.failing());
    s.stop();
    let (_s, r, _) = open(&fs, options());
    assert_eq!(payloads(&r, "s").0, ["big"]);
}

#[test]
fn a_session_whose_expiry_became_0_leaves_the_store() {
    let fs = LossyFs::new(7);
    let (s, _, rx) = open(&fs, options());
    let mut records = session("s");
    records.extend(session("t"));
    records.push(accepted(&msg("t/1", "a", QoS::AtLeastOnce), &["s", "t"]));
    // `s` disconnects with Session Expiry Interval 0 (MQTT 5).
    records.push(Record::SessionOpened {
        client: "s".into(),
        expiry: 0,
    });
    commit(&s, &rx, records, 1);
    s.stop();
    let (_s, r, _) = open(&fs, options());
    let clients: Vec<&str> = r.sessions.iter().map(|s| &*s.client).collect();
    assert_eq!(clients, ["t"]);
    assert_eq!(payloads(&r, "t").0, ["a"]);
}

fn will_pending(client: &str, username: Option<&str>, payload: &str, delay: u32) -> Record {
    let mut will = tinsel_codec::Will {
        topic: ByteStr::from_static_owned("wills/x"),
        payload: Bytes::from(payload.to_owned()),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
    };
    let p = will.properties.make_mut();
    p.will_delay_interval = Some(delay);
    p.content_type = Some(ByteStr::from_static_owned("text/plain"));
    Record::WillPending {
        client: client.into(),
        username: username.map(Into::into),
        will: Box::new(will),
        delay,
    }
}

#[test]
fn a_will_waiting_for_its_delay_comes_back_until_it_is_taken_and_through_compaction() {
    let fs = LossyFs::new(8);
    let mut o = options();
    o.compact_at = 4 * 1024;
    let (s, _, rx) = open(&fs, o.clone());
    let mut records = session("s");
    records.extend(session("t"));
    records.push(will_pending("s", Some("alice"), "s is gone", 30));
    records.push(will_pending("t", None, "t is gone", 5));
    // `t` came back within its delay: its will was dropped.
    records.push(Record::WillTaken { client: "t".into() });
    commit(&s, &rx, records, 1);
    // Enough traffic for the log to be compacted at least once.
    let payload = "x".repeat(500);
    for i in 0..40u16 {
        let p = msg("t/x", &format!("{i} {payload}"), QoS::AtLeastOnce);
        let records = vec![sent("t", i + 1, &p), accepted(&p, &["t"])];
        let records = [records, vec![delivered("t", i + 1, false)]].concat();
        commit(&s, &rx, records, 2 + u64::from(i));
    }
    s.stop();
    assert!(fs.contents(&log_path()).unwrap().len() < 16 * 1024);

    let (_s, r, _) = open(&fs, o);
    let will_of = |c: &str| {
        r.sessions
            .iter()
            .find(|s| &*s.client == c)
            .expect("session back")
            .will
            .clone()
    };
    assert_eq!(will_of("t"), None);
    let w = will_of("s").expect("the pending will is back");
    assert_eq!(w.username.as_deref(), Some("alice"));
    assert_eq!(w.delay, 30);
    assert_eq!(&w.will.payload[..], b"s is gone");
    assert_eq!(&*w.will.topic, "wills/x");
    assert_eq!((w.will.qos, w.will.retain), (QoS::AtLeastOnce, true));
    assert_eq!(w.will.properties.will_delay_interval, Some(30));
    assert_eq!(
        w.will.properties.content_type.as_deref(),
        Some("text/plain")
    );
}

fn will_set(client: &str, payload: &str, delay: u32) -> Record {
    match will_pending(client, Some("bob"), payload, delay) {
        Record::WillPending {
            client,
            username,
            will,
            ..
        } => Record::WillSet {
            client,
            username,
            will,
        },
        _ => unreachable!(),
    }
}

#[test]
fn the_wills_of_connected_clients_come_back_until_taken_and_through_compaction() {
    let fs = LossyFs::new(9);
    let mut o = options();
    o.compact_at = 4 * 1024;
    let (s, _, rx) = open(&fs, o.clone());
    let mut records = session("p");
    // Connected with a will, no persistent session: kept on its own.
    records.push(will_set("clean", "clean is gone", 0));
    // Disconnected normally: discarded.
    records.push(will_set("polite", "never sent", 0));
    records.push(Record::WillTaken {
        client: "polite".into(),
    });
    // A persistent client whose connection ended: its will now waits for its delay.
    records.push(will_set("p", "p is gone", 20));
    records.push(will_pending("p", Some("bob"), "p is gone", 20));
    commit(&s, &rx, records, 1);
    let payload = "x".repeat(500);
    for i in 0..40u16 {
        let p = msg("p/x", &format!("{i} {payload}"), QoS::AtLeastOnce);
        let records = vec![accepted(&p, &["p"]), sent("p", i + 1, &p)];
        let records = [records, vec![delivered("p", i + 1, false)]].concat();
        commit(&s, &rx, records, 2 + u64::from(i));
    }
    s.stop();
    assert!(fs.contents(&log_path()).unwrap().len() < 16 * 1024);

    let (_s, r, _) = open(&fs, o);
    let wills: Vec<(&str, &[u8], u32)> = r
        .wills
        .iter()
        .map(|(c, w)| (&**c, &w.will.payload[..], w.delay))
        .collect();
    assert_eq!(wills, [("clean", &b"clean is gone"[..], 0)]);
    assert_eq!(r.wills[0].1.username.as_deref(), Some("bob"));
    let p = r.sessions.iter().find(|s| &*s.client == "p").expect("p");
    assert_eq!(p.will.as_ref().map(|w| w.delay), Some(20));
}

fn retained(topic: &str, payload: Option<&str>) -> Record {
    Record::Retained {
        topic: ByteStr::from_static_owned(topic),
        message: payload.map(|p| {
            let mut m = msg(topic, p, QoS::AtMostOnce);
            m.packet_id = 0;
            m.retain = true;
            m
        }),
    }
}

fn retained_payloads(r: &Restored) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .retained
        .iter()
        .map(|p| {
            let payload = String::from_utf8(p.payload.to_vec()).unwrap();
            (p.topic.to_string(), payload)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn retained_messages_are_replaced_deleted_and_kept_through_compaction() {
    let fs = LossyFs::new(8);
    let mut o = options();
    o.compact_at = 32 * 1024;
    let (s, _, rx) = open(&fs, o.clone());
    let mut ticket = 0;
    // 300 topics written over and over: the log is compacted several times.
    for round in 0..20u32 {
        let records = (0..300u32)
            .map(|i| {
                retained(
                    &format!("r/{i}"),
                    Some(&format!("{round} {}", "y".repeat(40))),
                )
            })
            .collect();
        ticket += 1;
        commit(&s, &rx, records, ticket);
    }
    // One topic deleted, one set once more after the last compaction.
    ticket += 1;
    commit(
        &s,
        &rx,
        vec![retained("r/7", None), retained("r/8", Some("last"))],
        ticket,
    );
    s.stop();
    assert!(fs.contents(&log_path()).unwrap().len() < 20 * 300 * 60);

    let (s, r, rx) = open(&fs, o.clone());
    let got = retained_payloads(&r);
    assert_eq!(got.len(), 299);
    assert!(!got.iter().any(|(t, _)| t == "r/7"));
    assert!(got.contains(&("r/8".into(), "last".into())));
    assert!(got.contains(&("r/9".into(), format!("19 {}", "y".repeat(40)))));
    // Deleting what came back from the log, then reopening.
    ticket += 1;
    commit(&s, &rx, vec![retained("r/9", None)], ticket);
    s.stop();
    let (_s, r, _) = open(&fs, o);
    let again = retained_payloads(&r);
    assert_eq!(again.len(), 298);
    assert!(r.retained.iter().all(|p| p.retain && &*p.topic != "r/9"));
}

/// Where each frame of the log ends (read from their headers, up to a zero one).
fn frame_ends(fs: &LossyFs) -> Vec<usize> {
    let data = fs.contents(&log_path()).unwrap();
    let mut ends = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        at += 8 + len;
        ends.push(at);
    }
    ends
}

#[test]
fn a_log_written_ahead_ends_at_its_first_zero_frame_header() {
    let fs = LossyFs::new(10);
    let (s, _, rx) = open(&fs, ahead());
    for (i, client) in ["a", "b", "c", "d", "e", "f"].into_iter().enumerate() {
        commit(&s, &rx, session(client), i as u64 + 1);
        let size = fs.contents(&log_path()).unwrap().len();
        let ends = frame_ends(&fs);
        assert_eq!(ends.len(), i + 1);
        assert!(size % 256 == 0 && size > ends[i], "zeros ahead: {size}");
    }
    // Killed: the zeros stay behind the last frame.
    drop(s);
    let (s, r, rx) = open(&fs, ahead());
    assert_eq!(r.sessions.len(), 6);
    commit(&s, &rx, session("g"), 7);
    s.stop();
    let (_s, r, _) = open(&fs, ahead());
    assert_eq!(r.sessions.len(), 7);
}

#[test]
fn a_torn_frame_followed_by_zeros_is_cut_and_damage_before_a_whole_frame_is_an_error() {
    let fs = LossyFs::new(11);
    let (s, _, rx) = open(&fs, ahead());
    commit(&s, &rx, session("a"), 1);
    commit(&s, &rx, session("b"), 2);
    s.stop();
    let (first, second) = (frame_ends(&fs)[0], frame_ends(&fs)[1]);
    let whole = fs.contents(&log_path()).unwrap();
    assert!(whole.len() > second);

    // The second frame torn half-way, zeros after it (never written): cut.
    let mut data = whole.clone();
    data[first + (second - first) / 2..second].fill(0);
    fs.set_contents(&log_path(), data);
    let (s, r, rx) = open(&fs, ahead());
    assert_eq!(r.sessions.len(), 1);
    assert_eq!(fs.contents(&log_path()).unwrap().len(), first, "tail cut");
    commit(&s, &rx, session("c"), 3);
    s.stop();
    let (_s, r, _) = open(&fs, ahead());
    let clients: Vec<&str> = r.sessions.iter().map(|s| &*s.client).collect();
    assert_eq!(clients, ["a", "c"]);

    // The first frame damaged, the second whole after it: an error at the first's offset.
    let mut data = whole;
    data[first - 1] ^= 0x01;
    fs.set_contents(&log_path(), data);
    match Store::open(Arc::new(fs.clone()), ahead()) {
        Err(Error::Corrupt { offset: 0, .. }) => {}
        other => panic!("not a corruption at offset 0: {other:?}"),
    }
}

#[test]
fn compaction_of_a_log_written_ahead_keeps_it_bounded() {
    let fs = LossyFs::new(12);
    let mut o = ahead();
    o.compact_at = 16 * 1024;
    o.preallocate = 4096;
    let (s, _, rx) = open(&fs, o.clone());
    commit(&s, &rx, session("s"), 1);
    let payload = "x".repeat(500);
    let mut largest = 0;
    for i in 0..400u16 {
        let p = msg("t/x", &format!("{i} {payload}"), QoS::AtLeastOnce);
        let mut records = vec![sent("s", i + 1, &p), accepted(&p, &["s"])];
        if i % 10 != 0 {
            records.push(delivered("s", i + 1, false));
        }
        commit(&s, &rx, records, 2 + u64::from(i));
        largest = largest.max(fs.contents(&log_path()).unwrap().len());
    }
    s.stop();
    assert!(largest < 128 * 1024, "log grew to {largest} bytes");
    let (_s, r, _) = open(&fs, o);
    assert_eq!(payloads(&r, "s").1.len(), 40);
}

#[test]
fn frames_appended_while_zeros_cannot_be_written_ahead_are_kept_when_space_returns() {
    let fs = LossyFs::new(13);
    let mut o = ahead();
    o.preallocate = 4096;
    let (s, _, rx) = open(&fs, o.clone());
    commit(&s, &rx, session("a"), 1);
    let size = fs.contents(&log_path()).unwrap().len();
    // Room for small frames past the zeros written ahead, not for more zeros: frames fill
    // the zeros, then are appended after them.
    fs.set_capacity(Some(size + 400));
    let mut n = 1;
    while frame_ends(&fs).last().is_some_and(|&end| end < size + 200) && n < 1000 {
        n += 1;
        commit(&s, &rx, session(&format!("s{n}")), n);
    }
    assert!(!s.failing());
    fs.set_capacity(None);
    commit(&s, &rx, session("last"), n + 1);
    s.stop();
    let (_s, r, _) = open(&fs, o);
    assert_eq!(r.sessions.len() as u64, n + 1);
}
