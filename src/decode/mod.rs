//! The decode stage's work on one file: bytes to RGB pixels ([`read`], with libjpeg-turbo for
//! JPEGs in [`jpeg`] and a decode of only the crop's window in [`jpeg_window`]), where the model's
//! crops fall ([`crop`]), and the resize and normalization into each model's input tensor
//! ([`preprocess`]).
//!
//! Owns everything between a file's bytes and a tensor. Imports only `model::manifest` (what
//! input a model wants) and `verdict` (the status and file facts a row records).

pub mod crop;
pub mod jpeg;
pub mod jpeg_window;
pub mod preprocess;
pub mod read;
pub mod simd;

pub use read::{
    decode_bytes, decode_file, decode_file_bytes, read_file, DecodeError, Extent, Limits,
    DCT_MARGIN,
};
