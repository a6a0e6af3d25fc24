//! synthscan: a streaming forensics scanner that tells real photos from AI-generated images.
//!
//! The pipeline (see [`pipeline`]) moves files from a [`source`] through [`decode`] and
//! [`preprocess`], groups them in [`batch`]es, scores them with ONNX Runtime in [`infer`], and
//! writes one [`verdict`] row per file through a [`sink`]; [`provenance`] adds what the file
//! declares about its own making. [`serve`] puts the same pipeline
//! behind a web page and an HTTP API.

pub mod batch;
pub mod calibration;
pub mod cli;
pub mod contain;
pub mod crop;
pub mod decode;
pub mod device;
pub mod evaluate;
pub mod infer;
pub mod jpeg;
pub mod jpeg_window;
pub mod labelled;
pub mod manifest;
pub mod metrics;
pub mod pause;
pub mod pipeline;
pub mod precision;
pub mod preprocess;
pub mod provenance;
pub mod report;
pub mod run_metadata;
pub mod runtime;
pub mod serve;
pub mod sink;
pub mod source;
pub mod summary;
pub mod verdict;
