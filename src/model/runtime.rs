//! Finding and loading the ONNX Runtime shared library.
//!
//! The scanner links ONNX Runtime at run time (`ort`'s `load-dynamic`), so one binary works with
//! the CPU library from the `onnxruntime` wheel or the GPU one from `onnxruntime-gpu`. The
//! library is looked for in a fixed order, and a missing one is a clear error that says how to
//! install it, before any file is touched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library (libonnxruntime.so) not found.\n  Install it with `scripts/install-ort` (fetches the onnxruntime wheel from PyPI into .ort/),\n  or point ORT_DYLIB_PATH at a libonnxruntime.so, e.g. site-packages/onnxruntime/capi/ after `pip install onnxruntime`.\n  Looked in: {looked}")]
    NotFound { looked: String },
    #[error("cannot load ONNX Runtime from {path}: {reason}")]
    Load { path: PathBuf, reason: String },
}

/// A loaded ONNX Runtime and its environment; sessions are created from it.
pub struct Runtime {
    pub env: ort::environment::Environment,
    pub library: PathBuf,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .finish()
    }
}

static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();

impl Runtime {
    /// Loads the library once per process; later calls return the same runtime. `gpu` looks
    /// for the GPU build (`.ort-gpu/`) first.
    pub fn load(explicit: Option<&Path>, gpu: bool) -> Result<Arc<Runtime>, RuntimeError> {
        if let Some(rt) = RUNTIME.get() {
            return Ok(rt.clone());
        }
        let library = locate(explicit, gpu)?;
        let load_err = |reason: String| RuntimeError::Load {
            path: library.clone(),
            reason,
        };
        let env = ort::init_from(&library)
            .map_err(|e| load_err(e.to_string()))?
            .with_name("synthscan")
            .build()
            .map_err(|e| load_err(e.to_string()))?;
        tracing::debug!(library = %library.display(), "loaded ONNX Runtime");
        let rt = Arc::new(Runtime { env, library });
        Ok(RUNTIME.get_or_init(|| rt).clone())
    }
}

/// The search order: the explicit path (`--ort-lib` or `ORT_DYLIB_PATH`), `.ort/` in the working
/// directory, beside the binary (and the repository's `.ort/` for a cargo build), the user's data
/// folder, then an active or repository-local Python virtual environment's `onnxruntime` package.
/// For a GPU run, the same places' `.ort-gpu/` come first.
pub fn locate(explicit: Option<&Path>, gpu: bool) -> Result<PathBuf, RuntimeError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(RuntimeError::NotFound {
                looked: format!("{} (given explicitly; no such file)", p.display()),
            })
        };
    }
    let mut dirs = search_dirs();
    if gpu {
        let gpu_dirs: Vec<PathBuf> = dirs
            .iter()
            .filter(|d| d.ends_with(".ort"))
            .map(|d| d.with_file_name(".ort-gpu"))
            .collect();
        dirs.splice(0..0, gpu_dirs);
    }
    for dir in &dirs {
        if let Some(lib) = library_in(dir) {
            return Ok(lib);
        }
    }
    Err(RuntimeError::NotFound {
        looked: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(".ort")];
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.clone());
        dirs.push(exe_dir.join("../lib"));
        dirs.push(exe_dir.join("../../.ort"));
    }
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(d) = data_home {
        dirs.push(d.join("synthscan/ort"));
    }
    let venvs = std::env::var_os("VIRTUAL_ENV")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("train/.venv"), PathBuf::from(".venv")]);
    for venv in venvs {
        if let Ok(entries) = std::fs::read_dir(venv.join("lib")) {
            for e in entries.flatten() {
                dirs.push(e.path().join("site-packages/onnxruntime/capi"));
            }
        }
    }
    dirs
}

/// The newest `libonnxruntime.so*` in a folder (not the provider libraries beside it).
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut libs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "libonnxruntime.so" || n.starts_with("libonnxruntime.so."))
        })
        .collect();
    libs.sort();
    libs.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_core_library_not_the_providers() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "libonnxruntime_providers_shared.so",
            "libonnxruntime.so.1.31.1",
            "README",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(
            library_in(dir.path()).unwrap(),
            dir.path().join("libonnxruntime.so.1.31.1")
        );
    }

    #[test]
    fn a_missing_explicit_library_says_how_to_install() {
        let err = locate(Some(Path::new("/nonexistent/libonnxruntime.so")), false).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("scripts/install-ort") && msg.contains("/nonexistent"),
            "{msg}"
        );
    }
}
