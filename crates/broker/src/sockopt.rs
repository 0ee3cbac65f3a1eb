//! The one socket option no safe API sets: `TCP_DEFER_ACCEPT` (std has it unstable only;
//! socket2, rustix and nix do not have it). This is the crate's only `unsafe` code.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

/// How long a listener waits for a new connection's first bytes before handing it over
/// anyway (Linux rounds it up to whole SYN-ACK retransmissions: about 1 to 3 s).
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// Makes `listener` hand a connection over only once its first bytes (the CONNECT) are
/// in, or after [`DEFER_ACCEPT_SECS`].
///
/// Without it, every connection wakes the broker twice: once for the handshake's last ACK
/// (accept) and once for the CONNECT (read). On loopback the waking is paid by the
/// connecting side, and on a virtual machine waking an idle CPU is expensive: a pinned
/// `tinsel bench conn` used about a fifth less CPU on both sides with it.
#[cfg(target_os = "linux")]
pub(crate) fn defer_accept(listener: &impl AsRawFd) -> io::Result<()> {
    let value = DEFER_ACCEPT_SECS;
    // SAFETY: the descriptor is a live socket borrowed for the call; the option value is
    // a c_int on the stack, passed with its exact size, and only read by the kernel.
    let r = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere connections are handed over as usual.
#[cfg(not(target_os = "linux"))]
pub(crate) fn defer_accept(_listener: &impl AsRawFd) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Write};
    use std::time::{Duration, Instant};

    #[test]
    fn a_connection_is_handed_over_with_its_first_bytes() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        defer_accept(&l).expect("setsockopt");
        l.set_nonblocking(true).expect("nonblocking");
        let mut c = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        // Handshake done (connect returned), nothing sent: not handed over yet.
        std::thread::sleep(Duration::from_millis(100));
        let err = l.accept().expect_err("handed over before any bytes");
        assert_eq!(err.kind(), ErrorKind::WouldBlock);
        c.write_all(&[0x10]).expect("write");
        let start = Instant::now();
        loop {
            match l.accept() {
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(
                        start.elapsed() < Duration::from_millis(500),
                        "not handed over"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}
