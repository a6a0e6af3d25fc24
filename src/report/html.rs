//! One self-contained HTML page (`report --html`, `eval --html`): the charts inline as SVG, the
//! tables beside them, the style in the page, nothing fetched, so it opens offline and can be
//! mailed as it is.
//!
//! It lays out what [`super::summarize`] and [`crate::measure::evaluate`] computed and computes
//! nothing of its own. Every string from the data (paths, folder, model and subset names) is
//! escaped on the way in.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::charts::{self, Bar, ChartError, Mark};
use super::{Breakdown, Rate, Report};
use crate::measure::evaluate::{Evaluation, ModelEvaluation, ALL};
use crate::measure::metrics::Proportion;

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1280px}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}\
section{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}\
section>h2{flex-basis:100%}figure{margin:0}\
table{border-collapse:collapse;font-size:13px}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}\
.note{color:#555;font-size:13px}";

/// `s` with the characters that mean something in HTML replaced by their entities.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page for `synthscan report`.
pub fn report_page(report: &Report) -> Result<String, ChartError> {
    let mut body = String::new();
    let files: Vec<String> = report
        .files
        .iter()
        .map(|f| escape(&f.display().to_string()))
        .collect();
    let _ = write!(
        body,
        "<p class=\"note\">{} rows in {} file(s), {} distinct paths: {}</p>",
        report.rows,
        report.files.len(),
        report.distinct_paths,
        files.join(", ")
    );
    let mut summary = vec![("combined verdict".to_string(), rate_cells(&report.combined))];
    summary.extend(
        report
            .models
            .iter()
            .map(|(m, r)| (format!("model {m}"), rate_cells(r))),
    );
    summary.extend(
        report
            .by_status
            .iter()
            .map(|(s, n)| (format!("status {s}"), vec![n.to_string(), String::new()])),
    );
    section(
        &mut body,
        "summary",
        "Summary",
        &[],
        &table(&["", "rows", "fake"], &summary),
    );

    let mut figures = Vec::new();
    for (model, h) in &report.score_histograms {
        figures.push(charts::histograms(
            &format!("Scores of {model}"),
            &[(model.as_str(), h)],
            None,
        )?);
    }
    if !figures.is_empty() {
        section(&mut body, "scores", "Scores by model", &figures, "");
    }
    breakdown(&mut body, &report.breakdown, "Fake")?;
    Ok(page("synthscan report", &body))
}

/// The page for `synthscan eval`; `breakdown` is the scanner's labels by format, size and folder
/// when the rows carried those.
pub fn eval_page(eval: &Evaluation, by: Option<&Breakdown>) -> Result<String, ChartError> {
    let mut body = String::new();
    for (i, m) in eval.models.iter().enumerate() {
        model_section(&mut body, i, m)?;
    }
    let mut notes: Vec<String> = eval
        .by_status
        .iter()
        .filter(|(s, _)| s.as_str() != "ok")
        .map(|(s, n)| format!("{n} {}", escape(s)))
        .collect();
    if !notes.is_empty() {
        notes[0] = format!("not scored: {}", notes[0]);
    }
    if eval.unlabelled > 0 {
        notes.push(format!(
            "rows without a label (ignored): {}",
            eval.unlabelled
        ));
    }
    if eval.missing > 0 {
        notes.push(format!("labelled files without a row: {}", eval.missing));
    }
    if !notes.is_empty() {
        let _ = write!(body, "<p class=\"note\">{}</p>", notes.join("; "));
    }
    if let Some(by) = by {
        breakdown(&mut body, by, "Called fake")?;
    }
    Ok(page("synthscan eval", &body))
}

fn model_section(body: &mut String, i: usize, m: &ModelEvaluation) -> Result<(), ChartError> {
    let name = format!("{} {}", m.model.name, m.model.version);
    let figures = model_charts(&name, m)?;
    let tables = model_tables(&name, m);
    section(
        body,
        &format!("model-{i}"),
        &format!("Model {name}"),
        &figures,
        &tables,
    );
    Ok(())
}

/// The score histograms per class, and the ROC and precision-recall curves with the operating
/// points marked, over all subsets together.
fn model_charts(name: &str, m: &ModelEvaluation) -> Result<Vec<String>, ChartError> {
    let info = &m.model;
    let mut figures = Vec::new();
    if let Some(all) = m.subsets.iter().find(|s| s.subset == ALL) {
        let c = &all.curves;
        figures.push(charts::histograms(
            &format!("Scores of {name}"),
            &[("real", &c.real), ("fake", &c.fake)],
            Some(info.threshold),
        )?);
        let marks =
            |point: fn(&crate::measure::metrics::AtThreshold) -> (Proportion, Proportion)| {
                all.at
                    .iter()
                    .filter_map(|p| {
                        let (x, y) = point(&p.figures);
                        Some(Mark {
                            name: p.point.clone(),
                            x: x.rate?,
                            y: y.rate?,
                        })
                    })
                    .collect::<Vec<_>>()
            };
        if !c.roc.is_empty() {
            figures.push(charts::curve(
                "ROC",
                ("false positive rate", "true positive rate"),
                &c.roc,
                &marks(|t| (t.fpr, t.tpr)),
            )?);
        }
        if !c.pr.is_empty() {
            figures.push(charts::curve(
                "Precision-recall",
                ("recall", "precision"),
                &c.pr,
                &marks(|t| (t.tpr, t.precision)),
            )?);
        }
    }
    Ok(figures)
}

/// The figures per subset, and the rates at each operating point with their intervals.
fn model_tables(name: &str, m: &ModelEvaluation) -> String {
    let info = &m.model;
    let subsets: Vec<(String, Vec<String>)> = m
        .subsets
        .iter()
        .map(|s| {
            (
                s.subset.clone(),
                vec![
                    s.n_real.to_string(),
                    s.n_fake.to_string(),
                    s.errors.to_string(),
                    opt3(s.roc_auc),
                    opt3(s.average_precision),
                ],
            )
        })
        .collect();
    let points: Vec<(String, Vec<String>)> = m
        .subsets
        .iter()
        .flat_map(|s| {
            s.at.iter().map(|p| {
                let t = &p.figures;
                (
                    s.subset.clone(),
                    vec![
                        p.point.clone(),
                        format!("{:.4}", t.threshold),
                        ci(&t.accuracy),
                        ci(&t.tpr),
                        ci(&t.fpr),
                        ci(&t.precision),
                    ],
                )
            })
        })
        .collect();
    format!(
        "<div><p class=\"note\">{} ({}); threshold {:.4} ({})</p>{}<br>{}</div>",
        escape(name),
        escape(&info.precision),
        info.threshold,
        escape(&info.threshold_source),
        table(
            &["subset", "real", "fake", "errors", "ROC-AUC", "AP"],
            &subsets
        ),
        table(
            &[
                "subset",
                "at",
                "threshold",
                "accuracy [95% CI]",
                "TPR [95% CI]",
                "FPR [95% CI]",
                "precision [95% CI]"
            ],
            &points
        )
    )
}

/// The fake rate by format, JPEG quality, size and folder: a bar chart and a table for each
/// group that has rows.
fn breakdown(body: &mut String, by: &Breakdown, what: &str) -> Result<(), ChartError> {
    for (id, title, group, banded) in [
        ("format", "format", &by.by_format, false),
        ("jpeg-quality", "JPEG quality", &by.by_jpeg_quality, true),
        ("size", "image size (longer side)", &by.by_size, true),
        ("folder", "top-level folder", &by.by_folder, false),
    ] {
        if group.is_empty() {
            continue;
        }
        let rows = ordered(group, banded);
        let bars: Vec<Bar> = rows
            .iter()
            .map(|(k, r)| Bar {
                label: (*k).clone(),
                fraction: r.fraction(),
                n: r.scored,
            })
            .collect();
        let title = format!("{what}, by {title}");
        let chart = charts::bars(&title, &bars)?;
        let cells: Vec<(String, Vec<String>)> = rows
            .iter()
            .map(|(k, r)| ((*k).clone(), rate_cells(r)))
            .collect();
        section(
            body,
            id,
            &title,
            &[chart],
            &table(&["", "rows", "fake"], &cells),
        );
    }
    Ok(())
}

/// Groups in reading order: bands ("q < 70", "512-1023 px", ">= 2048 px") by their bounds,
/// names alphabetically.
fn ordered(group: &BTreeMap<String, Rate>, banded: bool) -> Vec<(&String, &Rate)> {
    let mut rows: Vec<(&String, &Rate)> = group.iter().collect();
    if banded {
        rows.sort_by_key(|(k, _)| {
            let bound: u64 = k
                .split(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let side = if k.contains(">=") {
                2
            } else if k.contains('<') {
                0
            } else {
                1
            };
            (bound, side)
        });
    }
    rows
}

fn section(body: &mut String, id: &str, title: &str, figures: &[String], aside: &str) {
    let _ = write!(body, "<section id=\"{id}\"><h2>{}</h2>", escape(title));
    for svg in figures {
        let _ = write!(body, "<figure>{svg}</figure>");
    }
    let _ = write!(body, "{aside}</section>");
}

fn table(head: &[&str], rows: &[(String, Vec<String>)]) -> String {
    let mut t = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(t, "<th>{}</th>", escape(h));
    }
    t.push_str("</tr></thead><tbody>");
    for (name, cells) in rows {
        let _ = write!(t, "<tr><td>{}</td>", escape(name));
        for c in cells {
            let _ = write!(t, "<td>{}</td>", escape(c));
        }
        t.push_str("</tr>");
    }
    t.push_str("</tbody></table>");
    t
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>\n"
    )
}

fn rate_cells(r: &Rate) -> Vec<String> {
    vec![
        r.scored.to_string(),
        format!("{:.1}%", 100.0 * r.fraction()),
    ]
}

fn opt3(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

fn ci(p: &Proportion) -> String {
    match (p.rate, p.ci95) {
        (Some(r), Some([lo, hi])) => format!("{r:.3} [{lo:.3}, {hi:.3}]"),
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::evaluate::{self, ModelInfo, Point, Row};
    use crate::measure::labelled::{LabelledSet, Root};
    use crate::report::Sample;

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    fn breakdown_of(paths: &[(&str, bool)]) -> Breakdown {
        let mut b = Breakdown::default();
        for &(path, fake) in paths {
            b.add(&Sample {
                path,
                format: Some("jpeg"),
                jpeg_quality: Some(if fake { 95 } else { 60 }),
                width: Some(640),
                height: Some(480),
                fake,
            });
        }
        b.finish();
        b
    }

    #[test]
    fn escapes_what_html_would_read_as_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_report_page_has_a_chart_and_table_per_group_and_escapes_folders() {
        let mut report = Report {
            rows: 3,
            breakdown: breakdown_of(&[
                ("/d/<script>x/a.jpg", true),
                ("/d/plain/b.jpg", false),
                ("/d/plain/c.jpg", true),
            ]),
            ..Report::default()
        };
        report.score_histograms.insert(
            "m".into(),
            crate::measure::metrics::Histogram::of(&[0.1, 0.9, 0.8]),
        );
        let html = report_page(&report).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        for id in [
            "summary",
            "scores",
            "format",
            "jpeg-quality",
            "size",
            "folder",
        ] {
            assert_eq!(count(&html, &format!("<section id=\"{id}\">")), 1, "{id}");
        }
        // One histogram and four bar charts.
        assert_eq!(count(&html, "<svg"), 5);
        assert_eq!(count(&html, "<table>"), 5);
        assert!(!html.contains("<script"), "data must not become markup");
        assert!(html.contains("&lt;script&gt;x"));
        // Nothing outside the page is fetched (the SVG namespace is a name, not an address).
        let outside = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for fetch in ["http:", "https:", "src=", "href=", "url("] {
            assert!(!outside.contains(fetch), "{fetch}");
        }
        // Bands in reading order.
        let q = html.find(">q &lt; 70<").unwrap();
        assert!(q < html.find(">q &gt;= 90<").unwrap());
    }

    #[test]
    fn the_eval_page_draws_histograms_roc_and_pr_with_the_operating_points() {
        let set = LabelledSet {
            roots: vec![
                Root {
                    path: "/s/real".into(),
                    fake: false,
                    subset: String::new(),
                    listed: false,
                },
                Root {
                    path: "/s/fake".into(),
                    fake: true,
                    subset: String::new(),
                    listed: false,
                },
            ],
        };
        let rows: Vec<Row> = [
            ("real/a", 0.1),
            ("real/b", 0.6),
            ("fake/c", 0.7),
            ("fake/d", 0.3),
        ]
        .iter()
        .map(|(p, s)| Row {
            path: format!("/s/{p}.jpg"),
            status: "ok".into(),
            scores: vec![Some(*s)],
        })
        .collect();
        let model = ModelInfo {
            name: "m<1>".into(),
            version: "1".into(),
            precision: "fp32".into(),
            threshold: 0.5,
            threshold_source: "manifest".into(),
            points: vec![Point {
                name: "manifest max_fpr 0.01".into(),
                threshold: 0.65,
            }],
        };
        let eval = evaluate::evaluate(&rows, &set, &[model]);
        let by = breakdown_of(&[("/s/real/a.jpg", false), ("/s/fake/c.jpg", true)]);
        let html = eval_page(&eval, Some(&by)).unwrap();
        assert_eq!(count(&html, "<section id=\"model-0\">"), 1);
        // Histogram, ROC, PR, then the four breakdown charts.
        assert_eq!(count(&html, "<svg"), 7);
        assert!(html.contains("Model m&lt;1&gt; 1"));
        // Both operating points on both curves: at 0.5 TPR 1/2, FPR 1/2, precision 1/2.
        assert_eq!(count(&html, "threshold (manifest) (0.500, 0.500)"), 2);
        // At 0.65: TPR 1/2, FPR 0, precision 1.
        assert!(html.contains("manifest max_fpr 0.01 (0.000, 0.500)"));
        assert!(html.contains("manifest max_fpr 0.01 (0.500, 1.000)"));
        assert!(html.contains("<td>0.500 [")); // the tables beside them
        assert_eq!(count(&html, "<section id=\"folder\">"), 1);
    }
}
