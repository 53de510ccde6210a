//! The human-readable side of a report: one progress line per level and the final table
//! (the JSON side is `serde_json` over [`BenchReport`]).

use std::fmt::Write;

use super::stats::LevelResult;
use super::BenchReport;

fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "-".into(),
    }
}

/// `concurrency 16: 64/64 ok in 12.3 s, 310.2 output tok/s`
pub fn progress_line(l: &LevelResult) -> String {
    format!("rill bench: concurrency {}: {}/{} ok in {:.1} s, {} output tok/s", l.concurrency, l.ok, l.requests, l.wall_s, num(l.output_tok_s, 1))
}

const HEADER: [&str; 12] = ["conc", "ok/sent", "failed", "wall s", "out tok/s", "prompt tok/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "E2E p50", "E2E p99"];

/// A fixed-width table, latencies in milliseconds, then the failure reasons of each level.
pub fn table(report: &BenchReport) -> String {
    let p = &report.parameters;
    let mut out = String::new();
    let calibration = if p.prompt_calibration == "tokenize" { "fitted with /tokenize" } else { "estimated" };
    let _ = writeln!(
        out,
        "rill bench: model {} at {} ({}, {}, {} prompt tokens {calibration}, {} max tokens, seed {})",
        p.model,
        p.base_url,
        p.endpoint.name(),
        if p.stream { "streaming" } else { "not streaming" },
        p.prompt_tokens,
        p.max_tokens,
        p.seed
    );
    let rows: Vec<[String; 12]> = report
        .levels
        .iter()
        .map(|l| {
            [
                l.concurrency.to_string(),
                format!("{}/{}", l.ok, l.requests),
                l.failed.to_string(),
                format!("{:.2}", l.wall_s),
                num(l.output_tok_s, 1),
                num(l.prompt_tok_s, 1),
                num(l.ttft_ms_p50, 1),
                num(l.ttft_ms_p99, 1),
                num(l.itl_ms_p50, 1),
                num(l.itl_ms_p99, 1),
                num(l.e2e_ms_p50, 1),
                num(l.e2e_ms_p99, 1),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..HEADER.len()).map(|i| rows.iter().map(|r| r[i].len()).chain([HEADER[i].len()]).max().unwrap_or(0)).collect();
    let line = |cells: &[&str]| cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join("  ");
    let _ = writeln!(out, "{}", line(&HEADER));
    for r in &rows {
        let _ = writeln!(out, "{}", line(&r.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    let _ = writeln!(out, "(latencies in ms; tok/s over each level's wall time)");
    for l in &report.levels {
        for (reason, count) in &l.failures {
            let _ = writeln!(out, "concurrency {}: {count} failed: {reason}", l.concurrency);
        }
        if l.ok > 0 && !l.usage_reported {
            let _ = writeln!(out, "concurrency {}: the server reported no usage; output tokens count text chunks", l.concurrency);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::stats::{aggregate, Timing};
    use super::super::{BenchConfig, Endpoint, Parameters};
    use super::*;

    #[test]
    fn the_table_has_a_row_per_level_and_lists_failures() {
        let cfg = BenchConfig::default();
        let ok = Timing { ttft: Some(Duration::from_millis(12)), e2e: Duration::from_millis(40), completion_tokens: 8, usage_reported: true, ..Timing::default() };
        let levels = vec![
            aggregate(1, 2, &[Ok(ok.clone()), Ok(ok)], Duration::from_secs(1)),
            aggregate(4, 4, &[Err("HTTP 503: busy".into())], Duration::from_secs(1)),
        ];
        let report = BenchReport {
            parameters: Parameters {
                base_url: cfg.base_url,
                model: "smollm2".into(),
                endpoint: Endpoint::Completions,
                stream: true,
                concurrency: vec![1, 4],
                requests: None,
                prompt_tokens: 128,
                max_tokens: 8,
                seed: 0,
                timeout_s: 600.0,
                prompt_calibration: "words",
                json_schema: false,
            },
            levels,
        };
        let t = table(&report);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].contains("TTFT p50") && lines[1].trim_start().starts_with("conc"));
        assert!(lines[2].trim_start().starts_with("1  ") && lines[2].contains("2/2") && lines[2].contains("16.0") && lines[2].contains("12.0"));
        assert!(lines[3].contains("0/4") && lines[3].contains(" - "));
        assert!(t.contains("concurrency 4: 1 failed: HTTP 503: busy"));
        assert!(t.contains("concurrency 4: 3 failed: not sent"));
        assert_eq!(lines[1].len(), lines[2].len());
    }
}
