//! libjpeg-turbo's error manager for both JPEG decodes (whole image and window): fatal errors
//! and corrupt-data warnings unwind out of the decoder with libjpeg's message, and the caller
//! turns the unwind into the file's error.
//!
//! libjpeg only warns about data that ends inside the scan or fails its Huffman codes, fills
//! the missing blocks with grey and reports success; a JPEG cut at 10% of its scan with an
//! end-of-image marker appended, or a 7000x7000 header over 256x192 of real data, would then be
//! scored on filler. Two warnings are not about missing pixels and stay warnings: extraneous
//! bytes before a marker (padding some cameras and editors write after a scan whose blocks were
//! all decoded) and a malformed ICC profile marker (metadata).

use std::any::Any;
use std::ffi::CStr;
use std::mem;
use std::os::raw::c_int;

use mozjpeg_sys as ffi;

/// Templates of the warnings that are not corrupt pixel data (see the module's comment).
const HARMLESS: [&str; 2] = ["extraneous bytes before marker", "bad ICC marker"];

/// A fresh error manager with the handlers installed; the caller points the decompressor at it
/// (for the `mozjpeg` crate, `Decompress::with_err`).
pub fn error_mgr() -> ffi::jpeg_error_mgr {
    // SAFETY: `jpeg_std_error` fills in every field of a zeroed manager.
    let mut err: ffi::jpeg_error_mgr = unsafe { mem::zeroed() };
    unsafe { ffi::jpeg_std_error(&mut err) };
    err.error_exit = Some(error_exit);
    err.emit_message = Some(emit_message);
    err
}

/// The message an unwind from these handlers carries, or a generic one for any other panic.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| "the decoder gave up on the data".into())
}

#[cold]
extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    let message = formatted(cinfo).unwrap_or_else(|| "libjpeg gave up on the data".into());
    std::panic::resume_unwind(Box::new(message));
}

/// Level -1 is a warning; levels from 0 up are trace messages, never shown.
extern "C-unwind" fn emit_message(cinfo: &mut ffi::jpeg_common_struct, level: c_int) {
    if level >= 0 {
        return;
    }
    let Some(template) = template(cinfo) else {
        return;
    };
    let corrupt =
        template.starts_with("Corrupt JPEG data") || template.starts_with("Premature end");
    if corrupt && !HARMLESS.iter().any(|h| template.contains(h)) {
        let message = formatted(cinfo).unwrap_or(template);
        std::panic::resume_unwind(Box::new(message));
    }
}

/// The message's template from libjpeg's table, without its parameters.
fn template(cinfo: &ffi::jpeg_common_struct) -> Option<String> {
    let err = unsafe { cinfo.err.as_ref() }?;
    let code = usize::try_from(err.msg_code).ok()?;
    let last = usize::try_from(err.last_jpeg_message).ok()?;
    if err.jpeg_message_table.is_null() || code > last {
        return None;
    }
    let text = unsafe { *err.jpeg_message_table.add(code) };
    (!text.is_null()).then(|| {
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    })
}

/// The message with its parameters filled in by libjpeg's own formatter.
fn formatted(cinfo: &mut ffi::jpeg_common_struct) -> Option<String> {
    let format = unsafe { cinfo.err.as_ref() }?.format_message?;
    // The binding declares the output buffer as shared, but libjpeg writes the message into it
    // (JMSG_LENGTH bytes); the `mozjpeg` crate calls it the same way.
    let format = unsafe {
        mem::transmute::<
            unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, &[u8; 80]),
            unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, &mut [u8; 80]),
        >(format)
    };
    let mut buffer = [0u8; 80];
    unsafe { format(cinfo, &mut buffer) };
    let text = buffer.split(|&c| c == 0).next().unwrap_or_default();
    (!text.is_empty()).then(|| String::from_utf8_lossy(text).into_owned())
}
