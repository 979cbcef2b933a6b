//! Plots of a simulation: room temperature, setpoint and outdoor temperature above, heat power
//! below, for every controller. SVG or PNG, chosen by the file extension.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;
use thiserror::Error;

use super::Trace;

/// A plot that could not be drawn.
#[derive(Debug, Error)]
pub enum PlotError {
    /// The extension is neither `.svg` nor `.png`.
    #[error("plot file {0} must end in .svg or .png")]
    Extension(String),
    /// The drawing backend failed.
    #[error("cannot draw {path}: {msg}")]
    Draw {
        /// The file.
        path: String,
        /// The backend's message.
        msg: String,
    },
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
/// One point per this many seconds is drawn.
pub(crate) const PLOT_STEP_SECONDS: f64 = 60.0;

fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // The font ships inside the binary, so plots need no system fonts.
        if plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_err()
        {
            tracing::warn!("embedded plot font did not load; PNG text may be missing");
        }
    });
}

/// A figure that can be drawn on any plotters backend.
pub trait Figure {
    /// Draws the figure on `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Renders `figure` into `path` (`.svg` or `.png`) at `size` pixels.
pub fn render(path: &Path, size: (u32, u32), figure: &impl Figure) -> Result<(), PlotError> {
    let name = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let err = |e: String| PlotError::Draw {
        path: name.clone(),
        msg: e,
    };
    register_font();
    match ext.as_deref() {
        Some("svg") => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            figure.draw(&root).map_err(err)?;
            root.present().map_err(|e| err(e.to_string()))
        }
        Some("png") => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            figure.draw(&root).map_err(err)?;
            root.present().map_err(|e| err(e.to_string()))
        }
        _ => Err(PlotError::Extension(name.clone())),
    }
}

struct Controllers<'a> {
    title: &'a str,
    traces: &'a [&'a Trace],
}

impl Figure for Controllers<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        draw(root, self.title, self.traces)
    }
}

/// Draws the traces into `path` (`.svg` or `.png`).
pub fn plot(path: &Path, title: &str, traces: &[&Trace]) -> Result<(), PlotError> {
    render(path, (1400, 900), &Controllers { title, traces })
}

fn decimate(trace: &Trace, values: &[f64]) -> Vec<(f64, f64)> {
    let dt = trace
        .t_s
        .get(1)
        .map_or(1.0, |t1| t1 - trace.t_s[0])
        .max(1e-9);
    let every = ((PLOT_STEP_SECONDS / dt).round() as usize).max(1);
    trace
        .t_s
        .iter()
        .zip(values)
        .step_by(every)
        .map(|(&t, &v)| (t / 3600.0, v))
        .collect()
}

fn bounds<'a>(series: impl Iterator<Item = &'a f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = series.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    (lo - pad, hi + pad)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    traces: &[&Trace],
) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let root = root.titled(title, ("sans-serif", 24)).map_err(e)?;
    let (top, bottom) = root.split_vertically((62).percent());
    let hours = traces
        .iter()
        .filter_map(|t| t.t_s.last())
        .fold(1.0f64, |a, &b| a.max(b / 3600.0));
    let (tlo, thi) = bounds(
        traces
            .iter()
            .flat_map(|t| t.room_celsius.iter().chain(&t.setpoint_celsius)),
        0.5,
    );
    let mut temp = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..hours, tlo..thi)
        .map_err(e)?;
    temp.configure_mesh()
        .y_desc("room °C")
        .x_desc("hours")
        .draw()
        .map_err(e)?;
    if let Some(first) = traces.first() {
        temp.draw_series(LineSeries::new(
            decimate(first, &first.setpoint_celsius),
            BLACK.stroke_width(2),
        ))
        .map_err(e)?
        .label("setpoint")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    }
    for (i, t) in traces.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        temp.draw_series(LineSeries::new(
            decimate(t, &t.room_celsius),
            c.stroke_width(2),
        ))
        .map_err(e)?
        .label(format!("{} room", t.name))
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    temp.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(e)?;

    let pmax = traces
        .iter()
        .flat_map(|t| t.power_watts.iter())
        .fold(1.0f64, |a, &b| a.max(b));
    let mut power = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..hours, 0.0..pmax * 1.05)
        .map_err(e)?;
    power
        .configure_mesh()
        .y_desc("heat W")
        .x_desc("hours")
        .draw()
        .map_err(e)?;
    for (i, t) in traces.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        power
            .draw_series(LineSeries::new(
                decimate(t, &t.power_watts),
                c.stroke_width(1),
            ))
            .map_err(e)?
            .label(format!("{} power", t.name))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    power
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}
