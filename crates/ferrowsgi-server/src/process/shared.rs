//! Small regions of memory the master shares with the workers it forks.

use std::io;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Atomics that are valid when all their bytes are zero, so that a fresh
/// anonymous mapping is an initialised value of the type.
///
/// # Safety
/// An implementing type must be valid when zero-filled and must be
/// reached through atomics only (it is shared between processes).
pub(crate) unsafe trait ZeroedAtomics: Sync + 'static {}

/// A region of `T` mapped once, before the first fork, and shared (one
/// `MAP_SHARED | MAP_ANONYMOUS` mapping, never unmapped) with every process
/// forked after it. Outside a master's processes it is never made.
pub(crate) struct SharedRegion<T: ZeroedAtomics>(AtomicPtr<T>);

impl<T: ZeroedAtomics> SharedRegion<T> {
    /// A region not made yet.
    pub(crate) const fn new() -> Self {
        SharedRegion(AtomicPtr::new(std::ptr::null_mut()))
    }

    /// Makes the region (in the master, before any fork); later calls do
    /// nothing.
    pub(crate) fn setup(&self) -> io::Result<()> {
        if !self.0.load(Ordering::Acquire).is_null() {
            return Ok(());
        }
        // SAFETY: an anonymous mapping with no address hint touches no
        // existing memory; the result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<T>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        self.0.store(ptr.cast(), Ordering::Release);
        Ok(())
    }

    /// The region, once made.
    pub(crate) fn get(&self) -> Option<&'static T> {
        let ptr = self.0.load(Ordering::Acquire);
        // SAFETY: a non-null pointer is the mapping made by `setup`: page
        // aligned, large enough for `T`, zero-filled by the kernel (a valid
        // `T`, see `ZeroedAtomics`), never unmapped, and only reached
        // through atomics, so sharing it with other processes is sound.
        (!ptr.is_null()).then(|| unsafe { &*ptr })
    }
}
