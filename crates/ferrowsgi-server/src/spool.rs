//! Request bodies too large for memory, kept in unnamed temporary files, and
//! the files connections keep for their next large body.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use std::cell::RefCell;

use crate::sys::{SplicePipe, Spliced};

/// A connection keeps the spool file of its last large body for its next
/// one when the file is at most this large: overwriting pages the file
/// already has skips the page cache and ext4 work of a new file (buffer
/// heads, delayed-allocation reservations, and the truncation when it is
/// closed). Larger files are closed with their request, so a huge upload's
/// disk space is freed at once.
pub const SPOOL_KEEP_MAX: u64 = 16 * 1024 * 1024;

/// At most this many bytes of spool files are kept by connections between
/// requests, process-wide (disk space and page cache, not process memory):
/// enough for 32 keep-alive connections that upload 16 MiB bodies.
pub const SPOOL_KEEP_TOTAL: u64 = 512 * 1024 * 1024;

/// Bytes of spool files kept now (see [`SPOOL_KEEP_TOTAL`]).
static SPOOL_KEPT: AtomicU64 = AtomicU64::new(0);

/// A spool file a connection keeps for its next large body, counted in
/// [`SPOOL_KEPT`] until it is used again or dropped.
#[derive(Debug)]
pub struct KeptSpool(Option<Spool>);

impl KeptSpool {
    /// Keeps `spool` if it is small enough and the process-wide budget has
    /// room; otherwise it is dropped (and its file closed).
    pub fn keep(spool: Spool) -> Option<KeptSpool> {
        let size = spool.size;
        if size == 0 || size > SPOOL_KEEP_MAX {
            return None;
        }
        let before = SPOOL_KEPT.fetch_add(size, Ordering::Relaxed);
        if before + size > SPOOL_KEEP_TOTAL {
            SPOOL_KEPT.fetch_sub(size, Ordering::Relaxed);
            return None;
        }
        Some(KeptSpool(Some(spool)))
    }

    /// The kept file, emptied, for a new body.
    pub fn reuse(mut self) -> Option<Spool> {
        let mut spool = self.0.take()?;
        SPOOL_KEPT.fetch_sub(spool.size, Ordering::Relaxed);
        spool.len = 0;
        spool.read_pos = 0;
        spool.failed = None;
        Some(spool)
    }
}

impl Drop for KeptSpool {
    fn drop(&mut self) {
        if let Some(spool) = &self.0 {
            SPOOL_KEPT.fetch_sub(spool.size, Ordering::Relaxed);
        }
    }
}

/// A request body too large for memory, kept in an unnamed temporary file.
#[derive(Debug)]
pub struct Spool {
    file: std::fs::File,
    /// Bytes written.
    pub len: u64,
    /// Bytes handed to the application so far.
    pub read_pos: u64,
    /// The file's size: the most bytes it held (a kept file is overwritten,
    /// not truncated).
    size: u64,
    /// splice(2) from the socket is worth trying (cleared when the kernel
    /// refuses it for this socket or file).
    pub(crate) splice: bool,
    /// Writing the file failed while splicing; the request gets a 500.
    pub(crate) failed: Option<io::Error>,
}

thread_local! {
    /// This thread's pipe for splicing bodies into their spool files: made
    /// on first use, dropped after a failed transfer (it may hold stray
    /// bytes then).
    static SPLICE_PIPE: RefCell<Option<SplicePipe>> = const { RefCell::new(None) };
}

impl Spool {
    /// Creates an unnamed file in the temporary directory (O_TMPFILE, or a
    /// named file removed at once where the file system lacks it).
    pub fn create() -> io::Result<Spool> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::temp_dir();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(&dir)
            .or_else(|_| {
                static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path = dir.join(format!("ferrowsgi-body-{}-{n}", std::process::id()));
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                std::fs::remove_file(&path)?;
                Ok::<_, io::Error>(f)
            })?;
        Ok(Spool {
            file,
            len: 0,
            read_pos: 0,
            size: 0,
            splice: true,
            failed: None,
        })
    }

    /// Appends `data` to the file.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(data, self.len)?;
        self.len += data.len() as u64;
        self.size = self.size.max(self.len);
        Ok(())
    }

    /// Moves up to `max` bytes from socket `sock` to the end of the file
    /// with splice(2), through this thread's pipe.
    pub(crate) fn splice_from(&mut self, sock: RawFd, max: usize) -> Spliced {
        SPLICE_PIPE.with(|cell| {
            let Ok(mut slot) = cell.try_borrow_mut() else {
                return Spliced::Unsupported;
            };
            if slot.is_none() {
                match SplicePipe::new() {
                    Ok(pipe) => *slot = Some(pipe),
                    Err(_) => return Spliced::Unsupported,
                }
            }
            let Some(pipe) = slot.as_ref() else {
                return Spliced::Unsupported;
            };
            let Ok(mut offset) = i64::try_from(self.len) else {
                return Spliced::Unsupported;
            };
            let moved = pipe.socket_to_file(sock, self.file.as_raw_fd(), &mut offset, max);
            self.len = u64::try_from(offset).unwrap_or(self.len);
            self.size = self.size.max(self.len);
            if matches!(moved, Spliced::File(_)) {
                *slot = None;
            }
            moved
        })
    }

    /// Appends `data` to the file and empties it.
    pub fn append(&mut self, data: &mut Vec<u8>) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(data, self.len)?;
        self.len += data.len() as u64;
        self.size = self.size.max(self.len);
        data.clear();
        Ok(())
    }

    /// Reads unread bytes into `out` (as many as fit, up to the end of the
    /// body); returns how many. `out` need not be initialised: the first
    /// `n` bytes are, when `Ok(n)` returns.
    pub fn read_at_most(&mut self, out: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        let want = (self.len - self.read_pos).min(out.len() as u64) as usize;
        let mut got = 0;
        while got < want {
            let Ok(at) = libc::off_t::try_from(self.read_pos + got as u64) else {
                break;
            };
            let dest = &mut out[got..want];
            // SAFETY: pread(2) writes at most `dest.len()` bytes into `dest`,
            // a live, writable slice; the descriptor is our open file.
            let rc = unsafe {
                libc::pread(
                    self.file.as_raw_fd(),
                    dest.as_mut_ptr().cast(),
                    dest.len(),
                    at,
                )
            };
            match rc {
                0 => break,
                n if n > 0 => got += n as usize,
                _ => {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Err(err);
                    }
                }
            }
        }
        self.read_pos += got as u64;
        Ok(got)
    }

    /// Appends up to `max` unread bytes to `out`; returns how many.
    pub fn read_into(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let want = (self.len - self.read_pos).min(max as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        out.reserve(want);
        let start = out.len();
        let got = self.read_at_most(&mut out.spare_capacity_mut()[..want])?;
        // SAFETY: `read_at_most` initialised the first `got` bytes of the
        // spare capacity, right after the vector's `start` bytes.
        unsafe { out.set_len(start + got) };
        Ok(got)
    }
}
