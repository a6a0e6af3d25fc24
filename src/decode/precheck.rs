//! Checks made on a file's own structure before its decoder runs, where the decoder's limits
//! come too late or do not apply: a PNG colour profile that inflates to gigabytes, and a BMP
//! header whose size the decoder refuses as a format error rather than as a limit.

use std::io::Read;

/// The PNG chunks before the image data, as `(type, data)`; stops at the first `IDAT`, at
/// `IEND` or at anything cut short (the decoder reports the damage itself).
fn png_header_chunks(bytes: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut at = 8;
    std::iter::from_fn(move || {
        let header = bytes.get(at..at + 8)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = [header[4], header[5], header[6], header[7]];
        if &kind == b"IDAT" || &kind == b"IEND" {
            return None;
        }
        let data = bytes.get(at + 8..(at + 8).checked_add(len)?)?;
        at = at + 12 + len;
        Some((kind, data))
    })
}

/// How many bytes a PNG's colour profile inflates to, when that is more than `budget`.
///
/// The `png` crate inflates the first `iCCP` chunk before the image data into memory, bounded
/// only by its allocation limit, which must leave room for the whole frame (gigabytes), and
/// it ignores that chunk's errors; a 1 MB file of deflated zeros then costs 1 GB per decode
/// thread. Counting the inflated bytes here, through a fixed buffer, costs no memory and
/// stops as soon as the budget is passed. A damaged stream is left to the decoder.
pub fn png_profile_over_budget(bytes: &[u8], budget: u64) -> Option<u64> {
    let (_, data) = png_header_chunks(bytes).find(|(kind, _)| kind == b"iCCP")?;
    // Profile name (1-79 bytes), NUL, compression method, then the zlib stream.
    let nul = memchr::memchr(0, data)?;
    let stream = data.get(nul + 2..)?;
    let mut inflater = flate2::read::ZlibDecoder::new(stream).take(budget + 1);
    let counted = std::io::copy(&mut inflater, &mut std::io::sink()).ok()?;
    (counted > budget).then_some(counted)
}

/// Width and height from a BMP's info header (`BM`, the 14-byte file header, then a core or
/// info header); `None` when the header is cut short or is not one of these.
pub fn bmp_dimensions(bytes: &[u8]) -> Option<(u64, u64)> {
    if !bytes.starts_with(b"BM") {
        return None;
    }
    let size = u32::from_le_bytes(bytes.get(14..18)?.try_into().ok()?);
    let (w, h) = if size == 12 {
        // OS/2 BITMAPCOREHEADER: 16-bit sides.
        let w = u16::from_le_bytes(bytes.get(18..20)?.try_into().ok()?);
        let h = u16::from_le_bytes(bytes.get(20..22)?.try_into().ok()?);
        (i64::from(w), i64::from(h))
    } else {
        // BITMAPINFOHEADER and later: signed, a negative height meaning top-down rows.
        let w = i32::from_le_bytes(bytes.get(18..22)?.try_into().ok()?);
        let h = i32::from_le_bytes(bytes.get(22..26)?.try_into().ok()?);
        (i64::from(w), i64::from(h))
    };
    Some((w.unsigned_abs(), h.unsigned_abs()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend(kind);
        out.extend(data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend(crc.finalize().to_be_bytes());
        out
    }

    /// A PNG `iCCP` chunk whose profile is `inflated` bytes of zeros (about 1000:1 deflated).
    pub(crate) fn profile_chunk(inflated: usize) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![0u8; inflated]).unwrap();
        let mut iccp = b"icc\0\0".to_vec();
        iccp.extend(z.finish().unwrap());
        chunk(b"iCCP", &iccp)
    }

    fn with_profile(inflated: usize) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]));
        png.extend(profile_chunk(inflated));
        png.extend(chunk(b"IEND", b""));
        png
    }

    #[test]
    fn a_profile_is_counted_up_to_just_past_the_budget() {
        assert_eq!(png_profile_over_budget(&with_profile(4096), 4096), None);
        assert_eq!(
            png_profile_over_budget(&with_profile(1 << 20), 4096),
            Some(4097)
        );
        // No profile, or one behind a cut: nothing to refuse.
        assert_eq!(png_profile_over_budget(b"\x89PNG\r\n\x1a\n", 1), None);
        let cut = with_profile(1 << 20);
        assert_eq!(png_profile_over_budget(&cut[..40], 1), None);
    }

    #[test]
    fn bmp_sides_come_from_either_header() {
        let mut info = b"BM".to_vec();
        info.extend([0; 12]);
        info.extend(40u32.to_le_bytes());
        info.extend(70_000i32.to_le_bytes());
        info.extend((-3i32).to_le_bytes());
        assert_eq!(bmp_dimensions(&info), Some((70_000, 3)));
        let mut core = b"BM".to_vec();
        core.extend([0; 12]);
        core.extend(12u32.to_le_bytes());
        core.extend(300u16.to_le_bytes());
        core.extend(200u16.to_le_bytes());
        assert_eq!(bmp_dimensions(&core), Some((300, 200)));
        assert_eq!(bmp_dimensions(&info[..20]), None);
    }
}
