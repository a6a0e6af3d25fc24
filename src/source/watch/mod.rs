//! Following folders as files arrive: the files already there first, then every file created,
//! changed or moved in, each handed on once it is complete.
//!
//! Complete means: on Linux, where inotify reports close-after-write, a file we saw being written
//! is ready once it is closed, and a file moved in by rename is ready at once (a rename is
//! atomic). A name made by a hard link or a symlink was never opened for writing, so no close
//! will come: it follows the settle rule. Otherwise (files found by walking, a platform without close events, polling) a file
//! is ready once its size and modification time have not changed for the settle interval. Bursts
//! of events for one path are merged: a path is looked at only after it has been quiet for a
//! short debounce.
//!
//! A file's identity is its path, size and modification time ([`FileKey`]). The caller passes
//! the [`Ledger`] of identities already scored (rebuilt from the output), and the watcher hands
//! on a file only when its identity is new, so a restart skips what was done and a changed file
//! is scored again. Which paths are candidates is decided by the same rule as a walk's
//! ([`WalkOptions::classify`]); when a waiting file is due is decided by its [`Readiness`].

pub mod ledger;
pub mod readiness;
pub mod resume;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};

use super::walk::{self, Kind, WalkOptions};
use super::{Candidate, Version};
pub use ledger::{read_ledger, FileKey, Ledger};
use readiness::{Pending, Readiness, DEBOUNCE};

/// The longest the watcher sleeps before looking at the stop flag and the pending files.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// The shortest delay before a new folder is walked a second time.
const REWALK_MIN: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Roots (absolute, so that rows name files the same way across restarts), extensions and
    /// symlink policy, as for a walk.
    pub walk: WalkOptions,
    /// How long size and modification time must stay unchanged when no close event tells.
    pub settle: Duration,
    /// Poll instead of using the platform's notifications.
    pub poll: bool,
    pub poll_interval: Duration,
    /// Folders whose files are never candidates (the output folder, when inside a root).
    pub exclude: Vec<PathBuf>,
}

/// What the first walk found, so that callers can log it.
#[derive(Debug, Clone, Copy, Default)]
pub struct InitialScan {
    pub found: u64,
    /// Handed on to the pipeline.
    pub queued: u64,
    /// Skipped: the same path, size and time already has a row.
    pub already_scored: u64,
    /// Still changing; handed on once complete.
    pub waiting: u64,
}

/// Runs until `stop` is set or `emit` returns false. `scored` holds the identities already
/// scored; `on_initial` is called once the files found at start have been looked at (those
/// already complete are handed on by then).
pub fn watch(
    opts: &WatchOptions,
    scored: Ledger,
    stop: &AtomicBool,
    on_initial: &mut dyn FnMut(InitialScan),
    emit: &mut dyn FnMut(Candidate) -> bool,
) {
    let (tx, rx) = mpsc::channel();
    let mut w = State {
        opts,
        scored,
        pending: HashMap::new(),
        close_events: false,
        backend: None,
        tx,
        emitted: 0,
        skipped: 0,
        rewalks: Vec::new(),
    };
    // Notifications start before the walk, so a file created during the walk is not missed.
    w.start_backend(opts.poll);
    let found = w.rescan();
    // Versions of files that are gone need no remembering: a file that comes back is new.
    let pending = &w.pending;
    w.scored.retain(|p| pending.contains_key(p));
    if !w.check_pending(emit) {
        return;
    }
    on_initial(InitialScan {
        found,
        queued: w.emitted,
        already_scored: w.skipped,
        waiting: w.pending.len() as u64,
    });
    w.run(&rx, stop, emit);
}

enum Backend {
    // Held only to keep notifications flowing.
    Native(#[allow(dead_code)] notify::RecommendedWatcher),
    Poll(#[allow(dead_code)] notify::PollWatcher),
}

struct State<'a> {
    opts: &'a WatchOptions,
    scored: Ledger,
    pending: HashMap<PathBuf, Pending>,
    /// Whether the backend reports close-after-write.
    close_events: bool,
    backend: Option<Backend>,
    tx: mpsc::Sender<notify::Result<Event>>,
    emitted: u64,
    skipped: u64,
    /// New folders to walk again, and when.
    rewalks: Vec<(Instant, PathBuf)>,
}

impl State<'_> {
    fn start_backend(&mut self, poll: bool) {
        self.backend = None;
        if !poll {
            match self.watch_roots_natively() {
                Ok(w) => {
                    self.backend = Some(Backend::Native(w));
                    // inotify reports IN_CLOSE_WRITE; the other platforms' backends do not.
                    self.close_events = cfg!(target_os = "linux");
                    tracing::info!(
                        "watching {} folder(s) for changes",
                        self.opts.walk.roots.len()
                    );
                    return;
                }
                Err(e) => tracing::warn!(
                    "file notifications unavailable ({e}); falling back to polling every {:?}",
                    self.opts.poll_interval
                ),
            }
        }
        self.close_events = false;
        let config = notify::Config::default().with_poll_interval(self.opts.poll_interval);
        match notify::PollWatcher::new(self.tx.clone(), config) {
            Ok(mut w) => {
                for root in &self.opts.walk.roots {
                    if let Err(e) = w.watch(root, RecursiveMode::Recursive) {
                        tracing::warn!("cannot poll {}: {e}", root.display());
                    }
                }
                self.backend = Some(Backend::Poll(w));
                tracing::info!(
                    "polling {} folder(s) every {:?}",
                    self.opts.walk.roots.len(),
                    self.opts.poll_interval
                );
            }
            // Without any backend the settle rule still works on rescans; say so loudly.
            Err(e) => tracing::error!("cannot poll for changes: {e}"),
        }
    }

    fn watch_roots_natively(&self) -> notify::Result<notify::RecommendedWatcher> {
        let mut w = notify::recommended_watcher(self.tx.clone())?;
        for root in &self.opts.walk.roots {
            w.watch(root, RecursiveMode::Recursive)?;
        }
        Ok(w)
    }

    fn run(
        &mut self,
        rx: &Receiver<notify::Result<Event>>,
        stop: &AtomicBool,
        emit: &mut dyn FnMut(Candidate) -> bool,
    ) {
        let mut rescan_due = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let first = match rx.recv_timeout(self.next_wait()) {
                Ok(ev) => Some(ev),
                Err(RecvTimeoutError::Timeout) => None,
                // Our own sender lives in `self`, so this does not happen; stop cleanly if it does.
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // Take the whole queue before looking at files: a burst is handled as one.
            for ev in first.into_iter().chain(rx.try_iter()) {
                rescan_due |= self.on_event(ev);
            }
            if rescan_due {
                rescan_due = false;
                self.rescan();
            }
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.rewalks)
                .into_iter()
                .partition(|(t, _)| *t <= now);
            self.rewalks = later;
            for (_, dir) in due {
                let mut opts = self.opts.walk.clone();
                opts.roots = vec![dir];
                self.discover(&opts);
            }
            if !self.check_pending(emit) {
                return;
            }
        }
    }

    fn next_wait(&self) -> Duration {
        if self.pending.is_empty() && self.rewalks.is_empty() {
            MAX_WAIT
        } else {
            DEBOUNCE.min(MAX_WAIT)
        }
    }

    /// Returns whether the whole tree must be walked again.
    fn on_event(&mut self, ev: notify::Result<Event>) -> bool {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                    tracing::warn!(
                        "the inotify watch limit is reached (fs.inotify.max_user_watches); \
                         falling back to polling every {:?}",
                        self.opts.poll_interval
                    );
                    self.start_backend(true);
                    return true;
                }
                tracing::warn!("file notification error: {e}");
                return false;
            }
        };
        if ev.need_rescan() {
            tracing::warn!("file notifications overflowed; walking the folders again");
            return true;
        }
        let now = Instant::now();
        for path in &ev.paths {
            if self.excluded(path) {
                continue;
            }
            match ev.kind {
                EventKind::Create(CreateKind::Folder) => self.walk_into(path),
                EventKind::Create(_) => self.created(path, now),
                EventKind::Modify(ModifyKind::Name(RenameMode::From)) => self.forget(path),
                EventKind::Modify(ModifyKind::Name(RenameMode::To)) => self.renamed_in(path, now),
                // From and To came as their own events.
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {}
                EventKind::Modify(ModifyKind::Name(_)) => {
                    if path.symlink_metadata().is_ok() {
                        self.renamed_in(path, now);
                    } else {
                        self.forget(path);
                    }
                }
                EventKind::Modify(ModifyKind::Metadata(_)) => self.touch(path, now, false),
                EventKind::Modify(_) => self.touch(path, now, true),
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    if let Some(p) = self.pending.get_mut(path) {
                        p.closed(now);
                    }
                }
                EventKind::Remove(_) => self.forget(path),
                // Opens and reads (our own included) change nothing.
                _ => {}
            }
        }
        false
    }

    fn excluded(&self, path: &Path) -> bool {
        self.opts.exclude.iter().any(|e| path.starts_with(e))
    }

    fn touch(&mut self, path: &Path, now: Instant, wrote: bool) {
        if path.is_dir() {
            return;
        }
        self.pending
            .entry(path.to_path_buf())
            .or_insert_with(|| Pending::new(Readiness::Settling, now))
            .touched(now, wrote, self.close_events);
    }

    /// A new file is being written until it is closed, unless its name was made by link(2) or
    /// symlink(2): no writer opened it by that name, so no close-write will ever be reported
    /// for it, and waiting for one would hold it for the whole close patience. Such a name
    /// settles instead, which still holds back a file that is being written under another name.
    fn created(&mut self, path: &Path, now: Instant) {
        let linked = path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink() || (m.is_file() && hard_links(&m) > 1));
        self.touch(path, now, !linked);
    }

    /// A rename is atomic: whatever arrives by one is complete.
    fn renamed_in(&mut self, path: &Path, now: Instant) {
        if path.is_dir() {
            self.walk_into(path);
        } else {
            self.moved_in(path, now);
        }
    }

    /// A path that is gone (removed, or renamed away), with everything under it.
    fn forget(&mut self, path: &Path) {
        self.pending.retain(|p, _| !p.starts_with(path));
        self.scored.forget(path);
    }

    /// A folder that appeared: its files may predate its watch, so walk it.
    fn walk_into(&mut self, dir: &Path) {
        if self.has_image_extension(dir) {
            // A walk does not report its own root; this becomes a not-a-file row when looked at.
            self.moved_in(dir, Instant::now());
        }
        let mut opts = self.opts.walk.clone();
        opts.roots = vec![dir.to_path_buf()];
        self.discover(&opts);
        // The notification backend adds its watch on a new folder only after reporting it, so
        // a file created there in between is seen by neither that watch nor the walk above.
        // Walking once more later catches it; files found twice are merged.
        self.rewalks.push((
            Instant::now() + self.opts.settle.max(REWALK_MIN),
            dir.to_path_buf(),
        ));
    }

    fn moved_in(&mut self, path: &Path, now: Instant) {
        self.pending
            .insert(path.to_path_buf(), Pending::new(Readiness::Complete, now));
    }

    /// Walks every root; returns how many candidates it found.
    fn rescan(&mut self) -> u64 {
        let opts = self.opts.walk.clone();
        self.discover(&opts)
    }

    fn discover(&mut self, opts: &WalkOptions) -> u64 {
        let mut found = Vec::new();
        walk::walk(opts, |c| {
            found.push(c);
            true
        });
        let n = found.len() as u64;
        let now = Instant::now();
        for c in found {
            if self.excluded(&c.path) || self.pending.contains_key(&c.path) {
                continue;
            }
            // A file whose modification time is a settle interval old has been quiet that long:
            // it is ready at the first look. A newer one waits like any changed file.
            let md = std::fs::metadata(&c.path).ok();
            let age = md
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok());
            let quiet_since = match age {
                Some(a) if a >= self.opts.settle => {
                    now.checked_sub(self.opts.settle).unwrap_or(now)
                }
                _ => now,
            };
            let readiness = if c.defect.is_some() {
                Readiness::Defect(c.clone())
            } else {
                Readiness::Settling
            };
            let mut pending = Pending::new(readiness, quiet_since);
            pending.seen = md.as_ref().and_then(Version::of);
            self.pending.insert(c.path, pending);
        }
        n
    }

    /// Hands on every pending file that is complete; false when the pipeline is stopping.
    fn check_pending(&mut self, emit: &mut dyn FnMut(Candidate) -> bool) -> bool {
        let now = Instant::now();
        let settle = self.opts.settle;
        let mut due: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due(now, settle))
            .map(|(path, _)| path.clone())
            .collect();
        due.sort();
        for path in due {
            let Some(p) = self.pending.get_mut(&path) else {
                continue;
            };
            let md = std::fs::metadata(&path);
            let now_seen = md.as_ref().ok().and_then(Version::of);
            if !p.is_final() && now_seen != p.seen {
                // Still changing: look again a settle interval from now.
                p.seen = now_seen;
                p.changed = now;
                continue;
            }
            let defect = match self.pending.remove(&path).map(|p| p.readiness) {
                Some(Readiness::Defect(c)) => Some(c),
                _ => None,
            };
            let Some(mut candidate) = defect.or_else(|| self.candidate(&path, md.as_ref().ok()))
            else {
                continue;
            };
            let key = FileKey::of(&path, md.as_ref().ok());
            if self.scored.contains(&key) {
                self.skipped += 1;
                continue;
            }
            // A file rewritten after this look is handed on again (its events make it pending
            // again), so the pipeline may drop this version if it finds another when reading.
            if candidate.defect.is_none() {
                candidate.version = now_seen;
            }
            if !emit(candidate) {
                return false;
            }
            self.emitted += 1;
            self.scored.insert(key);
        }
        true
    }

    /// Whether a complete path is wanted, by the walk's rule. `md` follows links, so a link
    /// shows as what it points to, and a dangling one as a link (an I/O error when read); a
    /// path that is simply gone was deleted before it was complete.
    fn candidate(&self, path: &Path, md: Option<&std::fs::Metadata>) -> Option<Candidate> {
        let kind = match md {
            Some(m) => Kind::of(m.file_type()),
            None if path.symlink_metadata().is_ok() => Kind::Symlink,
            None => return None,
        };
        self.opts.walk.classify(path, kind, false)
    }

    fn has_image_extension(&self, path: &Path) -> bool {
        self.opts.walk.has_image_extension(path)
    }
}

#[cfg(unix)]
fn hard_links(md: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::nlink(md)
}

#[cfg(not(unix))]
fn hard_links(_md: &std::fs::Metadata) -> u64 {
    1
}
