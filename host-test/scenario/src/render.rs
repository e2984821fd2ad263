//! The human report: one table row per phase (requests, outcomes, time the plugins added,
//! logs, traps), then metrics per phase, the first log lines and the traps. Plain text,
//! no colours (it goes to pipes and CI logs as often as to terminals). Knows only [`Report`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::engine::Level;
use crate::report::{Percentiles, Report, Totals};

/// Renders `report` as text; `log_lines` caps the log lines shown.
pub fn render(report: &Report, log_lines: usize) -> String {
    let mut out = String::new();
    let chain: Vec<&str> = report.plugins.iter().map(|p| p.name.as_str()).collect();
    let name = if report.scenario.is_empty() {
        "scenario"
    } else {
        report.scenario.as_str()
    };
    let _ = writeln!(
        out,
        "{name}: chain [{}], {} worker{}, seed {}; {} virtual in {} wall",
        chain.join(" -> "),
        report.workers,
        if report.workers == 1 { "" } else { "s" },
        report.seed,
        human_ms(report.virtual_ms),
        human_ms(report.wall_ms),
    );
    let header = [
        "phase",
        "requests",
        "forwarded",
        "local replies",
        "paused/resumed",
        "unfinished",
        "cpu/req p50 p99",
        "pause p50 p99",
        "logs",
        "traps",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for p in &report.phases {
        rows.push(row(
            &format!("{} ({}/s)", p.name, trim(p.rate_per_s)),
            &p.totals,
        ));
    }
    if report.phases.len() > 1 {
        rows.push(row("total", &report.totals));
    }
    out.push('\n');
    out.push_str(&table(&header, &rows));
    if report.phases.iter().any(|p| p.by_template.len() > 1) {
        let header = [
            "phase",
            "template",
            "requests",
            "forwarded",
            "local replies",
            "reset/unfinished",
        ];
        let mut rows = Vec::new();
        for p in &report.phases {
            for (name, t) in &p.by_template {
                rows.push(vec![
                    p.name.clone(),
                    name.clone(),
                    t.requests.to_string(),
                    t.forwarded.to_string(),
                    t.local_replies.to_string(),
                    t.other.to_string(),
                ]);
            }
        }
        out.push_str("\nby template:\n");
        out.push_str(&table(&header, &rows));
    }
    for p in &report.phases {
        if p.metrics.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\nmetrics after {}:", p.name);
        for (k, m) in &p.metrics {
            let sign = if m.delta >= 0.0 { "+" } else { "" };
            let _ = writeln!(out, "  {k} = {} ({sign}{})", trim(m.value), trim(m.delta));
        }
    }
    if report.logs.total > 0 {
        let shown = report.logs.lines.len().min(log_lines);
        let _ = writeln!(
            out,
            "\nplugin log ({} lines, first {shown}):",
            report.logs.total
        );
        for l in report.logs.lines.iter().take(shown) {
            let worker = l.worker.map_or("-".to_string(), |w| w.to_string());
            let _ = writeln!(
                out,
                "  {:>9} w{worker} {:<5} {}: {}",
                human_ms(l.at_ms),
                l.level.name(),
                l.plugin,
                clip(&l.message, 120)
            );
        }
    }
    if !report.traps.is_empty() {
        let _ = writeln!(out, "\ntraps ({}):", report.traps.len());
        for t in report.traps.iter().take(10) {
            let worker = t.worker.map_or("-".to_string(), |w| w.to_string());
            let _ = writeln!(
                out,
                "  {} w{worker} in {}: {}",
                t.plugin,
                t.callback,
                clip(&t.message, 160)
            );
        }
    }
    out
}

fn row(label: &str, t: &Totals) -> Vec<String> {
    let o = &t.outcomes;
    vec![
        label.to_string(),
        t.requests.to_string(),
        with_statuses(o.forwarded, &o.forwarded_by_status),
        with_statuses(o.local_replies, &o.local_reply_by_status),
        format!("{}/{}", o.paused, o.resumed),
        o.unfinished.to_string(),
        pct(&t.added.cpu_us, "µs"),
        pct(&t.added.pause_ms, "ms"),
        levels(&t.logs_by_level),
        t.traps.to_string(),
    ]
}

fn with_statuses(n: u64, by: &BTreeMap<u16, u64>) -> String {
    if n == 0 {
        return "0".into();
    }
    let parts: Vec<String> = by.iter().map(|(s, c)| format!("{s}:{c}")).collect();
    format!("{n} ({})", parts.join(" "))
}

fn pct(p: &Percentiles, unit: &str) -> String {
    if p.count == 0 {
        "-".into()
    } else {
        let r = |x: f64| trim((x * 10.0).round() / 10.0);
        format!("{} {}{unit}", r(p.p50), r(p.p99))
    }
}

fn levels(by: &BTreeMap<Level, u64>) -> String {
    let parts: Vec<String> = by
        .iter()
        .filter(|(_, c)| **c > 0)
        .map(|(l, c)| format!("{}:{c}", l.name()))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            s.push_str(&" ".repeat(pad));
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(header.iter().map(|h| h.to_string()).collect()));
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

fn trim(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn human_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{}s", trim((ms / 10.0).round() / 100.0))
    } else {
        format!("{}ms", trim((ms * 10.0).round() / 10.0))
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let cut: String = s.chars().take(n).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_short() {
        assert_eq!(trim(5.0), "5");
        assert_eq!(trim(0.125), "0.125");
        assert_eq!(trim(2.5), "2.5");
        assert_eq!(human_ms(1500.0), "1.5s");
        assert_eq!(human_ms(12.34), "12.3ms");
    }

    #[test]
    fn a_table_aligns_columns() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "1".into()]]);
        assert_eq!(t, "a    bb\nxxx  1\n");
    }
}
