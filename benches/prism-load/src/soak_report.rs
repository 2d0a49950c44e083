//! The soak's output: samples as CSV, the summary (slopes, panics, subscribers, faults) as
//! JSON and markdown, and one SVG panel per sampled metric (drawn with report.rs's chart
//! head).

use crate::report::{nice_ceil, svg_head, trim_num, xml_escape};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub rss_mb: f64,
    pub fds: u64,
    pub threads: u64,
    pub tasks: u64,
    pub series: u64,
    pub streams: u64,
    pub connections: u64,
    pub rtmp_players: u64,
    pub publishers: u64,
    pub external: u64,
}

impl Sample {
    pub const CSV_HEADER: &'static str =
        "t_s,rss_mb,fds,threads,tasks,series,streams,connections,tool_rtmp_players,tool_rtmp_publishers,tool_external_clients";

    pub fn csv(&self) -> String {
        format!(
            "{:.1},{:.2},{},{},{},{},{},{},{},{},{}",
            self.t_s,
            self.rss_mb,
            self.fds,
            self.threads,
            self.tasks,
            self.series,
            self.streams,
            self.connections,
            self.rtmp_players,
            self.publishers,
            self.external
        )
    }
}

/// One subscriber the tool checked frame by frame.
#[derive(Debug, Clone, Serialize)]
pub struct Subscriber {
    pub kind: String,
    pub name: String,
    pub churn: bool,
    pub video: u64,
    pub audio: u64,
    pub gaps: u64,
    pub reorders: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoakSummary {
    pub environment: String,
    pub minutes_planned: f64,
    pub duration_s: f64,
    pub sample_secs: u64,
    pub churn_joins: u64,
    pub prism_exited: Option<String>,
    pub panics: Vec<String>,
    pub stderr_lines: usize,
    pub faults: BTreeMap<String, u64>,
    pub fault_sink_bytes_after_pass: Vec<u64>,
    pub bad_input: BTreeMap<String, u64>,
    pub external: BTreeMap<String, serde_json::Value>,
    pub real_publisher_restarts: u64,
    pub subscribers: Vec<Subscriber>,
}

/// Least-squares slope of `v` against time, per hour, over the samples after the first
/// quarter of the run (start-up and warm caches excluded); with the window's first and last
/// values.
#[derive(Debug, Clone, Serialize)]
pub struct Slope {
    pub metric: &'static str,
    pub unit: &'static str,
    pub per_hour: f64,
    /// per_hour as a percentage of the window's mean.
    pub pct_of_mean_per_hour: f64,
    pub first: f64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
}

type Getter = fn(&Sample) -> f64;

const METRICS: [(&str, &str, Getter); 5] = [
    ("RSS", "MB", |s| s.rss_mb),
    ("open fds", "", |s| s.fds as f64),
    ("threads", "", |s| s.threads as f64),
    ("tokio tasks alive", "", |s| s.tasks as f64),
    ("metric series", "", |s| s.series as f64),
];

pub fn slope(samples: &[Sample], get: Getter) -> Option<(f64, f64, f64, f64, f64, f64)> {
    let end = samples.last()?.t_s;
    let w: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t_s >= end / 4.0)
        .map(|s| (s.t_s / 3600.0, get(s)))
        .collect();
    if w.len() < 3 {
        return None;
    }
    let n = w.len() as f64;
    let (mx, my) = (
        w.iter().map(|p| p.0).sum::<f64>() / n,
        w.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = w.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = w.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let min = w.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let max = w.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    Some((b, my, w[0].1, w[w.len() - 1].1, min, max))
}

pub fn slopes(samples: &[Sample]) -> Vec<Slope> {
    METRICS
        .iter()
        .filter_map(|(name, unit, get)| {
            let (b, mean, first, last, min, max) = slope(samples, *get)?;
            Some(Slope {
                metric: name,
                unit,
                per_hour: b,
                pct_of_mean_per_hour: if mean != 0.0 { 100.0 * b / mean } else { 0.0 },
                first,
                last,
                min,
                max,
            })
        })
        .collect()
}

/// Gaps, reorders or nothing received. A socket error at the end is not one by itself: a
/// churn subscriber's stream ends (or the subscriber is cut) while it reads.
fn problem(s: &Subscriber) -> bool {
    s.gaps > 0 || s.reorders > 0 || s.video == 0
}

/// Subscribers that should have been gap-free: every in-process player and healthy-target
/// connection (the faulty target is not one of them).
fn healthy_report(subs: &[Subscriber]) -> (String, bool) {
    let mut by_kind: BTreeMap<&str, [u64; 6]> = BTreeMap::new();
    let mut bad = Vec::new();
    for s in subs {
        let e = by_kind.entry(&s.kind).or_default();
        e[0] += 1;
        e[2] += s.video + s.audio;
        e[3] += s.gaps;
        e[4] += s.reorders;
        e[5] += u64::from(s.error.is_some());
        if problem(s) {
            e[1] += 1;
            bad.push(s);
        }
    }
    let mut md = String::from(
        "| subscriber | count | with a problem | frames checked | gaps | reorders | ended with a socket error |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (k, [n, nb, fr, g, r, er]) in &by_kind {
        let _ = writeln!(md, "| {k} | {n} | {nb} | {fr} | {g} | {r} | {er} |");
    }
    let gapless = subs.iter().all(|s| s.gaps == 0 && s.reorders == 0);
    if !bad.is_empty() {
        md.push_str("\nWith a problem (gaps, reorders or no frame received):\n\n");
        for s in bad.iter().take(20) {
            let _ = writeln!(
                md,
                "- {} `{}`: video {} audio {} gaps {} reorders {} error {:?}",
                s.kind, s.name, s.video, s.audio, s.gaps, s.reorders, s.error
            );
        }
    }
    (md, gapless)
}

pub fn markdown(samples: &[Sample], s: &SoakSummary, sl: &[Slope]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Soak: {:.1} min (planned {:.1}), sample every {} s, {} churn joins. Machine: {}\n",
        s.duration_s / 60.0,
        s.minutes_planned,
        s.sample_secs,
        s.churn_joins,
        s.environment
    );
    md.push_str("| metric | first (at 1/4) | last | min | max | slope / h (last 3/4) | % of mean / h |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for x in sl {
        let _ = writeln!(
            md,
            "| {}{} | {:.1} | {:.1} | {:.1} | {:.1} | {:+.2} | {:+.2} % |",
            x.metric,
            if x.unit.is_empty() {
                String::new()
            } else {
                format!(" ({})", x.unit)
            },
            x.first,
            x.last,
            x.min,
            x.max,
            x.per_hour,
            x.pct_of_mean_per_hour
        );
    }
    let _ = writeln!(
        md,
        "\nPrism exited during the run: {}. Panics in Prism's stderr: {}{}. Stderr lines (log level warn): {}.",
        s.prism_exited.as_deref().unwrap_or("no"),
        s.panics.len(),
        s.panics
            .first()
            .map(|p| format!(" (first: `{p}`)"))
            .unwrap_or_default(),
        s.stderr_lines
    );
    let (h, gapless) = healthy_report(&s.subscribers);
    let _ = writeln!(
        md,
        "\nHealthy subscribers checked frame by frame (frame markers), all gap-free: **{}**\n\n{h}",
        if gapless { "yes" } else { "no" }
    );
    md.push_str("\nExternal clients (ffmpeg, GStreamer WHEP): ok = clean exit and media received.\n\n| client | runs | ok |\n|---|---:|---:|\n");
    for (k, v) in &s.external {
        let _ = writeln!(md, "| {k} | {} | {} |", v["runs"], v["ok"]);
    }
    for (k, v) in &s.external {
        if let Some(f) = v["failures"].as_array().filter(|f| !f.is_empty()) {
            let _ = writeln!(md, "- {k} failures (first {}): {}", f.len(), f[0]);
        }
    }
    let _ = writeln!(
        md,
        "\nFaults injected: {}. Faulty target's sink bytes at the end of each pass phase: {}.\n\
         Real-clip publisher restarts: {}.\nMalformed input sent: {}.",
        s.faults
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        s.fault_sink_bytes_after_pass
            .iter()
            .map(|b| format!("{:.1}", *b as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(" → ")
            + " MB",
        s.real_publisher_restarts,
        s.bad_input
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = samples;
    md
}

/// One panel per metric, stacked; the dashed line is the fitted slope over the last 3/4.
pub fn svg(samples: &[Sample], title: &str) -> String {
    let (w, ph_total) = (760.0, 170.0);
    let (l, r, t, b) = (70.0, 30.0, 40.0, 30.0);
    let pw = w - l - r;
    let ph = ph_total - t - b;
    let h = ph_total * METRICS.len() as f64 + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let tmax_min = samples.last().map_or(1.0, |x| x.t_s / 60.0).max(1.0);
    let x = |tm: f64| l + tm / tmax_min * pw;
    for (i, (name, unit, get)) in METRICS.iter().enumerate() {
        let ymax = nice_ceil(samples.iter().map(get).fold(1.0, f64::max) * 1.1);
        let y = |v: f64| t + ph - v / ymax * ph;
        let fit = slope(samples, *get);
        let panel_title = format!(
            "{}{name}{}{}",
            if i == 0 {
                format!("{title}: ")
            } else {
                String::new()
            },
            if unit.is_empty() {
                String::new()
            } else {
                format!(" ({unit})")
            },
            fit.map(|f| format!(", slope over the last 3/4: {:+.2}/h", f.0))
                .unwrap_or_default()
        );
        let _ = writeln!(
            s,
            r#"<g transform="translate(0 {:.1})">"#,
            i as f64 * ph_total
        );
        s.push_str(&svg_head(w, ph_total, l, pw, &panel_title, ymax, y));
        // Minute ticks.
        let step = nice_ceil(tmax_min / 8.0).max(1.0);
        let mut tm = 0.0;
        while tm <= tmax_min + 1e-9 {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
                x(tm),
                t + ph + 14.0,
                trim_num(tm)
            );
            tm += step;
        }
        if i == METRICS.len() - 1 {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">minutes</text>"#,
                l + pw / 2.0,
                t + ph + 27.0
            );
        }
        let pts: Vec<String> = samples
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.t_s / 60.0), y(get(p))))
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>"##,
            pts.join(" ")
        );
        if let (Some((b, mean, ..)), Some(last)) = (fit, samples.last()) {
            // The fit passes through the window's mean at its mean time.
            let end_h = last.t_s / 3600.0;
            let w0 = end_h / 4.0;
            let mid = samples
                .iter()
                .filter(|p| p.t_s / 3600.0 >= w0)
                .map(|p| p.t_s / 3600.0)
                .sum::<f64>()
                / samples
                    .iter()
                    .filter(|p| p.t_s / 3600.0 >= w0)
                    .count()
                    .max(1) as f64;
            let (y0, y1) = (mean + b * (w0 - mid), mean + b * (end_h - mid));
            let _ = writeln!(
                s,
                r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#d62728" stroke-width="1.5" stroke-dasharray="5 4"/>"##,
                x(w0 * 60.0),
                y(y0),
                x(end_h * 60.0),
                y(y1)
            );
        }
        s.push_str("</svg>\n</g>\n");
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
        w / 2.0,
        h - 4.0,
        xml_escape("blue: sampled; red dashed: least-squares fit over the last 3/4 of the run")
    );
    s.push_str("</svg>\n");
    s
}

/// Writes STEM.csv (every sample), STEM.json (summary + slopes), STEM.md and STEM.svg, and
/// prints the markdown.
pub fn write(stem: &Path, samples: &[Sample], mut summary: SoakSummary) -> anyhow::Result<()> {
    if summary.environment.is_empty() {
        summary.environment = format!(
            "{} cores, load average at the end {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let mut csv = format!("{}\n", Sample::CSV_HEADER);
    for x in samples {
        let _ = writeln!(csv, "{}", x.csv());
    }
    std::fs::write(stem.with_extension("csv"), csv)?;
    let sl = slopes(samples);
    // Only the subscribers with a problem go into the JSON, with counts of the rest: the
    // file stays small.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for x in &summary.subscribers {
        *counts.entry(x.kind.clone()).or_default() += 1;
    }
    let problems: Vec<&Subscriber> = summary.subscribers.iter().filter(|x| problem(x)).collect();
    let md = markdown(samples, &summary, &sl);
    let json = serde_json::json!({
        "scenario": "soak",
        "summary": {
            "environment": summary.environment,
            "minutes_planned": summary.minutes_planned,
            "duration_s": summary.duration_s,
            "sample_secs": summary.sample_secs,
            "churn_joins": summary.churn_joins,
            "prism_exited": summary.prism_exited,
            "panics": summary.panics,
            "stderr_lines": summary.stderr_lines,
            "faults": summary.faults,
            "fault_sink_bytes_after_pass": summary.fault_sink_bytes_after_pass,
            "bad_input": summary.bad_input,
            "external": summary.external,
            "real_publisher_restarts": summary.real_publisher_restarts,
            "subscribers_by_kind": counts,
            "subscribers_with_problems": problems,
            "all_healthy_gap_free": summary.subscribers.iter().all(|x| x.gaps == 0 && x.reorders == 0),
        },
        "slopes": sl,
    });
    std::fs::write(
        stem.with_extension("json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(stem.with_extension("md"), &md)?;
    std::fs::write(
        stem.with_extension("svg"),
        svg(
            samples,
            &format!("Prism soak ({})", crate::report::utc_date()),
        ),
    )?;
    println!("{md}");
    eprintln!("[soak] wrote {}.{{csv,json,md,svg}}", stem.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, v: u64) -> Sample {
        Sample {
            t_s: t,
            rss_mb: v as f64,
            fds: v,
            threads: 4,
            tasks: v,
            series: v,
            streams: 0,
            connections: 0,
            rtmp_players: 0,
            publishers: 0,
            external: 0,
        }
    }

    #[test]
    fn slope_of_a_line_ignores_the_first_quarter() {
        // Flat at 100 after a start-up ramp in the first quarter; then +10 per hour.
        let v: Vec<Sample> = (0..=40)
            .map(|i| {
                let t = i as f64 * 90.0;
                let val = if t < 900.0 {
                    10
                } else {
                    100 + (t / 360.0) as u64
                };
                s(t, val)
            })
            .collect();
        let sl = slopes(&v);
        let fds = sl.iter().find(|x| x.metric == "open fds").unwrap();
        assert!((fds.per_hour - 10.0).abs() < 1.0, "{fds:?}");
        let th = sl.iter().find(|x| x.metric == "threads").unwrap();
        assert_eq!(th.per_hour, 0.0);
        let svg = svg(&v, "t");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
