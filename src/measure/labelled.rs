//! Labelled image sets, in the layouts public test sets come in:
//!
//! - a folder holding `real/` and `fake/` (or `0_real/` and `1_fake/`);
//! - a folder of such folders, one per generator, at any depth (CNNDetection, UniversalFakeDetect):
//!   each folder holding a class pair is a subset, named by its path below the root;
//! - a CSV with `file_name` and `label` columns (Kaggle style; label `0`/`1` or `real`/`fake`,
//!   paths relative to the CSV) and an optional `generator` column that makes subsets.
//!
//! A set is a list of labelled roots: class folders, which the walk lists as `scan` would, or
//! single files from a CSV. Rows are matched back to their label by the root they were found
//! under.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("{0}: no such file or folder")]
    Missing(PathBuf),
    #[error("{0}: no labelled images found: expected real/ and fake/ (or 0_real/ and 1_fake/) folders, folders holding them, or a CSV with file_name and label columns")]
    NoLayout(PathBuf),
    #[error("{path}: {problem}")]
    Csv { path: PathBuf, problem: String },
}

/// Where one labelled group of images is: a class folder, or one file of a CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct Root {
    pub path: PathBuf,
    pub fake: bool,
    /// The subset it belongs to; empty for a set without subsets.
    pub subset: String,
    /// A single file named by a CSV, which is expected to have a row of its own.
    pub listed: bool,
}

/// What is known about a labelled set before any image is read.
#[derive(Debug, Clone, Default)]
pub struct LabelledSet {
    pub roots: Vec<Root>,
}

const REAL_NAMES: [&str; 2] = ["real", "0_real"];
const FAKE_NAMES: [&str; 2] = ["fake", "1_fake"];

/// The class a folder name stands for, if any (case-insensitive).
fn class_of(name: &str) -> Option<bool> {
    let name = name.to_ascii_lowercase();
    if REAL_NAMES.contains(&name.as_str()) {
        Some(false)
    } else if FAKE_NAMES.contains(&name.as_str()) {
        Some(true)
    } else {
        None
    }
}

impl LabelledSet {
    /// Reads the layout of every path. With several paths, each one's name prefixes its subsets,
    /// so that two test sets side by side stay apart.
    pub fn discover(paths: &[PathBuf]) -> Result<Self, LabelError> {
        let mut set = LabelledSet::default();
        for path in paths {
            let prefix = if paths.len() > 1 {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.display().to_string())
            } else {
                String::new()
            };
            let found = if path.is_file() {
                read_csv(path)?
            } else if path.is_dir() {
                let mut roots = Vec::new();
                folder_roots(path, path, &mut roots);
                if roots.is_empty() {
                    return Err(LabelError::NoLayout(path.clone()));
                }
                roots
            } else {
                return Err(LabelError::Missing(path.clone()));
            };
            set.roots.extend(found.into_iter().map(|mut r| {
                r.subset = join_subset(&prefix, &r.subset);
                r
            }));
        }
        Ok(set)
    }

    /// Whether any root names a subset.
    pub fn has_subsets(&self) -> bool {
        self.roots.iter().any(|r| !r.subset.is_empty())
    }

    /// Finds the label of walked paths: exact for a CSV's files, by the longest class folder
    /// that holds the path otherwise.
    pub fn matcher(&self) -> Matcher<'_> {
        let mut exact = HashMap::new();
        let mut folders = Vec::new();
        for (i, r) in self.roots.iter().enumerate() {
            exact.insert(normalize(&r.path), i);
            folders.push((normalize(&r.path), i));
        }
        // Longest first, so that a nested class folder wins over the one holding it.
        folders.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        Matcher {
            set: self,
            exact,
            folders,
        }
    }
}

fn join_subset(prefix: &str, subset: &str) -> String {
    match (prefix.is_empty(), subset.is_empty()) {
        (true, _) => subset.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}/{subset}"),
    }
}

/// Looks up which root a path belongs to.
pub struct Matcher<'a> {
    set: &'a LabelledSet,
    exact: HashMap<PathBuf, usize>,
    folders: Vec<(PathBuf, usize)>,
}

impl Matcher<'_> {
    pub fn find(&self, path: &Path) -> Option<&Root> {
        let path = normalize(path);
        let i = self.exact.get(&path).copied().or_else(|| {
            self.folders
                .iter()
                .find(|(root, _)| path.starts_with(root))
                .map(|(_, i)| *i)
        })?;
        Some(&self.set.roots[i])
    }
}

/// A path without `.` components, so that `./a/b` and `a/b` are one key.
pub fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Collects the class folders at and below `dir`; a class folder itself is not searched further
/// (its subfolders are part of its class).
fn folder_roots(root: &Path, dir: &Path, out: &mut Vec<Root>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut children: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    children.sort();
    let subset = dir
        .strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut others = Vec::new();
    for child in children {
        let class = child
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(class_of);
        match class {
            Some(fake) => out.push(Root {
                path: child,
                fake,
                subset: subset.clone(),
                listed: false,
            }),
            None => others.push(child),
        }
    }
    for child in others {
        folder_roots(root, &child, out);
    }
}

/// The label a CSV cell gives.
fn parse_label(cell: &str) -> Option<bool> {
    match cell.trim().to_ascii_lowercase().as_str() {
        "0" | "real" => Some(false),
        "1" | "fake" => Some(true),
        _ => None,
    }
}

/// Reads a labels CSV: one root per listed file, paths relative to the CSV's folder.
pub fn read_csv(path: &Path) -> Result<Vec<Root>, LabelError> {
    let err = |problem: String| LabelError::Csv {
        path: path.to_path_buf(),
        problem,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| err(e.to_string()))?;
    let headers = reader.headers().map_err(|e| err(e.to_string()))?.clone();
    let column = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    let file_col = column(&["file_name", "filename", "path"])
        .ok_or_else(|| err("no file_name column".into()))?;
    let label_col = column(&["label"]).ok_or_else(|| err("no label column".into()))?;
    let generator_col = column(&["generator"]);
    let base = path.parent().unwrap_or(Path::new(""));
    let mut roots = Vec::new();
    let mut seen: HashMap<PathBuf, bool> = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| err(e.to_string()))?;
        let file = record.get(file_col).unwrap_or_default();
        if file.is_empty() {
            return Err(err(format!("line {line}: empty file_name")));
        }
        let label = record.get(label_col).unwrap_or_default();
        let fake = parse_label(label).ok_or_else(|| {
            err(format!(
                "line {line}: label '{label}' is neither 0/1 nor real/fake"
            ))
        })?;
        let file_path = normalize(&base.join(file));
        match seen.get(&file_path) {
            Some(&before) if before != fake => {
                return Err(err(format!(
                    "line {line}: {file} is listed again with the other label"
                )))
            }
            Some(_) => continue,
            None => {
                seen.insert(file_path.clone(), fake);
            }
        }
        let subset = generator_col
            .and_then(|c| record.get(c))
            .unwrap_or_default()
            .to_string();
        roots.push(Root {
            path: file_path,
            fake,
            subset,
            listed: true,
        });
    }
    if roots.is_empty() {
        return Err(err("no rows".into()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pairs_at_any_depth_and_names_subsets_by_path() {
        let dir = tempfile::tempdir().unwrap();
        for d in [
            "gan/apple/0_real",
            "gan/apple/1_fake",
            "sd/real",
            "sd/fake/x",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let set = LabelledSet::discover(&[dir.path().to_path_buf()]).unwrap();
        let got: Vec<(String, bool)> = set
            .roots
            .iter()
            .map(|r| (r.subset.clone(), r.fake))
            .collect();
        assert_eq!(
            got,
            [
                ("gan/apple".into(), false),
                ("gan/apple".into(), true),
                ("sd".into(), true),
                ("sd".into(), false)
            ]
        );
        let m = set.matcher();
        let hit = m.find(&dir.path().join("sd/fake/x/a.png")).unwrap();
        assert!(hit.fake && hit.subset == "sd");
        assert!(m.find(&dir.path().join("elsewhere.png")).is_none());
    }

    #[test]
    fn reads_a_kaggle_csv_and_refuses_bad_labels() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("labels.csv");
        std::fs::write(
            &csv,
            "file_name,label,generator\na.jpg,0,\nimg/b.png,FAKE,sdxl\n",
        )
        .unwrap();
        let roots = read_csv(&csv).unwrap();
        assert_eq!(roots.len(), 2);
        assert_eq!(roots[1].path, dir.path().join("img/b.png"));
        assert!(roots[1].fake && roots[1].subset == "sdxl" && !roots[0].fake);
        std::fs::write(&csv, "file_name,label\na.jpg,maybe\n").unwrap();
        let e = read_csv(&csv).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("maybe"), "{e}");
    }
}
