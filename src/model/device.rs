//! Where inference runs: the CPU, or NVIDIA GPUs through ONNX Runtime's CUDA or TensorRT
//! execution providers.
//!
//! ONNX Runtime quietly runs a session on the CPU when a GPU provider fails to register (a
//! missing `libcublas.so.13`, no device, an old driver). A scan that was meant for eight GPUs
//! would then crawl on the CPU with no word said, so providers are registered with
//! `error_on_failure` and a failure is an error at start, with what is missing and how to fix
//! it, unless the user asked for `--fallback cpu`.

use std::path::{Path, PathBuf};

use ort::ep::{self, ExecutionProviderDispatch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Cuda(i32),
    TensorRt(i32),
}

impl Device {
    pub fn is_gpu(self) -> bool {
        !matches!(self, Device::Cpu)
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::TensorRt(i) => write!(f, "tensorrt:{i}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("'{0}' is not a device: use cpu, cuda, cuda:0,1, tensorrt or tensorrt:0")]
    Syntax(String),
    #[error("--device {0}: no NVIDIA GPU is visible (no /proc/driver/nvidia/gpus entries, CUDA_VISIBLE_DEVICES empty?). Is the NVIDIA driver installed and the GPU passed to this container?")]
    NoGpu(String),
}

/// `cpu`, `cuda`, `cuda:0,2`, `tensorrt`, `tensorrt:1`. A bare `cuda`/`tensorrt` means every
/// visible GPU.
pub fn parse(spec: &str) -> Result<Vec<Device>, DeviceError> {
    let syntax = || DeviceError::Syntax(spec.to_string());
    let (kind, ids) = match spec.split_once(':') {
        Some((k, ids)) => (k, Some(ids)),
        None => (spec, None),
    };
    let make: fn(i32) -> Device = match kind.trim() {
        "cpu" if ids.is_none() => return Ok(vec![Device::Cpu]),
        "cuda" => Device::Cuda,
        "tensorrt" | "trt" => Device::TensorRt,
        _ => return Err(syntax()),
    };
    let ids: Vec<i32> = match ids {
        Some(list) => list
            .split(',')
            .map(|i| i.trim().parse::<i32>().ok().filter(|i| *i >= 0))
            .collect::<Option<_>>()
            .ok_or_else(syntax)?,
        None => (0..visible_gpus() as i32).collect(),
    };
    if ids.is_empty() {
        return Err(DeviceError::NoGpu(spec.to_string()));
    }
    Ok(ids.into_iter().map(make).collect())
}

/// GPUs this process may use: `CUDA_VISIBLE_DEVICES` when set, else the driver's device list.
fn visible_gpus() -> usize {
    if let Ok(v) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return v.split(',').filter(|s| !s.trim().is_empty()).count();
    }
    std::fs::read_dir("/proc/driver/nvidia/gpus").map_or(0, |d| d.count())
}

/// Options for the GPU providers.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    /// TensorRT engine and timing caches.
    pub cache_dir: PathBuf,
    /// The largest batch, for TensorRT's optimization profile.
    pub max_batch: usize,
}

impl Default for GpuOptions {
    fn default() -> Self {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        GpuOptions {
            cache_dir: base.join("synthscan"),
            max_batch: 64,
        }
    }
}

/// The execution providers for a device, in priority order. `input` is the model's input name
/// and `(h, w)` its size, for TensorRT's profile covering batch 1..=max.
pub fn providers(
    device: Device,
    opts: &GpuOptions,
    input: &str,
    (h, w): (u32, u32),
) -> Vec<ExecutionProviderDispatch> {
    let cuda = |id: i32| {
        ep::CUDA::default()
            .with_device_id(id)
            // Grow the arena by what is asked, not by doubling, so memory stays near the need.
            .with_arena_extend_strategy(ep::ArenaExtendStrategy::SameAsRequested)
            .with_conv_algorithm_search(ep::cuda::ConvAlgorithmSearch::Exhaustive)
            .build()
            .error_on_failure()
    };
    match device {
        Device::Cpu => Vec::new(),
        Device::Cuda(id) => vec![cuda(id)],
        Device::TensorRt(id) => {
            let cache = opts
                .cache_dir
                .join("tensorrt")
                .to_string_lossy()
                .into_owned();
            let shape = |n: usize| format!("{input}:{n}x3x{h}x{w}");
            let trt = ep::TensorRT::default()
                .with_device_id(id)
                .with_fp16(true)
                .with_engine_cache(true)
                .with_engine_cache_path(&cache)
                .with_timing_cache(true)
                .with_timing_cache_path(&cache)
                .with_profile_min_shapes(shape(1))
                .with_profile_opt_shapes(shape(opts.max_batch))
                .with_profile_max_shapes(shape(opts.max_batch))
                .build()
                .error_on_failure();
            // Nodes TensorRT refuses run on CUDA, not on the CPU.
            vec![trt, cuda(id)]
        }
    }
}

/// Turns ONNX Runtime's registration error into what is missing and how to get it.
pub fn explain_failure(device: Device, library: &Path, error: &str) -> String {
    let dir = library.parent().unwrap_or(Path::new("."));
    let provider = match device {
        Device::TensorRt(_) => "libonnxruntime_providers_tensorrt.so",
        _ => "libonnxruntime_providers_cuda.so",
    };
    let hint = if !dir.join(provider).exists() {
        format!(
            "the ONNX Runtime at {} is a CPU-only build ({provider} is not beside it). Install the GPU runtime with `scripts/install-ort --gpu` and pass --ort-lib .ort-gpu/libonnxruntime.so.*, or set ORT_DYLIB_PATH",
            library.display()
        )
    } else if let Some(lib) = missing_library(error) {
        format!("{lib} could not be loaded: install the CUDA 13 / cuDNN 9 libraries (`scripts/install-ort --gpu` puts them beside the ONNX Runtime library)")
    } else if error.contains("no CUDA-capable device") || error.contains("cudaErrorNoDevice") {
        "no usable GPU: check `nvidia-smi` and CUDA_VISIBLE_DEVICES".to_string()
    } else if error.contains("driver") {
        "the NVIDIA driver is too old for CUDA 13: update it".to_string()
    } else {
        "see the ONNX Runtime message above".to_string()
    };
    format!("cannot use {device}: {error}\n  fix: {hint}\n  or pass --fallback cpu to scan on the CPU instead")
}

fn missing_library(error: &str) -> Option<&str> {
    error
        .split(|c: char| c.is_whitespace() || c == ':' || c == '\'' || c == '"')
        .find(|w| w.starts_with("lib") && w.contains(".so") && !w.starts_with("libonnxruntime"))
}

/// Loads the CUDA and cuDNN libraries that `scripts/install-ort --gpu` put beside the ONNX
/// Runtime library, so its CUDA provider finds them without LD_LIBRARY_PATH.
pub fn preload_gpu_libraries(library: &Path) {
    let Some(dir) = library.parent() else { return };
    let wanted = ep::cuda::CUDA_DYLIBS
        .iter()
        .chain(ep::cuda::CUDNN_DYLIBS)
        .map(|name| dir.join(name))
        .filter(|p| p.exists());
    for path in wanted {
        if let Err(e) = ort::util::preload_dylib(&path) {
            tracing::warn!("could not preload {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!(parse("cpu").unwrap(), vec![Device::Cpu]);
        assert_eq!(
            parse("cuda:0,2").unwrap(),
            vec![Device::Cuda(0), Device::Cuda(2)]
        );
        assert_eq!(parse("tensorrt:1").unwrap(), vec![Device::TensorRt(1)]);
        for bad in ["gpu", "cuda:x", "cuda:-1", "cpu:0", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn explains_a_cpu_only_runtime() {
        let msg = explain_failure(
            Device::Cuda(0),
            Path::new("/opt/ort/libonnxruntime.so.1.31.1"),
            "Failed to load library libonnxruntime_providers_cuda.so",
        );
        assert!(
            msg.contains("CPU-only build") && msg.contains("--fallback cpu"),
            "{msg}"
        );
    }

    #[test]
    fn names_the_missing_cuda_library() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libonnxruntime_providers_cuda.so"), b"").unwrap();
        let msg = explain_failure(
            Device::Cuda(0),
            &dir.path().join("libonnxruntime.so.1.31.1"),
            "Error loading libonnxruntime_providers_cuda.so: libcublasLt.so.13: cannot open shared object file",
        );
        assert!(
            msg.contains("libcublasLt.so.13 could not be loaded"),
            "{msg}"
        );
    }
}
