//! Whether the JPEG decoder runs libjpeg-turbo's SIMD code.
//!
//! mozjpeg-sys compiles the SIMD code only when `nasm` is present at build time, and otherwise
//! builds silently without it, decoding JPEGs about half as fast. The build leaves no trace a
//! dependent crate can read reliably, so ask the library itself: without SIMD it is built with
//! `jsimd_none.c`, whose `jsimd_can_*` functions all answer 0; with it they answer whether this
//! CPU has the instructions (SSE2 or AVX2 on x86-64).

use std::ffi::c_int;

extern "C" {
    // libjpeg-turbo's internal SIMD dispatch, in the static library mozjpeg-sys links.
    fn jsimd_can_idct_islow() -> c_int;
    fn jsimd_can_ycc_rgb() -> c_int;
}

/// True when JPEG decoding uses SIMD code (the inverse DCT and the colour conversion).
pub fn jpeg_simd() -> bool {
    // SAFETY: both take no arguments and only read the CPU's features, once, into a static.
    unsafe { jsimd_can_idct_islow() != 0 && jsimd_can_ycc_rgb() != 0 }
}

/// One line for `synthscan models` saying so.
pub fn statement() -> &'static str {
    if jpeg_simd() {
        "JPEG decoder: libjpeg-turbo with SIMD"
    } else {
        "JPEG decoder: libjpeg-turbo without SIMD (built without nasm, or no SIMD on this CPU): JPEGs decode about half as fast; install nasm (scripts/setup), then `cargo clean -p mozjpeg-sys` and build again"
    }
}
