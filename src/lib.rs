//! synthscan: a streaming forensics scanner that tells real photos from AI-generated images.
//!
//! The folders follow the data: a [`source`] hands on candidate files, [`decode`] turns each
//! into pixels and model inputs, the [`model`]s score them in batches, each file becomes one
//! [`verdict`] row, and a [`sink`] writes it; [`pipeline`] wires those stages, and
//! [`provenance`] adds what the file declares about its own making. Around the pipeline,
//! [`serve`] puts it behind a web page and an HTTP API, [`measure`] turns scores on labelled
//! images into figures and thresholds, [`report`] reads verdict datasets back, and [`cli`] is the
//! command line. docs/architecture.md draws the whole and says what each folder may import.

pub mod cli;
pub mod decode;
pub mod measure;
pub mod model;
pub mod pipeline;
pub mod provenance;
pub mod report;
pub mod serve;
pub mod sink;
pub mod source;
pub mod verdict;
