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
        let constant = hi <= lo;
        let pad = if constant { 0.5 } else { (hi - lo) * 0.05 };
        // Density (rows per unit) keeps the area of each bar equal to its row count. A
        // constant feature has no width to spread over: one bar of all its rows.
        let bars: Vec<(f64, f64, f64)> = if constant {
            let rows = f.counts.iter().sum::<u64>() as f64;
            vec![(lo - 0.1, lo + 0.1, rows)]
        } else {
            edges
                .windows(2)
                .zip(&f.counts[1..f.counts.len() - 1])
                .map(|(w, c)| {
                    let span = (w[1] - w[0]).max((hi - lo) * 1e-3);
                    (w[0], w[0] + span, *c as f64 / span)
                })
                .collect()
        };
        let y_max = bars.iter().map(|b| b.2).fold(0.0, f64::max).max(1e-9) * 1.1;
        let caption = if constant {
            format!("{} (constant {lo})", f.name)
        } else {
            f.name.clone()
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 14))
            .margin(6)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d((lo - pad)..(hi + pad), 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("value")
            .y_desc(if constant { "rows" } else { "rows per unit" })
            .x_labels(5)
            .y_labels(4)
            .y_label_formatter(&|y| compact_number(*y))
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

/// A tick label that fits a narrow axis: `1.2e5` rather than `123456.789`.
fn compact_number(y: f64) -> String {
    let a = y.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-2..1e4).contains(&a) {
        format!("{y:.1e}")
    } else if a >= 100.0 {
        format!("{y:.0}")
    } else {
        format!("{y:.2}")
    }
}

/// Draws the series labels (the legend) of `chart` in the charts' one style.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    font_size: u32,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(217, 222, 228))
        .label_font(("sans-serif", font_size))
        .draw()
        .map_err(|e| e.to_string())
}

/// One line of a time-series chart.
pub struct Series {
    pub name: String,
    /// (unix ms, value)
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
}

/// A horizontal line with its meaning, e.g. a drift threshold.
pub struct Threshold {
    pub label: String,
    pub y: f64,
    pub color: RGBColor,
}

pub const PALETTE: [RGBColor; 6] = [
    RGBColor(47, 95, 208),
    RGBColor(214, 110, 30),
    RGBColor(28, 124, 58),
    RGBColor(150, 60, 170),
    RGBColor(179, 38, 30),
    RGBColor(90, 100, 115),
];
pub const WARN: RGBColor = RGBColor(214, 150, 0);
pub const ALERT: RGBColor = RGBColor(179, 38, 30);

/// Clock time (local) of a unix-ms instant, for time axes.
fn clock(ms: f64) -> String {
    js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms))
        .to_locale_time_string("en-GB")
        .into()
}

/// Lines over time with markers, dashed threshold lines and a legend naming both.
pub fn time_series(
    title: &str,
    y_desc: &str,
    series: &[Series],
    thresholds: &[Threshold],
    size: (u32, u32),
) -> Result<String, String> {
    // At least a second of time axis (a single window is one point).
    line_chart(
        title,
        ("time", y_desc),
        series,
        thresholds,
        size,
        1000.0,
        &|ms| clock(*ms),
    )
}

/// Lines over training steps (x values are steps).
pub fn step_chart(
    title: &str,
    y_desc: &str,
    series: &[Series],
    size: (u32, u32),
) -> Result<String, String> {
    // At least one step of axis: 20 steps span 20, not 1,000.
    line_chart(title, ("step", y_desc), series, &[], size, 1.0, &|x| {
        format!("{x:.0}")
    })
}

/// The x range of `series`: from the first point to the last, at least `min_span` wide
/// (`0..min_span` when there are no points).
pub fn x_range(series: &[Series], min_span: f64) -> (f64, f64) {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if x0.is_finite() {
        (x0, x1.max(x0 + min_span))
    } else {
        (0.0, min_span)
    }
}

fn line_chart(
    title: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[Series],
    thresholds: &[Threshold],
    (width, height): (u32, u32),
    min_span: f64,
    x_fmt: &dyn Fn(&f64) -> String,
) -> Result<String, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let (x0, x1) = x_range(series, min_span);
    let pad = (x1 - x0) * 0.04;
    let ys = || {
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(thresholds.iter().map(|t| t.y))
            .filter(|y| y.is_finite())
    };
    let y_max = ys().fold(0.0, f64::max);
    let y_min = ys().fold(0.0, f64::min);
    // The legend sits in the top left, in headroom of its own above the data, so it never
    // covers a line: its rows of ~15 px against the plot's height.
    // A single line needs no legend: the title names it.
    let entries = series.len() + thresholds.len();
    let with_legend = entries > 1;
    let plot_px = height.saturating_sub(30 + 8 * 2 + 34).max(60) as f64;
    let legend_px = if with_legend {
        entries as f64 * 15.0 + 24.0
    } else {
        0.0
    };
    let data_share = ((1.0 - legend_px / plot_px) * 0.92).clamp(0.3, 0.92);
    let y_max = if y_max > y_min {
        y_min + (y_max - y_min) / data_share
    } else {
        y_min + 1.0
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(52)
            .build_cartesian_2d((x0 - pad)..(x1 + pad), y_min..y_max)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(5)
            .y_labels(5)
            .x_label_formatter(x_fmt)
            .label_style(("sans-serif", 10))
            .light_line_style(RGBColor(238, 241, 244))
            .draw()
            .map_err(|x| e(&x))?;
        for t in thresholds {
            let c = t.color;
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x0 - pad, t.y), (x1 + pad, t.y)],
                    5,
                    4,
                    c.stroke_width(1),
                ))
                .map_err(|x| e(&x))?
                .label(t.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(1))
                });
        }
        for s in series {
            let c = s.color;
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart
                .draw_series(s.points.iter().map(|p| Circle::new(*p, 2, c.filled())))
                .map_err(|x| e(&x))?;
        }
        if with_legend {
            legend(&mut chart, SeriesLabelPosition::UpperLeft, 11)?;
        }
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}

/// Grouped bars of shares per category (e.g. predicted classes at training vs live), with a
/// legend naming each group.
pub fn share_bars(
    title: &str,
    categories: &[String],
    groups: &[(String, Vec<f64>)],
    size: (u32, u32),
) -> Result<String, String> {
    bars(
        title,
        ("prediction", "share of predictions"),
        categories,
        groups,
        size,
    )
}

/// Grouped bars of values per category, with axis names and a legend naming each group.
pub fn bars(
    title: &str,
    (x_desc, y_desc): (&str, &str),
    categories: &[String],
    groups: &[(String, Vec<f64>)],
    (width, height): (u32, u32),
) -> Result<String, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let n = categories.len().max(1);
    let g = groups.len().max(1) as f64;
    let y_max = groups
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max)
        .max(0.01)
        // Headroom for the legend above the bars.
        * 1.45;
    // Negative values (e.g. an importance below zero) get room below the axis.
    let y_min = groups
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::min)
        * 1.2;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..n as f64, y_min..y_max)
            .map_err(|x| e(&x))?;
        let cats = categories.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(n * 2 + 1)
            .y_labels(5)
            .x_label_formatter(&move |x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 1e-6 && i < cats.len() {
                    cats[i].clone()
                } else {
                    String::new()
                }
            })
            .label_style(("sans-serif", 10))
            .light_line_style(RGBColor(238, 241, 244))
            .draw()
            .map_err(|x| e(&x))?;
        for (gi, (name, values)) in groups.iter().enumerate() {
            let c = PALETTE[gi % PALETTE.len()];
            let w = 0.8 / g;
            chart
                .draw_series(values.iter().enumerate().map(|(i, v)| {
                    let l = i as f64 + 0.1 + gi as f64 * w;
                    Rectangle::new([(l, 0.0), (l + w * 0.92, *v)], c.mix(0.8).filled())
                }))
                .map_err(|x| e(&x))?
                .label(name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 10, y + 4)], c.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight, 10)?;
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}

/// One axis of a parallel-coordinates chart.
pub struct ParallelAxis {
    pub name: String,
    /// Values are 0 and 1, labelled `false` and `true`.
    pub boolean: bool,
}

/// Where an item without a value on an axis is drawn: a `none` slot below the axis, so a
/// missing param never looks like a value.
const NONE_Y: f64 = -0.09;

/// Parallel coordinates: one vertical axis per dimension (each scaled to its own min..max,
/// labelled with its name and range) and one line per item, coloured from low (blue) to high
/// (orange) by the last dimension (the chosen metric). An item missing a value passes through
/// the axis's `none` slot, below its range.
pub fn parallel_coordinates(
    title: &str,
    axes: &[ParallelAxis],
    items: &[(String, Vec<Option<f64>>)],
    (width, height): (u32, u32),
) -> Result<String, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let n = axes.len().max(2);
    let ranges: Vec<(f64, f64)> = (0..axes.len())
        .map(|j| {
            let vs = items
                .iter()
                .filter_map(|(_, v)| v.get(j).copied().flatten());
            let (lo, hi) = vs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            });
            if lo.is_finite() {
                (lo, hi)
            } else {
                (0.0, 1.0)
            }
        })
        .collect();
    let norm = |j: usize, x: f64| {
        let (lo, hi) = if axes[j].boolean {
            (0.0, 1.0)
        } else {
            ranges[j]
        };
        if hi > lo {
            (x - lo) / (hi - lo)
        } else {
            0.5
        }
    };
    let fmt = |x: f64| {
        if x.abs() >= 1000.0 || (x != 0.0 && x.abs() < 0.01) {
            format!("{x:.2e}")
        } else {
            format!("{x:.3}")
        }
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 14))
            .margin(10)
            .margin_left(30)
            .margin_right(10)
            .x_label_area_size(10)
            .build_cartesian_2d(-0.15..(n as f64), -0.16..1.16)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .disable_y_axis()
            .x_labels(0)
            .draw()
            .map_err(|x| e(&x))?;
        let style = ("sans-serif", 12).into_font();
        let name_style = ("sans-serif", 13).into_font().style(FontStyle::Bold);
        for (j, axis) in axes.iter().enumerate() {
            let name = &axis.name;
            let x = j as f64;
            let (lo_text, hi_text) = if axis.boolean {
                ("false".to_string(), "true".to_string())
            } else {
                (fmt(ranges[j].0), fmt(ranges[j].1))
            };
            if items
                .iter()
                .any(|(_, v)| v.get(j).copied().flatten().is_none())
            {
                chart
                    .draw_series([Text::new(
                        "none",
                        (x + 0.02, NONE_Y),
                        style.clone().color(&RGBColor(93, 104, 117)),
                    )])
                    .map_err(|x| e(&x))?;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, 1.0)],
                    BLACK.stroke_width(1),
                )))
                .map_err(|x| e(&x))?;
            chart
                .draw_series([
                    Text::new(
                        name.clone(),
                        (x - 0.05, 1.14),
                        name_style.clone().color(&BLACK),
                    ),
                    Text::new(
                        hi_text,
                        (x + 0.02, 1.03),
                        style.clone().color(&RGBColor(93, 104, 117)),
                    ),
                    Text::new(
                        lo_text,
                        (x + 0.02, 0.0),
                        style.clone().color(&RGBColor(93, 104, 117)),
                    ),
                ])
                .map_err(|x| e(&x))?;
        }
        let last = axes.len().saturating_sub(1);
        for (label, values) in items {
            let t = values
                .get(last)
                .copied()
                .flatten()
                .map(|v| norm(last, v))
                .unwrap_or(0.5);
            let c = RGBColor(
                (47.0 + (230.0 - 47.0) * t) as u8,
                (95.0 + (120.0 - 95.0) * t) as u8,
                (208.0 + (30.0 - 208.0) * t) as u8,
            );
            let points: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .map(|(j, v)| (j as f64, v.map_or(NONE_Y, |v| norm(j, v))))
                .collect();
            chart
                .draw_series(std::iter::once(PathElement::new(
                    points.clone(),
                    c.stroke_width(2),
                )))
                .map_err(|x| e(&x))?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, c.filled())))
                .map_err(|x| e(&x))?;
        }
        legend(&mut chart, SeriesLabelPosition::MiddleRight, 10)?;
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}

/// Predicted against actual values (regression), with the y = x line a perfect model would
/// sit on.
pub fn predicted_vs_actual(
    title: &str,
    points: &[(f64, f64)],
    (width, height): (u32, u32),
) -> Result<String, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let (lo, hi) = points
        .iter()
        .flat_map(|(a, p)| [*a, *p])
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    let pad = (hi - lo) * 0.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(48)
            .build_cartesian_2d((lo - pad)..(hi + pad), (lo - pad)..(hi + pad))
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("actual")
            .y_desc("predicted")
            .x_labels(5)
            .y_labels(5)
            .label_style(("sans-serif", 10))
            .light_line_style(RGBColor(238, 241, 244))
            .draw()
            .map_err(|x| e(&x))?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(lo, lo), (hi, hi)],
                5,
                4,
                PALETTE[5].stroke_width(1),
            ))
            .map_err(|x| e(&x))?
            .label("predicted = actual")
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], PALETTE[5].stroke_width(1))
            });
        chart
            .draw_series(
                points
                    .iter()
                    .map(|(a, p)| Circle::new((*a, *p), 3, PALETTE[0].mix(0.7).filled())),
            )
            .map_err(|x| e(&x))?
            .label("held-out row")
            .legend(|(x, y)| Circle::new((x + 8, y), 3, PALETTE[0].filled()));
        legend(&mut chart, SeriesLabelPosition::UpperLeft, 10)?;
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}
