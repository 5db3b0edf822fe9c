//! The system calls of a connection's life (accept, read, readv, send,
//! sendmsg, close, and the event loop's wait), made directly with
//! `syscall(2)`.
//!
//! glibc makes each of these a thread cancellation point: in a process with
//! more than one thread (a worker has its deadline watcher, and application
//! threads with `--threads` above 1) its wrapper enables
//! asynchronous cancellation before the call and disables it after, two
//! atomic read-modify-writes on the thread's cancellation state around
//! every call (0.8% of a worker's CPU samples on one-request connections).
//! ferrowsgi never cancels a thread, so it calls the kernel without them.
//! `syscall(2)` is not a cancellation point and reports a failure the same
//! way as the wrappers (-1 and `errno`), so [`io::Error::last_os_error`]
//! reads the same error, `EINTR` included: each caller retries or reports
//! it exactly as it did with the wrappers.
//!
//! `shutdown(2)` is not a cancellation point and keeps its plain wrapper.
//! Only these calls are here, one function each, so that the raw numbers
//! and their arguments live in one place.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

/// Most buffers one gathering write takes (`IOV_MAX` on Linux); more are left
/// for the next call, as a short write.
const IOV_MAX: usize = 1024;

/// A `syscall(2)` result: the count or descriptor it returned, or the
/// error in `errno`.
#[inline]
fn check(rc: libc::c_long) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// `read(2)` of up to `buf.len()` bytes from `fd` into `buf`, which need
/// not be initialised: its first `n` bytes are when `Ok(n)` returns.
#[inline]
pub(crate) fn read(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: read(2) writes at most `buf.len()` bytes into `buf`, a live,
    // writable slice, and never reads from it; `fd` is only a number to the
    // kernel (a closed one is EBADF).
    check(unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) })
}

/// `readv(2)` from `fd` into `first`, then `second`, neither of which need
/// be initialised: when `Ok(n)` returns, the first `n` bytes of the two
/// taken in order are.
#[inline]
pub(crate) fn read_two(
    fd: RawFd,
    first: &mut [MaybeUninit<u8>],
    second: &mut [MaybeUninit<u8>],
) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: first.as_mut_ptr().cast(),
            iov_len: first.len(),
        },
        libc::iovec {
            iov_base: second.as_mut_ptr().cast(),
            iov_len: second.len(),
        },
    ];
    // SAFETY: readv(2) writes at most `iov_len` bytes into each of the two
    // buffers, live, writable slices that do not overlap (two distinct
    // `&mut` borrows), and never reads from them.
    check(unsafe { libc::syscall(libc::SYS_readv, fd, iov.as_ptr(), 2) })
}

/// `sendmsg(2)` of `bufs` (the first [`IOV_MAX`] of them) on socket `fd`
/// with `flags`: a gathering write, as `writev(2)` is, that also takes
/// `MSG_NOSIGNAL`, so that a client gone is `EPIPE` rather than a
/// `SIGPIPE` (which an embedding program may not ignore).
#[inline]
pub(crate) fn send_vectored(
    fd: RawFd,
    bufs: &[IoSlice<'_>],
    flags: libc::c_int,
) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no address, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` has the layout of `struct iovec` on Unix (std guarantees
    // it); sendmsg(2) only reads the buffers.
    msg.msg_iov = bufs.as_ptr().cast_mut().cast();
    msg.msg_iovlen = bufs.len().min(IOV_MAX) as _;
    // SAFETY: `msg` points to `msg_iovlen <= bufs.len()` iovecs, each to
    // bytes that live through the call; the kernel reads, never writes them.
    check(unsafe { libc::syscall(libc::SYS_sendmsg, fd, &msg as *const libc::msghdr, flags) })
}

/// `send(2)` of `buf` on socket `fd` with `flags` (as `sendto(2)` with no
/// address, which is what `send` is on Linux).
#[inline]
pub(crate) fn send(fd: RawFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: sendto(2) reads at most `buf.len()` bytes of `buf`, a live
    // slice; a null address with a zero length is the connected send.
    check(unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            buf.as_ptr(),
            buf.len(),
            flags,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        )
    })
}

/// `accept4(2)` on listener `fd`: a non-blocking, close-on-exec connection.
/// The peer's address is written to `addr` (`*len` bytes of room, set to
/// the address's length) unless `addr` is null.
///
/// # Safety
/// `addr` is null (and `len` too), or `addr` points to `*len` writable
/// bytes and `len` to a writable `socklen_t`.
#[inline]
pub(crate) unsafe fn accept4(
    fd: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> io::Result<RawFd> {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: the caller guarantees `addr` and `len` (or passes nulls,
    // which accept4(2) takes as "no address wanted").
    let fd = check(unsafe { libc::syscall(libc::SYS_accept4, fd, addr, len, flags) })?;
    // A descriptor is a non-negative int: the kernel never returns more.
    RawFd::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// `close(2)` of `fd`, which the caller owns and never uses again. An
/// error is not reported: Linux releases the descriptor even then (also on
/// `EINTR`, so it is not retried), and nothing here could act on it.
#[inline]
pub(crate) fn close(fd: RawFd) {
    // SAFETY: close(2) only takes a number; the caller owns `fd` and drops
    // every other use of it.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// `epoll_wait(2)` on `epfd` into `events`, waiting up to `timeout_ms`
/// (-1: no limit). Made as `epoll_pwait(2)` with no signal mask, which is
/// the same call and the one every architecture has. Returns how many of
/// `events` were filled.
#[inline]
pub(crate) fn epoll_wait(
    epfd: RawFd,
    events: &mut [libc::epoll_event],
    timeout_ms: libc::c_int,
) -> io::Result<usize> {
    let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
    // SAFETY: epoll_pwait(2) writes at most `max <= events.len()` events
    // into `events`, a live, writable slice; a null mask changes nothing
    // (its size argument is then ignored).
    check(unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait,
            epfd,
            events.as_mut_ptr(),
            max,
            timeout_ms,
            std::ptr::null::<libc::sigset_t>(),
            8usize,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::{UnixListener, UnixStream};

    fn pair() -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn reads_and_writes_move_bytes_and_report_errno() {
        let (a, b) = pair();
        assert_eq!(send(a.as_raw_fd(), b"hello", 0).unwrap(), 5);
        let parts = [IoSlice::new(b", "), IoSlice::new(b"world")];
        assert_eq!(send_vectored(a.as_raw_fd(), &parts, 0).unwrap(), 7);
        assert_eq!(send(a.as_raw_fd(), b"!", libc::MSG_NOSIGNAL).unwrap(), 1);
        let mut buf = [MaybeUninit::<u8>::uninit(); 64];
        let n = read(b.as_raw_fd(), &mut buf).unwrap();
        // SAFETY: read initialised the first `n` bytes.
        let got = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        assert_eq!(got, b"hello, world!");
        // Nothing left: the non-blocking read's EAGAIN comes back as errno.
        let err = read(b.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        // A closed peer: EPIPE, not SIGPIPE, with MSG_NOSIGNAL.
        drop(b);
        let err = send(a.as_raw_fd(), b"x", libc::MSG_NOSIGNAL).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
        assert_eq!(
            send(-1, b"x", 0).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }

    #[test]
    fn accept_gives_a_nonblocking_cloexec_socket_and_close_releases_it() {
        let dir = std::env::temp_dir().join(format!("ferrowsgi-syscall-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener = UnixListener::bind(&dir).unwrap();
        listener.set_nonblocking(true).unwrap();
        // SAFETY: null address and length: no address wanted.
        let none = unsafe {
            accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(none.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let client = UnixStream::connect(&dir).unwrap();
        // SAFETY: as above.
        let fd = unsafe {
            accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        }
        .unwrap();
        // SAFETY: F_GETFL/F_GETFD only read the descriptor's flags.
        let (fl, fdfl) = unsafe {
            (
                libc::fcntl(fd, libc::F_GETFL),
                libc::fcntl(fd, libc::F_GETFD),
            )
        };
        assert!(fl & libc::O_NONBLOCK != 0);
        assert!(fdfl & libc::FD_CLOEXEC != 0);
        close(fd);
        // SAFETY: as above; the descriptor is closed, so this fails.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_GETFD) }, -1);
        drop(client);
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn epoll_wait_reports_ready_descriptors_and_times_out() {
        // SAFETY: epoll_create1 takes flags only.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(ep >= 0);
        let (a, b) = pair();
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 7,
        };
        // SAFETY: both descriptors are open; `ev` is a valid event.
        assert_eq!(
            unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, b.as_raw_fd(), &mut ev) },
            0
        );
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
        assert_eq!(epoll_wait(ep, &mut events, 0).unwrap(), 0);
        send(a.as_raw_fd(), b"x", 0).unwrap();
        assert_eq!(epoll_wait(ep, &mut events, 1000).unwrap(), 1);
        let (flags, token) = (events[0].events, events[0].u64);
        assert_eq!(token, 7);
        assert!(flags & libc::EPOLLIN as u32 != 0);
        assert_eq!(
            epoll_wait(-1, &mut events, 0).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        close(ep);
    }
}
