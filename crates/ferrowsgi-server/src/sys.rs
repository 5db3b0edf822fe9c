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

/// Writes what the socket `fd` takes of `buf` now, without waiting and
/// without SIGPIPE. Returns the bytes written; a full socket is
/// `WouldBlock`.
pub(crate) fn send_nowait(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid readable slice for the whole call; the caller
    // keeps `fd` open while it may be written (see hold.rs).
    let rc = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
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
    let rc = unsafe { libc::sendfile(sock_fd, file_fd, &mut off, count) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    *offset = off;
    Ok(rc as usize)
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
