//! Recursive directory walk: which files are candidates.
//!
//! A file is a candidate when its extension is one of the image extensions, or when its first
//! bytes are an image signature (so `photo` without an extension, or a `.dat` that is really a
//! JPEG, is scanned; a `.txt` of text is not). Anything with an image name that cannot be
//! scanned (a directory called `x.jpg`, a broken symlink, a loop, an unreadable directory) is
//! still handed on, with a defect, so that it gets a row.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use super::Candidate;
use crate::verdict::Status;

pub const DEFAULT_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "png", "webp", "gif", "bmp", "tif", "tiff",
];

#[derive(Debug, Clone)]
pub struct WalkOptions {
    pub roots: Vec<PathBuf>,
    /// Lower-case extensions without the dot.
    pub extensions: HashSet<String>,
    pub follow_symlinks: bool,
    /// Keep only the files of this shard.
    pub shard: Option<Shard>,
}

/// One of `count` disjoint parts of a corpus, chosen by a hash of each file's path relative to
/// the root it was found under, so that every machine of a fleet agrees on the split whatever
/// the mount point, and reruns pick the same files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub fn contains(&self, relative: &Path) -> bool {
        let digest = blake3::hash(relative.as_os_str().as_encoded_bytes());
        let head = u64::from_le_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes"));
        head % u64::from(self.count) == u64::from(self.index)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("'{s}' is not a shard: write i/N with 0 <= i < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(err)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| err())?,
            n.trim().parse().map_err(|_| err())?,
        );
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }
}

impl WalkOptions {
    pub fn new(roots: Vec<PathBuf>) -> Self {
        WalkOptions {
            roots,
            extensions: DEFAULT_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
            follow_symlinks: false,
            shard: None,
        }
    }

    pub(crate) fn has_image_extension(&self, path: &Path) -> bool {
        path.extension()
            .and_then(OsStr::to_str)
            .is_some_and(|e| self.extensions.contains(&e.to_ascii_lowercase()))
    }
}

/// Walks every root and calls `emit` for each candidate, in a stable order (sorted by name).
/// Stops early when `emit` returns false (the pipeline is shutting down).
pub fn walk(opts: &WalkOptions, mut emit: impl FnMut(Candidate) -> bool) {
    for root in &opts.roots {
        let walker = WalkDir::new(root)
            .follow_links(opts.follow_symlinks)
            .sort_by_file_name();
        for entry in walker {
            let candidate = match entry {
                Ok(entry) => classify(opts, &entry),
                Err(err) => Some(walk_error(root, &err)),
            };
            let in_shard = |c: &Candidate| {
                opts.shard.is_none_or(|shard| {
                    shard.contains(c.path.strip_prefix(root).unwrap_or(&c.path))
                })
            };
            if let Some(c) = candidate.filter(in_shard) {
                if !emit(c) {
                    return;
                }
            }
        }
    }
}

fn classify(opts: &WalkOptions, entry: &walkdir::DirEntry) -> Option<Candidate> {
    // A file named on the command line is always wanted, whatever its name.
    let explicit = entry.depth() == 0;
    opts.classify(entry.path(), Kind::of(entry.file_type()), explicit)
}

/// What a path is, as far as choosing candidates goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A link not followed (walks without `--follow-symlinks`, dangling links).
    Symlink,
    /// A device, socket or pipe.
    Other,
}

impl Kind {
    pub fn of(ft: std::fs::FileType) -> Kind {
        if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other
        }
    }
}

impl WalkOptions {
    /// Whether a path is a candidate, and with which defect: the one rule that walks and
    /// watches share. `explicit` marks a path named on the command line, wanted whatever its
    /// name.
    pub fn classify(&self, path: &Path, kind: Kind, explicit: bool) -> Option<Candidate> {
        let named_like_image = self.has_image_extension(path);
        match kind {
            Kind::Dir => (named_like_image && !explicit)
                .then(|| Candidate::defective(path.into(), Status::NotAFile, "is a directory")),
            // A link with an image name is read through, so a broken or looping link shows up
            // as an I/O error on that row.
            Kind::Symlink => (named_like_image || explicit).then(|| Candidate::file(path.into())),
            Kind::File => (named_like_image || explicit || has_image_signature(path))
                .then(|| Candidate::file(path.into())),
            Kind::Other => (named_like_image || explicit).then(|| {
                Candidate::defective(
                    path.into(),
                    Status::NotAFile,
                    "not a regular file (device, socket or pipe)",
                )
            }),
        }
    }
}

fn walk_error(root: &Path, err: &walkdir::Error) -> Candidate {
    let path = err.path().unwrap_or(root).to_path_buf();
    let message = if let Some(ancestor) = err.loop_ancestor() {
        format!("symlink loop back to {}", ancestor.display())
    } else if err
        .io_error()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        && std::fs::symlink_metadata(&path).is_ok()
    {
        "broken symlink: its target does not exist".to_string()
    } else {
        match err.io_error() {
            Some(io) => io.to_string(),
            None => err.to_string(),
        }
    };
    Candidate::defective(path, Status::IoError, message)
}

/// Whether the first bytes are an image signature (for files without an image name).
fn has_image_signature(path: &Path) -> bool {
    let mut head = [0u8; 16];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    n >= 4 && image::guess_format(&head[..n]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(opts: &WalkOptions) -> Vec<Candidate> {
        let mut out = Vec::new();
        walk(opts, |c| {
            out.push(c);
            true
        });
        out
    }

    #[test]
    fn picks_by_extension_or_signature_and_skips_text() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.JPG"), b"not really").unwrap();
        std::fs::write(d.join("noext"), b"\x89PNG\r\n\x1a\n0000000000").unwrap();
        std::fs::write(d.join("notes.txt"), b"hello world, plain text").unwrap();
        std::fs::create_dir(d.join("x.jpg")).unwrap();
        std::fs::write(d.join("x.jpg").join("inner.png"), b"").unwrap();
        let got: Vec<_> = collect(&WalkOptions::new(vec![d.into()]))
            .into_iter()
            .map(|c| {
                let name = c
                    .path
                    .strip_prefix(d)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                (name, c.defect.map(|d| d.status))
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a.JPG".into(), None),
                ("noext".into(), None),
                ("x.jpg".into(), Some(Status::NotAFile)),
                ("x.jpg/inner.png".into(), None),
            ]
        );
    }

    #[test]
    fn stops_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("{i}.png")), b"").unwrap();
        }
        let mut seen = 0;
        walk(&WalkOptions::new(vec![dir.path().into()]), |_| {
            seen += 1;
            seen < 2
        });
        assert_eq!(seen, 2);
    }

    #[test]
    fn shards_partition_the_files_by_relative_path() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for root in [a.path(), b.path()] {
            std::fs::create_dir(root.join("sub")).unwrap();
            for i in 0..40 {
                std::fs::write(root.join("sub").join(format!("{i}.png")), b"").unwrap();
            }
        }
        let names = |root: &Path, shard: &str| -> Vec<String> {
            let mut opts = WalkOptions::new(vec![root.into()]);
            opts.shard = Some(shard.parse().unwrap());
            collect(&opts)
                .into_iter()
                .map(|c| c.path.strip_prefix(root).unwrap().display().to_string())
                .collect()
        };
        let mut all: Vec<String> = (0..3)
            .flat_map(|i| names(a.path(), &format!("{i}/3")))
            .collect();
        assert!((0..3).all(|i| !names(a.path(), &format!("{i}/3")).is_empty()));
        all.sort();
        let mut expected: Vec<String> = (0..40).map(|i| format!("sub/{i}.png")).collect();
        expected.sort();
        assert_eq!(all, expected, "every file in exactly one shard");
        // Another mount point of the same tree splits the same way.
        assert_eq!(names(a.path(), "1/3"), names(b.path(), "1/3"));
        assert!("3/3".parse::<Shard>().is_err() && "x".parse::<Shard>().is_err());
    }

    #[cfg(unix)]
    #[test]
    fn directory_loop_under_follow_is_a_row() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::os::unix::fs::symlink(dir.path(), sub.join("back")).unwrap();
        let mut opts = WalkOptions::new(vec![dir.path().into()]);
        opts.follow_symlinks = true;
        let rows = collect(&opts);
        assert_eq!(rows.len(), 1);
        let defect = rows[0].defect.as_ref().unwrap();
        assert_eq!(defect.status, Status::IoError);
        assert!(defect.message.contains("loop"), "{}", defect.message);
    }
}
