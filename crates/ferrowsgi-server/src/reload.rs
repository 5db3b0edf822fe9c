//! `--reload`: watching the application's files with inotify.
//!
//! The master creates the watcher ([`Watcher::new`]) before it forks, and
//! polls its one descriptor ([`Watcher::fd`]) beside its pipes. The files
//! worth watching are known only where the application was imported: each
//! worker, once it has loaded the application, adds the files of every
//! module it imported ([`watch_files`]) to the same inotify instance,
//! which it inherited from the master, so the master learns of a change
//! without any message from the worker. A change makes the master reload
//! as on `SIGHUP` (new workers, then the old ones drain), and a new worker
//! that cannot import the changed code leaves the old ones serving.
//!
//! Files are watched one by one (not their directories), for what makes a
//! module change: its content written and closed, its metadata touched
//! (`touch app.py`), or the file renamed or deleted, which is how many
//! editors save (a new file renamed over the old one). The new file is
//! watched by the workers that import it after the reload.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask, Watches};

use crate::log;
use crate::sys::{wait_fd, Want};

/// Once a change is seen, events are collected until none came for this
/// long (an editor's save is several events: write, rename, attributes),
/// so that one save makes one reload.
const QUIET: Duration = Duration::from_millis(100);
/// The most time spent collecting one burst of events.
const BURST_MAX: Duration = Duration::from_millis(500);

/// What makes a watched file count as changed.
fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE | WatchMask::ATTRIB | WatchMask::MOVE_SELF | WatchMask::DELETE_SELF
}

/// The inotify instance that workers add their files to: the master's,
/// inherited across the fork. Set by [`Watcher::new`].
static SHARED: Mutex<Option<Watches>> = Mutex::new(None);

/// Whether `--reload` watches in this process (the master made a
/// [`Watcher`] before forking it).
pub fn is_on() -> bool {
    SHARED.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// Watches `paths` (files that exist; others are skipped) in the master's
/// inotify instance. Called in a worker once it loaded the application
/// (or failed to), with the files of the modules it imported. Returns how
/// many are watched; 0 without `--reload`. Running out of inotify watches
/// is logged (once per call).
pub fn watch_files<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> usize {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let Some(watches) = shared.as_mut() else {
        return 0;
    };
    let mut count = 0;
    for p in paths {
        match watches.add(p.as_ref(), mask()) {
            Ok(_) => count += 1,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                log::warning(&format!(
                    "--reload watches {count} files: no more inotify watches \
                     (fs.inotify.max_user_watches); changes to the others are not seen"
                ));
                break;
            }
            // Gone meanwhile, or not a file we may read: nothing to watch.
            Err(_) => {}
        }
    }
    count
}

/// The master's side of `--reload`: the inotify instance and the extra
/// files it watches itself.
#[derive(Debug)]
pub struct Watcher {
    inotify: Inotify,
    extra: Vec<PathBuf>,
}

impl Watcher {
    /// Creates the inotify instance shared with the workers forked later,
    /// and watches `extra` (`--reload-extra-file`). A missing extra file is
    /// an error naming it (one line).
    pub fn new(extra: Vec<PathBuf>) -> Result<Watcher, String> {
        let inotify = Inotify::init().map_err(|e| format!("cannot start inotify: {e}"))?;
        let mut watches = inotify.watches();
        for p in &extra {
            watches
                .add(p, mask())
                .map_err(|e| format!("cannot watch {} (--reload-extra-file): {e}", p.display()))?;
        }
        *SHARED.lock().unwrap_or_else(|e| e.into_inner()) = Some(inotify.watches());
        Ok(Watcher { inotify, extra })
    }

    /// The descriptor to poll for input.
    pub fn fd(&self) -> RawFd {
        self.inotify.as_raw_fd()
    }

    /// Reads what the descriptor has and returns whether a watched file
    /// changed (not when the only news is of watches that went away). After
    /// a change it goes on reading until the burst is over (at most half a
    /// second, during which it blocks: a development setting), so that one
    /// save makes one reload, and it watches the extra files again, in case
    /// the change replaced them.
    pub fn on_readable(&mut self) -> bool {
        let started = Instant::now();
        let mut changed = false;
        loop {
            changed |= self.read_events();
            if !changed || started.elapsed() >= BURST_MAX {
                break;
            }
            if !matches!(wait_fd(self.fd(), Want::Read, QUIET), Ok(true)) {
                break;
            }
        }
        if changed {
            let mut watches = self.inotify.watches();
            for p in &self.extra {
                let _ = watches.add(p, mask());
            }
        }
        changed
    }

    /// Reads every event queued now; whether one was a change.
    fn read_events(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let mut changed = false;
        loop {
            let events = match self.inotify.read_events(&mut buf) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: all read.
                Err(_) => return changed,
            };
            let mut any = false;
            for ev in events {
                any = true;
                // IN_IGNORED alone: a watch went away (its file was
                // deleted, which was reported by its own event).
                changed |= ev.mask != EventMask::IGNORED;
            }
            if !any {
                return changed;
            }
        }
    }
}

impl crate::process::Source for Watcher {
    fn fd(&self) -> RawFd {
        Watcher::fd(self)
    }

    fn ready(&mut self) -> crate::process::SourceAction {
        if self.on_readable() {
            log::info("Reloading: a watched file changed");
            crate::process::SourceAction::Reload
        } else {
            crate::process::SourceAction::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the watcher's descriptor has input now. inotify queues an
    /// event inside the system call that caused it, so no wait is needed.
    fn pending(w: &Watcher) -> bool {
        matches!(wait_fd(w.fd(), Want::Read, Duration::ZERO), Ok(true))
    }

    #[test]
    fn changes_to_watched_files_are_seen_and_others_are_not() {
        let dir = std::env::temp_dir().join(format!("fw-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, extra) = (dir.join("a.py"), dir.join("b.py"), dir.join("extra.cfg"));
        for p in [&a, &b, &extra] {
            std::fs::write(p, "x = 1\n").unwrap();
        }
        let mut w = Watcher::new(vec![extra.clone()]).unwrap();
        assert_eq!(watch_files([&a, &dir.join("missing.py")]), 1);

        // A file nobody watches.
        std::fs::write(&b, "x = 2\n").unwrap();
        assert!(!pending(&w));
        // Reading a watched file is no change.
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "x = 1\n");
        assert!(!pending(&w));

        // Written in place.
        std::fs::write(&a, "x = 3\n").unwrap();
        assert!(pending(&w));
        assert!(w.on_readable());
        assert!(!pending(&w));

        // Touched.
        let f = std::fs::File::options().write(true).open(&a).unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
        drop(f);
        assert!(w.on_readable());

        // Saved as editors do: a new file renamed over the old one.
        let tmp = dir.join("a.py.tmp");
        std::fs::write(&tmp, "x = 4\n").unwrap();
        std::fs::rename(&tmp, &a).unwrap();
        assert!(pending(&w));
        assert!(w.on_readable());
        // The new file is watched once a worker imports it again.
        std::fs::write(&a, "x = 5\n").unwrap();
        assert!(!pending(&w));
        assert_eq!(watch_files([&a]), 1);
        std::fs::write(&a, "x = 6\n").unwrap();
        assert!(w.on_readable());

        // An extra file replaced is watched again after the change.
        std::fs::write(&tmp, "y = 1\n").unwrap();
        std::fs::rename(&tmp, &extra).unwrap();
        assert!(w.on_readable());
        std::fs::write(&extra, "y = 2\n").unwrap();
        assert!(w.on_readable());

        // Deleted.
        std::fs::remove_file(&a).unwrap();
        assert!(w.on_readable());
        assert!(!pending(&w));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_extra_file_is_a_one_line_error() {
        let err = Watcher::new(vec![PathBuf::from("/nonexistent/settings.toml")]).unwrap_err();
        assert!(err.contains("/nonexistent/settings.toml"), "{err}");
        assert!(err.contains("--reload-extra-file"), "{err}");
        assert_eq!(err.lines().count(), 1);
    }
}
