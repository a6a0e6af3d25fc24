//! Facts read from a JPEG's structure: its encoder quality, estimated from the quantization
//! tables, and whether the file is complete.
//!
//! Auditors need this column: recompression strength is the classic confounder of AI-image
//! detectors (a model that learned "heavily compressed = real" fails on social-media fakes). The
//! estimate inverts the IJG (libjpeg) quality scaling of the standard luminance table, which is
//! what almost every encoder uses; for custom tables it gives the IJG quality with the closest
//! overall strength.

/// The IJG standard luminance quantization table (ITU-T T.81, Annex K). The order does not
/// matter here: only the sum is compared.
const STD_LUMINANCE: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/// Returns the estimated quality 1..=100, or `None` when the bytes hold no table 0 before the
/// first scan (not a JPEG, or a damaged header).
pub fn estimate_quality(bytes: &[u8]) -> Option<u8> {
    let table = luminance_table(bytes)?;
    let sum: u32 = table.iter().map(|&q| u32::from(q)).sum();
    let std_sum: u32 = STD_LUMINANCE.iter().map(|&q| u32::from(q)).sum();
    // IJG: table = (std * scale + 50) / 100, with scale = 5000/q (q < 50) or 200 - 2q.
    let scale = f64::from(sum) * 100.0 / f64::from(std_sum);
    let quality = if scale <= 100.0 {
        (200.0 - scale) / 2.0
    } else {
        5000.0 / scale
    };
    Some(quality.round().clamp(1.0, 100.0) as u8)
}

/// Whether the file holds an end-of-image marker after its first scan. Decoders fill a truncated
/// JPEG with grey and report success; a score on such an image would describe the filler.
/// `FF D9` cannot occur inside entropy-coded data (an `FF` there is always followed by `00`), so
/// any `FF D9` after the start of scan marks the end, even with a trailer appended after it.
pub fn is_complete(bytes: &[u8]) -> bool {
    let Some(sos) = bytes.windows(2).position(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// The 64 entries of quantization table 0, read from the DQT segments before the first SOS.
fn luminance_table(bytes: &[u8]) -> Option<[u16; 64]> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut pos = 2;
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xFF {
            return None;
        }
        let marker = bytes[pos + 1];
        // Fill bytes and standalone markers carry no length.
        if marker == 0xFF {
            pos += 1;
            continue;
        }
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            pos += 2;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        let segment = bytes.get(pos + 4..pos + 2 + len)?;
        if marker == 0xDB {
            if let Some(t) = table_zero(segment) {
                return Some(t);
            }
        }
        pos += 2 + len;
    }
    None
}

/// A DQT segment may hold several tables: each is one byte of precision/id, then 64 entries of
/// one byte (8-bit precision) or two bytes (16-bit).
fn table_zero(mut segment: &[u8]) -> Option<[u16; 64]> {
    while let Some((&pq_tq, rest)) = segment.split_first() {
        let wide = pq_tq >> 4 == 1;
        let id = pq_tq & 0x0F;
        let size = if wide { 128 } else { 64 };
        let data = rest.get(..size)?;
        if id == 0 {
            let mut t = [0u16; 64];
            for (i, q) in t.iter_mut().enumerate() {
                *q = if wide {
                    u16::from_be_bytes([data[2 * i], data[2 * i + 1]])
                } else {
                    u16::from(data[i])
                };
            }
            return Some(t);
        }
        segment = &rest[size..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;

    fn encode(quality: u8) -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 7]));
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn recovers_the_encoder_quality() {
        for q in [30u8, 50, 75, 90, 95] {
            let got = estimate_quality(&encode(q)).unwrap();
            assert!(got.abs_diff(q) <= 1, "quality {q} estimated as {got}");
        }
    }

    #[test]
    fn truncation_is_detected_and_trailers_are_allowed() {
        let mut full = encode(85);
        assert!(is_complete(&full));
        assert!(!is_complete(&full[..full.len() - 2]));
        assert!(!is_complete(&full[..full.len() / 2]));
        full.extend_from_slice(b"appended trailer");
        assert!(is_complete(&full));
    }

    #[test]
    fn none_for_non_jpeg_and_truncated_headers() {
        assert_eq!(estimate_quality(b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(estimate_quality(&encode(80)[..20]), None);
        assert_eq!(estimate_quality(b""), None);
    }
}
