//! The charts of the HTML report, drawn with plotters into SVG strings.
//!
//! Plotters' SVG backend writes text as `<text>` elements for the browser to set, so no font is
//! read or rendered here; it also escapes the text it writes, so labels from the data (folder
//! names) are safe inside the page.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::measure::metrics::{Curve, Histogram};

#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart '{title}': {reason}")]
pub struct ChartError {
    title: String,
    reason: String,
}

const WIDTH: u32 = 560;
const HEIGHT: u32 = 340;
const FONT: &str = "sans-serif";
/// Series colours, told apart also by colour-blind readers (Okabe-Ito blue, orange, green, ...).
const PALETTE: [RGBColor; 5] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
];

/// One point marked on a curve, such as an operating point.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub name: String,
    pub x: f64,
    pub y: f64,
}

/// One bar: its label, the fraction it shows and the count it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub fraction: f64,
    pub n: u64,
}

fn draw(
    title: &str,
    height: u32,
    paint: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>,
) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        let result = root
            .fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|_| paint(&root))
            .and_then(|_| root.present().map_err(|e| e.to_string()));
        result.map_err(|reason| ChartError {
            title: title.to_string(),
            reason,
        })?;
    }
    Ok(svg)
}

/// Overlaid score histograms over [0, 1], one per named series, with the threshold drawn.
pub fn histograms(
    title: &str,
    series: &[(&str, &Histogram)],
    threshold: Option<f32>,
) -> Result<String, ChartError> {
    let top = series
        .iter()
        .flat_map(|(_, h)| h.counts.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.1;
    draw(title, HEIGHT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("score")
            .y_desc("files")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, (name, h)) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let width = 1.0 / h.counts.len().max(1) as f64;
            chart
                .draw_series(h.counts.iter().enumerate().map(|(i, &c)| {
                    let x = i as f64 * width;
                    Rectangle::new([(x, 0.0), (x + width, c as f64)], color.mix(0.45).filled())
                }))
                .map_err(|e| e.to_string())?
                .label(format!("{name} ({})", h.total()))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        if let Some(t) = threshold {
            let t = f64::from(t);
            chart
                .draw_series(LineSeries::new([(t, 0.0), (t, top)], BLACK.stroke_width(1)))
                .map_err(|e| e.to_string())?
                .label(format!("threshold {t:.3}"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], BLACK));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperMiddle)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 13))
            .draw()
            .map_err(|e| e.to_string())
    })
}

/// A curve in the unit square (ROC, precision-recall) with its marked points.
pub fn curve(
    title: &str,
    (x_desc, y_desc): (&str, &str),
    points: &Curve,
    marks: &[Mark],
) -> Result<String, ChartError> {
    draw(title, HEIGHT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                PALETTE[0].stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        for (k, m) in marks.iter().enumerate() {
            let color = PALETTE[(k + 1) % PALETTE.len()];
            chart
                .draw_series([Circle::new((m.x, m.y), 5, color.filled())])
                .map_err(|e| e.to_string())?
                .label(format!("{} ({:.3}, {:.3})", m.name, m.x, m.y))
                .legend(move |(x, y)| Circle::new((x + 6, y), 5, color.filled()));
        }
        if !marks.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .label_font((FONT, 13))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// Horizontal bars of a fraction in [0, 1], each labelled with its name, percentage and count.
pub fn bars(title: &str, bars: &[Bar]) -> Result<String, ChartError> {
    let rows = bars.len().max(1);
    let height = 70 + 28 * rows as u32;
    draw(title, height, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(10)
            .build_cartesian_2d(0f64..1f64, 0f64..rows as f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .draw()
            .map_err(|e| e.to_string())?;
        // The first bar at the top, as the table beside it reads.
        let y = |i: usize| (rows - 1 - i) as f64;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                Rectangle::new(
                    [
                        (0.0, y(i) + 0.15),
                        (b.fraction.clamp(0.0, 1.0), y(i) + 0.85),
                    ],
                    PALETTE[1].mix(0.55).filled(),
                )
            }))
            .map_err(|e| e.to_string())?;
        let style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                Text::new(
                    format!("{}: {:.1}% of {}", b.label, 100.0 * b.fraction, b.n),
                    (0.01, y(i) + 0.5),
                    style.clone(),
                )
            }))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_and_escape_their_labels() {
        let svg = bars(
            "by folder",
            &[Bar {
                label: "<b>&x".into(),
                fraction: 0.25,
                n: 4,
            }],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("&lt;b&gt;&amp;x: 25.0% of 4"), "{svg}");
        assert!(!svg.contains("<b>"));

        let h = Histogram::of(&[0.1, 0.2, 0.9]);
        let svg = histograms("scores", &[("real", &h)], Some(0.5)).unwrap();
        assert!(
            svg.contains("real (3)") && svg.contains("threshold 0.500"),
            "{svg}"
        );

        let marks = [Mark {
            name: "threshold".into(),
            x: 0.1,
            y: 0.8,
        }];
        let svg = curve("ROC", ("FPR", "TPR"), &vec![(0.0, 0.0), (1.0, 1.0)], &marks).unwrap();
        assert!(
            svg.contains("<circle") && svg.contains("threshold (0.100, 0.800)"),
            "{svg}"
        );
    }
}
