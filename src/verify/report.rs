//! The report of `upi-switch verify` for people: one `label: value` per line
//! (as the demo's summary), counts first, then violations grouped by kind.

use super::check::Report;
use crate::domain::Paise;
use crate::saga::Status;

fn inr(paise: i64) -> String {
    Paise(paise).to_inr()
}

fn row(label: &str, value: String) -> String {
    format!("{:<32}{value}", format!("{label}:"))
}

pub fn render(r: &Report) -> String {
    let mut out = vec!["== upi-switch verify ==".to_string()];
    let mut line = |label: &str, value: String| out.push(row(label, value));
    line(
        "checked at",
        r.checked_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let total: u64 = r.transactions.values().map(|c| c.count).sum();
    line("transactions", total.to_string());
    for status in [
        Status::Success,
        Status::Failed,
        Status::Reversed,
        Status::Pending,
    ] {
        let c = r.transactions.get(&status).copied().unwrap_or_default();
        line(
            &format!("  {}", status.as_str()),
            format!("{}  ({})", c.count, inr(c.amount_paise)),
        );
    }
    for (kind, statuses) in &r.by_type {
        let n: u64 = statuses.values().sum();
        let parts: Vec<String> = statuses
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| format!("{} {n}", s.as_str()))
            .collect();
        line(
            &format!("  type {kind}"),
            format!("{n}  ({})", parts.join(", ")),
        );
    }
    if !r.collects.is_empty() {
        let parts: Vec<String> = r.collects.iter().map(|(s, n)| format!("{s} {n}")).collect();
        line("collect requests", parts.join(", "));
    }
    for b in &r.banks {
        let last = b.last_seq.map_or("none".into(), |s| s.to_string());
        line(
            &format!("bank {}", b.code),
            format!("{} ops, last seq {last}  ({})", b.ops, b.endpoint),
        );
        for (outcome, n) in &b.by_outcome {
            line(&format!("  {outcome}"), n.to_string());
        }
        line("  net of applied ops", inr(b.net_paise));
        if let (Some(balance), Some(opening)) = (b.balance_paise, b.opening_paise) {
            line(
                "  balances",
                format!("{}  (opening {})", inr(balance), inr(opening)),
            );
        }
    }
    let m = &r.money;
    line("feeds' net, all banks", inr(m.feed_net_paise));
    if let (Some(balance), Some(opening)) = (m.balance_paise, m.opening_paise) {
        line("balances, all banks", inr(balance));
        line("opening total implied", inr(opening));
    }
    line(
        "expected total",
        m.expected_paise.map_or_else(
            || "not given (the opening total is computed, not checked)".into(),
            inr,
        ),
    );
    for note in &r.notes {
        line("note", note.clone());
    }
    if r.violation_count == 0 {
        line("violations", "none".into());
    } else {
        line(
            "violations",
            format!("{} of {} kind(s)", r.violation_count, r.violations.len()),
        );
    }
    for (kind, group) in &r.violations {
        out.push(row(
            &format!("  {}", kind.as_str()),
            group.count.to_string(),
        ));
        for v in &group.examples {
            let mut who = Vec::new();
            if let Some(t) = v.txn_id {
                who.push(format!("txn {t}"));
            }
            if let Some(b) = &v.bank {
                who.push(format!("bank {b}"));
            }
            if let Some(o) = &v.op_id {
                who.push(format!("op {o}"));
            }
            let who = if who.is_empty() {
                String::new()
            } else {
                format!("{}: ", who.join(", "))
            };
            out.push(format!("    - {who}{}", v.detail));
        }
        let more = group.count.saturating_sub(group.examples.len() as u64);
        if more > 0 {
            out.push(format!("    … and {more} more"));
        }
    }
    out.join("\n")
}
