//! Finding the metadata blocks of an image: XMP packets, EXIF blocks, PNG text chunks and
//! whether a C2PA manifest store is present, for JPEG, PNG and WebP (and a C2PA store in any
//! other format the C2PA reader supports).
//!
//! The walk only splits the container (no pixel data is decoded), so it costs a small fraction
//! of the decode that follows.

use std::io::Read;

use bytes::Bytes;
use img_parts::jpeg::{markers, Jpeg};
use img_parts::webp::WebP;

/// A named text value: a PNG text chunk's keyword, or the EXIF tag's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextField {
    pub key: String,
    pub value: String,
}

impl TextField {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        TextField {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// The metadata blocks found in one file.
#[derive(Debug, Default, Clone)]
pub struct Embedded {
    pub xmp: Vec<Bytes>,
    /// TIFF-structured EXIF data (the `Exif\0\0` prefix removed).
    pub exif: Vec<Bytes>,
    pub text: Vec<TextField>,
    /// A C2PA manifest store is (or may be) embedded: worth handing the file to the C2PA reader.
    pub c2pa: bool,
    pub problems: Vec<String>,
}

const EXIF_PREFIX: &[u8] = b"Exif\0\0";
const METADATA_CHUNKS: [&[u8; 4]; 5] = [b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"caBX"];
const XMP_PREFIX: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
/// PNG iTXt keyword of an XMP packet.
const XMP_KEYWORD: &str = "XML:com.adobe.xmp";
/// What one file's compressed text chunks may inflate to, all together, counted on the
/// inflated bytes; ComfyUI workflows reach a few hundred KiB. A chunk past it is not read, and
/// the row says so: a declaration behind megabytes of padding would otherwise vanish silently.
pub const TEXT_BUDGET: u64 = 16 * 1024 * 1024;

impl Embedded {
    pub fn find(bytes: &Bytes) -> Embedded {
        let mut found = Embedded::default();
        if bytes.starts_with(&[0xFF, 0xD8]) {
            found.jpeg(bytes);
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            found.png(bytes);
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            found.webp(bytes);
        } else {
            if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
                // A TIFF file is itself EXIF-structured.
                found.exif.push(bytes.clone());
            }
            // Other formats: the JUMBF label of a manifest store is the cheap tell.
            found.c2pa = memchr::memmem::find(bytes, b"c2pa").is_some();
        }
        found
    }

    fn jpeg(&mut self, bytes: &Bytes) {
        let jpeg = match Jpeg::from_bytes(bytes.clone()) {
            Ok(j) => j,
            Err(e) => return self.problems.push(format!("jpeg segments: {e}")),
        };
        for seg in jpeg.segments() {
            let data = seg.contents();
            match seg.marker() {
                markers::APP1 if data.starts_with(EXIF_PREFIX) => {
                    self.exif.push(data.slice(EXIF_PREFIX.len()..));
                }
                markers::APP1 if data.starts_with(XMP_PREFIX) => {
                    self.xmp.push(data.slice(XMP_PREFIX.len()..));
                }
                // C2PA stores its JUMBF boxes in APP11 segments (JPEG XT, "JP" common identifier).
                markers::APP11 if data.starts_with(b"JP") => self.c2pa = true,
                _ => {}
            }
        }
    }

    /// PNG chunks are walked here rather than with a whole-file parser, so that a file whose
    /// image data is corrupt or cut short still yields the text chunks before the damage; only
    /// the metadata chunks' CRCs are checked.
    fn png(&mut self, bytes: &Bytes) {
        let mut at = 8;
        let mut budget = TEXT_BUDGET;
        while at < bytes.len() {
            let Some(header) = bytes.get(at..at + 8) else {
                return self
                    .problems
                    .push("png chunks: truncated chunk header".into());
            };
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
            let Some(end) = (at + 8).checked_add(len).filter(|&e| e + 4 <= bytes.len()) else {
                return self.problems.push(format!(
                    "png chunks: {} chunk cut short",
                    String::from_utf8_lossy(&kind)
                ));
            };
            let data = bytes.slice(at + 8..end);
            at = end + 4;
            if &kind == b"IEND" {
                return;
            }
            if !METADATA_CHUNKS.contains(&&kind) {
                continue;
            }
            let crc =
                u32::from_be_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&kind);
            hasher.update(&data);
            if hasher.finalize() != crc {
                self.problems.push(format!(
                    "png chunks: {} chunk fails its CRC",
                    String::from_utf8_lossy(&kind)
                ));
                continue;
            }
            let data = &data;
            let text = match &kind {
                b"tEXt" => Some(text_chunk(data)),
                b"zTXt" => Some(ztxt_chunk(data, &mut budget)),
                b"iTXt" => Some(itxt_chunk(data, &mut budget)),
                b"eXIf" => {
                    self.exif.push(without_exif_prefix(data));
                    None
                }
                b"caBX" => {
                    self.c2pa = true;
                    None
                }
                _ => None,
            };
            match text {
                Some(Ok(field)) if field.key == XMP_KEYWORD => {
                    self.xmp.push(Bytes::from(field.value.into_bytes()))
                }
                Some(Ok(field)) => self.text.push(field),
                Some(Err(e)) => self.problems.push(format!("png text: {e}")),
                None => {}
            }
        }
        // Every chunk boundary was reached without IEND: the file was cut short there.
        self.problems
            .push("png chunks: the file ends before its IEND chunk (truncated)".into());
    }

    fn webp(&mut self, bytes: &Bytes) {
        let webp = match WebP::from_bytes(bytes.clone()) {
            Ok(w) => w,
            Err(e) => return self.problems.push(format!("webp chunks: {e}")),
        };
        for chunk in webp.chunks() {
            let Some(data) = chunk.content().data() else {
                continue;
            };
            match &chunk.id() {
                b"EXIF" => self.exif.push(without_exif_prefix(data)),
                b"XMP " => self.xmp.push(data.clone()),
                b"C2PA" => self.c2pa = true,
                _ => {}
            }
        }
    }
}

/// The TIFF data of an EXIF block; some writers keep the JPEG `Exif\0\0` prefix in PNG and WebP.
fn without_exif_prefix(data: &Bytes) -> Bytes {
    if data.starts_with(EXIF_PREFIX) {
        data.slice(EXIF_PREFIX.len()..)
    } else {
        data.clone()
    }
}

/// `keyword\0text`, both Latin-1.
fn text_chunk(data: &[u8]) -> Result<TextField, String> {
    let (key, text) = split_keyword(data)?;
    Ok(TextField::new(latin1(key), latin1(text)))
}

/// `keyword\0 method compressed-text`.
fn ztxt_chunk(data: &[u8], budget: &mut u64) -> Result<TextField, String> {
    let (key, rest) = split_keyword(data)?;
    let (_method, compressed) = rest.split_first().ok_or("zTXt without text")?;
    let text = inflate(compressed, budget).map_err(|e| format!("zTXt {:?}: {e}", latin1(key)))?;
    Ok(TextField::new(latin1(key), latin1(&text)))
}

/// `keyword\0 flag method language\0 translated-keyword\0 text`, the text UTF-8.
fn itxt_chunk(data: &[u8], budget: &mut u64) -> Result<TextField, String> {
    let (key, rest) = split_keyword(data)?;
    let [flag, _method, rest @ ..] = rest else {
        return Err("iTXt header is cut short".into());
    };
    let (_language, rest) = split_keyword(rest)?;
    let (_translated, text) = split_keyword(rest)?;
    let text = if *flag == 1 {
        inflate(text, budget).map_err(|e| format!("iTXt {:?}: {e}", latin1(key)))?
    } else {
        text.to_vec()
    };
    Ok(TextField::new(
        latin1(key),
        String::from_utf8_lossy(&text).into_owned(),
    ))
}

fn split_keyword(data: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let nul = memchr::memchr(0, data).ok_or("text chunk without a keyword separator")?;
    Ok((&data[..nul], &data[nul + 1..]))
}

/// Inflates within what is left of the file's `budget`, and takes what it used from it.
fn inflate(compressed: &[u8], budget: &mut u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(*budget + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("compressed text: {e}"))?;
    let used = out.len() as u64;
    if used > *budget {
        *budget = 0;
        return Err(format!(
            "inflates past {TEXT_BUDGET} bytes, the budget for a file's compressed text; not read"
        ));
    }
    *budget -= used;
    Ok(out)
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}
