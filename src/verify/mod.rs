//! `upi-switch verify`: an audit of a quiet switch against its banks. This
//! module owns the command: it reads the switch's transactions and every
//! registered bank's change feed (`load`), checks them with a pure function
//! (`check`), prints the counts and the violations (`report`) and optionally
//! writes them as JSON. It changes nothing anywhere.
//!
//! What is checked: every transaction is terminal; each status agrees with the
//! banks' feeds (SUCCESS: one standing debit and credit; REVERSED: the debit
//! applied and undone, no credit standing; FAILED: nothing standing); every op
//! names a known transaction, at its bank and account, for its amount, once;
//! each feed agrees with itself; money is conserved (the feeds' applied debits
//! and credits cancel out across banks, and with `--expected-total-paise` the
//! balances add up to it); refunds and collect requests keep their promises
//! (`links`: a refund's original is a SUCCESS P2P/P2M, refunded at most in
//! full, between its accounts the other way round; an approved collect has
//! its COLLECT payment and an unapproved one none); the settlement ledger
//! (`settle`: every SUCCESS payment settled once, in one window, and each
//! finished window's nets what the banks' feeds hold applied).
//!
//! What cannot be checked: without an expected total, balances changed
//! outside the feeds (Bank API v1 shows no opening balances, so the opening
//! total is only computed as balances minus the feeds' net); a bank without
//! the simulator's `GET /admin/balances` is checked on its feed alone; and a
//! switch still taking payments gives a moving picture (`--wait-secs` waits
//! for PENDING ones to finish first).

pub mod check;
pub mod links;
pub mod load;
pub mod report;
pub mod settle;

use crate::cli::VerifyArgs;

/// Exit 0 when no violation was found, 1 when some were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    Violations,
}

/// Anything that kept verify from checking (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Load(#[from] load::LoadError),
    #[error("cannot write the JSON report to {path}: {reason}")]
    Json { path: String, reason: String },
}

pub async fn run(args: VerifyArgs) -> Result<Verdict, VerifyError> {
    let snapshot = load::load(&args).await?;
    let report = check::check(
        &snapshot,
        &check::Options {
            expected_total_paise: args.expected_total_paise,
            examples: args.examples,
        },
    );
    println!("{}", report::render(&report));
    if let Some(path) = &args.json {
        let failed = |reason: String| VerifyError::Json {
            path: path.display().to_string(),
            reason,
        };
        let text = serde_json::to_string_pretty(&report).map_err(|e| failed(e.to_string()))?;
        std::fs::write(path, text + "\n").map_err(|e| failed(e.to_string()))?;
    }
    Ok(if report.violation_count == 0 {
        Verdict::Clean
    } else {
        Verdict::Violations
    })
}
