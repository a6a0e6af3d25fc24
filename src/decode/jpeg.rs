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

/// Whether the file holds an end-of-image marker after the image's own first scan. Decoders fill
/// a truncated JPEG with grey and report success; a score on such an image would describe the
/// filler. The first scan is found by walking the header's segments: camera files carry an EXIF
/// thumbnail inside APP1, with its own start-of-scan and end-of-image, which a plain search for
/// `FF DA` would take for the image's. `FF D9` cannot occur inside entropy-coded data (an `FF`
/// there is always followed by `00`), so any `FF D9` after the start of scan marks the end, even
/// with a trailer appended after it.
pub fn is_complete(bytes: &[u8]) -> bool {
    let Some(scan) = Segments::new(bytes).find(|s| s.marker == SOS) else {
        return false;
    };
    bytes[scan.end..].windows(2).any(|w| w == [0xFF, EOI])
}

/// The 64 entries of quantization table 0, read from the DQT segments before the first SOS.
fn luminance_table(bytes: &[u8]) -> Option<[u16; 64]> {
    Segments::new(bytes)
        .take_while(|s| s.marker != SOS)
        .filter(|s| s.marker == DQT)
        .find_map(|s| table_zero(s.payload))
}

const SOS: u8 = 0xDA;
const EOI: u8 = 0xD9;
const DQT: u8 = 0xDB;

/// One marker segment of the header: its marker, its payload, and where it ends in the file.
struct Segment<'a> {
    marker: u8,
    payload: &'a [u8],
    end: usize,
}

/// The header's marker segments from the start of image up to and including the first
/// start-of-scan, each skipped by its length (so whatever an APPn payload holds is never read as
/// markers). Ends early at anything malformed: no start of image, bytes that are not a marker,
/// an end of image before any scan, or a segment cut short.
struct Segments<'a> {
    bytes: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Segments<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let done = bytes.get(..2) != Some(&[0xFF, 0xD8][..]);
        Segments {
            bytes,
            pos: 2,
            done,
        }
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = Segment<'a>;

    fn next(&mut self) -> Option<Segment<'a>> {
        let bytes = self.bytes;
        while !self.done && self.pos + 4 <= bytes.len() {
            let pos = self.pos;
            if bytes[pos] != 0xFF {
                break;
            }
            let marker = bytes[pos + 1];
            // Fill bytes and standalone markers carry no length.
            if marker == 0xFF {
                self.pos += 1;
                continue;
            }
            if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
                self.pos += 2;
                continue;
            }
            if marker == EOI {
                break;
            }
            let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
            // The length counts its own two bytes.
            let Some(payload) = bytes.get(pos + 4..pos + 2 + len).filter(|_| len >= 2) else {
                break;
            };
            self.pos = pos + 2 + len;
            self.done = marker == SOS;
            return Some(Segment {
                marker,
                payload,
                end: self.pos,
            });
        }
        self.done = true;
        None
    }
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

    /// Camera files with an EXIF thumbnail in APP1 (see tests/fixtures/camera/README.md).
    const CAMERA: [(&str, &[u8]); 3] = [
        (
            "Canon_40D",
            include_bytes!("../../tests/fixtures/camera/Canon_40D.jpg"),
        ),
        (
            "Canon_DIGITAL_IXUS_400",
            include_bytes!("../../tests/fixtures/camera/Canon_DIGITAL_IXUS_400.jpg"),
        ),
        (
            "Nikon_D70",
            include_bytes!("../../tests/fixtures/camera/Nikon_D70.jpg"),
        ),
    ];

    fn find(bytes: &[u8], pattern: [u8; 2], from: usize) -> usize {
        from + bytes[from..].windows(2).position(|w| w == pattern).unwrap()
    }

    #[test]
    fn camera_jpegs_cut_anywhere_after_their_thumbnail_are_incomplete() {
        for (name, full) in CAMERA {
            assert!(is_complete(full), "{name} whole");
            // The thumbnail's own start of scan and end of image come before the image's.
            let thumb = find(full, [0xFF, 0xD8], 2);
            let thumb_end = find(full, [0xFF, 0xD9], thumb) + 2;
            let scan = Segments::new(full).find(|s| s.marker == SOS).unwrap().end;
            assert!(
                thumb_end < scan,
                "{name}: the fixture has a thumbnail before its scan"
            );
            let cuts = [
                ("inside the thumbnail", thumb + 40),
                ("right after the thumbnail", thumb_end),
                ("before the scan", scan - 1),
                ("at the start of the scan", scan),
                ("halfway", full.len() / 2),
                ("one byte short", full.len() - 1),
            ];
            for (at, cut) in cuts {
                assert!(!is_complete(&full[..cut]), "{name} cut {at} ({cut} bytes)");
            }
            // The thumbnail does not stand in for the image's quantization tables either.
            assert_eq!(estimate_quality(full), estimate_quality(&full[..scan]));
        }
    }

    #[test]
    fn none_for_non_jpeg_and_truncated_headers() {
        assert_eq!(estimate_quality(b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(estimate_quality(&encode(80)[..20]), None);
        assert_eq!(estimate_quality(b""), None);
    }
}
