//! Bare connect servers: what accepting an MQTT connection costs when nothing but the
//! system calls is done.
//!
//! `tinsel-floor MODE PORT` listens on 127.0.0.1:PORT and, for every connection, reads the
//! CONNECT once (whatever it holds), writes a fixed CONNACK (session not present, accepted)
//! and keeps the socket watched until the client closes it. No parsing, no session, no
//! checks: a lower bound for any broker's CPU per connection, measured with
//! `tinsel bench conn --broker-pid` exactly like a broker (see `bench/floor.sh`).
//!
//! Modes (all single-threaded, listener with `TCP_DEFER_ACCEPT` and `TCP_NODELAY` as
//! `tinsel broker` sets them):
//! - `epoll`: mio; `accept4`, `recvfrom`, `sendto`, `epoll_ctl` per connection.
//! - `uring`: io_uring only; a multishot accept, then per connection a `recv`, a `send` and
//!   one multishot poll (instead of an epoll registration) as ring entries.
//! - `uring-accept`: multishot accept on the ring; `recvfrom`, `sendto` and `epoll_ctl` as
//!   system calls; the epoll set is watched through the ring.
//! - `uring-batch`: multishot accept, the CONNACK `send` and the `EPOLL_CTL_ADD` as ring
//!   entries (the CONNECT is read with `recvfrom`); the epoll set is watched through the ring.
//!
//! A measuring tool, not part of Tinsel: it stops on the first unexpected error.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

/// CONNACK: session not present, return code 0.
static CONNACK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

/// Enough for the benchmark's CONNECTs (and anything else: only one read is made).
const READ: usize = 256;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(port)) = (args.get(1), args.get(2).and_then(|p| p.parse().ok())) else {
        eprintln!("usage: tinsel-floor epoll|uring|uring-accept|uring-batch PORT");
        std::process::exit(2);
    };
    let result = listen(port).and_then(|l| match mode.as_str() {
        "epoll" => epoll(l),
        "uring" => uring(l, Watch::Ring),
        "uring-accept" => uring(l, Watch::EpollSyscalls),
        "uring-batch" => uring(l, Watch::EpollRing),
        other => Err(io::Error::other(format!("unknown mode {other}"))),
    });
    if let Err(e) = result {
        eprintln!("tinsel-floor: {e}");
        std::process::exit(1);
    }
}

fn listen(port: u16) -> io::Result<TcpListener> {
    let l = TcpListener::bind(("127.0.0.1", port))?;
    l.set_nonblocking(true)?;
    setsockopt(&l, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 1)?;
    setsockopt(&l, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    Ok(l)
}

fn setsockopt(
    l: &TcpListener,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket and a pointer to an int of the given length.
    let r = unsafe { libc::setsockopt(l.as_raw_fd(), level, name, (&raw const v).cast(), len) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads the CONNECT (one read, whatever is there) and answers it.
fn greet(s: &TcpStream, buf: &mut [u8]) {
    let _ = (&*s).read(buf);
    let _ = (&*s).write(&CONNACK);
}

/// True when the client closed its side (or the socket failed).
fn gone(s: &TcpStream, buf: &mut [u8]) -> bool {
    match (&*s).read(buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}

fn epoll(l: TcpListener) -> io::Result<()> {
    use mio::unix::SourceFd;
    use mio::{Events, Interest, Poll, Token};
    const LISTENER: Token = Token(usize::MAX);
    let mut l = mio::net::TcpListener::from_std(l);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut l, LISTENER, Interest::READABLE)?;
    let mut conns: HashMap<usize, TcpStream> = HashMap::new();
    let mut events = Events::with_capacity(256);
    let mut buf = [0u8; READ];
    loop {
        poll.poll(&mut events, None)?;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match l.accept() {
                        Ok((s, _)) => {
                            let s = TcpStream::from(s);
                            greet(&s, &mut buf);
                            let fd = s.as_raw_fd();
                            let token = Token(fd as usize);
                            poll.registry().register(
                                &mut SourceFd(&fd),
                                token,
                                Interest::READABLE,
                            )?;
                            conns.insert(fd as usize, s);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            } else if let Some(s) = conns.get(&ev.token().0)
                && gone(s, &mut buf)
            {
                conns.remove(&ev.token().0);
            }
        }
    }
}

/// How `uring` watches accepted sockets.
#[derive(Clone, Copy, PartialEq)]
enum Watch {
    /// A multishot poll per socket on the ring.
    Ring,
    /// An epoll set (registered with `epoll_ctl`), watched through the ring.
    EpollSyscalls,
    /// An epoll set (registered with ring entries), watched through the ring.
    EpollRing,
}

/// What a completion is for: the low 32 bits of `user_data` are the socket.
const RECV: u64 = 1 << 32;
const SEND: u64 = 2 << 32;
const POLL: u64 = 3 << 32;
const CTL: u64 = 4 << 32;
const ACCEPT: u64 = u64::MAX;
const EPOLL: u64 = u64::MAX - 1;

/// Per accepted socket: the stream and what ring entries in flight point at (kept until
/// the socket closes, so no pointer handed to the kernel dangles).
struct Conn {
    stream: TcpStream,
    buf: Option<Box<[u8; READ]>>,
    event: Option<Box<libc::epoll_event>>,
}

fn uring(l: TcpListener, watch: Watch) -> io::Result<()> {
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .build(4096)?;
    // SAFETY: epoll_create1 has no memory arguments.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(io::Error::last_os_error());
    }
    let lfd = types::Fd(l.as_raw_fd());
    let accept = || {
        opcode::AcceptMulti::new(lfd)
            .flags(libc::SOCK_NONBLOCK)
            .build()
            .user_data(ACCEPT)
    };
    let watch_epoll = || {
        opcode::PollAdd::new(types::Fd(epfd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(EPOLL)
    };
    let mut pending: Vec<squeue::Entry> = vec![accept()];
    if watch != Watch::Ring {
        pending.push(watch_epoll());
    }
    let mut conns: HashMap<RawFd, Conn> = HashMap::new();
    let mut scratch = [0u8; READ];
    let mut completions: Vec<cqueue::Entry> = Vec::with_capacity(4096);
    loop {
        {
            let mut sq = ring.submission();
            for e in pending.drain(..) {
                // SAFETY: every pointer in these entries is 'static (CONNACK) or owned by a
                // `Conn` in `conns`, which is only dropped when its socket closes.
                if unsafe { sq.push(&e) }.is_err() {
                    return Err(io::Error::other("submission queue full"));
                }
            }
        }
        ring.submit_and_wait(1)?;
        completions.extend(ring.completion());
        for c in completions.drain(..) {
            let (ud, res) = (c.user_data(), c.result());
            if ud == EPOLL {
                if !cqueue::more(c.flags()) {
                    pending.push(watch_epoll());
                }
                let mut out = [libc::epoll_event { events: 0, u64: 0 }; 64];
                // SAFETY: `out` holds 64 events.
                let n = unsafe { libc::epoll_wait(epfd, out.as_mut_ptr(), 64, 0) };
                for e in &out[..n.max(0) as usize] {
                    let fd = e.u64 as RawFd;
                    if conns
                        .get(&fd)
                        .is_some_and(|k| gone(&k.stream, &mut scratch))
                    {
                        conns.remove(&fd);
                    }
                }
                continue;
            }
            if ud == ACCEPT {
                if !cqueue::more(c.flags()) {
                    pending.push(accept());
                }
                if res < 0 {
                    continue;
                }
                // SAFETY: a descriptor the ring just accepted, owned by nobody else.
                let stream = unsafe { TcpStream::from_raw_fd(res) };
                let mut conn = Conn {
                    stream,
                    buf: None,
                    event: None,
                };
                let fd = types::Fd(res);
                let ud = res as u64;
                match watch {
                    Watch::Ring => {
                        let mut b = Box::new([0u8; READ]);
                        pending.push(
                            opcode::Recv::new(fd, b.as_mut_ptr(), READ as u32)
                                .build()
                                .user_data(ud | RECV),
                        );
                        conn.buf = Some(b);
                    }
                    Watch::EpollSyscalls => {
                        greet(&conn.stream, &mut scratch);
                        let mut ev = libc::epoll_event {
                            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
                            u64: ud,
                        };
                        // SAFETY: valid descriptors and a pointer to one event.
                        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, res, &mut ev) } < 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    Watch::EpollRing => {
                        let _ = (&conn.stream).read(&mut scratch);
                        pending.push(
                            opcode::Send::new(fd, CONNACK.as_ptr(), 4)
                                .build()
                                .user_data(ud | SEND),
                        );
                        let ev = Box::new(libc::epoll_event {
                            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
                            u64: ud,
                        });
                        let ptr = (&raw const *ev).cast::<types::epoll_event>();
                        pending.push(
                            opcode::EpollCtl::new(types::Fd(epfd), fd, libc::EPOLL_CTL_ADD, ptr)
                                .build()
                                .user_data(ud | CTL),
                        );
                        conn.event = Some(ev);
                    }
                }
                conns.insert(res, conn);
                continue;
            }
            let fd = (ud & 0xffff_ffff) as RawFd;
            match ud & !0xffff_ffff {
                RECV => {
                    // The CONNECT is in (or the socket failed): answer, then watch it.
                    if let Some(k) = conns.get_mut(&fd) {
                        k.buf = None;
                    }
                    let f = types::Fd(fd);
                    pending.push(
                        opcode::Send::new(f, CONNACK.as_ptr(), 4)
                            .build()
                            .user_data(fd as u64 | SEND),
                    );
                    pending.push(
                        opcode::PollAdd::new(f, libc::POLLIN as u32)
                            .multi(true)
                            .build()
                            .user_data(fd as u64 | POLL),
                    );
                }
                // Closing the socket ends its multishot poll.
                POLL if conns
                    .get(&fd)
                    .is_some_and(|k| gone(&k.stream, &mut scratch)) =>
                {
                    conns.remove(&fd);
                }
                _ => {}
            }
        }
    }
}
