//! Output: the markdown table, the SVG chart and file names.

use crate::scenario::{Scenario, ScenarioResult};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Today's UTC date as YYYY-MM-DD.
pub fn utc_date() -> String {
    utc_datetime(std::time::SystemTime::now())[..10].to_owned()
}

/// `t` as "YYYY-MM-DD HH:MM:SS UTC" (civil-from-days, no time-zone database needed).
pub fn utc_datetime(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tod = secs % 86_400;
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

/// `dir/<date>` (or `dir/<date>-<suffix>`) or, when that was used already, with `-2`, `-3`,
/// ... appended.
pub fn result_stem(dir: &Path, suffix: Option<&str>) -> PathBuf {
    let date = match suffix {
        Some(s) => format!("{}-{s}", utc_date()),
        None => utc_date(),
    };
    let mut stem = dir.join(&date);
    let mut i = 2;
    while stem.with_extension("json").exists() || stem.with_extension("md").exists() {
        stem = dir.join(format!("{date}-{i}"));
        i += 1;
    }
    stem
}

fn f(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".into()
    }
}

/// What the "targets" column counts, and one result's entry in it.
fn targets_label(results: &[ScenarioResult]) -> &'static str {
    match results.first().map(|r| r.scenario) {
        Some(Scenario::Multi) => "streams × targets",
        Some(Scenario::Players) => "players",
        Some(Scenario::Whep) => "WHEP viewers",
        _ => "targets",
    }
}

fn targets_cell(r: &ScenarioResult) -> String {
    match r.scenario {
        Scenario::Multi => format!("{} × {} = {}", r.streams, r.targets_per_stream, r.targets),
        _ => r.targets.to_string(),
    }
}

/// The busiest relay threads' CPU, % of a core: "52 / 49 / 1" = two threads share the work.
fn by_thread(pct: &[f64]) -> String {
    let busy: Vec<String> = pct.iter().take(3).map(|p| format!("{p:.0}")).collect();
    match busy.is_empty() {
        true => "–".into(),
        false => busy.join(" / "),
    }
}

pub fn markdown(results: &[ScenarioResult], header: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{header}\n");
    let _ = writeln!(
        s,
        "| relay | thr | {} | kbit/s | recv | conns (closed) | connect s | CPU % | by thread | CPU-s/Gbit | Gbit/s | delivered | min target | p50 ms | p99 ms | max ms | missing msgs | with gaps | RSS MB | KB/target | KB/idle target (before / after media) | tool CPU % | machine busy % |",
        targets_label(results)
    );
    s.push_str(
        "| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |\n",
    );
    for r in results {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | **{}** | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} |",
            r.relay,
            r.relay_threads,
            targets_cell(r),
            r.bitrate_kbps,
            r.targets_receiving,
            r.sink_connections,
            r.sink_connections_closed,
            f(r.connect_s, 1),
            f(r.relay_cpu_pct, 0),
            by_thread(&r.relay_thread_cpu_pct),
            f(r.cpu_s_per_gbit, 2),
            f(r.delivered_gbit_s, 3),
            f(r.delivered_ratio * 100.0, 1) + "%",
            f(r.min_target_ratio * 100.0, 1) + "%",
            f(r.latency_p50_ms, 2),
            f(r.latency_p99_ms, 2),
            f(r.latency_max_ms, 1),
            r.msgs_missing,
            r.targets_with_gaps,
            r.rss_kb / 1024,
            f(r.rss_per_target_kb, 0),
            f(r.idle_kb_per_target_before_media, 1),
            f(r.idle_kb_per_target_after_media, 1),
            f(r.tool_cpu_s / r.seconds * 100.0, 0),
            f(r.machine_busy_pct, 0),
        );
    }
    let notes: Vec<String> = results
        .iter()
        .flat_map(|r| {
            let mut v: Vec<String> = r
                .notes
                .iter()
                .map(|n| format!("{} × {}: {n}", r.relay, r.targets))
                .collect();
            if let Some(d) = r.prism_dropped_frames.filter(|d| *d > 0.0) {
                v.push(format!(
                    "{} × {}: prism dropped {d} frames",
                    r.relay, r.targets
                ));
            }
            if let Some(d) = r.prism_player_dropped_frames.filter(|d| *d > 0.0) {
                v.push(format!(
                    "{} × {}: prism dropped {d} frames for players",
                    r.relay, r.targets
                ));
            }
            if let Some(d) = r.prism_connection_errors.filter(|d| *d > 0.0) {
                v.push(format!(
                    "{} × {}: prism_connection_errors_total {d}",
                    r.relay, r.targets
                ));
            }
            if r.targets_connected_idle < r.targets {
                v.push(format!(
                    "{} × {}: only {} connected before media (KB/idle target before media is per connected target)",
                    r.relay, r.targets, r.targets_connected_idle
                ));
            }
            if let Some(d) = r.prism_target_disconnects.filter(|d| *d > 0.0) {
                v.push(format!(
                    "{} × {}: prism target disconnects {d}",
                    r.relay, r.targets
                ));
            }
            if r.seq_gaps > 0 || r.reorders > 0 {
                v.push(format!(
                    "{} × {}: {} frames skipped, {} out of order (latency sinks)",
                    r.relay, r.targets, r.seq_gaps, r.reorders
                ));
            }
            if let Some(e) = &r.relay_exit {
                v.push(format!("{} × {}: relay exited: {e}", r.relay, r.targets));
            }
            v
        })
        .collect();
    if !notes.is_empty() {
        s.push_str("\nNotes:\n\n");
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

/// An SVG chart's opening: size, white background, title and the horizontal grid with
/// its CPU-s/Gbit labels (plot left edge `l`, width `pw`, `y` maps a value to a row).
pub(crate) fn svg_head(
    w: f64,
    h: f64,
    l: f64,
    pw: f64,
    title: &str,
    ymax: f64,
    y: impl Fn(f64) -> f64,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        l + pw / 2.0,
        xml_escape(title)
    );
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            l + pw,
            l - 6.0,
            yy + 4.0,
            trim_num(v)
        );
    }
    s
}

/// CPU-s per forwarded Gbit against the number of targets, one line per relay; one bar per
/// relay when every result has the same target count.
pub fn svg(results: &[ScenarioResult], title: &str) -> String {
    let mut xs: Vec<usize> = results
        .iter()
        .filter(|r| r.cpu_s_per_gbit.is_finite())
        .map(|r| r.targets)
        .collect();
    xs.sort_unstable();
    xs.dedup();
    if xs.len() == 1 {
        return svg_bars(results, title);
    }
    let (w, h) = (720.0, 440.0);
    let (l, r, t, b) = (70.0, 150.0, 40.0, 50.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let ok: Vec<&ScenarioResult> = results
        .iter()
        .filter(|r| r.cpu_s_per_gbit.is_finite())
        .collect();
    let xmax = ok.iter().map(|r| r.targets).max().unwrap_or(1) as f64;
    let ymax_raw = ok.iter().map(|r| r.cpu_s_per_gbit).fold(0.0, f64::max);
    let ymax = nice_ceil(ymax_raw.max(0.1));
    let x = |v: f64| l + v / xmax * pw;
    let y = |v: f64| t + ph - v / ymax * ph;
    // Axes, grid and ticks.
    let mut s = svg_head(w, h, l, pw, title, ymax, y);
    let mut xs: Vec<usize> = ok.iter().map(|r| r.targets).collect();
    xs.sort_unstable();
    xs.dedup();
    for tx in &xs {
        let xx = x(*tx as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{t}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{tx}</text>"##,
            t + ph,
            t + ph + 16.0
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{l}" y1="{t}" x2="{l}" y2="{:.1}" stroke="black"/><line x1="{l}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
        t + ph,
        t + ph,
        l + pw,
        t + ph
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">push targets</text>"#,
        l + pw / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">relay CPU-seconds per forwarded Gbit (lower is better)</text>"#,
        t + ph / 2.0
    );
    // One line per relay.
    let colors = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"];
    let mut relays: Vec<&str> = Vec::new();
    for r in &ok {
        if !relays.contains(&r.relay.as_str()) {
            relays.push(&r.relay);
        }
    }
    for (i, name) in relays.iter().enumerate() {
        let c = colors[i % colors.len()];
        let mut pts: Vec<(f64, f64)> = ok
            .iter()
            .filter(|r| r.relay == *name)
            .map(|r| (r.targets as f64, r.cpu_s_per_gbit))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = pts
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for (a, b) in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{c}"><title>{name} {a} targets: {b:.3} CPU-s/Gbit</title></circle>"#,
                x(*a),
                y(*b)
            );
        }
        let ly = t + 10.0 + i as f64 * 20.0;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            l + pw + 15.0,
            l + pw + 40.0,
            l + pw + 46.0,
            ly + 4.0,
            xml_escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// One bar per result: CPU-s per forwarded Gbit.
fn svg_bars(results: &[ScenarioResult], title: &str) -> String {
    let ok: Vec<&ScenarioResult> = results
        .iter()
        .filter(|r| r.cpu_s_per_gbit.is_finite())
        .collect();
    let (w, h) = (720.0, 440.0);
    let (l, t, b) = (70.0, 40.0, 50.0);
    let pw = w - l - 30.0;
    let ph = h - t - b;
    let ymax = nice_ceil(ok.iter().map(|r| r.cpu_s_per_gbit).fold(0.1, f64::max));
    let y = |v: f64| t + ph - v / ymax * ph;
    let mut s = svg_head(w, h, l, pw, title, ymax, y);
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">relay CPU-seconds per forwarded Gbit (lower is better)</text>"#,
        t + ph / 2.0
    );
    let colors = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"];
    let slot = pw / ok.len().max(1) as f64;
    for (i, r) in ok.iter().enumerate() {
        let c = colors[i % colors.len()];
        let x0 = l + slot * i as f64 + slot * 0.2;
        let yy = y(r.cpu_s_per_gbit);
        let label = format!("{} × {}", r.relay, targets_cell(r));
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{yy:.1}" width="{:.1}" height="{:.1}" fill="{c}"><title>{}: {:.3} CPU-s/Gbit</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle">{:.3}</text><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            slot * 0.6,
            t + ph - yy,
            xml_escape(&label),
            r.cpu_s_per_gbit,
            x0 + slot * 0.3,
            yy - 4.0,
            r.cpu_s_per_gbit,
            x0 + slot * 0.3,
            t + ph + 16.0,
            xml_escape(&label),
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{l}" y1="{t}" x2="{l}" y2="{:.1}" stroke="black"/><line x1="{l}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
        t + ph,
        t + ph,
        l + pw,
        t + ph
    );
    s.push_str("</svg>\n");
    s
}

pub(crate) fn nice_ceil(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

pub(crate) fn trim_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_shape() {
        let d = utc_date();
        assert_eq!(d.len(), 10);
        assert!(d.starts_with("20"));
    }

    #[test]
    fn nice() {
        assert_eq!(nice_ceil(0.37), 0.5);
        assert_eq!(nice_ceil(1.2), 2.0);
        assert_eq!(nice_ceil(7.0), 10.0);
    }
}
