//! `synthscan watch` as a real process on real folders: files written while it runs (nested,
//! slowly in chunks, moved in by rename) end as exactly one `ok` row each in the finalized parts,
//! also when the watcher is killed with SIGKILL mid-burst and restarted; SIGTERM drains and
//! finalizes.
//!
//! `SYNTHSCAN_WATCH_FILES` sets the burst size (default 2000).

#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{read_rows, tiny_model, Row};

fn burst_size() -> usize {
    std::env::var("SYNTHSCAN_WATCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

struct Watcher {
    child: Child,
    log: PathBuf,
}

impl Watcher {
    fn start(dirs: &[&Path], out: &Path, log: &Path, extra: &[&str]) -> Watcher {
        Watcher::start_with_env(dirs, out, log, extra, &[])
    }

    fn start_with_env(
        dirs: &[&Path],
        out: &Path,
        log: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Watcher {
        let ready = "existing files queued";
        let before = count(log, ready);
        let mut args: Vec<&str> = Vec::new();
        for (flag, value) in [
            ("--settle", "0.5"),
            ("--roll-secs", "0.5"),
            ("--stats-interval", "2"),
        ] {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_synthscan"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("watch")
            .args(dirs)
            .arg("--out")
            .arg(out)
            .args(tiny_model())
            .args(args)
            .args(extra)
            .env("RUST_LOG", "synthscan=info")
            .env("NO_COLOR", "1")
            .env_remove("SYNTHSCAN_MODELS")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let w = Watcher {
            child,
            log: log.to_path_buf(),
        };
        // Notifications are set up before the first walk reports, so files written after this
        // line are seen.
        let t = Instant::now();
        while count(log, ready) == before {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the watcher did not start:\n{}",
                w.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        w
    }

    fn log_text(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn terminate(mut self) -> String {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log_text();
        assert!(status.success(), "exit {status:?}\n{log}");
        log
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(log: &Path, needle: &str) -> usize {
    strip_ansi(&std::fs::read_to_string(log).unwrap_or_default())
        .matches(needle)
        .count()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every row of every finalized part.
fn dataset(out: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for e in std::fs::read_dir(out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("part-") && name.ends_with(".parquet") {
            rows.extend(read_rows(&out.join(name)));
        }
    }
    rows
}

fn wait_rows(out: &Path, n: usize, timeout: Duration, w: &Watcher) -> Vec<Row> {
    let t = Instant::now();
    loop {
        let rows = dataset(out);
        if rows.len() >= n {
            return rows;
        }
        assert!(
            t.elapsed() < timeout,
            "{} of {n} rows after {timeout:?}\n{}",
            rows.len(),
            w.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn leftovers(out: &Path) -> Vec<String> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !(n.starts_with("part-") && n.ends_with(".parquet")))
        .collect()
}

/// A watched folder (created), an OUTDIR and a log path under `dir`.
fn folders(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let input = dir.join("in");
    std::fs::create_dir(&input).unwrap();
    (input, dir.join("out"), dir.join("log"))
}

fn png(i: usize) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, (i % 251) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Writes `n` images under `root` in nested folders: most in one go, every 10th moved in by
/// rename from `staging` (outside the watched tree), and every 100th slowly in chunks from its
/// own thread. Returns every image path.
fn write_burst(root: &Path, staging: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(staging).unwrap();
    let mut paths = Vec::new();
    let mut slow = Vec::new();
    for i in 0..n {
        let dir = root.join(format!("d{}", i % 7)).join(format!("e{}", i % 3));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("img-{i:05}.png"));
        let bytes = png(i);
        if i % 100 == 0 {
            let path = path.clone();
            slow.push(std::thread::spawn(move || {
                let mut f = std::fs::File::create(&path).unwrap();
                for chunk in bytes.chunks(bytes.len() / 4 + 1) {
                    f.write_all(chunk).unwrap();
                    f.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(150));
                }
            }));
        } else if i % 10 == 0 {
            let tmp = staging.join(format!("img-{i:05}.png"));
            std::fs::write(&tmp, &bytes).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        } else {
            std::fs::write(&path, &bytes).unwrap();
        }
        paths.push(path);
        if i % 200 == 199 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for t in slow {
        t.join().unwrap();
    }
    paths
}

/// Exactly one `ok` row per image, and nothing else.
fn assert_one_ok_row_each(rows: &[Row], images: &[PathBuf], log: &str) {
    let mut by_path: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_path.entry(r.path.as_str()).or_default().push(r);
    }
    let dupes: Vec<_> = by_path
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .take(5)
        .collect();
    assert!(dupes.is_empty(), "duplicate rows: {dupes:?}\n{log}");
    for img in images {
        let img = img.canonicalize().unwrap();
        let key = img.to_str().unwrap();
        let row = by_path
            .get(key)
            .unwrap_or_else(|| panic!("no row for {key}\n{log}"));
        assert_eq!(row[0].status, "ok", "{row:?}");
    }
    assert_eq!(rows.len(), images.len(), "rows for files not written");
}

fn burst_while_watching(extra: &[&str], n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (root, out, staging) = (
        dir.path().join("in"),
        dir.path().join("out"),
        dir.path().join("staging"),
    );
    std::fs::create_dir_all(&root).unwrap();
    let w = Watcher::start(&[&root], &out, &dir.path().join("log"), extra);
    let images = write_burst(&root, &staging, n);
    wait_rows(&out, n, Duration::from_secs(90), &w);
    let log = w.terminate();
    assert!(log.contains("finalized verdict part"), "{log}");
    assert_eq!(leftovers(&out), Vec::<String>::new());
    assert_one_ok_row_each(&dataset(&out), &images, &log);
}

#[test]
fn files_written_while_watching_get_one_ok_row_each() {
    burst_while_watching(&[], burst_size());
}

#[test]
fn polling_finds_files_too() {
    burst_while_watching(&["--poll", "--poll-interval", "0.2"], 200);
}

#[test]
fn kill_9_mid_burst_and_restarts_lose_and_duplicate_nothing() {
    let n = burst_size();
    let dir = tempfile::tempdir().unwrap();
    let (root, out, staging) = (
        dir.path().join("in"),
        dir.path().join("out"),
        dir.path().join("staging"),
    );
    std::fs::create_dir_all(&root).unwrap();
    let log = dir.path().join("log");
    let writer = {
        let (root, staging) = (root.clone(), staging.clone());
        std::thread::spawn(move || {
            // Spread the burst so that the kills land in the middle of it.
            let mut all = Vec::new();
            for part in 0..4 {
                let sub = root.join(format!("wave{part}"));
                all.extend(write_burst(&sub, &staging, n / 4));
                std::thread::sleep(Duration::from_millis(300));
            }
            all
        })
    };
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        | 1;
    for _ in 0..3 {
        let w = Watcher::start(&[&root], &out, &log, &[]);
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        std::thread::sleep(Duration::from_millis(200 + u64::from(seed % 1300)));
        w.kill9();
    }
    let images = writer.join().unwrap();
    let w = Watcher::start(&[&root], &out, &log, &[]);
    wait_rows(&out, images.len(), Duration::from_secs(90), &w);
    // Give a duplicate, if any, the time to show up before stopping.
    std::thread::sleep(Duration::from_millis(1500));
    let text = w.terminate();
    assert_eq!(leftovers(&out), Vec::<String>::new());
    assert_one_ok_row_each(&dataset(&out), &images, &text);
}

#[test]
fn sigterm_drains_the_pipeline_and_finalizes_the_open_part() {
    let dir = tempfile::tempdir().unwrap();
    let (root, out) = (dir.path().join("in"), dir.path().join("out"));
    let mut images = Vec::new();
    for i in 0..300 {
        let sub = root.join(format!("s{}", i % 5));
        std::fs::create_dir_all(&sub).unwrap();
        let p = sub.join(format!("{i}.png"));
        std::fs::write(&p, png(i)).unwrap();
        images.push(p);
    }
    // Older than the settle interval: all are queued by the first walk.
    std::thread::sleep(Duration::from_millis(600));
    // Parts would stay open for an hour: only the shutdown can finalize this one.
    let w = Watcher::start(
        &[&root],
        &out,
        &dir.path().join("log"),
        &["--roll-secs", "3600", "--roll-rows", "1000000"],
    );
    assert!(w.log_text().contains("queued=300"), "{}", w.log_text());
    let log = w.terminate();
    assert_eq!(leftovers(&out), Vec::<String>::new());
    let parts = std::fs::read_dir(&out).unwrap().count();
    assert_eq!(parts, 1, "{log}");
    assert_one_ok_row_each(&dataset(&out), &images, &log);

    // A restart finds everything done and scores nothing again.
    let w = Watcher::start(&[&root], &out, &dir.path().join("log2"), &[]);
    assert!(
        w.log_text().contains("already_scored=300"),
        "{}",
        w.log_text()
    );
    w.terminate();
    assert_eq!(dataset(&out).len(), 300);
}

#[cfg(feature = "test-hooks")]
#[test]
fn a_decoder_panic_on_one_file_is_its_row_and_watching_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out, log) = folders(dir.path());
    let w = Watcher::start_with_env(
        &[&input],
        &out,
        &log,
        &[],
        &[("SYNTHSCAN_TEST_INJECT_PANIC", "decode:boom")],
    );
    std::fs::write(input.join("boom.png"), png(1)).unwrap();
    std::fs::write(input.join("fine.png"), png(2)).unwrap();
    wait_rows(&out, 2, Duration::from_secs(60), &w);
    // The worker that panicked still works: a later file is scored.
    std::fs::write(input.join("later.png"), png(3)).unwrap();
    wait_rows(&out, 3, Duration::from_secs(60), &w);
    let log = w.terminate();
    let rows: BTreeMap<String, Row> = dataset(&out)
        .into_iter()
        .map(|r| (r.path.rsplit('/').next().unwrap().to_string(), r))
        .collect();
    assert_eq!(rows.len(), 3, "{log}");
    let boom = &rows["boom.png"];
    assert_eq!(boom.status, "decode_error", "{log}");
    assert!(
        boom.error.as_deref().unwrap().contains("panicked"),
        "{boom:?}"
    );
    assert_eq!(rows["fine.png"].status, "ok", "{log}");
    assert_eq!(rows["later.png"].status, "ok", "{log}");
}

#[test]
fn a_second_watcher_on_the_same_outdir_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out, log) = folders(dir.path());
    let first = Watcher::start(&[&input], &out, &log, &[]);
    let second = Command::new(env!("CARGO_BIN_EXE_synthscan"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("watch")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .args(tiny_model())
        .env("NO_COLOR", "1")
        .env_remove("SYNTHSCAN_MODELS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    let outdir = out.canonicalize().unwrap();
    assert!(
        stderr.contains(&*outdir.to_string_lossy()) && stderr.contains("another running"),
        "{stderr}"
    );
    // The first watcher is untouched: its open part was not removed, and it goes on scoring.
    std::fs::write(input.join("after.png"), png(1)).unwrap();
    let rows = wait_rows(&out, 1, Duration::from_secs(60), &first);
    assert_eq!(rows.len(), 1);
    first.terminate();
    assert_eq!(leftovers(&out), Vec::<String>::new());
    // Once the first is gone, the folder is free again.
    let again = Watcher::start(&[&input], &out, &log, &[]);
    again.terminate();
}

#[cfg(feature = "test-hooks")]
#[test]
fn a_file_rewritten_while_being_scored_ends_with_one_row_for_its_final_content() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out, log) = folders(dir.path());
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    // Every read of the file waits, so the rewrite lands after the watcher handed the first
    // version on and before the decode stage reads it.
    let w = Watcher::start_with_env(
        &[&input],
        &out,
        &log,
        &[],
        &[("SYNTHSCAN_TEST_PAUSE_DECODE", "rewritten:1500")],
    );
    let paused = "pausing before reading";
    let wait_log = |n: usize| {
        let t = Instant::now();
        while count(&log, paused) < n {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the decode stage never paused {n} time(s):\n{}",
                w.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let path = input.join("rewritten.png");
    std::fs::write(staging.join("rewritten.png"), png(1)).unwrap();
    std::fs::rename(staging.join("rewritten.png"), &path).unwrap();
    wait_log(1);
    // Rewritten in place with other content and another size.
    let img =
        image::RgbImage::from_fn(80, 48, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, 7]));
    let mut last = std::io::Cursor::new(Vec::new());
    img.write_to(&mut last, image::ImageFormat::Png).unwrap();
    let last = last.into_inner();
    std::fs::write(&path, &last).unwrap();
    // The final version is handed on, and scored once the first read gave way to it.
    wait_log(2);
    wait_rows(&out, 1, Duration::from_secs(60), &w);
    // Long enough for any further row to be written and its part finalized.
    std::thread::sleep(Duration::from_secs(3));
    let log = w.terminate();
    let rows = dataset(&out);
    assert_eq!(rows.len(), 1, "{rows:?}\n{log}");
    let row = &rows[0];
    assert_eq!(row.status, "ok", "{row:?}");
    assert_eq!(row.size_bytes, Some(last.len() as u64), "{row:?}");
    assert_eq!(
        row.blake3.as_deref(),
        Some(blake3::hash(&last).to_hex().as_str()),
        "{row:?}"
    );
    assert_eq!(row.width, Some(80), "{row:?}");
    assert!(log.contains("changed while it was read"), "{log}");
}

/// Each row's path as the file system's bytes: `path_bytes` where the row has them, else `path`.
fn dataset_path_bytes(out: &Path) -> Vec<Vec<u8>> {
    use arrow::array::{Array, AsArray};
    let mut paths = Vec::new();
    for e in std::fs::read_dir(out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if !(name.starts_with("part-") && name.ends_with(".parquet")) {
            continue;
        }
        let b = common::read_batch(&out.join(name));
        let text = b.column_by_name("path").unwrap().as_string::<i32>();
        let bytes = b.column_by_name("path_bytes").unwrap().as_binary::<i32>();
        for i in 0..b.num_rows() {
            paths.push(if bytes.is_valid(i) {
                bytes.value(i).to_vec()
            } else {
                text.value(i).as_bytes().to_vec()
            });
        }
    }
    paths.sort();
    paths
}

#[test]
fn names_that_are_not_utf8_get_one_row_each_across_restarts() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let (input, out, log) = folders(dir.path());
    let names: [&[u8]; 3] = [b"solo_\xfa.png", b"twin_\xfa.png", b"twin_\xfb.png"];
    // The twins are one name as lossy text; same bytes and time, so only the name tells them
    // apart.
    let when = std::time::SystemTime::now() - Duration::from_secs(60);
    for name in names {
        let p = input.join(OsStr::from_bytes(name));
        std::fs::write(&p, png(1)).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    let root = input.canonicalize().unwrap();
    let mut expected: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            root.join(OsStr::from_bytes(n))
                .as_os_str()
                .as_bytes()
                .to_vec()
        })
        .collect();
    expected.sort();
    for run in 0..3 {
        let w = Watcher::start(&[&input], &out, &log, &[]);
        if run == 0 {
            wait_rows(&out, 3, Duration::from_secs(60), &w);
        }
        let text = w.terminate();
        assert_eq!(
            dataset_path_bytes(&out),
            expected,
            "after run {run}\n{text}"
        );
    }
    assert!(dataset(&out).iter().all(|r| r.status == "ok"));
}

#[test]
fn hard_links_and_symlinks_made_in_a_watched_folder_are_scored_after_settling() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out, log) = folders(dir.path());
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    for i in 0..2 {
        std::fs::write(elsewhere.join(format!("{i}.png")), png(i)).unwrap();
    }
    // Nothing ever write-closes these names, so a watcher waiting for that close would hold
    // them for its whole close patience (20 settle intervals, 20 s here).
    let w = Watcher::start(&[&input], &out, &log, &["--settle", "1"]);
    let t = Instant::now();
    std::fs::hard_link(elsewhere.join("0.png"), input.join("hard.png")).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("1.png"), input.join("soft.png")).unwrap();
    let rows = wait_rows(&out, 2, Duration::from_secs(10), &w);
    let waited = t.elapsed();
    let text = w.terminate();
    let mut names: Vec<&str> = rows
        .iter()
        .map(|r| r.path.rsplit('/').next().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["hard.png", "soft.png"], "{text}");
    assert!(rows.iter().all(|r| r.status == "ok"), "{rows:?}");
    // Settling is still waited for: not scored on the event itself.
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
}
