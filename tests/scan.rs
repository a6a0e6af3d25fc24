//! The real binary on real files: every candidate ends as exactly one row with the right status,
//! and set-up problems stop the run before any work with a message and exit code 2.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{png_claiming, read_rows, run_ok, synthscan, tiny_model, write_image, Row};

/// Builds the bad-input fixture set next to a few good images; returns the expected status of
/// every candidate by file name.
fn fixture_set(dir: &Path) -> BTreeMap<String, &'static str> {
    let mut expected = BTreeMap::new();
    let mut ok = |name: &str| {
        expected.insert(name.to_string(), "ok");
    };
    write_image(&dir.join("photo.jpg"), 320, 240, image::ImageFormat::Jpeg);
    ok("photo.jpg");
    write_image(&dir.join("shot.png"), 200, 300, image::ImageFormat::Png);
    ok("shot.png");
    write_image(&dir.join("pic.webp"), 100, 80, image::ImageFormat::WebP);
    ok("pic.webp");
    write_image(&dir.join("anim.gif"), 90, 60, image::ImageFormat::Gif);
    ok("anim.gif");
    write_image(&dir.join("old.bmp"), 50, 40, image::ImageFormat::Bmp);
    ok("old.bmp");
    write_image(&dir.join("scan.tiff"), 70, 30, image::ImageFormat::Tiff);
    ok("scan.tiff");
    // A PNG with a .jpg name decodes by its content.
    write_image(&dir.join("misnamed.jpg"), 64, 64, image::ImageFormat::Png);
    ok("misnamed.jpg");
    // Grayscale and 16-bit RGBA convert to RGB8.
    image::GrayImage::from_fn(40, 40, |x, _| image::Luma([x as u8 * 6]))
        .save(dir.join("gray.png"))
        .unwrap();
    ok("gray.png");
    image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(30, 20, |x, y| {
        image::Rgba([x as u16 * 2000, y as u16 * 3000, 7, 40000])
    })
    .save(dir.join("deep.png"))
    .unwrap();
    ok("deep.png");

    let mut bad = |name: &str, bytes: &[u8], status: &'static str| {
        std::fs::write(dir.join(name), bytes).unwrap();
        expected.insert(name.to_string(), status);
    };
    bad("empty.jpg", b"", "unsupported");
    bad("noise.png", &pseudo_random_bytes(4096), "unsupported");
    let jpeg = std::fs::read(dir.join("photo.jpg")).unwrap();
    bad("truncated.jpg", &jpeg[..jpeg.len() / 3], "decode_error");
    // A camera file whose EXIF thumbnail survives the cut: decoders fill the rest with grey.
    let camera = std::fs::read(common::fixtures().join("camera/Canon_40D.jpg")).unwrap();
    bad("camera.jpg", &camera, "ok");
    bad(
        "camera-half.jpg",
        &camera[..camera.len() / 2],
        "decode_error",
    );
    bad("bomb.png", &png_claiming(100_000, 100_000), "too_large");
    // Hostile files made here, not committed: a colour profile that inflates past the budget,
    // a scan cut at a tenth with an end marker appended, a start marker alone, a BMP header
    // over the pixel limit; and a camera file padded after its end marker, as cameras do.
    bad(
        "profile-bomb.png",
        &common::png_with_profile_bomb(),
        "too_large",
    );
    let scan_at = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let cut = scan_at + (jpeg.len() - scan_at) / 10;
    bad(
        "cut-scan.jpg",
        &[&jpeg[..cut], &[0xFF, 0xD9]].concat(),
        "decode_error",
    );
    bad("start-only.jpg", &[0xFF, 0xD8], "decode_error");
    bad(
        "huge.bmp",
        &common::bmp_claiming(100_000, 100_000),
        "too_large",
    );
    bad(
        "camera-padded.jpg",
        &[&camera[..], &[0u8; 4096][..]].concat(),
        "ok",
    );

    std::fs::create_dir(dir.join("folder.jpg")).unwrap();
    expected.insert("folder.jpg".into(), "not_a_file");

    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::{symlink, PermissionsExt};
        symlink(dir.join("missing.jpg"), dir.join("broken.jpg")).unwrap();
        expected.insert("broken.jpg".into(), "io_error");
        symlink(dir.join("loop-b.jpg"), dir.join("loop-a.jpg")).unwrap();
        symlink(dir.join("loop-a.jpg"), dir.join("loop-b.jpg")).unwrap();
        expected.insert("loop-a.jpg".into(), "io_error");
        expected.insert("loop-b.jpg".into(), "io_error");

        let odd = std::ffi::OsStr::from_bytes(b"caf\xe9-latin1.png");
        write_image(&dir.join(odd), 48, 48, image::ImageFormat::Png);
        expected.insert("caf\u{fffd}-latin1.png".into(), "ok");

        let locked = dir.join("locked.jpg");
        write_image(&locked, 32, 32, image::ImageFormat::Jpeg);
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        // Root reads through permissions; then the file is simply scanned.
        let readable = std::fs::File::open(&locked).is_ok();
        expected.insert(
            "locked.jpg".into(),
            if readable { "ok" } else { "io_error" },
        );
    }
    // Not a candidate: text with a text name.
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    expected
}

fn pseudo_random_bytes(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn by_name(rows: &[Row], root: &Path) -> BTreeMap<String, Row> {
    rows.iter()
        .map(|r| {
            let rel = Path::new(&r.path)
                .strip_prefix(root)
                .unwrap_or_else(|_| Path::new(&r.path))
                .to_string_lossy()
                .into_owned();
            (rel, r.clone())
        })
        .collect()
}

#[test]
fn every_fixture_gets_exactly_one_row_with_the_right_status() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let expected = fixture_set(&input);
    let out = dir.path().join("v.parquet");
    let run = run_ok(
        synthscan(&[
            "scan",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(tiny_model()),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);

    let rows = read_rows(&out);
    assert_eq!(
        rows.len(),
        expected.len(),
        "one row per candidate\n{stderr}"
    );
    let got = by_name(&rows, &input);
    let statuses: BTreeMap<String, &str> = got
        .iter()
        .map(|(k, r)| (k.clone(), r.status.as_str()))
        .collect();
    assert_eq!(statuses, expected);

    for (name, row) in &got {
        if row.status == "ok" {
            let score = row.score.unwrap_or_else(|| panic!("{name} has no score"));
            assert!((0.0..=1.0).contains(&score), "{name}: {score}");
            assert!(row.label.is_some() && row.error.is_none(), "{name}");
        } else {
            assert!(row.score.is_none() && row.label.is_none(), "{name}");
            assert!(!row.error.as_deref().unwrap_or("").is_empty(), "{name}");
        }
    }
    let err = |name: &str| got[name].error.clone().unwrap();
    assert!(
        err("bomb.png").contains("100000x100000"),
        "{}",
        err("bomb.png")
    );
    assert!(
        err("broken.jpg").contains("broken symlink"),
        "{}",
        err("broken.jpg")
    );
    for name in ["truncated.jpg", "camera-half.jpg"] {
        assert!(err(name).contains("truncated"), "{name}: {}", err(name));
    }
    assert_eq!(got["photo.jpg"].format.as_deref(), Some("jpeg"));
    assert!(got["photo.jpg"].jpeg_quality.is_some());
    assert_eq!(got["misnamed.jpg"].format.as_deref(), Some("png"));
    assert_eq!(
        (got["shot.png"].width, got["shot.png"].height),
        (Some(200), Some(300))
    );
}

#[test]
fn formats_agree_and_batching_does_not_change_scores() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for i in 0..7 {
        write_image(
            &input.join(format!("{i}.png")),
            40 + i * 30,
            90,
            image::ImageFormat::Png,
        );
    }
    let scan = |out: &str, batch: &str| {
        let out = dir.path().join(out);
        run_ok(
            synthscan(&["scan", input.to_str().unwrap(), "-b", batch, "--out"])
                .arg(&out)
                .args(tiny_model()),
        );
        out
    };
    let one = by_name(&read_rows(&scan("a.parquet", "1")), &input);
    let many = by_name(&read_rows(&scan("b.parquet", "16")), &input);
    assert_eq!(one.len(), 7);
    for (name, row) in &one {
        let (a, b) = (row.score.unwrap(), many[name].score.unwrap());
        assert!((a - b).abs() < 1e-5, "{name}: {a} vs {b}");
    }
    let csv = std::fs::read_to_string(scan("c.csv", "4")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 7);
    assert!(csv.lines().next().unwrap().starts_with("path,size_bytes,"));
    let jsonl = std::fs::read_to_string(scan("d.jsonl", "4")).unwrap();
    let objs: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 7);
    assert!(objs
        .iter()
        .all(|o| o["status"] == "ok" && o["score_tiny_cnn"].is_number()));
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn two_models_score_the_same_decoded_images_in_their_own_columns() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    write_image(&input.join("a.png"), 120, 80, image::ImageFormat::Png);
    // The same network under a second name, with a stricter threshold.
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    common::tiny_model_in(&models, "twin", |m| {
        m["name"] = "twin".into();
        m["threshold"] = 0.0.into();
    });
    common::tiny_model_in(&models, "tiny-cnn", |_| {});

    let out = dir.path().join("v.parquet");
    run_ok(
        synthscan(&[
            "scan",
            input.to_str().unwrap(),
            "-m",
            "tiny-cnn",
            "-m",
            "twin",
        ])
        .arg("--models-dir")
        .arg(&models)
        .arg("--out")
        .arg(&out),
    );
    let batch = common::read_batch(&out);
    use arrow::array::AsArray;
    use arrow::datatypes::Float32Type;
    let a = batch
        .column_by_name("score_tiny_cnn")
        .unwrap()
        .as_primitive::<Float32Type>()
        .value(0);
    let b = batch
        .column_by_name("score_twin")
        .unwrap()
        .as_primitive::<Float32Type>()
        .value(0);
    assert_eq!(a, b);
    let label = |c: &str| {
        batch
            .column_by_name(c)
            .unwrap()
            .as_string::<i32>()
            .value(0)
            .to_string()
    };
    assert_eq!(
        label("label_twin"),
        "fake",
        "threshold 0 calls everything fake"
    );
    assert_eq!(
        label("label_tiny_cnn"),
        if a >= 0.5 { "fake" } else { "real" }
    );
}

#[test]
fn set_up_problems_stop_before_work_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v.parquet");
    let fail = |cmd: &mut std::process::Command, needle: &str| {
        let run = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
        assert!(!out.exists());
    };
    let o = out.to_str().unwrap();
    fail(
        synthscan(&["scan", "/no/such/folder", "--out", o]).args(tiny_model()),
        "/no/such/folder",
    );
    fail(
        &mut synthscan(&["scan", ".", "--out", o, "--model", "no-such-model"]),
        "no-such-model",
    );
    fail(
        synthscan(&["scan", ".", "--out", o, "--threshold", "1.5"]).args(tiny_model()),
        "threshold",
    );
    fail(
        synthscan(&["scan", ".", "--out", o])
            .args(tiny_model())
            .env("ORT_DYLIB_PATH", "/no/libonnxruntime.so"),
        "scripts/install-ort",
    );
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{ not json").unwrap();
    fail(
        &mut synthscan(&["scan", ".", "--out", o, "--model", broken.to_str().unwrap()]),
        "not a valid model manifest",
    );
}

#[test]
fn three_shards_give_exactly_the_rows_of_one_scan() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("nested")).unwrap();
    for i in 0..12 {
        let sub = if i % 2 == 0 { "nested" } else { "" };
        write_image(
            &input.join(sub).join(format!("{i}.png")),
            30 + i * 7,
            40,
            image::ImageFormat::Png,
        );
    }
    std::fs::write(input.join("broken.jpg"), b"nope").unwrap();
    let whole = dir.path().join("whole.parquet");
    let parts = dir.path().join("parts");
    let run = |extra: &[&str], out: &Path| {
        run_ok(
            synthscan(&[
                "scan",
                input.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .args(extra)
            .args(tiny_model()),
        );
    };
    run(&[], &whole);
    for i in 0..3 {
        run(&["--shard", &format!("{i}/3")], &parts);
    }
    let mut sharded = BTreeMap::new();
    for i in 0..3 {
        for row in read_rows(&parts.join(format!("part-{i}-of-3.parquet"))) {
            assert!(
                sharded.insert(row.path.clone(), row).is_none(),
                "a path in two shards"
            );
        }
    }
    let whole: BTreeMap<String, Row> = read_rows(&whole)
        .into_iter()
        .map(|r| (r.path.clone(), r))
        .collect();
    assert_eq!(whole.len(), 13);
    assert_eq!(
        sharded.keys().collect::<Vec<_>>(),
        whole.keys().collect::<Vec<_>>()
    );
    for (path, row) in &whole {
        assert_eq!(row.status, sharded[path].status);
        assert_eq!(row.score, sharded[path].score, "{path}");
    }
    // The parts read back as one dataset.
    let report = run_ok(&mut synthscan(&["report", parts.to_str().unwrap()]));
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        text.starts_with("13 rows in 3 file(s), 13 distinct paths"),
        "{text}"
    );
}

#[cfg(feature = "test-hooks")]
/// Scans four PNGs, of which `boom.png` makes the stage that `inject` names panic.
fn scan_with_panic(inject: &str, extra: &[&str]) -> (std::process::Output, Option<Vec<Row>>) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for (i, name) in ["a.png", "boom.png", "c.png", "d.png"].iter().enumerate() {
        write_image(
            &input.join(name),
            40 + i as u32,
            30,
            image::ImageFormat::Png,
        );
    }
    let out = dir.path().join("v.parquet");
    let run = synthscan(&[
        "scan",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .args(tiny_model())
    .args(extra)
    .env(synthscan::pipeline::test_hooks::INJECT_VAR, inject)
    .output()
    .unwrap();
    let rows = out.exists().then(|| read_rows(&out));
    (run, rows)
}

#[cfg(feature = "test-hooks")]
fn status_of(rows: &[Row], name: &str) -> (String, String) {
    let row = rows
        .iter()
        .find(|r| r.path.ends_with(&format!("/{name}")))
        .unwrap_or_else(|| panic!("no row for {name}"));
    (row.status.clone(), row.error.clone().unwrap_or_default())
}

#[cfg(feature = "test-hooks")]
#[test]
fn a_panic_in_decode_or_inference_is_contained_to_its_file_or_batch() {
    // Decode: only the file that panicked gets an error row, on one decode thread that goes on.
    let (run, rows) = scan_with_panic("decode:boom", &["--decode-threads", "1"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let rows = rows.unwrap();
    assert_eq!(rows.len(), 4, "{stderr}");
    let (status, error) = status_of(&rows, "boom.png");
    assert_eq!(status, "decode_error");
    assert!(error.contains("panicked while decoding"), "{error}");
    for name in ["a.png", "c.png", "d.png"] {
        assert_eq!(status_of(&rows, name).0, "ok", "{name}");
    }

    // Inference, one image per batch: only the batch holding the file fails.
    let (run, rows) = scan_with_panic("infer:boom", &["--batch-size", "1"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let rows = rows.unwrap();
    assert_eq!(rows.len(), 4, "{stderr}");
    let (status, error) = status_of(&rows, "boom.png");
    assert_eq!(status, "inference_error");
    assert!(error.contains("panicked"), "{error}");
    for name in ["a.png", "c.png", "d.png"] {
        assert_eq!(status_of(&rows, name).0, "ok", "{name}");
    }
}

#[cfg(feature = "test-hooks")]
#[test]
fn a_failing_collector_fails_the_run_loudly() {
    let (run, _) = scan_with_panic("collect:boom", &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pipeline stage failed"), "{stderr}");
}

#[test]
fn models_lists_every_manifest_in_aligned_columns() {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model_in(dir.path(), "tiny-cnn", |_| {});
    let long = "a-detector-with-a-name-longer-than-twenty-characters";
    common::tiny_model_in(dir.path(), long, |m| {
        m["name"] = long.into();
        m["version"] = "9.8.7".into();
    });

    let out = run_ok(synthscan(&["models"]).arg("--models-dir").arg(dir.path()));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let row = |name: &str| *lines.iter().find(|l| l.starts_with(name)).unwrap();
    // The version column starts at the same place on every line, however long a name is.
    let column = lines[0].find("version").unwrap();
    assert_eq!(row(long).find("9.8.7"), Some(column), "{text}");
    assert_eq!(row("tiny-cnn ").find("0.0.1"), Some(column), "{text}");

    // mozjpeg-sys compiles the SIMD decoder only when nasm is there at build time, as it is
    // wherever scripts/test (which installs it) builds.
    let stderr = String::from_utf8(out.stderr).unwrap();
    let nasm = std::process::Command::new("nasm").arg("-v").output();
    if nasm.is_ok_and(|o| o.status.success()) {
        assert!(
            stderr.contains("JPEG decoder: libjpeg-turbo with SIMD"),
            "{stderr}"
        );
    } else {
        assert!(stderr.contains("JPEG decoder: libjpeg-turbo"), "{stderr}");
    }
}

/// A small tmpfs mounted on a fresh folder for the test's life; `None` (with the reason printed)
/// where mounting is not allowed (not root, no mount namespace).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(options: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let run = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output();
        match run {
            Ok(r) if r.status.success() => Some(Tmpfs { dir }),
            Ok(r) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs ({})",
                    String::from_utf8_lossy(&r.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount ({e})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

fn partials(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect()
}

#[test]
fn a_full_disk_fails_the_scan_naming_the_file_and_leaves_no_temporary_file() {
    let Some(disk) = Tmpfs::mount("size=256k") else {
        return;
    };
    let input = tempfile::tempdir().unwrap();
    for i in 0..3 {
        write_image(
            &input.path().join(format!("{i}.png")),
            40 + i * 10,
            30,
            image::ImageFormat::Png,
        );
    }
    // Fill the disk, so that the first bytes of output find no room.
    let mut filler = std::fs::File::create(disk.path().join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    drop(filler);
    for ext in ["parquet", "csv", "jsonl"] {
        let out = disk.path().join(format!("v.{ext}"));
        let run = synthscan(&["scan", input.path().to_str().unwrap(), "--out"])
            .arg(&out)
            .args(tiny_model())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{ext}: {stderr}");
        assert!(
            stderr.contains(&*out.to_string_lossy()) && stderr.contains("No space left on device"),
            "{ext}: {stderr}"
        );
        assert_eq!(
            stderr.matches("No space left on device").count(),
            1,
            "{ext}: {stderr}"
        );
        assert_eq!(partials(disk.path()), Vec::<String>::new(), "{ext}");
        assert!(!out.exists(), "{ext}");
    }
}

#[test]
fn an_unwritable_out_is_refused_at_start_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    write_image(&input.join("a.png"), 40, 30, image::ImageFormat::Png);
    let not_a_folder = dir.path().join("a-file");
    std::fs::write(&not_a_folder, b"x").unwrap();
    let refused = |cmd: &mut std::process::Command, out: &Path| {
        let run = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&*out.to_string_lossy()), "{stderr}");
    };
    let i = input.to_str().unwrap();
    let under_a_file = not_a_folder.join("v.parquet");
    refused(
        synthscan(&["scan", i, "--out"])
            .arg(&under_a_file)
            .args(tiny_model()),
        &under_a_file,
    );
    refused(
        synthscan(&["watch", i, "--out"])
            .arg(&under_a_file)
            .args(tiny_model()),
        &under_a_file,
    );
    // Read-only even for root.
    if let Some(ro) = Tmpfs::mount("ro,size=64k") {
        let out = ro.path().join("v.csv");
        refused(
            synthscan(&["scan", i, "--out"])
                .arg(&out)
                .args(tiny_model()),
            &out,
        );
        let out = ro.path().join("parts");
        refused(
            synthscan(&["watch", i, "--out"])
                .arg(&out)
                .args(tiny_model()),
            &out,
        );
    }
}
