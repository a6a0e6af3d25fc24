//! Keeping a panic to the work it happened in. A decoder, the resizer or an ONNX Runtime call
//! that panics on one file must not take its worker thread down with it: the file (or the batch,
//! for inference) becomes a row with an error status, and the worker goes on with the next.
//!
//! The tests of that containment make a stage panic on demand through
//! [`crate::pipeline::test_hooks`].

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A panic caught by [`run`], with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Panicked(pub String);

/// Runs `f`, turning a panic into [`Panicked`]. Whatever `f` borrowed mutably may be half
/// updated after a panic; callers reset or discard it.
pub fn run<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Panicked(message(payload.as_ref())))
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_value_with_its_message() {
        assert_eq!(run(|| 7), Ok(7));
        let formatted = run(|| -> u8 { panic!("bad {}", "pixels") });
        assert_eq!(formatted, Err(Panicked("bad pixels".into())));
        let literal = run(|| -> u8 { panic!("plain") });
        assert_eq!(literal, Err(Panicked("plain".into())));
    }
}
