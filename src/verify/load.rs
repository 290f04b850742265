//! The reading half of `upi-switch verify`: the switch's database (read only:
//! never created, never migrated) and, for every registered bank, its whole
//! change feed and its balance total, read from the first endpoint that
//! answers (a bank's endpoints share one ledger).
//!
//! Every wait is bounded: each request has a deadline and a few attempts per
//! endpoint; `--wait-secs` bounds the wait for PENDING transactions; a bank
//! whose feed still grows after a few readings is given up.

use super::check::{BankLedger, Snapshot};
use super::links::{CollectRow, TxnLinks};
use crate::adapters::bank_api::{Balances, FeedEntry};
use crate::adapters::bank_client::{BankClient, ReadError};
use crate::adapters::pg::{self, DbError, DbUrl};
use crate::adapters::store::{BankRecord, Store, StoreError};
use crate::cli::VerifyArgs;
use crate::domain::Paise;
use crate::saga::Status;
use std::time::{Duration, Instant};

/// Entries per feed page (the most Bank API v1 allows).
const PAGE: u32 = 1000;
/// Readings of a bank (feed, balances, feed tail) before it counts as still moving.
const READINGS: usize = 3;
/// How often `--wait-secs` looks for PENDING transactions.
const DRAIN_POLL: Duration = Duration::from_millis(500);
/// Longest pause between attempts of one request.
const MAX_PAUSE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("reading the switch's database: {0}")]
    Store(#[from] StoreError),
    #[error("reading the switch's database: {0}")]
    Query(String),
    #[error("bank {0} has no endpoint registered")]
    NoEndpoint(String),
    #[error("bank {code} could not be read: {errors}")]
    BankUnreadable { code: String, errors: String },
    #[error(
        "bank {0} shows no balances (GET /admin/balances), so --expected-total-paise cannot be checked"
    )]
    NoBalances(String),
}

/// Why one endpoint could not be read.
#[derive(Debug, thiserror::Error)]
enum EndpointError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("the feed did not advance past seq {0}")]
    Stalled(i64),
    #[error("its feed still grew after {READINGS} readings (is the switch still running?)")]
    Moving,
}

/// Reads everything `check` needs.
pub async fn load(args: &VerifyArgs) -> Result<Snapshot, LoadError> {
    let db = DbUrl::parse(&args.database_url)?;
    // One connection first: a missing database or an unreachable server is one clear line.
    let client = db.connect().await?;
    let store = Store::new(pg::pool(&db, 2)?);
    wait_drained(&store, Duration::from_secs(args.wait_secs)).await?;

    let http = BankClient::http_client();
    let timeout = Duration::from_millis(args.bank_timeout_ms.max(1));
    let reads = store
        .banks()
        .await?
        .into_iter()
        .map(|bank| read_bank(http.clone(), bank, timeout, args.bank_attempts.max(1)));
    let banks = futures::future::try_join_all(reads).await?;
    if args.expected_total_paise.is_some()
        && let Some(b) = banks.iter().find(|b| b.balance_total.is_none())
    {
        return Err(LoadError::NoBalances(b.code.clone()));
    }

    // After the banks: a transaction a live switch starts meanwhile shows as PENDING, not
    // as ops without a transaction. (Verify is meant for a quiet switch all the same.)
    let txns = store.txn_money().await?;
    let pending: Vec<uuid::Uuid> = txns
        .iter()
        .filter(|t| t.status == Status::Pending)
        .map(|t| t.txn_id)
        .collect();
    let last_steps = store.last_steps(&pending).await?;
    // After the transactions: a payment the links name is among them.
    let (links, collects, payment_types) = read_links(&client).await?;
    // After the transactions: a journal's payment is among them.
    let ledger = read_ledger(&client).await?;
    Ok(Snapshot {
        taken_at: chrono::Utc::now(),
        txns,
        last_steps,
        banks,
        links,
        collects,
        payment_types,
        ledger,
    })
}

/// The ledger's journals and the windows with their written positions;
/// `None` from a database that predates settlement.
async fn read_ledger(
    client: &tokio_postgres::Client,
) -> Result<Option<super::settle::Ledger>, LoadError> {
    use super::settle::{Journal, Ledger, Window};
    let failed = |e: tokio_postgres::Error| LoadError::Query(pg::pg_message(&e));
    let has_ledger: bool = client
        .query_one("SELECT to_regclass('ledger_journals') IS NOT NULL", &[])
        .await
        .map_err(failed)?
        .get(0);
    if !has_ledger {
        return Ok(None);
    }
    let journals = client
        .query(
            "SELECT id, txn_id, payer_bank, payee_bank, amount_paise FROM ledger_journals ORDER BY id",
            &[],
        )
        .await
        .map_err(failed)?
        .iter()
        .map(|r| Journal {
            id: r.get(0),
            txn_id: r.get(1),
            payer_bank: r.get(2),
            payee_bank: r.get(3),
            amount_paise: r.get(4),
        })
        .collect();
    let positions = client
        .query(
            "SELECT window_id, bank_code, debits_paise, credits_paise FROM settlement_positions",
            &[],
        )
        .await
        .map_err(failed)?;
    let mut windows: Vec<Window> = client
        .query(
            "SELECT window_id, after_journal_id, last_journal_id, positions_at IS NOT NULL
             FROM settlement_windows ORDER BY window_id",
            &[],
        )
        .await
        .map_err(failed)?
        .iter()
        .map(|r| Window {
            window_id: r.get(0),
            after_journal_id: r.get(1),
            last_journal_id: r.get(2),
            positions: r.get::<_, bool>(3).then(Default::default),
        })
        .collect();
    for p in &positions {
        let id: i64 = p.get(0);
        if let Some(map) = windows
            .iter_mut()
            .find(|w| w.window_id == id)
            .and_then(|w| w.positions.as_mut())
        {
            map.insert(p.get(1), (p.get(2), p.get(3)));
        }
    }
    Ok(Some(Ledger { journals, windows }))
}

/// Every transaction's type and links, and every collect request; nothing
/// (and `false`) from a database that predates payment types.
async fn read_links(
    client: &tokio_postgres::Client,
) -> Result<(Vec<TxnLinks>, Vec<CollectRow>, bool), LoadError> {
    let failed = |e: tokio_postgres::Error| LoadError::Query(pg::pg_message(&e));
    let has_collects: bool = client
        .query_one("SELECT to_regclass('collects') IS NOT NULL", &[])
        .await
        .map_err(failed)?
        .get(0);
    if !has_collects {
        return Ok((Vec::new(), Vec::new(), false));
    }
    let links = client
        .query(
            "SELECT txn_id, type, payer_vpa, payee_vpa, original_txn_id, collect_id FROM transactions",
            &[],
        )
        .await
        .map_err(failed)?
        .iter()
        .map(|r| TxnLinks {
            txn_id: r.get(0),
            kind: r.get(1),
            payer_vpa: r.get(2),
            payee_vpa: r.get(3),
            original_txn_id: r.get(4),
            collect_id: r.get(5),
        })
        .collect();
    let collects = client
        .query(
            "SELECT collect_id, status, payer_vpa, payee_vpa, amount_paise, txn_id FROM collects",
            &[],
        )
        .await
        .map_err(failed)?
        .iter()
        .map(|r| CollectRow {
            collect_id: r.get(0),
            status: r.get(1),
            payer_vpa: r.get(2),
            payee_vpa: r.get(3),
            amount: Paise(r.get(4)),
            txn_id: r.get(5),
        })
        .collect();
    Ok((links, collects, true))
}

/// Waits until no transaction is PENDING, or `wait` has passed.
async fn wait_drained(store: &Store, wait: Duration) -> Result<(), StoreError> {
    let deadline = Instant::now() + wait;
    loop {
        let pending = store.pending_count().await?;
        let left = deadline.saturating_duration_since(Instant::now());
        if pending == 0 || left.is_zero() {
            return Ok(());
        }
        tracing::info!(pending, "waiting for PENDING transactions to finish");
        tokio::time::sleep(left.min(DRAIN_POLL)).await;
    }
}

/// One bank, from the first of its endpoints (by priority) that can be read whole.
async fn read_bank(
    http: reqwest::Client,
    bank: BankRecord,
    timeout: Duration,
    attempts: u32,
) -> Result<BankLedger, LoadError> {
    let mut endpoints = bank.endpoints.clone();
    endpoints.sort_by_key(|e| e.priority);
    if endpoints.is_empty() {
        return Err(LoadError::NoEndpoint(bank.code));
    }
    let mut errors = Vec::new();
    for endpoint in endpoints {
        let client = BankClient::new(http.clone(), &endpoint.url, timeout);
        match read_endpoint(&client, attempts).await {
            Ok((ops, balances)) => {
                return Ok(BankLedger {
                    code: bank.code,
                    endpoint: client.base_url().to_string(),
                    ops,
                    balance_total: balances.map(|b| b.total_paise),
                });
            }
            Err(e) => {
                tracing::warn!(bank = %bank.code, url = %endpoint.url, error = %e, "cannot read bank endpoint");
                errors.push(format!("{}: {e}", endpoint.url));
            }
        }
    }
    Err(LoadError::BankUnreadable {
        code: bank.code,
        errors: errors.join("; "),
    })
}

/// The whole feed and the balances, read so that they belong together: the
/// feed is read again from its end after the balances, and the reading starts
/// over if anything was added meanwhile.
async fn read_endpoint(
    client: &BankClient,
    attempts: u32,
) -> Result<(Vec<FeedEntry>, Option<Balances>), EndpointError> {
    for _ in 0..READINGS {
        let ops = read_feed(client, attempts).await?;
        let balances = retry(attempts, || client.balances()).await?;
        let last = ops.last().map_or(0, |o| o.seq);
        let tail = retry(attempts, || client.feed_page(last, 1)).await?;
        if tail.ops.is_empty() {
            return Ok((ops, balances));
        }
    }
    Err(EndpointError::Moving)
}

/// Pages through `GET /v1/ops` until a page comes back empty.
async fn read_feed(client: &BankClient, attempts: u32) -> Result<Vec<FeedEntry>, EndpointError> {
    let mut after = 0;
    let mut all = Vec::new();
    loop {
        let page = retry(attempts, || client.feed_page(after, PAGE)).await?;
        let Some(last) = page.ops.last().map(|o| o.seq) else {
            return Ok(all);
        };
        if last <= after {
            return Err(EndpointError::Stalled(after));
        }
        after = last;
        all.extend(page.ops);
    }
}

/// Up to `attempts` tries of a read, with doubling pauses.
async fn retry<T, F, Fut>(attempts: u32, mut call: F) -> Result<T, ReadError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ReadError>>,
{
    let mut pause = Duration::from_millis(200);
    let mut tried = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if tried >= attempts => return Err(e),
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
                tried += 1;
            }
        }
    }
}
