//! Charts for the email body as PNG images: mail clients (Outlook above all)
//! ignore the CSS bars of the HTML page, so the email carries pictures
//! instead, referenced by `cid:`. The pictures hold bars only, no text (a
//! CJK font would weigh megabytes); the labels and numbers stay in the HTML
//! table beside them.

use anyhow::Context as _;
use plotters::prelude::*;

/// Content-ID of the tier-distribution chart in the email.
pub const TIER_CHART_CID: &str = "tier-chart";
/// Content-ID of the ranking's chart (the reps with the highest KPI).
pub const TOP_REPS_CHART_CID: &str = "top-reps-chart";

pub const WIDTH: u32 = 440;
const BAR_HEIGHT: u32 = 22;
const GAP: u32 = 8;
const BAR_COLOR: RGBColor = RGBColor(0x3b, 0x82, 0xf6);
const TRACK_COLOR: RGBColor = RGBColor(0xe5, 0xe7, 0xeb);

/// A KPI as a bar length for `horizontal_bars`, which takes whole
/// numbers: in tenths of a point, since whole points would draw 80.4 and
/// 79.6 alike. A negative KPI (more returned than sold) draws no bar.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn tenths(kpi: f64) -> u64 {
    // clamped first: the cast is then exact up to 2^53 tenths
    (kpi.clamp(0.0, 1e15) * 10.0).round() as u64
}

/// Height of the chart for `n` bars.
pub fn height(n: usize) -> u32 {
    let n = u32::try_from(n).unwrap_or(u32::MAX).max(1);
    n * BAR_HEIGHT + (n + 1) * GAP
}

/// One horizontal bar per value, in order, scaled to the largest; each on a
/// light track so a zero still shows its row.
pub fn horizontal_bars(values: &[u64]) -> anyhow::Result<Vec<u8>> {
    let h = height(values.len());
    let mut rgb = vec![0u8; (WIDTH * h * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut rgb, (WIDTH, h)).into_drawing_area();
        area.fill(&WHITE).context("drawing the chart")?;
        let max = values.iter().copied().max().unwrap_or(0).max(1);
        let usable = i64::from(WIDTH - 2 * GAP);
        for (i, v) in values.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(0);
            let top = i32::try_from(GAP + i * (BAR_HEIGHT + GAP)).unwrap_or(0);
            let bottom = top + i32::try_from(BAR_HEIGHT).unwrap_or(0);
            let left = i32::try_from(GAP).unwrap_or(0);
            let track_right = left + i32::try_from(usable).unwrap_or(0);
            area.draw(&Rectangle::new(
                [(left, top), (track_right, bottom)],
                TRACK_COLOR.filled(),
            ))
            .context("drawing the chart")?;
            let len = i64::try_from(*v).unwrap_or(i64::MAX).saturating_mul(usable)
                / i64::try_from(max).unwrap_or(1);
            if len > 0 {
                let right = left + i32::try_from(len).unwrap_or(0);
                area.draw(&Rectangle::new(
                    [(left, top), (right, bottom)],
                    BAR_COLOR.filled(),
                ))
                .context("drawing the chart")?;
            }
        }
        area.present().context("drawing the chart")?;
    }
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, WIDTH, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().context("encoding the chart")?;
        writer
            .write_image_data(&rgb)
            .context("encoding the chart")?;
    }
    Ok(png)
}
