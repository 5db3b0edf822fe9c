//! Connections owed at a whole-server graceful stop: those that the kernel
//! had already accepted (in a listener's accept queue) when the master
//! handled `SIGTERM`.
//!
//! When the last copy of a listening socket closes, the kernel resets every
//! connection still in its accept queue. A client that connected before
//! the stop was asked for, and whose request a worker could still answer
//! within `--graceful-timeout`, should get that answer instead; a client
//! that connects after it must not be served (it is refused once the
//! listeners are closed). The master therefore counts, per listener, the
//! connections queued at the moment it handles the signal
//! ([`count_queued`]), before it tells the workers, and publishes the
//! counts in a small region of shared memory made before the first fork
//! ([`setup`]). A worker that stops takes connections from the queue only
//! while the count of that listener is above zero, decrementing it for
//! each ([`take`]); the queue is first in, first out, so what the workers
//! take together are the connections that were there first. Another stop
//! (a replaced worker, a fast stop) leaves the counts at zero.
//!
//! The count comes from `TCP_INFO`, which reports a listening socket's
//! accept-queue length; a unix socket has no such report, so its queued
//! connections are still reset at a whole-server stop.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::shared::{SharedRegion, ZeroedAtomics};

/// `TCP_LISTEN` of the kernel's socket states (include/net/tcp_states.h).
const TCP_LISTEN: u8 = 10;

/// Listeners with a count of their own; further ones are never drained.
const MAX_LISTENERS: usize = 64;

/// The shared counts, one per listener in the master's order (which the
/// workers inherit).
struct Owed {
    counts: [AtomicU32; MAX_LISTENERS],
}

// SAFETY: an array of atomics, valid at zero.
unsafe impl ZeroedAtomics for Owed {}

/// The shared region, once [`setup`] has made it (never outside a
/// master's processes).
static REGION: SharedRegion<Owed> = SharedRegion::new();

/// Makes the shared region (in the master, before any fork); later calls
/// do nothing.
pub(crate) fn setup() -> io::Result<()> {
    REGION.setup()
}

fn region() -> Option<&'static Owed> {
    REGION.get()
}

/// The number of connections waiting in the accept queue of the listening
/// TCP socket `fd`; `None` for another kind of socket.
pub(crate) fn count_queued(fd: RawFd) -> Option<u32> {
    // SAFETY: tcp_info is plain old data, valid when zeroed.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is valid for `len` bytes, which getsockopt updates.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    // For a socket in LISTEN state the kernel reports the accept queue's
    // length in `tcpi_unacked` (and its limit in `tcpi_sacked`).
    (rc == 0 && info.tcpi_state == TCP_LISTEN).then_some(info.tcpi_unacked)
}

/// Publishes that `n` connections of listener `index` are owed an answer.
pub(crate) fn set_owed(index: usize, n: u32) {
    if let (Some(r), true) = (region(), index < MAX_LISTENERS) {
        r.counts[index].store(n, Ordering::SeqCst);
    }
}

/// Whether any listener has connections owed.
pub(crate) fn any_owed() -> bool {
    region().is_some_and(|r| r.counts.iter().any(|c| c.load(Ordering::SeqCst) > 0))
}

/// Takes one owed connection of listener `index` off the count; `false`
/// when none is left (the caller must not accept then).
pub(crate) fn take(index: usize) -> bool {
    let Some(r) = region() else {
        return false;
    };
    let Some(count) = r.counts.get(index) else {
        return false;
    };
    count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn the_accept_queue_is_counted_and_the_counts_are_taken_once() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(count_queued(listener.as_raw_fd()), Some(0));
        let clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert_eq!(count_queued(listener.as_raw_fd()), Some(3));
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(count_queued(listener.as_raw_fd()), Some(2));
        // A connected socket is no listener.
        assert_eq!(count_queued(accepted.as_raw_fd()), None);
        drop(clients);

        setup().unwrap();
        set_owed(1, 2);
        assert!(any_owed());
        assert!(!take(0));
        assert!(take(1) && take(1));
        assert!(!take(1));
        assert!(!any_owed());
        assert!(!take(MAX_LISTENERS));
    }
}
