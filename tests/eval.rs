//! `eval`, `calibrate`, `--calibration` and the run metadata of verdict files, through the real
//! binary with the random-weight test network: figures are checked against values computed here
//! from the rows (or, for a verdict dataset built by hand, against values worked out by hand).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use common::{fixtures, read_rows, run_ok, synthscan, tiny_model, tiny_model_in, write_image};
use parquet::arrow::ArrowWriter;
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;

const Z: f64 = 1.959_963_984_540_054;

/// The Wilson interval, written out independently of the scanner's.
fn wilson(k: f64, n: f64) -> [f64; 2] {
    let p = k / n;
    let c = (p + Z * Z / (2.0 * n)) / (1.0 + Z * Z / n);
    let h = Z / (1.0 + Z * Z / n) * (p * (1.0 - p) / n + Z * Z / (4.0 * n * n)).sqrt();
    [(c - h).max(0.0), (c + h).min(1.0)]
}

/// AUC by counting every (fake, real) pair.
fn pairwise_auc(real: &[f32], fake: &[f32]) -> f64 {
    let mut wins = 0.0;
    for f in fake {
        for r in real {
            wins += if f > r {
                1.0
            } else if f == r {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (real.len() * fake.len()) as f64
}

fn close(a: &Value, b: f64) {
    let a = a.as_f64().unwrap_or_else(|| panic!("{a} is not a number"));
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Images of distinct sizes (so the network scores them differently) in `dir`.
fn images(dir: &Path, n: u32, offset: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let (w, h) = (40 + 7 * (i + offset), 30 + 5 * (i + offset));
        let format = if i % 2 == 0 {
            image::ImageFormat::Png
        } else {
            image::ImageFormat::Jpeg
        };
        let ext = if i % 2 == 0 { "png" } else { "jpg" };
        write_image(&dir.join(format!("{i:02}.{ext}")), w, h, format);
    }
}

fn args<'a>(fixed: &[&'a str], model: &'a [String]) -> Vec<&'a str> {
    fixed
        .iter()
        .copied()
        .chain(model.iter().map(String::as_str))
        .collect()
}

/// The subset named `name` of the first model's figures.
fn subset<'a>(eval: &'a Value, name: &str) -> &'a Value {
    eval["models"][0]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subset"] == name)
        .unwrap_or_else(|| panic!("no subset {name} in {eval}"))
}

#[test]
fn eval_on_real_and_fake_folders_matches_the_figures_of_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("set");
    images(&root.join("real"), 6, 0);
    images(&root.join("fake"), 5, 9);
    std::fs::write(root.join("fake/broken.jpg"), b"\xff\xd8\xff not a jpeg").unwrap();
    let rows_file = dir.path().join("rows.parquet");
    let model = tiny_model();
    let out = run_ok(&mut synthscan(&args(
        &[
            "eval",
            root.to_str().unwrap(),
            "--json",
            "--out",
            rows_file.to_str().unwrap(),
        ],
        &model,
    )));
    let eval = json(&out);

    let rows = read_rows(&rows_file);
    assert_eq!(rows.len(), 12, "every file has a row, the broken one too");
    let scores = |class: &str| -> Vec<f32> {
        rows.iter()
            .filter(|r| r.path.contains(&format!("/{class}/")) && r.status == "ok")
            .map(|r| r.score.unwrap())
            .collect()
    };
    let (real, fake) = (scores("real"), scores("fake"));
    let all = subset(&eval, "all");
    assert_eq!(
        (all["n_real"].as_u64(), all["n_fake"].as_u64()),
        (Some(6), Some(5))
    );
    assert_eq!(all["errors"], 1);
    assert_eq!(eval["by_status"]["decode_error"], 1);
    close(&all["roc_auc"], pairwise_auc(&real, &fake));
    assert_eq!(eval["models"][0]["subsets"].as_array().unwrap().len(), 1);

    // At the manifest's threshold (0.5 for the test network).
    let at = &all["at"][0];
    assert_eq!(at["point"], "threshold (manifest)");
    let tp = fake.iter().filter(|&&s| s >= 0.5).count() as f64;
    let fp = real.iter().filter(|&&s| s >= 0.5).count() as f64;
    close(&at["tpr"]["rate"], tp / 5.0);
    close(&at["fpr"]["rate"], fp / 6.0);
    close(&at["accuracy"]["rate"], (tp + 6.0 - fp) / 11.0);
    let [lo, hi] = wilson(fp, 6.0);
    close(&at["fpr"]["ci95"][0], lo);
    close(&at["fpr"]["ci95"][1], hi);

    // The same rows keep the metadata of the run.
    let kv = key_values(&rows_file);
    assert!(kv["synthscan.command"].contains("\"eval\""), "{kv:?}");

    // The text form names the figures.
    let text = run_ok(&mut synthscan(&args(
        &["eval", root.to_str().unwrap()],
        &model,
    )));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("ROC-AUC") && text.contains("FPR [95% CI]"),
        "{text}"
    );
    assert!(text.contains("not scored: 1 decode_error"), "{text}");
}

#[test]
fn generator_subfolders_and_a_labels_csv_make_subsets_with_the_same_figures() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("test");
    images(&root.join("gan/0_real"), 3, 0);
    images(&root.join("gan/1_fake"), 4, 3);
    images(&root.join("diffusion/sd/real"), 2, 7);
    images(&root.join("diffusion/sd/fake"), 3, 9);
    let model = tiny_model();
    let folders = json(&run_ok(&mut synthscan(&args(
        &["eval", root.to_str().unwrap(), "--json"],
        &model,
    ))));
    let counts = |eval: &Value, name: &str| {
        let s = subset(eval, name);
        (s["n_real"].as_u64().unwrap(), s["n_fake"].as_u64().unwrap())
    };
    assert_eq!(counts(&folders, "all"), (5, 7));
    assert_eq!(counts(&folders, "gan"), (3, 4));
    assert_eq!(counts(&folders, "diffusion/sd"), (2, 3));

    // The same images listed in a CSV (labels in both spellings), with a generator column.
    let mut csv = String::from("file_name,label,generator\n");
    for (folder, label, generator) in [
        ("gan/0_real", "0", "gan"),
        ("gan/1_fake", "1", "gan"),
        ("diffusion/sd/real", "real", "diffusion/sd"),
        ("diffusion/sd/fake", "fake", "diffusion/sd"),
    ] {
        let mut names: Vec<String> = std::fs::read_dir(root.join(folder))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            csv.push_str(&format!("{folder}/{n},{label},{generator}\n"));
        }
    }
    let labels = root.join("labels.csv");
    std::fs::write(&labels, csv).unwrap();
    let listed = json(&run_ok(&mut synthscan(&args(
        &["eval", labels.to_str().unwrap(), "--json"],
        &model,
    ))));
    for name in ["all", "gan", "diffusion/sd"] {
        assert_eq!(counts(&listed, name), counts(&folders, name), "{name}");
        assert_eq!(
            subset(&listed, name)["roc_auc"],
            subset(&folders, name)["roc_auc"]
        );
        assert_eq!(subset(&listed, name)["at"], subset(&folders, name)["at"]);
    }
}

/// A hand-made verdict row: path, status, score.
type HandRow<'a> = (&'a str, &'a str, Option<f32>);

/// A verdict file written by hand, in the scanner's schema, with chosen scores.
fn hand_made_verdicts(path: &Path, rows: &[HandRow]) {
    let strings = |f: &dyn Fn(&HandRow) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("score_tiny_cnn", DataType::Float32, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("models", DataType::Utf8, false),
        Field::new("precision", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            strings(&|r| Some(r.0.to_string())),
            Arc::new(Float32Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            strings(&|r| Some(r.1.to_string())),
            strings(&|_| Some("tiny-cnn@0.0.1".into())),
            strings(&|_| Some("fp32".into())),
        ],
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn eval_of_a_verdict_dataset_gives_the_hand_checked_figures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |n: &str| d.join(n).to_string_lossy().into_owned();
    let (r1, r2, r3, f1, f2, f3, bad) = (
        p("r1.jpg"),
        p("r2.jpg"),
        p("r3.jpg"),
        p("f1.jpg"),
        p("f2.jpg"),
        p("f3.jpg"),
        p("bad.jpg"),
    );
    hand_made_verdicts(
        &d.join("verdicts.parquet"),
        &[
            (&r1, "ok", Some(0.1)),
            (&r2, "ok", Some(0.4)),
            (&r3, "ok", Some(0.35)),
            (&f1, "ok", Some(0.8)),
            (&f2, "ok", Some(0.4)),
            (&f3, "ok", Some(0.2)),
            (&bad, "decode_error", None),
            (&p("unlisted.jpg"), "ok", Some(0.9)),
        ],
    );
    std::fs::write(
        d.join("labels.csv"),
        "file_name,label\nr1.jpg,0\nr2.jpg,0\nr3.jpg,real\nf1.jpg,1\nf2.jpg,1\nf3.jpg,fake\nbad.jpg,1\ngone.jpg,0\n",
    )
    .unwrap();
    // The model, with an operating point, so its figures are reported too.
    let manifest = tiny_model_in(d, "tiny-cnn", |m| {
        m["operating_points"] = serde_json::json!([{"max_fpr": 0.05, "threshold": 0.81}]);
    });
    let out = run_ok(&mut synthscan(&[
        "eval",
        "--verdicts",
        &p("verdicts.parquet"),
        "--labels",
        &p("labels.csv"),
        "--model",
        manifest.to_str().unwrap(),
        "--threshold",
        "0.4",
        "--json",
    ]));
    let eval = json(&out);
    let all = subset(&eval, "all");
    assert_eq!(
        (all["n_real"].as_u64(), all["n_fake"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(all["errors"], 1);
    assert_eq!(
        (eval["unlabelled"].as_u64(), eval["missing"].as_u64()),
        (Some(1), Some(1))
    );
    // Pairs won by the fakes: 0.8 beats all 3; 0.4 beats 0.1 and 0.35 and ties 0.4; 0.2 beats
    // 0.1: 6.5 of 9.
    close(&all["roc_auc"], 6.5 / 9.0);
    // From the top: 0.8 fake (precision 1, recall 1/3); 0.4 fake and real together (2/3, 2/3);
    // 0.35 real (no recall added); 0.2 fake (3/5, 1): 1/3 * (1 + 2/3 + 3/5) = 34/45.
    close(&all["average_precision"], 34.0 / 45.0);
    let at = &all["at"][0];
    assert_eq!(at["point"], "threshold (--threshold)");
    // At 0.4: fakes 0.8 and 0.4 called fake, the real 0.4 too.
    close(&at["tpr"]["rate"], 2.0 / 3.0);
    close(&at["fpr"]["rate"], 1.0 / 3.0);
    close(&at["accuracy"]["rate"], 4.0 / 6.0);
    let [lo, hi] = wilson(2.0, 3.0);
    close(&at["tpr"]["ci95"][0], lo);
    close(&at["tpr"]["ci95"][1], hi);
    let op = &all["at"][1];
    assert_eq!(op["point"], "manifest max_fpr 0.05");
    close(&op["tpr"]["rate"], 0.0);
    close(&op["fpr"]["rate"], 0.0);
}

fn key_values(path: &Path) -> BTreeMap<String, String> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .expect("key-value metadata")
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect()
}

fn tiny_sha256() -> String {
    let text = std::fs::read_to_string(fixtures().join("tiny-cnn.json")).unwrap();
    let m: Value = serde_json::from_str(&text).unwrap();
    m["sha256"].as_str().unwrap().to_string()
}

#[test]
fn scan_files_describe_their_run_and_report_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    images(&dir.path().join("in"), 3, 0);
    let out = dir.path().join("v.parquet");
    let model = tiny_model();
    run_ok(&mut synthscan(&args(
        &[
            "scan",
            dir.path().join("in").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--threshold",
            "0.3",
            "--precision",
            "fp32",
        ],
        &model,
    )));
    let kv = key_values(&out);
    assert_eq!(kv["synthscan.version"], env!("CARGO_PKG_VERSION"));
    let command: Vec<String> = serde_json::from_str(&kv["synthscan.command"]).unwrap();
    assert_eq!(
        &command[1..4],
        ["--quiet", "scan", dir.path().join("in").to_str().unwrap()]
    );
    assert_eq!(kv["synthscan.threshold"], "0.3");
    assert_eq!(kv["synthscan.threshold_source"], "--threshold");
    let models: Value = serde_json::from_str(&kv["synthscan.models"]).unwrap();
    let m = &models[0];
    assert_eq!(
        (m["name"].as_str(), m["version"].as_str()),
        (Some("tiny-cnn"), Some("0.0.1"))
    );
    assert_eq!(m["sha256"].as_str(), Some(tiny_sha256().as_str()));
    assert_eq!(
        (m["precision"].as_str(), m["threshold_source"].as_str()),
        (Some("fp32"), Some("--threshold"))
    );
    close(&m["threshold"], 0.3);

    let report = run_ok(&mut synthscan(&["report", out.to_str().unwrap()]));
    let text = String::from_utf8(report.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "written by synthscan {}",
            env!("CARGO_PKG_VERSION")
        )) && text.contains(
            "model tiny-cnn 0.0.1 (fp32, sha256 227825f73484): threshold 0.3000 (--threshold)"
        ),
        "{text}"
    );
}

#[test]
fn calibrate_picks_the_documented_threshold_and_scan_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let (real, fake) = (dir.path().join("real"), dir.path().join("fake"));
    images(&real, 20, 0);
    images(&fake, 4, 20);
    let site = dir.path().join("site.json");
    let model = tiny_model();
    let out = run_ok(&mut synthscan(&args(
        &[
            "calibrate",
            real.to_str().unwrap(),
            "--fake",
            fake.to_str().unwrap(),
            "--max-fpr",
            "0.2",
            "--max-fpr",
            "0.15",
            "--out",
            site.to_str().unwrap(),
        ],
        &model,
    )));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FPR reached"));
    let cal: Value = serde_json::from_str(&std::fs::read_to_string(&site).unwrap()).unwrap();
    assert_eq!(cal["model"]["name"], "tiny-cnn");
    assert_eq!(cal["model"]["version"], "0.0.1");
    assert_eq!(
        cal["model"]["sha256"].as_str(),
        Some(tiny_sha256().as_str())
    );
    assert_eq!(cal["data"]["real"]["images"], 20);
    assert_eq!(cal["data"]["real"]["formats"]["png"], 10);
    assert_eq!(cal["data"]["fake"]["images"], 4);

    // The scores of the same images, from a scan.
    let rows_file = dir.path().join("rows.parquet");
    run_ok(&mut synthscan(&args(
        &[
            "scan",
            real.to_str().unwrap(),
            fake.to_str().unwrap(),
            "--out",
            rows_file.to_str().unwrap(),
        ],
        &model,
    )));
    let rows = read_rows(&rows_file);
    let scores = |folder: &Path| -> Vec<f32> {
        rows.iter()
            .filter(|r| Path::new(&r.path).starts_with(folder))
            .map(|r| r.score.unwrap())
            .collect()
    };
    let (real_scores, fake_scores) = (scores(&real), scores(&fake));
    let mut desc = real_scores.clone();
    desc.sort_by(|a, b| b.total_cmp(a));
    // The documented rule: at most floor(a * n) reals at or above; the lowest such threshold is
    // the smallest float above the (floor(a * n) + 1)-th highest real score.
    for (point, allowed) in cal["points"].as_array().unwrap().iter().zip([4usize, 3]) {
        let t = point["threshold"].as_f64().unwrap() as f32;
        assert_eq!(t, desc[allowed].next_up(), "{point}");
        let k = real_scores.iter().filter(|&&s| s >= t).count();
        assert!(k <= allowed);
        assert_eq!(point["fpr"]["k"], k);
        assert_eq!(point["fpr"]["n"], 20);
        let tp = fake_scores.iter().filter(|&&s| s >= t).count();
        assert_eq!(point["tpr"]["k"], tp);
    }

    // scan --calibration: the 5% point is absent and there are two, so --max-fpr picks one.
    let calibrated = dir.path().join("calibrated.parquet");
    let scan = |extra: &[&str]| {
        let mut a = vec![
            "scan",
            real.to_str().unwrap(),
            "--out",
            calibrated.to_str().unwrap(),
            "--calibration",
            site.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        synthscan(&args(&a, &model)).output().unwrap()
    };
    let refused = scan(&[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no point for --max-fpr 0.05"));
    let ok = scan(&["--max-fpr", "0.2"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let kv = key_values(&calibrated);
    assert_eq!(kv["synthscan.threshold_source"], "calibration");
    let models: Value = serde_json::from_str(&kv["synthscan.models"]).unwrap();
    let t = cal["points"][0]["threshold"].as_f64().unwrap() as f32;
    assert_eq!(models[0]["threshold"].as_f64().unwrap() as f32, t);
    assert_eq!(models[0]["calibration"].as_str(), site.to_str());
    assert_eq!(models[0]["max_fpr"], 0.2);
    let fakes = read_rows(&calibrated)
        .iter()
        .filter(|r| r.label.as_deref() == Some("fake"))
        .count();
    assert_eq!(
        fakes,
        cal["points"][0]["fpr"]["k"].as_u64().unwrap() as usize
    );
}

#[test]
fn calibrate_refuses_too_few_real_images_naming_how_many_are_needed() {
    let dir = tempfile::tempdir().unwrap();
    images(&dir.path().join("real"), 10, 0);
    let site = dir.path().join("site.json");
    let model = tiny_model();
    let out = synthscan(&args(
        &[
            "calibrate",
            dir.path().join("real").to_str().unwrap(),
            "--max-fpr",
            "0.05",
            "--out",
            site.to_str().unwrap(),
        ],
        &model,
    ))
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at least 60 real images") && err.contains("there are 10"),
        "{err}"
    );
    assert!(!site.exists());
}

#[test]
fn a_calibration_for_another_model_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    images(&real, 15, 0);
    let site = dir.path().join("site.json");
    let model = tiny_model();
    run_ok(&mut synthscan(&args(
        &[
            "calibrate",
            real.to_str().unwrap(),
            "--max-fpr",
            "0.2",
            "--out",
            site.to_str().unwrap(),
        ],
        &model,
    )));
    // The same network, released as another version.
    let newer = tiny_model_in(dir.path(), "tiny-cnn", |m| m["version"] = "0.0.2".into());
    for sub in ["scan", "eval"] {
        let path = if sub == "eval" {
            dir.path()
        } else {
            real.as_path()
        };
        std::fs::create_dir_all(dir.path().join("fake")).unwrap();
        let out = synthscan(&[
            sub,
            path.to_str().unwrap(),
            "--model",
            newer.to_str().unwrap(),
            "--calibration",
            site.to_str().unwrap(),
            "--out",
            dir.path().join("v.parquet").to_str().unwrap(),
        ])
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(2), "{sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("calibrated for model tiny-cnn 0.0.1")
                && err.contains("uses tiny-cnn 0.0.2"),
            "{sub}: {err}"
        );
        assert!(!dir.path().join("v.parquet").exists());
    }
}
