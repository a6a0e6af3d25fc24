//! Which variant of a model runs: `--precision auto|fp32|fp16|int8`, decided in one place for
//! every model and device.
//!
//! `auto` takes FP16 on GPUs and INT8 on CPUs with 8-bit dot-product instructions (AVX512-VNNI
//! or AVX-VNNI; CPUs with AMX-INT8 have AVX512-VNNI too), each when the manifest lists that
//! variant, else FP32. On such a CPU (an Intel Xeon with AMX-INT8) ONNX Runtime ran the default
//! model's INT8 variant 1.97 times as fast as FP32, and the whole scanner 1.61 times
//! (bench/results/default-model-intel-xeon.md). On x86 CPUs without VNNI, INT8 is not chosen by
//! itself: ONNX Runtime's guide warns that its u8s8 kernels for plain AVX2/AVX512 can saturate,
//! so the quality gate measured when the variant was made does not vouch for them, and no
//! speed-up was measured there. An explicit `--precision` is honoured on any device, and a model
//! that lacks the variant asked for is an error before any file is read.

use crate::model::device::Device;

pub const FP32: &str = "fp32";
pub const FP16: &str = "fp16";
pub const INT8: &str = "int8";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Precision {
    /// The fastest variant the manifest lists for the device (see the module docs).
    #[default]
    Auto,
    Fp32,
    Fp16,
    Int8,
}

impl Precision {
    fn name(self) -> Option<&'static str> {
        match self {
            Precision::Auto => None,
            Precision::Fp32 => Some(FP32),
            Precision::Fp16 => Some(FP16),
            Precision::Int8 => Some(INT8),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--precision {wanted}: the manifest lists no {wanted} variant (it has {available}); pass --precision auto to take the best it has")]
pub struct MissingVariant {
    pub wanted: &'static str,
    pub available: String,
}

/// What the machine offers that `auto` depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// The CPU has 8-bit dot-product instructions (see [`Host::detect`]).
    pub int8_dot: bool,
}

impl Host {
    pub fn detect() -> Self {
        Host {
            int8_dot: cpu_has_int8_dot(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_int8_dot() -> bool {
    std::arch::is_x86_feature_detected!("avx512vnni")
        || std::arch::is_x86_feature_detected!("avxvnni")
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_int8_dot() -> bool {
    // Not measured on other architectures: FP32 until it is.
    false
}

/// The variant to load: `available` are the precisions the manifest lists besides FP32.
pub fn choose(
    requested: Precision,
    device: Device,
    available: &[&str],
    host: Host,
) -> Result<&'static str, MissingVariant> {
    let listed = |p: &str| p == FP32 || available.contains(&p);
    if let Some(wanted) = requested.name() {
        return if listed(wanted) {
            Ok(wanted)
        } else {
            let mut have = vec![FP32];
            have.extend(available.iter().copied());
            Err(MissingVariant {
                wanted,
                available: have.join(", "),
            })
        };
    }
    let preferred: &[&'static str] = match device {
        Device::Cuda(_) | Device::TensorRt(_) => &[FP16],
        Device::Cpu if host.int8_dot => &[INT8],
        Device::Cpu => &[],
    };
    Ok(preferred
        .iter()
        .copied()
        .find(|p| listed(p))
        .unwrap_or(FP32))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VNNI: Host = Host { int8_dot: true };
    const PLAIN: Host = Host { int8_dot: false };

    #[test]
    fn auto_takes_int8_on_a_cpu_with_vnni_when_listed() {
        let both = [FP16, INT8];
        assert_eq!(choose(Precision::Auto, Device::Cpu, &both, VNNI), Ok(INT8));
        assert_eq!(choose(Precision::Auto, Device::Cpu, &both, PLAIN), Ok(FP32));
        assert_eq!(
            choose(Precision::Auto, Device::Cpu, &[FP16], VNNI),
            Ok(FP32)
        );
        assert_eq!(choose(Precision::Auto, Device::Cpu, &[], VNNI), Ok(FP32));
    }

    #[test]
    fn auto_takes_fp16_on_gpus_never_int8() {
        for device in [Device::Cuda(0), Device::TensorRt(1)] {
            assert_eq!(
                choose(Precision::Auto, device, &[INT8, FP16], VNNI),
                Ok(FP16)
            );
            assert_eq!(choose(Precision::Auto, device, &[INT8], VNNI), Ok(FP32));
        }
    }

    #[test]
    fn an_explicit_precision_is_honoured_or_refused() {
        assert_eq!(
            choose(Precision::Fp32, Device::Cpu, &[INT8], VNNI),
            Ok(FP32)
        );
        assert_eq!(
            choose(Precision::Int8, Device::Cpu, &[INT8], PLAIN),
            Ok(INT8)
        );
        assert_eq!(
            choose(Precision::Fp16, Device::Cpu, &[FP16], VNNI),
            Ok(FP16)
        );
        let err = choose(Precision::Int8, Device::Cuda(0), &[FP16], VNNI).unwrap_err();
        assert_eq!(err.available, "fp32, fp16");
        assert!(err.to_string().contains("no int8 variant"), "{err}");
    }
}
