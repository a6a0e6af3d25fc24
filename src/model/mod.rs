//! The models and the engine that runs them: manifests and their checks ([`manifest`]), finding
//! ONNX Runtime ([`runtime`]), the devices and execution providers ([`device`]), which variant
//! of each model runs ([`precision`]), and the inference workers that own their sessions
//! ([`infer`]), behind the small interface the pipeline scores through ([`scorer`]).
//!
//! Owns everything that touches ONNX Runtime. Imports only `verdict` (the score columns a model
//! set fills).

pub mod device;
pub mod infer;
pub mod manifest;
pub mod precision;
pub mod runtime;
pub mod scorer;
