//! The power split of `hearth simulate --workloads`: per policy, one panel with the ASIC, GPU and
//! resistive power stacked over time and the controller's budget as a line.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

use super::plot::{render, Figure, PlotError, PLOT_STEP_SECONDS};
use super::workloads::SplitTrace;

const ASIC: RGBColor = RGBColor(255, 127, 14);
const GPU: RGBColor = RGBColor(31, 119, 180);
const RESISTIVE: RGBColor = RGBColor(214, 39, 40);

struct Split<'a> {
    title: &'a str,
    runs: &'a [&'a SplitTrace],
}

/// One point per [`PLOT_STEP_SECONDS`]: (hour, asic, gpu, resistive, budget), averaged.
fn buckets(s: &SplitTrace) -> Vec<(f64, [f64; 4])> {
    let dt = s.t_s.get(1).map_or(1.0, |t1| t1 - s.t_s[0]).max(1e-9);
    let every = ((PLOT_STEP_SECONDS / dt).round() as usize).max(1);
    (0..s.t_s.len())
        .step_by(every)
        .map(|i| {
            let end = (i + every).min(s.t_s.len());
            let n = (end - i) as f64;
            let avg = |v: &[f64]| v[i..end].iter().sum::<f64>() / n;
            (
                s.t_s[i] / 3600.0,
                [
                    avg(&s.asic_watts),
                    avg(&s.gpu_watts),
                    avg(&s.resistive_watts),
                    avg(&s.budget_watts),
                ],
            )
        })
        .collect()
}

impl Figure for Split<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
        root.fill(&WHITE).map_err(e)?;
        let root = root.titled(self.title, ("sans-serif", 24)).map_err(e)?;
        let panels = root.split_evenly((self.runs.len().max(1), 1));
        let data: Vec<_> = self.runs.iter().map(|r| buckets(r)).collect();
        let hours = data
            .iter()
            .filter_map(|d| d.last())
            .fold(1.0f64, |a, b| a.max(b.0));
        let pmax = data
            .iter()
            .flatten()
            .fold(1.0f64, |a, (_, p)| a.max(p[0] + p[1] + p[2]).max(p[3]));
        for ((panel, run), points) in panels.iter().zip(self.runs).zip(&data) {
            let mut chart = ChartBuilder::on(panel)
                .caption(&run.name, ("sans-serif", 18))
                .margin(8)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..hours, 0.0..pmax * 1.05)
                .map_err(e)?;
            chart
                .configure_mesh()
                .y_desc("W")
                .x_desc("hours")
                .draw()
                .map_err(e)?;
            // Stacked: each layer is drawn from 0 up to its cumulative top, largest first.
            let layers = [
                ("resistive", RESISTIVE, 3),
                ("gpu", GPU, 2),
                ("asic", ASIC, 1),
            ];
            for (label, colour, n) in layers {
                let top = points.iter().map(|(t, p)| (*t, p[..n].iter().sum::<f64>()));
                chart
                    .draw_series(AreaSeries::new(top, 0.0, colour.filled()))
                    .map_err(e)?
                    .label(label)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 15, y + 5)], colour.filled())
                    });
            }
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(t, p)| (*t, p[3])),
                    BLACK.stroke_width(1),
                ))
                .map_err(e)?
                .label("budget")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLACK.stroke_width(2)));
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(e)?;
        }
        Ok(())
    }
}

/// Draws each policy's power split into `path` (`.svg` or `.png`), one panel per policy.
pub fn plot_split(path: &Path, title: &str, runs: &[&SplitTrace]) -> Result<(), PlotError> {
    let height = 80 + 320 * runs.len().max(1) as u32;
    render(path, (1400, height), &Split { title, runs })
}
