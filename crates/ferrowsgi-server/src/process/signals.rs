//! Signal handlers that only write the signal's number to a pipe (the
//! self-pipe), which is all a handler can safely do: write(2) is
//! async-signal-safe, while taking a lock, allocating or waking a thread
//! through anything but a descriptor is not. The master's loop and a
//! worker's signal thread read that pipe and act outside the handler.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

/// The write end of this process's self-pipe (-1: none).
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: errno is thread-local; it is saved and restored so that the
    // interrupted code does not see the write's errno.
    let errno = unsafe { *libc::__errno_location() };
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking,
        // so a full pipe (signals arriving faster than they are read) only
        // drops a duplicate.
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
    // SAFETY: as above.
    unsafe {
        *libc::__errno_location() = errno;
    }
}

/// Makes `fd` the self-pipe that [`catch`]'s handlers write to.
pub(crate) fn set_pipe(fd: RawFd) {
    PIPE_WRITE.store(fd, Ordering::SeqCst);
}

fn set_action(sig: libc::c_int, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
    // the handler is either SIG_DFL/SIG_IGN or `on_signal`, which is
    // async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        // SA_RESTART: a signal does not make a blocking call of another
        // thread fail with EINTR; the loops that must notice signals wait
        // on the self-pipe.
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends `sigs` to the self-pipe from now on.
pub(crate) fn catch(sigs: &[libc::c_int]) -> io::Result<()> {
    for &s in sigs {
        set_action(
            s,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )?;
    }
    Ok(())
}

/// Ignores `sigs`.
pub(crate) fn ignore(sigs: &[libc::c_int]) -> io::Result<()> {
    for &s in sigs {
        set_action(s, libc::SIG_IGN)?;
    }
    Ok(())
}

/// Gives `sigs` their default action back.
pub(crate) fn default(sigs: &[libc::c_int]) -> io::Result<()> {
    for &s in sigs {
        set_action(s, libc::SIG_DFL)?;
    }
    Ok(())
}

/// Unblocks every signal on the calling thread (a fork keeps the mask of
/// the thread that forked).
pub(crate) fn unblock_all() {
    // SAFETY: an empty set built by sigemptyset; pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Blocks every signal on the calling thread, so that a thread started
/// next inherits the mask and the process's signals are delivered to the
/// threads that expect them.
pub(crate) fn block_all() -> libc::sigset_t {
    // SAFETY: sigfillset fills a zeroed set; the old mask is written to
    // `old`, a valid sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, &mut old);
        old
    }
}

/// Restores a mask returned by [`block_all`].
pub(crate) fn restore_mask(old: &libc::sigset_t) {
    // SAFETY: `old` came from pthread_sigmask.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut());
    }
}

/// The signals the master handles.
pub(crate) const MASTER: &[libc::c_int] = &[
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGHUP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Sends `sig` to process `pid`; a process already gone is not an error.
pub(crate) fn kill(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The name of `sig` for logs.
pub(crate) fn name(sig: libc::c_int) -> String {
    match sig {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGQUIT => "SIGQUIT".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGUSR1 => "SIGUSR1".into(),
        libc::SIGTTIN => "SIGTTIN".into(),
        libc::SIGTTOU => "SIGTTOU".into(),
        other => format!("signal {other}"),
    }
}
