//! Charts as SVG text (plotters' SVG backend), so they render anywhere HTML does and tests can
//! read them. In the browser plotters measures text through the page's canvas.

use plotters::prelude::*;
use wasmops_shared::profile::FeatureProfile;

const BAR: RGBColor = RGBColor(47, 95, 208);

/// A histogram of one feature's training profile: the ten decile bins between min and max
/// (equal counts by construction, so bar *width* shows where the data is dense), on a value
/// axis with the feature's name and a row-count axis.
pub fn profile_histogram(f: &FeatureProfile, width: u32, height: u32) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let edges = &f.edges;
        let (lo, hi) = (edges[0], edges[edges.len() - 1]);
        let pad = if hi > lo { (hi - lo) * 0.05 } else { 0.5 };
        // Density (rows per unit) keeps the area of each bar equal to its row count.
        let bars: Vec<(f64, f64, f64)> = edges
            .windows(2)
            .zip(&f.counts[1..f.counts.len() - 1])
            .map(|(w, c)| {
                let span = (w[1] - w[0]).max((hi - lo).max(1e-12) * 1e-3);
                (w[0], w[0] + span, *c as f64 / span)
            })
            .collect();
        let y_max = bars.iter().map(|b| b.2).fold(0.0, f64::max).max(1e-9) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(&f.name, ("sans-serif", 14))
            .margin(6)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d((lo - pad)..(hi + pad), 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("value")
            .y_desc("rows per unit")
            .x_labels(5)
            .y_labels(4)
            .label_style(("sans-serif", 10))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                bars.iter()
                    .map(|(l, r, d)| Rectangle::new([(*l, 0.0), (*r, *d)], BAR.mix(0.75).filled())),
            )
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
