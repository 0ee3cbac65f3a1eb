//! One-line packet descriptions for the packet log (`tinsel broker -v`).

use tinsel_codec::{Packet, Publish};

/// A one-line description of a packet for the packet log (`-v`).
pub(crate) fn summary(p: &Packet) -> String {
    use std::fmt::Write;
    let mut s = p.packet_type().name().to_owned();
    let _ = match p {
        Packet::Connect(c) => write!(
            s,
            " id={:?} v{} clean={} keep_alive={}{}{}",
            c.client_id.as_str(),
            c.protocol,
            c.clean_start,
            c.keep_alive,
            if c.will.is_some() { " will" } else { "" },
            if c.username.is_some() { " user" } else { "" },
        ),
        Packet::ConnAck(a) => write!(s, " session_present={} {}", a.session_present, a.reason),
        Packet::Publish(m) => return summary_publish(m),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            write!(s, " pid={} {}", r.packet_id, r.reason)
        }
        Packet::Subscribe(x) => {
            let f: Vec<String> = x
                .filters
                .iter()
                .map(|(f, o)| format!("{}@{}", f.as_str(), o.qos.as_u8()))
                .collect();
            write!(s, " pid={} {}", x.packet_id, f.join(" "))
        }
        Packet::SubAck(a) => {
            let r: Vec<String> = a.reasons.iter().map(|r| format!("0x{:02X}", r.0)).collect();
            write!(s, " pid={} {}", a.packet_id, r.join(" "))
        }
        Packet::Unsubscribe(u) => {
            let f: Vec<&str> = u.filters.iter().map(|f| f.as_str()).collect();
            write!(s, " pid={} {}", u.packet_id, f.join(" "))
        }
        Packet::UnsubAck(a) => write!(s, " pid={}", a.packet_id),
        Packet::Disconnect(d) => write!(s, " {}", d.reason),
        Packet::Auth(a) => write!(s, " {}", a.reason),
        Packet::PingReq | Packet::PingResp => Ok(()),
    };
    s
}

/// [`summary`] of a PUBLISH.
pub(crate) fn summary_publish(m: &Publish) -> String {
    format!(
        "PUBLISH topic={:?} qos={} pid={}{}{}{} {} bytes {:?}",
        m.topic.as_str(),
        m.qos.as_u8(),
        m.packet_id,
        if m.retain { " retain" } else { "" },
        if m.dup { " dup" } else { "" },
        m.properties
            .topic_alias
            .map(|a| format!(" alias={a}"))
            .unwrap_or_default(),
        m.payload.len(),
        preview(&m.payload),
    )
}

/// The start of a payload, as text, for the packet log.
fn preview(payload: &[u8]) -> String {
    const MAX: usize = 64;
    let mut s = String::from_utf8_lossy(&payload[..payload.len().min(MAX)]).into_owned();
    if payload.len() > MAX {
        s.push_str("...");
    }
    s
}
