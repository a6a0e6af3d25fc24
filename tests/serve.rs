//! `synthscan serve` over real HTTP on an ephemeral port: uploads are scored exactly like `scan`
//! scores the same files, limits answer with JSON errors, bad files get rows, zips are opened
//! safely, concurrent clients all get their answers, and SIGTERM lets requests finish.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{read_rows, synthscan, tiny_model, write_image};
use serde_json::Value;

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::start_with_env(extra, &[])
    }

    fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let model = tiny_model();
        args.extend(model.iter().map(String::as_str));
        let mut child = synthscan(&args)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start synthscan serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("serve exited before listening")
                .unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.trim_end_matches('/').parse().unwrap();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[], b"")
    }

    fn upload(&self, files: &[(&str, &[u8])]) -> Response {
        let (content_type, body) = multipart(files);
        request(
            self.addr,
            "POST",
            "/v1/scan",
            &[("Content-Type", &content_type)],
            &body,
        )
    }

    fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The server's peak resident memory, from the kernel's own accounting.
    fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&self.body));
        })
    }

    fn rows(&self) -> Vec<Value> {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        self.json().as_array().unwrap().clone()
    }
}

const BOUNDARY: &str = "synthscan-test-boundary-7d1c";

fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (name, bytes) in files {
        write!(
            body,
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .unwrap();
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{BOUNDARY}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

fn head(method: &str, path: &str, headers: &[(&str, &str)], len: usize) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {len}\r\n"
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(&head(method, path, headers, body.len()))
        .unwrap();
    stream.write_all(body).unwrap();
    read_response(stream)
}

fn read_response(mut stream: TcpStream) -> Response {
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let response = Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    };
    assert!(
        response.header("transfer-encoding").is_none(),
        "the test client reads only sized bodies"
    );
    response
}

fn image_bytes(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    write_image(&path, w, h, format);
    std::fs::read(path).unwrap()
}

fn by_path(rows: &[Value]) -> BTreeMap<String, Value> {
    rows.iter()
        .map(|r| (r["path"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

#[test]
fn uploads_are_scored_exactly_as_scan_scores_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("photo.jpg", image_bytes(320, 240, image::ImageFormat::Jpeg)),
        ("shot.png", image_bytes(200, 300, image::ImageFormat::Png)),
        ("pic.webp", image_bytes(100, 80, image::ImageFormat::WebP)),
        ("notes.jpg", b"not an image at all".to_vec()),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let out = dir.path().join("scan.parquet");
    let mut args = vec![
        "scan".to_string(),
        dir.path().to_string_lossy().into_owned(),
        "--out".into(),
        out.to_string_lossy().into_owned(),
    ];
    args.extend(tiny_model());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(synthscan(&args).status().unwrap().success());
    let scanned: BTreeMap<String, common::Row> = read_rows(&out)
        .into_iter()
        .map(|r| {
            let name = Path::new(&r.path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, r)
        })
        .collect();

    let server = Server::start(&[]);
    assert_eq!(server.get("/healthz").status, 200);
    let models = server.get("/v1/models").json();
    let model = &models["models"][0];
    assert_eq!(model["name"], "tiny-cnn");
    assert_eq!(model["input"]["width"], 64);
    assert!(model["threshold"].as_f64().is_some());
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("<title>synthscan</title>"));

    let upload: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let response = server.upload(&upload);
    let batch = response.header("x-synthscan-batch").unwrap().to_string();
    let rows = response.rows();
    let order: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(order, ["photo.jpg", "shot.png", "pic.webp", "notes.jpg"]);
    for row in &rows {
        let name = row["path"].as_str().unwrap();
        let want = &scanned[name];
        assert_eq!(row["status"], want.status.as_str(), "{name}");
        assert_eq!(
            row["score"].as_f64().map(|s| s as f32),
            want.score,
            "{name}: the upload's score differs from scan's"
        );
        assert_eq!(row["label"].as_str(), want.label.as_deref(), "{name}");
        assert_eq!(
            row["width"].as_u64().map(|w| w as u32),
            want.width,
            "{name}"
        );
    }
    assert!(rows[3]["error"]
        .as_str()
        .unwrap()
        .contains("not a recognised image format"));
    // Every object has every column, nulls included.
    assert!(rows[3].as_object().unwrap().contains_key("score_tiny_cnn"));

    let csv = server.get(&format!("/v1/results/{batch}.csv"));
    assert_eq!(csv.status, 200);
    assert!(csv
        .header("content-disposition")
        .unwrap()
        .contains("attachment"));
    let csv = String::from_utf8(csv.body).unwrap();
    assert!(csv.starts_with("path,size_bytes,"), "{csv}");
    assert_eq!(csv.lines().count(), 5);
    assert!(csv
        .lines()
        .any(|l| l.starts_with("notes.jpg,") && l.contains("unsupported")));

    let parquet = server.get(&format!("/v1/results/{batch}.parquet"));
    assert_eq!(parquet.status, 200);
    let pq = dir.path().join("download.parquet");
    std::fs::write(&pq, &parquet.body).unwrap();
    let downloaded = read_rows(&pq);
    assert_eq!(downloaded.len(), 4);
    let photo = downloaded.iter().find(|r| r.path == "photo.jpg").unwrap();
    assert_eq!(photo.score, scanned["photo.jpg"].score);

    let log = String::from_utf8(server.get(&format!("/v1/results/{batch}.log")).body).unwrap();
    assert!(
        log.contains("4 files") && log.contains("notes.jpg\tunsupported"),
        "{log}"
    );
    assert_eq!(server.get("/v1/results/0000.csv").status, 404);
    assert_eq!(server.get(&format!("/v1/results/{batch}.exe")).status, 404);
}

#[test]
fn uploads_carry_what_the_file_declares() {
    let comfy = std::fs::read(common::fixtures().join("provenance/img2img_cropped.png")).unwrap();
    let plain = image_bytes(40, 30, image::ImageFormat::Png);
    let server = Server::start(&[]);
    let response = server.upload(&[("comfy.png", &comfy), ("plain.png", &plain)]);
    let batch = response.header("x-synthscan-batch").unwrap().to_string();
    let rows = by_path(&response.rows());
    let comfy = &rows["comfy.png"];
    assert_eq!(comfy["provenance"], "comfyui");
    assert_eq!(comfy["provenance_generator"], "ComfyUI");
    assert_eq!(comfy["provenance_ai"], true);
    assert_eq!(
        (&comfy["basis"], &comfy["label"]),
        (&"declared".into(), &"fake".into())
    );
    let plain = &rows["plain.png"];
    assert_eq!(plain["provenance"], Value::Null);
    assert_eq!(plain["provenance_ai"], false);
    assert_eq!(plain["basis"], "model");
    assert_eq!(plain["label"], plain["label_tiny_cnn"]);
    let log = String::from_utf8(server.get(&format!("/v1/results/{batch}.log")).body).unwrap();
    assert!(log.contains("fake (declared)"), "{log}");
}

#[test]
fn limits_answer_with_a_json_error_naming_the_limit() {
    let server = Server::start(&[
        "--max-upload-mb",
        "1",
        "--max-files",
        "3",
        "--max-pixels",
        "10000",
        "--max-unzipped-mb",
        "1",
    ]);
    let limit_of = |r: &Response| r.json()["limit"].as_str().map(str::to_string);

    // A body declared over the limit is refused before it is read.
    let (content_type, _) = multipart(&[]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let headers = [("Content-Type", content_type.as_str())];
    stream
        .write_all(&head("POST", "/v1/scan", &headers, 2 << 20))
        .unwrap();
    let r = read_response(stream);
    assert_eq!(r.status, 413);
    assert_eq!(limit_of(&r).as_deref(), Some("max_upload_mb"));

    let small = image_bytes(40, 40, image::ImageFormat::Png);
    let four: Vec<(&str, &[u8])> = ["a.png", "b.png", "c.png", "d.png"]
        .iter()
        .map(|n| (*n, small.as_slice()))
        .collect();
    let r = server.upload(&four);
    assert_eq!(r.status, 413);
    assert_eq!(limit_of(&r).as_deref(), Some("max_files"));

    // Over the pixel limit, and a decompression bomb: rows with too_large, not request errors.
    let big = image_bytes(200, 200, image::ImageFormat::Png);
    let bomb = common::png_claiming(100_000, 100_000);
    let rows = server
        .upload(&[("big.png", &big), ("bomb.png", &bomb), ("ok.png", &small)])
        .rows();
    let rows = by_path(&rows);
    assert_eq!(rows["big.png"]["status"], "too_large");
    assert_eq!(rows["bomb.png"]["status"], "too_large");
    assert_eq!(rows["ok.png"]["status"], "ok");

    // A zip that expands past --max-unzipped-mb, whatever its headers claim.
    let zeros = vec![0u8; 600 << 10];
    let bomb_zip = common::zip_of(&[("a.png", &zeros), ("b.png", &zeros)]);
    assert!(bomb_zip.len() < 100 << 10);
    let r = server.upload(&[("bomb.zip", &bomb_zip)]);
    assert_eq!(r.status, 413);
    assert_eq!(limit_of(&r).as_deref(), Some("max_unzipped_mb"));

    let r = server.upload(&[]);
    assert_eq!(r.status, 422);
    assert!(r.json()["error"].as_str().unwrap().contains("no files"));

    let r = request(
        server.addr,
        "POST",
        "/v1/scan",
        &[("Content-Type", "text/plain")],
        b"hello",
    );
    assert!((400..500).contains(&r.status), "{}", r.status);
    assert!(r.json()["error"].as_str().is_some());

    // The server is still healthy after all that.
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn zip_entries_are_scored_and_kept_files_get_generated_names_only() {
    let root = tempfile::tempdir().unwrap();
    let keep = root.path().join("kept");
    let server = Server::start(&["--keep", keep.to_str().unwrap()]);
    let jpg = image_bytes(64, 48, image::ImageFormat::Jpeg);
    let png = image_bytes(30, 30, image::ImageFormat::Png);
    let zip = common::zip_of(&[
        ("inner/a.jpg", &jpg),
        ("../escape.jpg", &jpg),
        ("b.png", &png),
        ("__MACOSX/._b.png", b"resource fork"),
    ]);
    let rows = server
        .upload(&[("photos.zip", &zip), ("../../outside.png", &png)])
        .rows();
    let rows = by_path(&rows);
    let names: Vec<&String> = rows.keys().collect();
    assert_eq!(
        names,
        [
            "../../outside.png",
            "photos.zip/../escape.jpg",
            "photos.zip/b.png",
            "photos.zip/inner/a.jpg"
        ]
    );
    assert_eq!(rows["photos.zip/inner/a.jpg"]["status"], "ok");
    assert_eq!(rows["photos.zip/b.png"]["status"], "ok");
    assert_eq!(rows["../../outside.png"]["status"], "ok");
    let escape = &rows["photos.zip/../escape.jpg"];
    assert_eq!(escape["status"], "unsupported");
    assert!(escape["error"]
        .as_str()
        .unwrap()
        .contains("unsafe zip entry name"));

    let mut kept: Vec<String> = std::fs::read_dir(&keep)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept.len(), 3, "{kept:?}");
    for name in &kept {
        let (stem, ext) = name.rsplit_once('.').unwrap();
        let (batch, index) = stem.split_once('-').unwrap();
        assert!(
            batch.len() == 20 && batch.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
        assert!(
            index.len() == 4 && index.chars().all(|c| c.is_ascii_digit()),
            "{name}"
        );
        assert!(["jpg", "png"].contains(&ext), "{name}");
    }
    let around: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(around, ["kept"], "nothing was written outside --keep");
}

#[test]
fn twenty_clients_at_once_all_get_their_own_answers() {
    let server = Server::start(&["--max-concurrent", "4"]);
    let addr = server.addr;
    let clients: Vec<_> = (0..20u32)
        .map(|c| {
            std::thread::spawn(move || {
                let files: Vec<(String, Vec<u8>)> = (0..3u32)
                    .map(|i| {
                        let size = 40 + c * 3 + i;
                        let bytes = image_bytes(size, size + 7, image::ImageFormat::Png);
                        (format!("client{c}-{i}.png"), bytes)
                    })
                    .collect();
                let parts: Vec<(&str, &[u8])> = files
                    .iter()
                    .map(|(n, b)| (n.as_str(), b.as_slice()))
                    .collect();
                let (content_type, body) = multipart(&parts);
                let r = request(
                    addr,
                    "POST",
                    "/v1/scan",
                    &[("Content-Type", &content_type)],
                    &body,
                );
                (c, r.rows())
            })
        })
        .collect();
    for client in clients {
        let (c, rows) = client.join().unwrap();
        assert_eq!(rows.len(), 3);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["path"], format!("client{c}-{i}.png"));
            assert_eq!(row["status"], "ok");
            assert_eq!(row["width"], 40 + c * 3 + i as u32);
        }
    }
    // Requests wait their turn rather than pile up in memory: a generous bound that an
    // unbounded server would also meet here, but that catches a leak of every upload.
    assert!(
        server.peak_rss_bytes() < 1 << 30,
        "{}",
        server.peak_rss_bytes()
    );
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits() {
    let mut server = Server::start(&[]);
    // Half the body now, so the request is surely in flight when the signal arrives.
    let (mut stream, rest) = half_sent_upload(server.addr, "late.png");
    server.terminate();
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(&rest).unwrap();
    let r = read_response(stream);
    let rows = r.rows();
    assert_eq!(rows[0]["path"], "late.png");
    assert_eq!(rows[0]["status"], "ok");

    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(TcpStream::connect(server.addr).is_err());
}

/// Waits for the server to exit on its own after SIGTERM.
fn exits_after_sigterm(server: &mut Server) -> std::process::ExitStatus {
    server.terminate();
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(feature = "test-hooks")]
#[test]
fn panics_in_decode_and_inference_become_rows_and_the_server_stays_healthy() {
    let png = |w| image_bytes(w, 40, image::ImageFormat::Png);
    let (a, boom, c) = (png(40), png(41), png(42));
    let files: [(&str, &[u8]); 3] = [("a.png", &a), ("boom.png", &boom), ("c.png", &c)];
    for (site, status) in [("decode", "decode_error"), ("infer", "inference_error")] {
        let inject = format!("{site}:boom");
        let mut server =
            Server::start_with_env(&["-b", "1"], &[("SYNTHSCAN_TEST_INJECT_PANIC", &inject)]);
        let rows = server.upload(&files).rows();
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r["path"].as_str().unwrap(), r["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [("a.png", "ok"), ("boom.png", status), ("c.png", "ok")]
        );
        assert!(
            rows[1]["error"].as_str().unwrap().contains("panicked"),
            "{}",
            rows[1]
        );
        let health = server.get("/healthz");
        assert_eq!(health.status, 200);
        assert_eq!(health.json()["status"], "ok");
        // The workers that panicked still serve.
        assert_eq!(
            server.upload(&[("again.png", &a)]).rows()[0]["status"],
            "ok"
        );
        assert!(exits_after_sigterm(&mut server).success());
    }
}

#[cfg(feature = "test-hooks")]
#[test]
fn a_dead_pipeline_answers_503_on_health_and_requests_instead_of_hanging() {
    let mut server =
        Server::start_with_env(&[], &[("SYNTHSCAN_TEST_INJECT_PANIC", "collect:boom")]);
    assert_eq!(server.get("/healthz").status, 200);
    let png = image_bytes(40, 40, image::ImageFormat::Png);
    let r = server.upload(&[("boom.png", &png)]);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let health = server.get("/healthz");
    assert_eq!(health.status, 503);
    let body = health.json();
    assert_eq!(body["status"], "down");
    assert!(body["error"].as_str().unwrap().contains("failed"), "{body}");
    // Later requests are answered too, and shutdown is not blocked by any of them.
    assert_eq!(server.upload(&[("fine.png", &png)]).status, 503);
    let status = exits_after_sigterm(&mut server);
    assert_eq!(
        status.code(),
        Some(1),
        "the pipeline's failure is the exit status"
    );
}

#[test]
fn busy_slots_answer_429_with_retry_after_once_the_wait_is_over() {
    let server = Server::start(&["--max-concurrent", "1", "--max-wait", "0.5"]);
    // A slow client holds the only slot: its body arrives in two halves.
    let (mut slow, rest) = half_sent_upload(server.addr, "slow.png");
    let png = image_bytes(50, 50, image::ImageFormat::Png);

    let started = Instant::now();
    let busy = server.upload(&[("fast.png", &png)]);
    assert_eq!(busy.status, 429, "{}", String::from_utf8_lossy(&busy.body));
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it waited --max-wait first"
    );
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert_eq!(busy.json()["limit"], "max_concurrent");

    slow.write_all(&rest).unwrap();
    assert_eq!(read_response(slow).rows()[0]["status"], "ok");
    // The slot is free again.
    assert_eq!(
        server.upload(&[("fast.png", &png)]).rows()[0]["status"],
        "ok"
    );
}

/// Starts an upload of one small PNG and sends half its body: the request is in flight, and
/// the caller sends the rest (returned) when the test is ready.
fn half_sent_upload(addr: SocketAddr, name: &str) -> (TcpStream, Vec<u8>) {
    let png = image_bytes(50, 50, image::ImageFormat::Png);
    let (content_type, body) = multipart(&[(name, &png)]);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(&head(
            "POST",
            "/v1/scan",
            &[("Content-Type", &content_type)],
            body.len(),
        ))
        .unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    (stream, rest.to_vec())
}

/// Sends a request's head (with the given Host) and none of its body.
fn send_head(addr: SocketAddr, host: &str, head_lines: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{head_lines}Host: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    stream
}

fn get_as(server: &Server, path: &str, host: &str, origin: Option<&str>) -> Response {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    read_response(send_head(
        server.addr,
        host,
        &format!("GET {path} HTTP/1.1\r\n{origin}"),
    ))
}

#[test]
fn stalled_clients_are_answered_408_and_free_their_slot() {
    let server = Server::start(&["--max-concurrent", "1", "--read-timeout", "1"]);
    // Headers that promise 10 MB, 1 KB of it, then nothing: the only slot is taken.
    let (content_type, _) = multipart(&[]);
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled
        .write_all(&head(
            "POST",
            "/v1/scan",
            &[("Content-Type", &content_type)],
            10_000_000,
        ))
        .unwrap();
    write!(
        stalled,
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.png\"\r\n\r\n"
    )
    .unwrap();
    stalled.write_all(&[7u8; 1024]).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // Waits for the slot (--max-wait is 10 s): it is freed once the stalled body times out.
    let png = image_bytes(50, 50, image::ImageFormat::Png);
    let rows = server.upload(&[("after.png", &png)]).rows();
    assert_eq!(rows[0]["status"], "ok");
    let r = read_response(stalled);
    assert_eq!(r.status, 408, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["limit"], "read_timeout");

    // Half a header is answered 408 too; a connection that sends nothing is closed.
    let mut half = TcpStream::connect(server.addr).unwrap();
    half.write_all(b"POST /v1/scan HTTP/1.1\r\nHost: loc")
        .unwrap();
    let r = read_response(half);
    assert_eq!(r.status, 408);
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    silent
        .read_to_end(&mut got)
        .expect("closed by the server, not left open");
    assert!(got.is_empty());
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn connections_over_max_connections_are_refused_until_some_close() {
    let server = Server::start(&["--max-connections", "2", "--read-timeout", "1"]);
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = send_head(server.addr, "localhost", "GET /healthz HTTP/1.1\r\n");
    third
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    // A 503, or a close (a reset if the request was not read): not an answer, nor a wait.
    let _ = third.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 503"), "{got}");
    if !got.is_empty() {
        assert!(got.contains("max_connections"), "{got}");
    }
    // The idle ones are closed after --read-timeout, and their places are free again.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(server.get("/healthz").status, 200);
    drop(idle);
}

#[test]
fn a_client_still_sending_a_refused_body_reads_the_refusal() {
    let server = Server::start(&["--max-concurrent", "1", "--max-wait", "0.5"]);
    let (mut slow, rest) = half_sent_upload(server.addr, "slow.png");
    // Larger than the socket buffers: the client is still writing when the 429 is sent, and
    // like curl or requests reads the answer only once its body is out.
    let body = vec![b'x'; 24 << 20];
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let (content_type, _) = multipart(&[]);
    stream
        .write_all(&head(
            "POST",
            "/v1/scan",
            &[("Content-Type", &content_type)],
            body.len(),
        ))
        .unwrap();
    stream
        .write_all(&body)
        .expect("the server reads the refused body instead of resetting");
    let busy = read_response(stream);
    assert_eq!(busy.status, 429, "{}", String::from_utf8_lossy(&busy.body));
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert_eq!(busy.json()["limit"], "max_concurrent");
    slow.write_all(&rest).unwrap();
    assert_eq!(read_response(slow).rows()[0]["status"], "ok");

    // Declared over --max-upload-mb and sent anyway: the 413 is read as well.
    let small = Server::start(&["--max-upload-mb", "1"]);
    let body = vec![b'x'; 3 << 19];
    let mut stream = TcpStream::connect(small.addr).unwrap();
    stream
        .write_all(&head(
            "POST",
            "/v1/scan",
            &[("Content-Type", &content_type)],
            body.len(),
        ))
        .unwrap();
    stream.write_all(&body).unwrap();
    let r = read_response(stream);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["limit"], "max_upload_mb");
}

#[test]
fn foreign_hosts_and_origins_are_refused_unless_allowed() {
    let server = Server::start(&[]);
    let port = server.addr.port();
    let local = format!("localhost:{port}");
    let foreign = format!("evil.example:{port}");

    let r = get_as(&server, "/v1/models", &foreign, None);
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["limit"], "allow_host");
    assert!(r.json()["error"].as_str().unwrap().contains("evil.example"));
    for host in [
        local.as_str(),
        &format!("127.0.0.1:{port}"),
        &format!("[::1]:{port}"),
    ] {
        assert_eq!(
            get_as(&server, "/healthz", host, None).status,
            200,
            "{host}"
        );
    }

    let same = format!("http://{local}");
    assert_eq!(
        get_as(&server, "/v1/models", &local, Some(&same)).status,
        200
    );
    let r = get_as(&server, "/v1/models", &local, Some("http://evil.example"));
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["limit"], "allow_origin");
    let other_port = format!("http://localhost:{}", port.wrapping_add(1));
    assert_eq!(get_as(&server, "/", &local, Some(&other_port)).status, 403);

    // A form on another site posting an upload: refused, nothing scored.
    let png = image_bytes(40, 40, image::ImageFormat::Png);
    let (content_type, body) = multipart(&[("x.png", &png)]);
    let r = request(
        server.addr,
        "POST",
        "/v1/scan",
        &[
            ("Content-Type", &content_type),
            ("Origin", "https://evil.example"),
        ],
        &body,
    );
    assert_eq!(r.status, 403);
    assert!(r.header("x-synthscan-batch").is_none());

    let open = Server::start(&[
        "--allow-host",
        "evil.example",
        "--allow-origin",
        "https://evil.example",
    ]);
    let foreign = format!("evil.example:{}", open.addr.port());
    let r = get_as(&open, "/v1/models", &foreign, Some("https://evil.example"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn formula_looking_names_are_neutralized_in_csv_and_exact_in_json_and_parquet() {
    let server = Server::start(&[]);
    let png = image_bytes(40, 40, image::ImageFormat::Png);
    let names = ["=1+2.png", "@SUM(A1).png", "+x.png", "-y.png", "plain.png"];
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (*n, png.as_slice())).collect();
    let response = server.upload(&files);
    let batch = response.header("x-synthscan-batch").unwrap().to_string();
    let rows = response.rows();
    let paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths, names);

    let csv = String::from_utf8(server.get(&format!("/v1/results/{batch}.csv")).body).unwrap();
    let first: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        first,
        [
            "'=1+2.png",
            "'@SUM(A1).png",
            "'+x.png",
            "'-y.png",
            "plain.png"
        ],
        "{csv}"
    );

    let json = server.get(&format!("/v1/results/{batch}.json")).json();
    assert_eq!(json[0]["path"], "=1+2.png");
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("d.parquet");
    std::fs::write(
        &pq,
        server.get(&format!("/v1/results/{batch}.parquet")).body,
    )
    .unwrap();
    let exact: Vec<String> = read_rows(&pq).into_iter().map(|r| r.path).collect();
    assert_eq!(exact, names);
}
