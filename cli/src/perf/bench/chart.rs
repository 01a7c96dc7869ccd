//! The PNG chart of `paytool bench`: latency percentiles (p50, p95, p99) against arrival rate,
//! one colour per ladder (gateway uniform, gateway hot, direct), drawn with plotters. Text
//! needs a TrueType font: Debian's DejaVu Sans (package fonts-dejavu-core, installed by
//! `paytool setup`).

use anyhow::Context;
use plotters::prelude::*;
use std::path::Path;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const WIDTH_PX: u32 = 1000;
const HEIGHT_PX: u32 = 600;

/// One ladder: (arrival rate per second, p50 ms, p95 ms, p99 ms) per step.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, f64, f64)>,
}

pub fn register_font() -> anyhow::Result<()> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT).map_err(|e| {
                format!(
                    "cannot read the font {FONT} ({e}): `paytool setup` installs fonts-dejavu-core"
                )
            })?;
            // plotters keeps the font for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{FONT} is not a font plotters can read"))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

pub fn draw(path: &Path, series: &[Series]) -> anyhow::Result<()> {
    register_font()?;
    let max_rate = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_ms = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.3))
        .fold(1.0, f64::max);
    let root = BitMapBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE).context("drawing the chart")?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Payment latency against arrival rate", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..max_rate * 1.05, 0.0..max_ms * 1.1)
        .context("drawing the chart")?;
    chart
        .configure_mesh()
        .x_desc("arrival rate (payments/s)")
        .y_desc("latency (ms)")
        .label_style(("sans-serif", 14))
        .draw()
        .context("drawing the chart")?;
    let colours = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
    ];
    for (index, one) in series.iter().enumerate() {
        let colour = colours[index % colours.len()];
        for (label, pick, width) in [("p50", 1usize, 1u32), ("p95", 2, 2), ("p99", 3, 3)] {
            let points: Vec<(f64, f64)> = one
                .points
                .iter()
                .map(|p| (p.0, [p.1, p.1, p.2, p.3][pick]))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(width)))
                .context("drawing the chart")?
                .label(format!("{} {label}", one.name))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(width))
                });
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, colour.filled())),
                )
                .context("drawing the chart")?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .context("drawing the chart")?;
    root.present().context("writing the chart")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_a_png_of_the_stated_size() {
        let dir = std::env::temp_dir().join(format!("paytool-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let path = dir.join("chart.png");
        let series = vec![Series {
            name: "gateway".into(),
            points: vec![
                (25.0, 5.0, 8.0, 12.0),
                (50.0, 6.0, 9.0, 15.0),
                (100.0, 9.0, 20.0, 45.0),
            ],
        }];
        draw(&path, &series).expect("drawn");
        let bytes = std::fs::read(&path).expect("written");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, at bytes 16..24.
        assert_eq!(
            u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes")),
            WIDTH_PX
        );
        assert_eq!(
            u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes")),
            HEIGHT_PX
        );
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }
}
