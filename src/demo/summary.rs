//! The demo's summary: counts by status and by payment type, latencies,
//! throughput, HTTP errors, and the money check (the sum over both banks is
//! the same before and after, and each ledger moved exactly as the SUCCESS
//! transactions say, refunds back from the original's payee to its payer).
//! One `label: value` per line: tests and scripts read these.

use super::send::{End, Outcome};
use super::{DemoResult, FOLLOW_LIMIT, Ledger};
use crate::domain::Paise;
use crate::rig::layout::{Account, BANKS, Kind};
use crate::saga::PaymentType;
use crate::traffic::{Latency, STATUSES, Status};
use std::collections::BTreeMap;
use std::time::Duration;

pub(super) fn latency_line(durations: impl Iterator<Item = Duration>) -> String {
    let mut histogram = Latency::new();
    durations.for_each(|d| histogram.record(d));
    histogram.summary().line()
}

pub(super) struct Summary {
    sent: usize,
    /// Each type's outcomes: statuses seen and `NOT ACCEPTED`, by type name.
    by_type: BTreeMap<&'static str, BTreeMap<&'static str, usize>>,
    /// Refunds sent as a P2P or P2M: nothing had succeeded yet to refund.
    fell_back: usize,
    accepted: usize,
    success: usize,
    failed: usize,
    reversed: usize,
    pending: usize,
    not_accepted: BTreeMap<String, u64>,
    reasons: BTreeMap<String, u64>,
    accept_line: String,
    e2e_line: String,
    elapsed: Duration,
    concurrency: usize,
    errors: BTreeMap<String, u64>,
    /// (code, total before, total after)
    totals: Vec<(&'static str, i64, i64)>,
    /// Accounts whose balance did not move as the SUCCESS transactions say.
    mismatches: Vec<String>,
    accounts_checked: usize,
    pub(super) sample_txn: Option<String>,
    pub(super) sample_vpa: String,
}

impl Summary {
    pub(super) fn new(
        outcomes: &[Outcome],
        errors: &BTreeMap<String, u64>,
        elapsed: Duration,
        concurrency: usize,
        before: &[Ledger],
        after: &[Ledger],
        people: &[Account],
    ) -> Summary {
        let count = |s: Status| outcomes.iter().filter(|o| o.end == End::Seen(s)).count();
        let mut not_accepted = BTreeMap::new();
        let mut reasons = BTreeMap::new();
        let mut expected: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        let mut by_type: BTreeMap<&'static str, BTreeMap<&'static str, usize>> = BTreeMap::new();
        for o in outcomes {
            if let End::NotAccepted(kind) = &o.end {
                *not_accepted.entry(kind.clone()).or_default() += 1;
            }
            if let Some(r) = &o.reason {
                *reasons.entry(r.clone()).or_default() += 1;
            }
            if o.end == End::Seen(Status::Success) {
                let (payer, payee) = (&people[o.payer], &people[o.payee]);
                *expected
                    .entry((payer.bank().code, payer.account.as_str()))
                    .or_default() -= o.amount_paise;
                *expected
                    .entry((payee.bank().code, payee.account.as_str()))
                    .or_default() += o.amount_paise;
            }
            let end = match &o.end {
                End::Seen(s) => s.as_str(),
                End::NotAccepted(_) => "NOT ACCEPTED",
            };
            *by_type
                .entry(o.kind.as_str())
                .or_default()
                .entry(end)
                .or_default() += 1;
        }
        let mut mismatches = Vec::new();
        let mut accounts_checked = 0;
        for ((bank, b), a) in BANKS.iter().zip(before).zip(after) {
            let code = &bank.code;
            let names: std::collections::BTreeSet<&String> =
                b.accounts.keys().chain(a.accounts.keys()).collect();
            for account in names {
                accounts_checked += 1;
                let was = b.accounts.get(account).map_or(0, |x| x.0);
                let is = a.accounts.get(account).map_or(0, |x| x.0);
                let want = expected
                    .get(&(*code, account.as_str()))
                    .copied()
                    .unwrap_or(0);
                if is - was != want {
                    mismatches.push(format!(
                        "{code} {account} moved {} but SUCCESS transactions say {}",
                        Paise(is - was).to_rupees(),
                        Paise(want).to_rupees()
                    ));
                }
            }
        }
        // A finished payment to show off: a SUCCESS if there is one.
        let sample_txn = outcomes
            .iter()
            .filter(|o| o.txn_id.is_some())
            .max_by_key(|o| o.end == End::Seen(Status::Success))
            .and_then(|o| o.txn_id.clone());
        let sample_vpa = people
            .iter()
            .find(|p| p.kind == Kind::Ordinary && p.bank == 1)
            .map_or_else(|| "user001@icici".into(), |p| p.vpa.clone());
        Summary {
            sent: outcomes.len(),
            by_type,
            fell_back: outcomes.iter().filter(|o| o.fell_back).count(),
            accepted: outcomes.iter().filter(|o| o.accept.is_some()).count(),
            success: count(Status::Success),
            failed: count(Status::Failed),
            reversed: count(Status::Reversed),
            pending: count(Status::Pending),
            not_accepted,
            reasons,
            accept_line: latency_line(outcomes.iter().filter_map(|o| o.accept)),
            e2e_line: latency_line(outcomes.iter().filter_map(|o| o.e2e)),
            elapsed,
            concurrency,
            errors: errors.clone(),
            totals: BANKS
                .iter()
                .zip(before.iter().zip(after))
                .map(|(bank, (b, a))| (bank.code, b.total, a.total))
                .collect(),
            mismatches,
            accounts_checked,
            sample_txn,
            sample_vpa,
        }
    }

    fn terminal(&self) -> usize {
        self.success + self.failed + self.reversed
    }

    fn sums(&self) -> (i64, i64) {
        (
            self.totals.iter().map(|t| t.1).sum(),
            self.totals.iter().map(|t| t.2).sum(),
        )
    }

    fn conserved(&self) -> bool {
        let (before, after) = self.sums();
        before == after
    }

    /// The summary, one `label: value` per line (tests and scripts read these).
    pub(super) fn render(&self) -> String {
        let mut out = vec!["== upi-switch demo summary ==".to_string()];
        let mut line =
            |label: &str, value: String| out.push(format!("{:<30}{value}", format!("{label}:")));
        line("transactions sent", self.sent.to_string());
        line("accepted", self.accepted.to_string());
        line("status SUCCESS", self.success.to_string());
        line("status FAILED", self.failed.to_string());
        line("status REVERSED", self.reversed.to_string());
        line("status PENDING", self.pending.to_string());
        line(
            "not accepted",
            self.not_accepted.values().sum::<u64>().to_string(),
        );
        for (kind, n) in &self.not_accepted {
            line(&format!("not accepted {kind}"), n.to_string());
        }
        // Every type, shown even when none was sent (a mix without it).
        for kind in [
            PaymentType::P2P,
            PaymentType::P2M,
            PaymentType::Collect,
            PaymentType::Refund,
        ] {
            let counts = self.by_type.get(kind.as_str());
            let n = |s: &str| counts.and_then(|c| c.get(s)).copied().unwrap_or(0);
            let statuses: Vec<String> = STATUSES
                .iter()
                .map(|s| format!("{} {}", s.as_str(), n(s.as_str())))
                .collect();
            line(
                &format!("type {}", kind.as_str()),
                format!(
                    "{}  ({}  not accepted {})",
                    counts.map_or(0, |c| c.values().sum::<usize>()),
                    statuses.join("  "),
                    n("NOT ACCEPTED")
                ),
            );
        }
        if self.fell_back > 0 {
            line(
                "refunds sent as P2P/P2M",
                format!("{}  (nothing had succeeded yet to refund)", self.fell_back),
            );
        }
        for (reason, n) in &self.reasons {
            line(&format!("reason {reason}"), n.to_string());
        }
        line("accept latency ms", self.accept_line.clone());
        line("end-to-end latency ms", self.e2e_line.clone());
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        line(
            "throughput tx/s",
            format!(
                "{:.1}  ({} terminal in {:.2} s, concurrency {})",
                self.terminal() as f64 / secs,
                self.terminal(),
                secs,
                self.concurrency
            ),
        );
        line("http errors", self.errors.values().sum::<u64>().to_string());
        for (kind, n) in &self.errors {
            line(&format!("http error {kind}"), n.to_string());
        }
        for (code, before, after) in &self.totals {
            line(
                &format!("bank {code} total"),
                format!(
                    "{} -> {}  (change {})",
                    Paise(*before).to_inr(),
                    Paise(*after).to_inr(),
                    Paise(after - before).to_inr()
                ),
            );
        }
        let (before, after) = self.sums();
        line(
            "sum of both banks",
            format!("{} -> {}", Paise(before).to_inr(), Paise(after).to_inr()),
        );
        let conserved = if self.conserved() {
            "yes".to_string()
        } else if self.pending > 0 {
            format!(
                "no ({} transaction(s) still pending: money may be in flight)",
                self.pending
            )
        } else {
            "no".to_string()
        };
        line("money conserved", conserved);
        let ledgers = if self.mismatches.is_empty() {
            format!("yes ({} accounts checked)", self.accounts_checked)
        } else {
            format!("no ({} account(s) differ)", self.mismatches.len())
        };
        line("ledgers match SUCCESS", ledgers);
        for m in self.mismatches.iter().take(10) {
            line("ledger mismatch", m.clone());
        }
        out.join("\n")
    }

    /// `Err` when the demo saw something wrong; the summary says what.
    pub(super) fn verdict(&self) -> DemoResult<()> {
        let mut wrong = Vec::new();
        if !self.conserved() {
            wrong.push("money was not conserved across the two banks".to_string());
        }
        if !self.mismatches.is_empty() {
            wrong.push(format!(
                "{} account(s) moved differently from the SUCCESS transactions",
                self.mismatches.len()
            ));
        }
        if self.pending > 0 {
            wrong.push(format!(
                "{} transaction(s) were still PENDING after {} s",
                self.pending,
                FOLLOW_LIMIT.as_secs()
            ));
        }
        let refused: u64 = self.not_accepted.values().sum();
        if refused > 0 {
            wrong.push(format!("{refused} payment(s) were not accepted"));
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!("demo check failed: {}", wrong.join("; ")))
        }
    }
}
