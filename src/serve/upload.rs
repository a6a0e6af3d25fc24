//! Taking files out of a multipart request: every part with a file name is a file, and a zip
//! archive is opened into its entries. Limits are enforced while reading, not trusted from
//! headers: the body size (by the router), the file count, and the bytes a zip expands to.

use std::io::{Cursor, Read};

use axum::extract::multipart::{Multipart, MultipartError};
use bytes::Bytes;

use super::dispatch::NamedFile;
use crate::source::Defect;
use crate::verdict::Status;

#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub max_body_bytes: u64,
    pub max_files: usize,
    /// Total bytes that the zip archives of one request may expand to.
    pub max_unzipped_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the request holds more than {0} files (--max-files)")]
    TooManyFiles(usize),
    #[error("the zip archives expand to more than {0} bytes (--max-unzipped-mb)")]
    TooMuchUnzipped(u64),
    #[error("{0}")]
    Multipart(#[from] MultipartError),
}

/// Client names are labels; cap their length so a hostile one cannot bloat every output.
const MAX_NAME_CHARS: usize = 255;

pub async fn read(
    mut multipart: Multipart,
    limits: &UploadLimits,
) -> Result<Vec<NamedFile>, UploadError> {
    let mut files = Vec::new();
    let mut unzipped = 0u64;
    let mut refused = None;
    while let Some(field) = multipart.next_field().await? {
        let name = field.file_name().map(clean_name);
        let bytes = field.bytes().await?;
        // Once over a limit, the rest of the body is read and dropped (it is bounded by the
        // body limit): a client that is still sending then gets the error, not a reset.
        let Some(name) = name.filter(|_| refused.is_none()) else {
            // Form fields without a file (a submit button, say) carry no image.
            continue;
        };
        if is_zip(&bytes) {
            let room = limits.max_files.saturating_sub(files.len());
            let budget = limits.max_unzipped_bytes.saturating_sub(unzipped);
            let label = name.clone();
            let unzipped_here =
                tokio::task::spawn_blocking(move || unzip(&name, &bytes, room, budget))
                    .await
                    // A panic in the zip reader on hostile input is that archive's error row.
                    .unwrap_or_else(|_| {
                        let message = "corrupt zip archive: the reader gave up".to_string();
                        Ok((vec![defective(label, Status::DecodeError, message)], 0))
                    });
            match unzipped_here {
                Ok((entries, used)) => {
                    unzipped += used;
                    files.extend(entries);
                }
                // Report the request's limits, not what was left of them for this archive.
                Err(e) => {
                    refused = Some(match e {
                        UploadError::TooManyFiles(_) => UploadError::TooManyFiles(limits.max_files),
                        UploadError::TooMuchUnzipped(_) => {
                            UploadError::TooMuchUnzipped(limits.max_unzipped_bytes)
                        }
                        other => other,
                    });
                }
            }
        } else {
            files.push(NamedFile::new(name, bytes));
        }
        if files.len() > limits.max_files {
            refused = Some(UploadError::TooManyFiles(limits.max_files));
        }
        if refused.is_some() {
            files = Vec::new();
        }
    }
    match refused {
        Some(e) => Err(e),
        None => Ok(files),
    }
}

fn clean_name(name: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let name = name.trim();
    if name.is_empty() {
        return "unnamed".into();
    }
    name.chars().take(MAX_NAME_CHARS).collect()
}

/// A file that cannot be scored, answered with an error row.
fn defective(name: String, status: Status, message: String) -> NamedFile {
    NamedFile {
        name,
        bytes: Bytes::new(),
        defect: Some(Defect { status, message }),
    }
}

fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// The archive's files as `archive.zip/inner/name.jpg`, and the bytes they took. A corrupt
/// archive, or an entry that cannot be read or has an unsafe name, becomes one file with a
/// defect, so that it is answered with an error row like any other bad file.
fn unzip(
    archive_name: &str,
    bytes: &Bytes,
    room: usize,
    budget: u64,
) -> Result<(Vec<NamedFile>, u64), UploadError> {
    let mut archive = match zip::ZipArchive::new(Cursor::new(bytes.clone())) {
        Ok(a) => a,
        Err(e) => {
            let message = format!("corrupt zip archive: {e}");
            return Ok((
                vec![defective(archive_name.into(), Status::DecodeError, message)],
                0,
            ));
        }
    };
    let mut files = Vec::new();
    let mut used = 0u64;
    for i in 0..archive.len() {
        let mut entry = match archive.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                let name = format!("{archive_name}/#{i}");
                files.push(defective(
                    name,
                    Status::DecodeError,
                    format!("zip entry: {e}"),
                ));
                continue;
            }
        };
        // Folders, and the resource forks macOS adds to archives it makes, are not files the
        // user chose.
        if entry.is_dir() || entry.name().starts_with("__MACOSX/") {
            continue;
        }
        if files.len() >= room {
            return Err(UploadError::TooManyFiles(room));
        }
        // The label is the entry's path inside the archive (a leading / dropped); nothing is
        // written under it, but a name that climbs out with .. is refused as a warning sign.
        let Some(inner) = entry.enclosed_name() else {
            files.push(defective(
                format!("{archive_name}/{}", clean_name(entry.name())),
                Status::Unsupported,
                "unsafe zip entry name (climbs out of the archive with ..): not read".into(),
            ));
            continue;
        };
        let label = format!("{archive_name}/{}", clean_name(&inner.to_string_lossy()));
        // The sizes in the archive's headers can lie; count what actually comes out.
        let mut data = Vec::new();
        let read = (&mut entry).take(budget - used + 1).read_to_end(&mut data);
        used += data.len() as u64;
        if used > budget {
            return Err(UploadError::TooMuchUnzipped(budget));
        }
        match read {
            Ok(_) => files.push(NamedFile::new(label, Bytes::from(data))),
            Err(e) => files.push(defective(
                label,
                Status::DecodeError,
                format!("zip entry: {e}"),
            )),
        }
    }
    Ok((files, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(entries: &[(&str, &[u8])]) -> Bytes {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        Bytes::from(w.finish().unwrap().into_inner())
    }

    #[test]
    fn entries_become_files_and_unsafe_names_become_error_rows() {
        let z = zip_of(&[
            ("a/x.jpg", b"one"),
            ("../../evil.jpg", b"two"),
            ("/abs.png", b"3"),
        ]);
        let (files, used) = unzip("up.zip", &z, 10, 1000).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["up.zip/a/x.jpg", "up.zip/../../evil.jpg", "up.zip/abs.png"]
        );
        assert_eq!(files[0].bytes.as_ref(), b"one");
        assert!(files[0].defect.is_none());
        assert!(files[1].defect.is_some() && files[1].bytes.is_empty());
        assert!(files[2].defect.is_none());
        assert_eq!(used, 4);
    }

    #[test]
    fn expansion_and_entry_count_are_capped_by_what_comes_out() {
        let big = vec![0u8; 10_000];
        let z = zip_of(&[("a", &big), ("b", &big)]);
        assert!(z.len() < 1000, "zeros compress well: a small bomb");
        let err = unzip("z.zip", &z, 10, 15_000).unwrap_err();
        assert!(matches!(err, UploadError::TooMuchUnzipped(15_000)), "{err}");
        let err = unzip("z.zip", &z, 1, 1 << 20).unwrap_err();
        assert!(matches!(err, UploadError::TooManyFiles(1)), "{err}");
    }

    #[test]
    fn a_corrupt_archive_is_one_error_row() {
        let mut z = zip_of(&[("a.jpg", b"x")]).to_vec();
        z.truncate(z.len() - 10);
        let (files, _) = unzip("bad.zip", &Bytes::from(z), 10, 100).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(
            files[0].defect.as_ref().unwrap().status,
            Status::DecodeError
        );
    }
}
