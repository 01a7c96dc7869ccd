//! The run's timeline as a PNG: requests and errors per second, and the p99, with each fault's
//! window shaded, drawn with plotters (the font as `paytool bench`'s chart registers it).

use super::journal::{Event, Journal, Second};
use crate::perf::bench::chart::register_font;
use anyhow::Context;
use plotters::prelude::*;
use std::path::Path;

const WIDTH_PX: u32 = 1000;
const HEIGHT_PX: u32 = 600;
/// One figure of a second of the timeline.
type PerSecond = fn(&Second) -> u64;
/// A fault with no duration (a kill) is shown as a band this wide.
const INSTANT_FAULT_MS: u64 = 500;

/// Each fault's window, in seconds of the load's timeline (the method counts from the run's
/// start, before the pre-flight and the load's set-up): until it was taken back (an abort or
/// Ctrl-C takes it back early), else until its planned end.
pub fn windows(journal: &Journal) -> Vec<(f64, f64, String)> {
    let zero_s = journal.load_started_ms.unwrap_or(0) as f64 / 1000.0;
    journal
        .method
        .iter()
        .enumerate()
        .filter_map(|(index, event)| match event {
            Event::Injected {
                at_ms,
                until_ms,
                detail,
                target,
                ..
            } => {
                let undone = journal.method[index..]
                    .iter()
                    .find_map(|later| match later {
                        Event::Undone {
                            at_ms: undone_ms,
                            target: undone_target,
                            ..
                        } if undone_target == target => Some(*undone_ms),
                        _ => None,
                    });
                let until = undone
                    .or(*until_ms)
                    .unwrap_or(at_ms + INSTANT_FAULT_MS)
                    .max(at_ms + INSTANT_FAULT_MS);
                Some((
                    (*at_ms as f64 / 1000.0 - zero_s).max(0.0),
                    (until as f64 / 1000.0 - zero_s).max(0.0),
                    detail.clone(),
                ))
            }
            _ => None,
        })
        .collect()
}

pub fn draw(path: &Path, journal: &Journal) -> anyhow::Result<()> {
    register_font()?;
    let seconds = &journal.timeline;
    let end_s = (journal.duration_ms as f64 / 1000.0)
        .max(seconds.len() as f64)
        .max(1.0);
    let max_rate = seconds
        .iter()
        .map(|s| s.requests as f64)
        .fold(1.0, f64::max);
    let max_ms = seconds.iter().filter_map(|s| s.p99_ms).fold(1.0, f64::max);
    let root = BitMapBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE).context("drawing the timeline")?;
    let (top, bottom) = root.split_vertically(HEIGHT_PX / 2);
    let shade = RGBColor(255, 165, 0).mix(0.25);
    let mut rate = ChartBuilder::on(&top)
        .caption(
            format!("{} — {}", journal.title, journal.verdict.as_str()),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..end_s, 0.0..max_rate * 1.15)
        .context("drawing the timeline")?;
    rate.configure_mesh()
        .y_desc("answers per second")
        .label_style(("sans-serif", 13))
        .draw()
        .context("drawing the timeline")?;
    let windows = windows(journal);
    rate.draw_series(windows.iter().map(|(from, to, _)| {
        Rectangle::new([(*from, 0.0), (*to, max_rate * 1.15)], shade.filled())
    }))
    .context("drawing the timeline")?
    .label("fault")
    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], shade.filled()));
    let lines: [(&str, RGBColor, PerSecond); 2] = [
        ("requests", RGBColor(31, 119, 180), |s| s.requests),
        ("errors", RGBColor(214, 39, 40), |s| s.errors),
    ];
    for (label, colour, value) in lines {
        rate.draw_series(LineSeries::new(
            seconds
                .iter()
                .map(|s| (s.at_s as f64 + 0.5, value(s) as f64)),
            colour.stroke_width(2),
        ))
        .context("drawing the timeline")?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    rate.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .context("drawing the timeline")?;

    let mut latency = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..end_s, 0.0..max_ms * 1.15)
        .context("drawing the timeline")?;
    latency
        .configure_mesh()
        .x_desc("seconds since the run started")
        .y_desc("p99 (ms)")
        .label_style(("sans-serif", 13))
        .draw()
        .context("drawing the timeline")?;
    latency
        .draw_series(windows.iter().map(|(from, to, _)| {
            Rectangle::new([(*from, 0.0), (*to, max_ms * 1.15)], shade.filled())
        }))
        .context("drawing the timeline")?;
    let green = RGBColor(44, 160, 44);
    latency
        .draw_series(LineSeries::new(
            seconds
                .iter()
                .filter_map(|s| s.p99_ms.map(|ms| (s.at_s as f64 + 0.5, ms))),
            green.stroke_width(2),
        ))
        .context("drawing the timeline")?;
    root.present().context("writing the timeline")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::journal::{Second, Verdict, FORMAT};

    fn journal() -> Journal {
        let experiment = crate::chaos::experiment::parse(
            "title: t\nsteady_state: {title: s, probes: [{type: ledger}]}\nmethod:\n  - wait: 1\n",
        )
        .expect("parses");
        Journal {
            format: FORMAT,
            name: "t".into(),
            title: "t".into(),
            experiment,
            seed: 1,
            started_at: "2026-12-06T10:00:00Z".into(),
            duration_ms: 20_000,
            verdict: Verdict::Aborted,
            summary: "aborted".into(),
            preflight: Vec::new(),
            method: vec![
                Event::Injected {
                    at_ms: 2_000,
                    fault: serde_json::Value::Null,
                    target: Some("kafka".into()),
                    detail: "SIGSTOP to kafka".into(),
                    until_ms: Some(60_000),
                },
                Event::Undone {
                    at_ms: 9_000,
                    target: Some("kafka".into()),
                    detail: "resume".into(),
                },
                Event::Injected {
                    at_ms: 12_000,
                    fault: serde_json::Value::Null,
                    target: Some("orchestrator".into()),
                    detail: "SIGKILL to orchestrator".into(),
                    until_ms: None,
                },
            ],
            steady_state_after: Vec::new(),
            load: None,
            timeline: (0..20)
                .map(|at_s| Second {
                    at_s,
                    requests: 10,
                    errors: u64::from(at_s > 3 && at_s < 9),
                    p99_ms: Some(40.0 + at_s as f64),
                })
                .collect(),
            invariants: None,
            load_started_ms: None,
        }
    }

    #[test]
    fn a_window_ends_when_its_fault_was_taken_back_and_a_kill_is_a_short_band() {
        let windows = windows(&journal());
        assert_eq!(windows.len(), 2);
        assert_eq!((windows[0].0, windows[0].1), (2.0, 9.0));
        assert_eq!((windows[1].0, windows[1].1), (12.0, 12.5));
    }

    #[test]
    fn the_timeline_is_a_png_of_the_stated_size() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("timeline.png");
        draw(&path, &journal()).expect("drawn");
        let bytes = std::fs::read(&path).expect("written");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(
            u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes")),
            WIDTH_PX
        );
    }
}
