//! Copies of a message: what one subscriber or the retained store gets, and its size.

use tinsel_codec::{Properties, ProtocolVersion, Publish, QoS};

/// Clears what concerns one hop only (topic alias, subscription identifiers). Properties
/// shared with another copy of the message (most carry none at all) are copied only when
/// one of those is set.
pub(crate) fn clear_hop_properties(p: &mut Properties) {
    if p.topic_alias.is_some() || !p.subscription_identifiers.is_empty() {
        let v = p.make_mut();
        v.topic_alias = None;
        v.subscription_identifiers.clear();
    }
}

/// The copy of `msg` one subscriber gets at `qos`: shares topic and payload bytes.
pub(crate) fn for_subscriber(
    msg: &Publish,
    qos: QoS,
    retain_as_published: bool,
    ids: Vec<u32>,
) -> Publish {
    let mut properties = msg.properties.clone();
    clear_hop_properties(&mut properties);
    if !ids.is_empty() {
        properties.make_mut().subscription_identifiers = ids;
    }
    Publish {
        dup: false,
        qos,
        retain: retain_as_published && msg.retain,
        topic: msg.topic.clone(),
        packet_id: 0,
        properties,
        payload: msg.payload.clone(),
    }
}

/// [`for_subscriber`] for the last copy of a message: `msg` itself, so that no copy shares
/// its topic and payload (each share is an atomic count on the read buffer they live in,
/// which the subscriber's acknowledgement may drop on another core).
pub(crate) fn into_subscriber(
    mut msg: Publish,
    qos: QoS,
    retain_as_published: bool,
    ids: Vec<u32>,
) -> Publish {
    clear_hop_properties(&mut msg.properties);
    if !ids.is_empty() {
        msg.properties.make_mut().subscription_identifiers = ids;
    }
    msg.dup = false;
    msg.qos = qos;
    msg.retain = retain_as_published && msg.retain;
    msg.packet_id = 0;
    msg
}

fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// The encoded size of `p` (an upper bound when a topic alias will replace the topic).
pub(crate) fn publish_size(p: &Publish, version: ProtocolVersion) -> usize {
    let mut body = 2 + p.topic.len() + p.payload.len();
    if p.qos != QoS::AtMostOnce {
        body += 2;
    }
    if version.is_v5() {
        let pr = &p.properties;
        let mut props = 0;
        props += pr.payload_format_indicator.map_or(0, |_| 2);
        props += pr.message_expiry_interval.map_or(0, |_| 5);
        props += pr.content_type.as_ref().map_or(0, |s| 3 + s.len());
        props += pr.response_topic.as_ref().map_or(0, |s| 3 + s.len());
        props += pr.correlation_data.as_ref().map_or(0, |s| 3 + s.len());
        props += pr
            .subscription_identifiers
            .iter()
            .map(|&i| 1 + varint_len(i as usize))
            .sum::<usize>();
        props += pr.topic_alias.map_or(0, |_| 3);
        props += pr
            .user_properties
            .iter()
            .map(|(k, v)| 5 + k.len() + v.len())
            .sum::<usize>();
        body += varint_len(props) + props;
    }
    1 + varint_len(body) + body
}
