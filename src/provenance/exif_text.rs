//! The EXIF fields where generators leave their mark, as text: `Software`, `ImageDescription`,
//! `Make` and `Model` (ComfyUI's WebP output puts its workflow and prompt there) and
//! `UserComment` (AUTOMATIC1111's JPEG and WebP output).

use exif::{Field, In, Reader, Tag, Value};

use super::container::TextField;

const TAGS: [(Tag, &str); 5] = [
    (Tag::Software, "Software"),
    (Tag::ImageDescription, "ImageDescription"),
    (Tag::Make, "Make"),
    (Tag::Model, "Model"),
    (Tag::UserComment, "UserComment"),
];

/// The text fields of one TIFF-structured EXIF block, primary image only.
pub fn fields(tiff: &[u8]) -> Result<Vec<TextField>, String> {
    // Generators' EXIF writers (piexif, behind AUTOMATIC1111) leave quirks such as a dangling
    // next-IFD pointer that a strict reader refuses; the primary IFD's fields are still there.
    let mut damage = Vec::new();
    let exif = Reader::new()
        .continue_on_error(true)
        .read_raw(tiff.to_vec())
        .or_else(|e| e.distill_partial_result(|errors| damage = errors))
        .map_err(|e| e.to_string())?;
    let found: Vec<TextField> = TAGS
        .iter()
        .filter_map(|&(tag, name)| {
            let field = exif.get_field(tag, In::PRIMARY)?;
            let text = text(field)?;
            (!text.is_empty()).then(|| TextField::new(name, text))
        })
        .collect();
    // Damage that cost every field is the block's problem; quirks around fields that were
    // read are not worth a note on every such file.
    if found.is_empty() && !damage.is_empty() {
        let errors: Vec<String> = damage.iter().map(ToString::to_string).collect();
        return Err(errors.join("; "));
    }
    Ok(found)
}

fn text(field: &Field) -> Option<String> {
    match &field.value {
        Value::Ascii(parts) => {
            let joined: Vec<u8> = parts.join(&b"\n"[..]);
            Some(trim(String::from_utf8_lossy(&joined).into_owned()))
        }
        Value::Undefined(data, _) if field.tag == Tag::UserComment => user_comment(data),
        Value::Undefined(data, _) | Value::Byte(data) => {
            Some(trim(String::from_utf8_lossy(data).into_owned()))
        }
        _ => None,
    }
}

/// `UserComment` starts with an 8-byte character code. AUTOMATIC1111 (through piexif) writes
/// `UNICODE\0` and then UTF-16, big-endian whatever the TIFF byte order, so the byte order is
/// taken from where the zero bytes of ASCII characters fall.
fn user_comment(data: &[u8]) -> Option<String> {
    if data.len() < 8 {
        return None;
    }
    let (code, body) = data.split_at(8);
    let text = match code {
        b"UNICODE\0" => {
            let zeros_first = body.chunks_exact(2).filter(|c| c[0] == 0).count();
            let zeros_second = body.chunks_exact(2).filter(|c| c[1] == 0).count();
            let units = body.chunks_exact(2).map(|c| {
                if zeros_first >= zeros_second {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_le_bytes([c[0], c[1]])
                }
            });
            char::decode_utf16(units)
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    Some(trim(text))
}

fn trim(s: String) -> String {
    let t = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    if t.len() == s.len() {
        s
    } else {
        t.to_string()
    }
}
