//! Traffic capture: every byte read from and written to a client, as a pcapng file that
//! Wireshark and tshark decode as MQTT.
//!
//! The broker does not see packets on the wire, only the bytes of each TCP stream. This
//! module turns those streams back into frames a packet analyser understands: every
//! connection gets a synthetic SYN / SYN-ACK / ACK handshake, every read or write becomes
//! Ethernet / IP / TCP segments of at most [`MAX_SEGMENT`] payload bytes with consistent
//! sequence and acknowledgement numbers (so Wireshark reassembles MQTT packets that span
//! segments), and a closed connection ends with FIN / FIN / ACK.
//!
//! Writing happens on one background thread fed by a bounded queue. The broker never
//! waits for the disk: when the queue is full the record is dropped and counted
//! ([`Capture::dropped`]). The sequence numbers still advance, so a dropped record shows up
//! in Wireshark as "previous segment not captured" rather than as corrupt data. The thread
//! flushes the file whenever it has caught up with the queue (and at least every
//! [`FLUSH_INTERVAL`]), so a capture that is still being written can be opened at any time.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};

/// Largest TCP payload in one captured segment (an Ethernet MTU of 1500 minus IPv4 and TCP
/// headers).
pub const MAX_SEGMENT: usize = 1460;

/// How many records (one per read, write, handshake or close) may wait for the writer
/// thread. When full, new records are dropped and counted.
const QUEUE_RECORDS: usize = 8192;

/// How many payload bytes may wait for the writer thread. When exceeded, new records are
/// dropped and counted, so a slow disk costs at most this much memory.
const QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// The writer thread flushes at least this often while records keep arriving.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// How long [`Capture::flush`] waits for the writer thread.
const FLUSH_WAIT: Duration = Duration::from_secs(10);

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

/// Locally administered MAC addresses: one for every client, one for the broker.
const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// A pcapng writer shared by all connections.
///
/// Cheap to clone. The file is complete once every handle (and every [`ConnCapture`]) is
/// dropped: dropping the last one waits for the writer thread to write what is queued.
#[derive(Clone)]
pub struct Capture {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

struct Shared {
    tx: Option<SyncSender<Job>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Payload bytes queued and not yet written.
    queued_bytes: Arc<AtomicUsize>,
    /// Records dropped because the queue was full.
    dropped: AtomicU64,
    /// Writes (and flushes) that failed on the writer thread.
    failed: Arc<AtomicU64>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the queue tells the writer thread to write what is left and stop; waiting
        // for it here means the file is complete once the last handle is gone.
        drop(self.tx.take());
        let thread = self.thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// One unit of work for the writer thread.
enum Job {
    Frames(Record),
    /// Write and flush everything queued before this, then answer.
    Flush(mpsc::Sender<io::Result<()>>),
}

/// Bytes of one TCP stream direction (or a bare handshake / close segment), not yet framed.
struct Record {
    time: Duration,
    client: SocketAddr,
    server: SocketAddr,
    from_client: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: Vec<u8>,
}

impl Capture {
    /// Creates (truncates) the capture file, writes the pcapng headers and starts the
    /// writer thread.
    pub fn create(path: &Path) -> io::Result<Capture> {
        let file = File::create(path)?;
        let mut writer = PcapNgWriter::with_section_header(
            BufWriter::with_capacity(64 * 1024, file),
            SectionHeaderBlock {
                endianness: pcap_file::Endianness::native(),
                options: vec![SectionHeaderOption::UserApplication(Cow::Borrowed(
                    "tinsel broker",
                ))],
                ..Default::default()
            },
        )
        .map_err(pcap_error)?;
        writer
            .write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: 65535,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed("tinsel")),
                    InterfaceDescriptionOption::IfDescription(Cow::Borrowed(
                        "MQTT connections of a tinsel broker, reconstructed from its reads and writes",
                    )),
                    // Timestamps are written in nanoseconds.
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            })
            .map_err(pcap_error)?;
        writer.get_mut().flush()?;

        let (tx, rx) = mpsc::sync_channel(QUEUE_RECORDS);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let thread = {
            let queued_bytes = queued_bytes.clone();
            let failed = failed.clone();
            std::thread::Builder::new()
                .name("tinsel-capture".into())
                .spawn(move || writer_thread(writer, rx, &queued_bytes, &failed))?
        };
        Ok(Capture {
            shared: Arc::new(Shared {
                tx: Some(tx),
                thread: Mutex::new(Some(thread)),
                queued_bytes,
                dropped: AtomicU64::new(0),
                failed,
            }),
        })
    }

    /// Call when a TCP connection is accepted: records a synthetic SYN / SYN-ACK / ACK
    /// handshake and returns the handle that records the connection's bytes.
    pub fn connection(&self, client: SocketAddr, server: SocketAddr) -> ConnCapture {
        let (client, server) = same_family(client, server);
        let client_isn: u32 = rand::random();
        let server_isn: u32 = rand::random();
        let mut conn = ConnCapture {
            capture: self.clone(),
            client,
            server,
            client_seq: client_isn.wrapping_add(1),
            server_seq: server_isn.wrapping_add(1),
        };
        conn.record(true, client_isn, 0, TCP_SYN, Vec::new());
        conn.record(
            false,
            server_isn,
            conn.client_seq,
            TCP_SYN | TCP_ACK,
            Vec::new(),
        );
        conn.record(true, conn.client_seq, conn.server_seq, TCP_ACK, Vec::new());
        conn
    }

    /// Records dropped so far because the writer thread could not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Writes that failed on the writer thread (disk full, file removed ...). After the first
    /// failure the thread stops writing.
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Blocks until everything queued before this call is written and flushed to the file.
    ///
    /// This waits for the writer thread (at most a few seconds): do not call it on an async
    /// task that must stay responsive. The file is also flushed on its own whenever the
    /// writer thread is idle.
    pub fn flush(&self) -> io::Result<()> {
        let Some(tx) = &self.shared.tx else {
            return Ok(());
        };
        let (done_tx, done_rx) = mpsc::channel();
        tx.send(Job::Flush(done_tx))
            .map_err(|_| io::Error::other("the capture writer has stopped"))?;
        match done_rx.recv_timeout(FLUSH_WAIT) {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the capture writer did not flush in time",
            )),
        }
    }

    fn submit(&self, record: Record) {
        let Some(tx) = &self.shared.tx else { return };
        let len = record.payload.len();
        let queued = self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if queued + len > QUEUE_BYTES {
            // Too many bytes waiting for the disk: drop this record (never block the broker).
            self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            self.count_drop();
            return;
        }
        match tx.try_send(Job::Frames(record)) {
            Ok(()) => {}
            // Queue full (or the writer is gone): drop and count, never block the broker.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                self.count_drop();
            }
        }
    }

    fn count_drop(&self) {
        if self.shared.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!("capture: the writer cannot keep up; dropping frames (counted)");
        }
    }
}

/// Records one TCP connection. Dropping it records the connection's close.
pub struct ConnCapture {
    capture: Capture,
    client: SocketAddr,
    server: SocketAddr,
    /// Next sequence number of the client's stream.
    client_seq: u32,
    /// Next sequence number of the broker's stream.
    server_seq: u32,
}

impl std::fmt::Debug for ConnCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnCapture")
            .field("client", &self.client)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl ConnCapture {
    /// Records bytes read from the client, exactly as read.
    pub fn inbound(&mut self, bytes: &[u8]) {
        self.data(true, bytes);
    }

    /// Records bytes written to the client, exactly as written.
    pub fn outbound(&mut self, bytes: &[u8]) {
        self.data(false, bytes);
    }

    /// Records stream data sent by one side and advances that side's sequence number.
    fn data(&mut self, from_client: bool, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let (own_seq, ack) = if from_client {
            (&mut self.client_seq, self.server_seq)
        } else {
            (&mut self.server_seq, self.client_seq)
        };
        let seq = *own_seq;
        *own_seq = seq.wrapping_add(stream_len(bytes.len()));
        self.record(from_client, seq, ack, TCP_PSH | TCP_ACK, bytes.to_vec());
    }

    fn record(&mut self, from_client: bool, seq: u32, ack: u32, flags: u8, payload: Vec<u8>) {
        self.capture.submit(Record {
            time: now(),
            client: self.client,
            server: self.server,
            from_client,
            seq,
            ack,
            flags,
            payload,
        });
    }
}

impl Drop for ConnCapture {
    fn drop(&mut self) {
        // Who closed first is not known here; the broker's side is shown closing.
        let (c, s) = (self.client_seq, self.server_seq);
        self.record(false, s, c, TCP_FIN | TCP_ACK, Vec::new());
        self.record(true, c, s.wrapping_add(1), TCP_FIN | TCP_ACK, Vec::new());
        self.record(
            false,
            s.wrapping_add(1),
            c.wrapping_add(1),
            TCP_ACK,
            Vec::new(),
        );
    }
}

/// Sequence space used by `len` bytes (wraps, like TCP itself).
fn stream_len(len: usize) -> u32 {
    // Truncation is the point: sequence numbers are modulo 2^32.
    (len as u64 & 0xFFFF_FFFF) as u32
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn pcap_error(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// Puts both addresses in one IP family (an IPv4 peer of an IPv6 socket appears mapped).
fn same_family(client: SocketAddr, server: SocketAddr) -> (SocketAddr, SocketAddr) {
    let unmap = |a: SocketAddr| match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    };
    let (client, server) = (unmap(client), unmap(server));
    let map = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    match (client.ip(), server.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (client, server),
        _ => (map(client), map(server)),
    }
}

fn writer_thread(
    writer: PcapNgWriter<BufWriter<File>>,
    rx: Receiver<Job>,
    queued_bytes: &AtomicUsize,
    failed: &AtomicU64,
) {
    let mut out = Output {
        writer,
        frames: Framer::default(),
        broken: None,
        last_flush: Instant::now(),
        dirty: false,
    };
    loop {
        let job = match rx.recv_timeout(FLUSH_INTERVAL) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                out.flush(failed);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        out.handle(job, queued_bytes, failed);
        // Write whatever else is queued, then flush once caught up (and at least every
        // FLUSH_INTERVAL under steady load), so the file on disk is readable while the
        // broker runs.
        while let Ok(job) = rx.try_recv() {
            out.handle(job, queued_bytes, failed);
            if out.last_flush.elapsed() >= FLUSH_INTERVAL {
                out.flush(failed);
            }
        }
        out.flush(failed);
    }
    out.flush(failed);
}

/// The writer thread's file and state.
struct Output {
    writer: PcapNgWriter<BufWriter<File>>,
    frames: Framer,
    /// Set after the first failed write: nothing more is written.
    broken: Option<io::ErrorKind>,
    last_flush: Instant,
    /// Frames written since the last flush.
    dirty: bool,
}

impl Output {
    fn handle(&mut self, job: Job, queued_bytes: &AtomicUsize, failed: &AtomicU64) {
        match job {
            Job::Frames(record) => {
                queued_bytes.fetch_sub(record.payload.len(), Ordering::Relaxed);
                if self.broken.is_some() {
                    return;
                }
                if let Err(e) = self.frames.write(&mut self.writer, &record) {
                    tracing::warn!("capture: writing failed, capture stopped: {e}");
                    failed.fetch_add(1, Ordering::Relaxed);
                    self.broken = Some(e.kind());
                }
                self.dirty = true;
            }
            Job::Flush(done) => {
                self.flush(failed);
                let result = match self.broken {
                    Some(kind) => Err(io::Error::new(
                        kind,
                        "the capture stopped after a write error",
                    )),
                    None => Ok(()),
                };
                let _ = done.send(result);
            }
        }
    }

    fn flush(&mut self, failed: &AtomicU64) {
        if !self.dirty || self.broken.is_some() {
            return;
        }
        if let Err(e) = self.writer.get_mut().flush() {
            tracing::warn!("capture: writing failed, capture stopped: {e}");
            failed.fetch_add(1, Ordering::Relaxed);
            self.broken = Some(e.kind());
        }
        self.last_flush = Instant::now();
        self.dirty = false;
    }
}

/// Builds Ethernet / IP / TCP frames; owns the IP identification counter.
#[derive(Default)]
struct Framer {
    ip_id: u16,
    buf: Vec<u8>,
}

impl Framer {
    fn write(
        &mut self,
        writer: &mut PcapNgWriter<BufWriter<File>>,
        record: &Record,
    ) -> io::Result<()> {
        let mut offset = 0usize;
        loop {
            let end = (offset + MAX_SEGMENT).min(record.payload.len());
            let chunk = &record.payload[offset..end];
            let seq = record.seq.wrapping_add(stream_len(offset));
            self.frame(record, seq, chunk);
            let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
            writer
                .write_pcapng_block(EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp: record.time,
                    original_len: len,
                    data: Cow::Borrowed(&self.buf),
                    options: vec![],
                })
                .map_err(pcap_error)?;
            offset = end;
            if offset >= record.payload.len() {
                return Ok(());
            }
        }
    }

    /// Builds one frame into `self.buf`.
    fn frame(&mut self, record: &Record, seq: u32, payload: &[u8]) {
        let (src, dst) = if record.from_client {
            (record.client, record.server)
        } else {
            (record.server, record.client)
        };
        let (src_mac, dst_mac) = if record.from_client {
            (CLIENT_MAC, SERVER_MAC)
        } else {
            (SERVER_MAC, CLIENT_MAC)
        };
        let tcp = tcp_segment(src, dst, seq, record.ack, record.flags, payload);

        let buf = &mut self.buf;
        buf.clear();
        buf.extend_from_slice(&dst_mac);
        buf.extend_from_slice(&src_mac);
        match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                buf.extend_from_slice(&0x0800u16.to_be_bytes());
                let ip_start = buf.len();
                let total = u16::try_from(20 + tcp.len()).unwrap_or(u16::MAX);
                self.ip_id = self.ip_id.wrapping_add(1);
                buf.extend_from_slice(&[0x45, 0x00]);
                buf.extend_from_slice(&total.to_be_bytes());
                buf.extend_from_slice(&self.ip_id.to_be_bytes());
                buf.extend_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
                buf.extend_from_slice(&[64, 6, 0, 0]); // TTL, TCP, checksum placeholder
                buf.extend_from_slice(&s.octets());
                buf.extend_from_slice(&d.octets());
                let sum = checksum(&[&buf[ip_start..ip_start + 20]]);
                buf[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());
            }
            (s, d) => {
                let s = v6(s);
                let d = v6(d);
                buf.extend_from_slice(&0x86DDu16.to_be_bytes());
                buf.extend_from_slice(&0x6000_0000u32.to_be_bytes());
                let len = u16::try_from(tcp.len()).unwrap_or(u16::MAX);
                buf.extend_from_slice(&len.to_be_bytes());
                buf.extend_from_slice(&[6, 64]); // next header TCP, hop limit
                buf.extend_from_slice(&s.octets());
                buf.extend_from_slice(&d.octets());
            }
        }
        buf.extend_from_slice(&tcp);
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// A TCP header (with an MSS option on SYN segments), the payload and a valid checksum.
fn tcp_segment(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let options: &[u8] = if flags & TCP_SYN != 0 {
        // MSS 1460.
        &[2, 4, 0x05, 0xB4]
    } else {
        &[]
    };
    let header_len = 20 + options.len();
    let mut tcp = Vec::with_capacity(header_len + payload.len());
    tcp.extend_from_slice(&src.port().to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    let ack = if flags & TCP_ACK != 0 { ack } else { 0 };
    tcp.extend_from_slice(&ack.to_be_bytes());
    // Data offset in 32-bit words; header_len is 20 or 24.
    tcp.push(((header_len / 4) as u8) << 4);
    tcp.push(flags);
    tcp.extend_from_slice(&0xFFFFu16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum placeholder, urgent pointer
    tcp.extend_from_slice(options);
    tcp.extend_from_slice(payload);

    let tcp_len = u32::try_from(tcp.len()).unwrap_or(u32::MAX);
    let sum = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut pseudo = [0u8; 12];
            pseudo[..4].copy_from_slice(&s.octets());
            pseudo[4..8].copy_from_slice(&d.octets());
            pseudo[9] = 6;
            pseudo[10..].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            checksum(&[&pseudo, &tcp])
        }
        (s, d) => {
            let mut pseudo = [0u8; 40];
            pseudo[..16].copy_from_slice(&v6(s).octets());
            pseudo[16..32].copy_from_slice(&v6(d).octets());
            pseudo[32..36].copy_from_slice(&tcp_len.to_be_bytes());
            pseudo[39] = 6;
            checksum(&[&pseudo, &tcp])
        }
    };
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    tcp
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts` (each but the last of
/// even length).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for pair in &mut chunks {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::{Block, PcapNgReader};
    use std::process::Command;

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "127.0.0.1:51000".parse().unwrap(),
            "127.0.0.1:18830".parse().unwrap(),
        )
    }

    /// A capture in a fresh file named `name` and one connection between [`addrs`].
    fn open(name: &str) -> (std::path::PathBuf, Capture, ConnCapture) {
        let path = temp_path(name);
        let capture = Capture::create(&path).unwrap();
        let (client, server) = addrs();
        let conn = capture.connection(client, server);
        (path, capture, conn)
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tinsel-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// MQTT 3.1.1 CONNECT with a client id.
    fn connect_bytes(client_id: &str) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
        put_str(&mut body, client_id);
        with_header(0x10, body)
    }

    fn subscribe_bytes(filter: &str) -> Vec<u8> {
        let mut body = vec![0, 1];
        put_str(&mut body, filter);
        body.push(0);
        with_header(0x82, body)
    }

    fn publish_bytes(topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        put_str(&mut body, topic);
        body.extend_from_slice(payload);
        with_header(0x30, body)
    }

    /// Appends an MQTT string: two length bytes, then the bytes.
    fn put_str(body: &mut Vec<u8>, s: &str) {
        body.extend_from_slice(&(s.len() as u16).to_be_bytes());
        body.extend_from_slice(s.as_bytes());
    }

    fn with_header(first: u8, body: Vec<u8>) -> Vec<u8> {
        let mut out = vec![first];
        let mut len = body.len();
        loop {
            let mut byte = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                byte |= 0x80;
            }
            out.push(byte);
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(&body);
        out
    }

    /// Every Ethernet frame in a pcapng file.
    fn frames(path: &Path) -> Vec<Vec<u8>> {
        let file = File::open(path).unwrap();
        let mut reader = PcapNgReader::new(file).unwrap();
        let mut out = Vec::new();
        while let Some(block) = reader.next_block() {
            if let Block::EnhancedPacket(epb) = block.unwrap() {
                out.push(epb.data.into_owned());
            }
        }
        out
    }

    /// tshark's output. A missing tshark fails the test rather than skipping the check: the
    /// README's test command (scripts/test) installs it.
    fn tshark(args: &[&str]) -> String {
        let output = match Command::new("tshark").args(args).output() {
            Ok(output) => output,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                panic!("tshark not installed: run scripts/install-test-peers")
            }
            Err(e) => panic!("tshark: {e}"),
        };
        assert!(
            output.status.success(),
            "tshark failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// tshark's `fields` output for the MQTT frames (port 18830) of a capture: one line per
    /// frame, the `fields` separated by tabs; `options` go before them.
    fn mqtt_fields(path: &Path, options: &[&str], fields: &[&str]) -> String {
        let mut args = vec![
            "-r",
            path.to_str().unwrap(),
            "-d",
            "tcp.port==18830,mqtt",
            "-Y",
            "mqtt",
            "-T",
            "fields",
        ];
        args.extend_from_slice(options);
        for field in fields {
            args.extend(["-e", field]);
        }
        tshark(&args)
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2, the checksum its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
        // A header with its checksum filled in sums to zero.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0x00,
            0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let sum = checksum(&[&header]);
        assert_eq!(sum, 0xb861);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&[&header]), 0);
    }

    #[test]
    fn handshake_data_and_close_have_consistent_sequence_numbers() {
        let (path, capture, mut conn) = open("seq.pcapng");
        let (client, server) = addrs();
        let big = vec![0xAB; 3000];
        conn.inbound(&big);
        conn.outbound(b"\x20\x02\x00\x00");
        conn.inbound(b"xyz");
        drop(conn);
        capture.flush().unwrap();
        assert_eq!(capture.dropped(), 0);

        let frames = frames(&path);
        // SYN, SYN-ACK, ACK, 3 segments of 3000 bytes, 1 out, 1 in, FIN, FIN, ACK.
        assert_eq!(frames.len(), 3 + 3 + 1 + 1 + 3);
        struct Seg {
            sport: u16,
            seq: u32,
            ack: u32,
            flags: u8,
            len: usize,
        }
        let segs: Vec<Seg> = frames
            .iter()
            .map(|f| {
                assert_eq!(&f[12..14], &[0x08, 0x00]);
                let ip = &f[14..];
                assert_eq!(checksum(&[&ip[..20]]), 0, "IPv4 header checksum");
                let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
                assert_eq!(total, ip.len());
                let tcp = &ip[20..];
                let mut pseudo = [0u8; 12];
                pseudo[..8].copy_from_slice(&ip[12..20]);
                pseudo[9] = 6;
                pseudo[10..].copy_from_slice(&(tcp.len() as u16).to_be_bytes());
                assert_eq!(checksum(&[&pseudo, tcp]), 0, "TCP checksum");
                let hlen = (tcp[12] >> 4) as usize * 4;
                Seg {
                    sport: u16::from_be_bytes([tcp[0], tcp[1]]),
                    seq: u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
                    ack: u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
                    flags: tcp[13],
                    len: tcp.len() - hlen,
                }
            })
            .collect();
        let (syn, synack, ack) = (&segs[0], &segs[1], &segs[2]);
        assert_eq!(syn.flags, TCP_SYN);
        assert_eq!(syn.sport, client.port());
        assert_eq!(synack.flags, TCP_SYN | TCP_ACK);
        assert_eq!(synack.sport, server.port());
        assert_eq!(synack.ack, syn.seq.wrapping_add(1));
        assert_eq!(ack.seq, syn.seq.wrapping_add(1));
        assert_eq!(ack.ack, synack.seq.wrapping_add(1));
        let c0 = syn.seq.wrapping_add(1);
        let s0 = synack.seq.wrapping_add(1);
        // 3000 bytes: 1460 + 1460 + 80.
        assert_eq!(
            segs[3..6].iter().map(|s| s.len).collect::<Vec<_>>(),
            [1460, 1460, 80]
        );
        assert_eq!(segs[3].seq, c0);
        assert_eq!(segs[4].seq, c0.wrapping_add(1460));
        assert_eq!(segs[5].seq, c0.wrapping_add(2920));
        assert!(segs[3..6].iter().all(|s| s.ack == s0));
        let c1 = c0.wrapping_add(3000);
        assert_eq!(
            (segs[6].sport, segs[6].seq, segs[6].ack),
            (server.port(), s0, c1)
        );
        let s1 = s0.wrapping_add(4);
        assert_eq!((segs[7].seq, segs[7].ack, segs[7].len), (c1, s1, 3));
        let c2 = c1.wrapping_add(3);
        assert_eq!(
            (segs[8].flags, segs[8].seq, segs[8].ack),
            (TCP_FIN | TCP_ACK, s1, c2)
        );
        assert_eq!(
            (segs[9].flags, segs[9].seq, segs[9].ack),
            (TCP_FIN | TCP_ACK, c2, s1.wrapping_add(1))
        );
        assert_eq!(
            (segs[10].flags, segs[10].seq, segs[10].ack),
            (TCP_ACK, s1.wrapping_add(1), c2.wrapping_add(1))
        );
    }

    #[test]
    fn tshark_decodes_mqtt_including_packets_that_span_segments() {
        let (path, capture, mut conn) = open("mqtt.pcapng");
        // CONNECT and SUBSCRIBE in one read, the way a client often sends them.
        let mut first = connect_bytes("wareville-lights");
        first.extend(subscribe_bytes("d2FyZXZpbGxl/Y2hyaXN0bWFzbGlnaHRz"));
        conn.inbound(&first);
        conn.outbound(&[0x20, 0x02, 0x00, 0x00]); // CONNACK
        conn.outbound(&[0x90, 0x03, 0x00, 0x01, 0x00]); // SUBACK
        // A PUBLISH split across two reads, and a big one that spans several segments.
        let publish = publish_bytes("d2FyZXZpbGxl/Y2hyaXN0bWFzbGlnaHRz", b"on");
        conn.inbound(&publish[..5]);
        conn.inbound(&publish[5..]);
        let big = publish_bytes("big/topic", &vec![b'x'; 5000]);
        conn.outbound(&big);
        drop(conn);
        // A second connection, on an IPv6 socket.
        let mut conn6 = capture.connection(
            "[::1]:52000".parse().unwrap(),
            "[::1]:18830".parse().unwrap(),
        );
        conn6.inbound(&connect_bytes("saboteur"));
        drop(conn6);
        capture.flush().unwrap();

        let path_str = path.to_str().unwrap();
        let out = mqtt_fields(
            &path,
            &["-E", "occurrence=a", "-E", "aggregator=|"],
            &["mqtt.msgtype", "mqtt.clientid", "mqtt.topic", "mqtt.len"],
        );
        let lines: Vec<&str> = out.lines().collect();
        let text = out.as_str();
        assert!(text.contains("wareville-lights"), "{text}");
        assert!(text.contains("saboteur"), "{text}");
        // (message types, topics, lengths) of each frame that holds MQTT.
        let rows: Vec<(Vec<&str>, &str, &str)> = lines
            .iter()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[0].split('|').collect(), f[2], f[3])
            })
            .collect();
        let topic = "d2FyZXZpbGxl/Y2hyaXN0bWFzbGlnaHRz";
        // SUBSCRIBE (8) in the same segment as CONNECT (1).
        assert!(
            rows.iter()
                .any(|(t, top, _)| t == &["1", "8"] && top.contains(topic)),
            "{text}"
        );
        // The PUBLISH (3) that arrived in two reads.
        assert!(
            rows.iter().any(|(t, top, _)| t == &["3"] && *top == topic),
            "{text}"
        );
        // The 5000-byte PUBLISH was reassembled from 4 segments.
        assert!(
            rows.iter()
                .any(|(t, top, len)| t == &["3"] && *top == "big/topic" && *len == "5011"),
            "{text}"
        );
        // No TCP problems (gaps, retransmissions, bad checksums) anywhere in the file.
        let problems = tshark(&[
            "-r",
            path_str,
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            "-Y",
            "tcp.analysis.flags or _ws.expert.severity >= warning",
        ]);
        assert_eq!(problems.trim(), "", "tshark found problems");
    }

    #[test]
    fn tshark_follows_an_mqtt5_session_encoded_by_the_codec() {
        use bytes::{Bytes, BytesMut};
        use tinsel_codec::{
            ByteStr, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubResp,
            Publish, QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions, Will, encode_packet,
        };

        let v5 = ProtocolVersion::V5;
        let bytes = |p: Packet| {
            let mut b = BytesMut::new();
            encode_packet(&p, v5, &mut b).unwrap();
            b.to_vec()
        };
        let topic = "d2FyZXZpbGxl/Y2hyaXN0bWFzbGlnaHRz";
        let connect = Packet::Connect(Box::new(Connect {
            protocol: v5,
            clean_start: true,
            keep_alive: 30,
            properties: Properties::from(tinsel_codec::PropertyValues {
                session_expiry_interval: Some(60),
                ..Default::default()
            }),
            client_id: ByteStr::from_static("wareville-lights"),
            will: Some(Will {
                topic: ByteStr::from_static("d2FyZXZpbGxl/c3RhdHVz"),
                payload: Bytes::from_static(b"offline"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties::default(),
            }),
            username: None,
            password: None,
            bridge: false,
        }));
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: ByteStr::from_static(topic),
            packet_id: 7,
            properties: Properties::default(),
            payload: Bytes::from_static(b"on"),
        });

        let (path, capture, mut conn) = open("codec5.pcapng");
        conn.inbound(&bytes(connect));
        conn.outbound(&bytes(Packet::ConnAck(ConnAck::new(
            false,
            ReasonCode::SUCCESS,
        ))));
        conn.inbound(&bytes(Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![(
                ByteStr::from_static(topic),
                SubscriptionOptions::new(QoS::AtLeastOnce),
            )],
        })));
        conn.outbound(&bytes(Packet::SubAck(SubAck {
            packet_id: 1,
            properties: Properties::default(),
            reasons: vec![ReasonCode(1)],
        })));
        conn.inbound(&bytes(publish));
        conn.outbound(&bytes(Packet::PubRec(PubResp::new(7))));
        conn.inbound(&bytes(Packet::PubRel(PubResp::new(7))));
        conn.outbound(&bytes(Packet::PubComp(PubResp::new(7))));
        conn.inbound(&bytes(Packet::PingReq));
        conn.outbound(&bytes(Packet::PingResp));
        conn.inbound(&bytes(Packet::Disconnect(Disconnect::default())));
        drop(conn);
        capture.flush().unwrap();

        let out = mqtt_fields(
            &path,
            &[],
            &["mqtt.msgtype", "mqtt.ver", "mqtt.willtopic", "mqtt.topic"],
        );
        let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
        let types: Vec<&str> = rows.iter().map(|r| r[0]).collect();
        assert_eq!(
            types,
            ["1", "2", "8", "9", "3", "5", "6", "7", "12", "13", "14"],
            "{out}"
        );
        assert_eq!(rows[0][1], "5", "{out}");
        assert_eq!(rows[0][2], "d2FyZXZpbGxl/c3RhdHVz", "{out}");
        assert_eq!(rows[4][3], topic, "{out}");
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (_path, capture, mut conn) = open("full.pcapng");
        // More than QUEUE_BYTES at once: some of it must be dropped, and none of it blocks.
        let chunk = vec![0u8; 1024 * 1024];
        let started = Instant::now();
        for _ in 0..(QUEUE_BYTES / chunk.len() + 64) {
            conn.inbound(&chunk);
        }
        let took = started.elapsed();
        drop(conn);
        capture.flush().unwrap();
        assert!(capture.dropped() > 0, "nothing was dropped");
        assert_eq!(capture.failed(), 0);
        // Bounded in count and time: not a speed assertion, a "did not hang" one.
        assert!(took < Duration::from_secs(60));
    }

    #[test]
    fn the_file_is_readable_while_the_capture_is_open() {
        let (path, _capture, mut conn) = open("live.pcapng");
        conn.inbound(&connect_bytes("live"));
        // No explicit flush: the writer flushes once it has caught up.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if frames(&path).len() == 4 {
                break;
            }
            assert!(Instant::now() < deadline, "the capture was never flushed");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(conn);
    }

    #[test]
    fn dropping_the_last_handle_completes_the_file() {
        let (path, capture, mut conn) = open("close.pcapng");
        conn.inbound(&connect_bytes("bye"));
        drop(capture);
        drop(conn);
        assert_eq!(frames(&path).len(), 3 + 1 + 3);
    }

    #[test]
    fn creating_in_a_missing_directory_is_an_error() {
        let path = temp_path("no/such/dir/x.pcapng");
        assert!(Capture::create(&path).is_err());
    }
}
