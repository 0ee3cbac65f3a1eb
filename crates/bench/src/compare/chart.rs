//! The comparison chart: grouped bars, one group per measure, one bar per broker, as a
//! multiple of Mosquitto's figure.

use std::path::Path;

use plotters::prelude::*;

const COLORS: [RGBColor; 4] = [
    RGBColor(200, 40, 40),
    RGBColor(90, 90, 90),
    RGBColor(40, 90, 200),
    RGBColor(40, 160, 80),
];

/// Draws `rows` (label, one ratio per broker) to an SVG at `path`.
pub(super) fn draw(
    path: &Path,
    title: &str,
    brokers: &[String],
    rows: &[(String, Vec<Option<f64>>)],
) -> Result<(), Box<dyn std::error::Error>> {
    let n = rows.len().max(1);
    let max = rows
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(1.0f64, |a, &b| a.max(b));
    let top = max * 1.2;
    let width = (160 * n as u32).max(800);
    let root = SVGBackend::new(path, (width, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(10)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..n as f64, -top * 0.18..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .x_labels(0)
        .y_desc("× Mosquitto")
        .y_label_formatter(&|y| {
            if *y < 0.0 {
                String::new()
            } else {
                format!("{y:.0}")
            }
        })
        .draw()?;
    // The Mosquitto line: 1×.
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, 1.0), (n as f64, 1.0)],
        BLACK.stroke_width(1),
    )))?;
    let nb = brokers.len().max(1) as f64;
    let bar_w = 0.8 / nb;
    for (bi, broker) in brokers.iter().enumerate() {
        let color = COLORS[bi % COLORS.len()];
        let bars = rows.iter().enumerate().filter_map(|(i, (_, v))| {
            let val = (*v.get(bi)?)?;
            let x0 = i as f64 + 0.1 + bi as f64 * bar_w;
            Some(Rectangle::new(
                [(x0, 0.0), (x0 + bar_w * 0.9, val)],
                color.filled(),
            ))
        });
        chart
            .draw_series(bars)?
            .label(broker.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        let labels = rows.iter().enumerate().filter_map(|(i, (_, v))| {
            let val = (*v.get(bi)?)?;
            let x0 = i as f64 + 0.1 + bi as f64 * bar_w;
            Some(Text::new(
                if val < 0.1 {
                    format!("{val:.2}")
                } else {
                    format!("{val:.1}")
                },
                (x0, val + top * 0.02),
                ("sans-serif", 11).into_font(),
            ))
        });
        chart.draw_series(labels)?;
    }
    let names = rows.iter().enumerate().map(|(i, (label, _))| {
        Text::new(
            label.clone(),
            (i as f64 + 0.05, -top * 0.06),
            ("sans-serif", 12).into_font(),
        )
    });
    chart.draw_series(names)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
