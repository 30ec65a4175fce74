//! The picture of a series of runs: server CPU, latency and bytes per player against
//! N, drawn as one SVG with three panels.

use std::path::Path;

use plotters::prelude::*;

use crate::BenchError;
use crate::arena::ArenaResult;

/// One line of a panel: its label, its points (N, value) and its colour.
type Line = (&'static str, Vec<(f64, f64)>, RGBColor);

/// Writes `path` (SVG) for `results`, sorted by N.
///
/// # Errors
/// When the file cannot be written.
pub(crate) fn write_svg(path: &Path, results: &[ArenaResult]) -> Result<(), BenchError> {
    let mut rows: Vec<&ArenaResult> = results.iter().collect();
    rows.sort_by_key(|r| r.n);
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (1200, 400)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, 3));
        let n_max = rows.iter().map(|r| r.n).max().unwrap_or(1) as f64 * 1.05;
        let series = |f: fn(&ArenaResult) -> Option<f64>| -> Vec<(f64, f64)> {
            rows.iter()
                .filter_map(|r| f(r).map(|v| (r.n as f64, v)))
                .collect()
        };
        let panel_specs: [(&str, &str, Vec<Line>); 3] = [
            (
                "server CPU (cores)",
                "CPU s per wall s",
                vec![
                    ("server", series(|r| r.server_cpu_per_wall_s), BLUE),
                    (
                        "load generator",
                        series(|r| r.loadgen_cpu_per_wall_s),
                        RGBColor(150, 150, 150),
                    ),
                ],
            ),
            (
                "input-to-screen latency",
                "ms",
                vec![
                    ("p50", series(|r| r.latency_p50_ms), GREEN),
                    ("p99", series(|r| r.latency_p99_ms), RED),
                ],
            ),
            (
                "patch bytes per player",
                "bytes",
                vec![(
                    "bytes/player/patch",
                    series(|r| r.bytes_per_player_per_patch),
                    MAGENTA,
                )],
            ),
        ];
        for (area, (title, unit, lines)) in panels.iter().zip(panel_specs) {
            let y_max = lines
                .iter()
                .flat_map(|(_, pts, _)| pts.iter().map(|p| p.1))
                .fold(0.0f64, f64::max)
                .max(1e-3)
                * 1.15;
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(0.0..n_max, 0.0..y_max)?;
            chart
                .configure_mesh()
                .x_desc("N (clients)")
                .y_desc(unit)
                .draw()?;
            for (label, points, color) in lines {
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| BenchError::Setup(format!("cannot draw {}: {e}", path.display())))
}
