//! Thin, safe wrappers over the few system calls the server makes directly
//! (the rest go through `mio` and `socket2`).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// What [`wait_fd`] waits for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Want {
    /// The descriptor has data (or EOF) to read.
    Read,
    /// The descriptor's send buffer has room.
    Write,
}

/// Waits until `fd` is ready for `want` or `timeout` passes.
///
/// Returns `Ok(true)` when ready (or in error/hang-up state, which the next
/// read or write reports), `Ok(false)` on timeout. `EINTR` is retried.
pub(crate) fn wait_fd(fd: RawFd, want: Want, timeout: Duration) -> io::Result<bool> {
    let events = match want {
        Want::Read => libc::POLLIN,
        Want::Write => libc::POLLOUT,
    };
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    loop {
        // SAFETY: `pfd` is a valid, initialised pollfd that lives across the
        // call, and we pass a count of exactly one.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// One read(2) from `fd` into `buf`, which need not be initialised; its
/// first `n` bytes are when `Ok(n)` returns. `Ok(0)` is the end of the
/// stream, and a socket with nothing to read is `WouldBlock`.
pub(crate) fn read_into(fd: RawFd, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
    crate::syscall::read(fd, buf)
}

/// Writes what the socket `fd` takes of `buf` now, without waiting and
/// without SIGPIPE. Returns the bytes written; a full socket is
/// `WouldBlock`.
pub(crate) fn send_nowait(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    send(fd, buf, 0)
}

/// [`send_nowait`] with `MSG_MORE`: TCP holds back a last partial segment
/// until more data comes or the write side is shut down, whose FIN then
/// leaves in the same segment.
pub(crate) fn send_more(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    send(fd, buf, libc::MSG_MORE)
}

fn send(fd: RawFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // The caller keeps `fd` open while it may be written (see hold.rs).
    crate::syscall::send(fd, buf, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT | flags)
}

/// Sends up to `count` bytes of file `file_fd` from `offset` to socket
/// `sock_fd` with sendfile(2), advancing `offset`. Returns the bytes sent
/// (0 at the end of the file).
pub(crate) fn sendfile(
    sock_fd: RawFd,
    file_fd: RawFd,
    offset: &mut i64,
    count: usize,
) -> io::Result<usize> {
    let mut off: libc::off_t = *offset;
    // SAFETY: both descriptors are owned by the caller for the duration of
    // the call and `off` is a valid, writable off_t.
    let rc = without_sigpipe(|| unsafe { libc::sendfile(sock_fd, file_fd, &mut off, count) })?;
    *offset = off;
    Ok(rc)
}

/// Makes `call`, one system call that writes to a socket and takes no
/// `MSG_NOSIGNAL` (sendfile(2)), so that a peer gone is its `EPIPE` and
/// never a `SIGPIPE`: an application may have restored the signal's
/// default action, which would end the worker. The signal is blocked on
/// this thread for the call, and one the call raised is taken back before
/// it is unblocked. Two `rt_sigprocmask` calls around a call that moves
/// up to a socket buffer of a file.
fn without_sigpipe(call: impl FnOnce() -> isize) -> io::Result<usize> {
    // SAFETY: sigset_t is plain data that sigemptyset initialises; every
    // pointer passed below is to a live local.
    unsafe {
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
        let rc = call();
        let result = if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc as usize)
        };
        let raised = matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EPIPE));
        // A SIGPIPE that was blocked already before stays for its owner.
        if raised && libc::sigismember(&old, libc::SIGPIPE) == 0 {
            let now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            while libc::sigtimedwait(&pipe, std::ptr::null_mut(), &now) < 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}

/// Gives the C allocator's free memory back to the kernel. glibc keeps the
/// heap a burst of connections freed (and the arenas of the application
/// threads) mapped; `malloc_trim` returns every free page of every arena.
/// Elsewhere this does nothing.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own structures, under
    // its locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Gives the whole pages inside `buf`'s allocation back to the kernel
/// (`MADV_DONTNEED`), without a walk of the heap as [`release_free_memory`]
/// makes: for one large block about to be freed. The pages read as zeros
/// when touched again. The allocation's first 64 bytes, where the
/// allocator keeps its list pointers once the block is freed, stay as they
/// are (only pages wholly past them are given back). Returns the bytes
/// given back.
pub(crate) fn discard_pages(buf: &mut Vec<u8>) -> usize {
    // SAFETY: sysconf only reads a constant of the system.
    let page = match usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) {
        Ok(p) if p.is_power_of_two() => p,
        _ => return 0,
    };
    let start = buf.as_mut_ptr() as usize;
    let Some(first) = start.checked_add(64 + page - 1).map(|a| a & !(page - 1)) else {
        return 0;
    };
    let end = start.saturating_add(buf.capacity()) & !(page - 1);
    if end <= first {
        return 0;
    }
    let len = end - first;
    // SAFETY: [first, end) lies inside the allocation `buf` owns (its
    // capacity, from its start), page-aligned as madvise wants; nothing
    // reads those bytes before they are written again (the caller frees
    // the block, or keeps it empty), and a page given back reads as zeros.
    let done = unsafe { libc::madvise(first as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    if done == 0 {
        len
    } else {
        0
    }
}

/// Keeps glibc from handing memory back to the kernel after every request.
///
/// The application runs on threads other than the main one, and glibc gives
/// each such thread its own arena, which it shrinks (`MADV_DONTNEED`) as
/// soon as 128 KiB at its top are free, so the next request faults the
/// same pages in again. For a Flask view that made each request about 15%
/// slower than on the main thread. With a 64 MiB trim threshold (and a
/// fixed 32 MiB mmap threshold, so large response buffers are reused
/// rather than mapped each time) the arenas keep their pages; the server
/// gives freed memory back itself after bursts ([`release_free_memory`]).
/// Settings made through `GLIBC_TUNABLES` or `MALLOC_*_` variables win.
pub(crate) fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = std::env::var_os("GLIBC_TUNABLES")
            .is_some_and(|v| v.to_string_lossy().contains("malloc"))
            || std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
            || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some();
        if user_set {
            return;
        }
        // SAFETY: mallopt only changes allocator parameters, under the
        // allocator's own lock.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        }
    }
}

/// Capacity asked for the pipe that carries spooled request bodies from the
/// socket to their file (fcntl `F_SETPIPE_SZ`): 1 MiB is the default
/// `/proc/sys/fs/pipe-max-size`, so an unprivileged process gets it, and it
/// lets one splice(2) move 256 pages instead of the default pipe's 16. The
/// pipe holds page references only while one transfer is in flight; it is
/// empty between calls.
const SPLICE_PIPE_SIZE: libc::c_int = 1024 * 1024;

/// A pipe used as the kernel-side buffer of splice(2): socket → pipe → file,
/// so a body going to disk never crosses into user space.
#[derive(Debug)]
pub(crate) struct SplicePipe {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
    /// Bytes the pipe holds at most.
    capacity: usize,
}

/// What [`SplicePipe::socket_to_file`] did.
#[derive(Debug)]
pub(crate) enum Spliced {
    /// This many bytes went from the socket to the file.
    Moved(usize),
    /// The client closed its side.
    Eof,
    /// The socket has nothing more to read now (EAGAIN).
    Empty,
    /// The socket or file does not support splice(2); nothing was moved.
    Unsupported,
    /// Reading the socket failed; nothing was moved.
    Socket(io::Error),
    /// Writing the file failed after bytes left the socket: they are lost,
    /// and the pipe (which may still hold some) must not be used again.
    File(io::Error),
}

impl SplicePipe {
    /// Opens a close-on-exec pipe, enlarged to [`SPLICE_PIPE_SIZE`] where the
    /// kernel allows it.
    pub(crate) fn new() -> io::Result<SplicePipe> {
        use std::os::fd::{FromRawFd, OwnedFd};
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by
        // nobody else; each is wrapped exactly once.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ / F_GETPIPE_SZ take an int argument (or none)
        // on a descriptor we own.
        let capacity = unsafe {
            libc::fcntl(fds[1], libc::F_SETPIPE_SZ, SPLICE_PIPE_SIZE);
            libc::fcntl(fds[1], libc::F_GETPIPE_SZ)
        };
        let capacity = usize::try_from(capacity).unwrap_or(0).max(4096);
        Ok(SplicePipe {
            read,
            write,
            capacity,
        })
    }

    /// Moves up to `max` bytes from socket `sock` to `file` at `*offset`
    /// (advanced by the bytes written) without copying them to user space:
    /// one splice(2) from the socket into the pipe, then as many as it takes
    /// from the pipe into the file. The socket must be non-blocking.
    pub(crate) fn socket_to_file(
        &self,
        sock: RawFd,
        file: RawFd,
        offset: &mut i64,
        max: usize,
    ) -> Spliced {
        use std::os::fd::AsRawFd;
        let want = max.min(self.capacity);
        if want == 0 {
            return Spliced::Moved(0);
        }
        let got = loop {
            // SAFETY: plain descriptors and null offsets (a socket and a pipe
            // have no file position); the kernel moves page references.
            let rc = unsafe {
                libc::splice(
                    sock,
                    std::ptr::null_mut(),
                    self.write.as_raw_fd(),
                    std::ptr::null_mut(),
                    want,
                    libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
                )
            };
            if rc > 0 {
                break rc as usize;
            }
            if rc == 0 {
                return Spliced::Eof;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Spliced::Empty,
                Some(libc::EINVAL) | Some(libc::ENOSYS) => return Spliced::Unsupported,
                _ => return Spliced::Socket(err),
            }
        };
        let mut left = got;
        while left > 0 {
            let mut off: libc::loff_t = *offset;
            // SAFETY: `off` is a valid, writable loff_t for the file's
            // position; the pipe holds at least `left` bytes, so the blocking
            // read end returns without waiting.
            let rc = unsafe {
                libc::splice(
                    self.read.as_raw_fd(),
                    std::ptr::null_mut(),
                    file,
                    &mut off,
                    left,
                    libc::SPLICE_F_MOVE,
                )
            };
            if rc > 0 {
                *offset = off;
                left -= rc as usize;
                continue;
            }
            let err = if rc == 0 {
                io::ErrorKind::WriteZero.into()
            } else {
                io::Error::last_os_error()
            };
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Spliced::File(err);
        }
        Spliced::Moved(got)
    }
}

/// Reads up to `buf.len()` bytes of the file `fd` at `offset` (pread(2)),
/// retrying on EINTR; `Ok(0)` at the end of the file.
pub fn pread(fd: RawFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let off = libc::off_t::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
    loop {
        // SAFETY: pread(2) writes at most `buf.len()` bytes into `buf`, a
        // live, writable slice; `fd` is only read from.
        let rc = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether each page of `[addr, addr + len)` is resident (mincore).
    fn resident(addr: usize, len: usize) -> Vec<bool> {
        // SAFETY: sysconf only reads a constant of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let first = addr & !(page - 1);
        let pages = (addr + len - first).div_ceil(page);
        let mut vec = vec![0u8; pages];
        // SAFETY: the range is mapped (the caller's live allocation), and
        // `vec` has a byte per page of it.
        let r = unsafe {
            libc::mincore(
                first as *mut libc::c_void,
                addr + len - first,
                vec.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "mincore failed");
        vec.iter().map(|b| b & 1 == 1).collect()
    }

    #[test]
    fn discarded_pages_leave_the_block_and_its_head_stays() {
        let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
        buf.resize(256 * 1024, 0xab);
        let addr = buf.as_ptr() as usize;
        assert!(
            resident(addr, buf.len()).iter().all(|&r| r),
            "pages touched"
        );
        let given = discard_pages(&mut buf);
        assert!(given >= 240 * 1024, "gave back {given}");
        let pages = resident(addr, buf.len());
        let gone = pages.iter().filter(|&&r| !r).count();
        // SAFETY: sysconf only reads a constant of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        assert_eq!(gone * page, given, "{gone} pages gone of {}", pages.len());
        // The first 64 bytes keep their values, the rest reads as zeros
        // where given back.
        assert!(buf[..64].iter().all(|&b| b == 0xab));
        assert_eq!(buf[128 * 1024], 0);
    }

    #[test]
    fn a_block_smaller_than_a_page_gives_nothing_back() {
        let mut buf = vec![1u8; 1000];
        assert_eq!(discard_pages(&mut buf), 0);
        assert!(buf.iter().all(|&b| b == 1));
    }
}
