//! The decode stage's work on one file: bytes to RGB pixels ([`read`], with libjpeg-turbo for
//! JPEGs in [`jpeg`] and a decode of only the crop's window in [`jpeg_window`], libjpeg's errors
//! and corrupt-data warnings in [`libjpeg_errors`], and what a file's structure must pass before
//! a decoder sees it in [`precheck`]), where the model's
//! crops fall ([`crop`]), and the resize and normalization into each model's input tensor
//! ([`preprocess`]).
//!
//! Owns everything between a file's bytes and a tensor. Imports only `model::manifest` (what
//! input a model wants) and `verdict` (the status and file facts a row records).

pub mod crop;
pub mod jpeg;
pub mod jpeg_window;
pub mod libjpeg_errors;
pub mod precheck;
pub mod preprocess;
pub mod read;
pub mod simd;

pub use read::{
    decode_bytes, decode_file, decode_file_bytes, read_file, DecodeError, Extent, Limits,
    DCT_MARGIN, METADATA_BUDGET,
};
