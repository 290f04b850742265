//! Shared configuration: every node applies every change to bank and VPA
//! registrations and circuit overrides within moments, whichever node (or
//! hand-written SQL) made it. Triggers announce each committed change on the
//! Postgres channel `upi_config` (`bank:<code>`, `vpa:<vpa>`,
//! `circuit:<code>`, `client:<id>`); this listener reloads what a notice names. After every
//! (re)connect, and when notices overflowed its bounded queue, it reloads
//! everything, so a notice missed while away costs nothing.

use crate::actors::bank_router::{AllBanks, BankRouter, Lookup, SetBank};
use crate::actors::bank_supervisor::ApplyOverrides;
use crate::adapters::cache::Cache;
use crate::adapters::pg::DbUrl;
use crate::adapters::store::{BankRecord, Store, StoreError};
use crate::domain::Vpa;
use crate::domain::breaker::Mode;
use actix::Addr;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub const CHANNEL: &str = "upi_config";
/// Notices waiting at most before the listener falls back to a full reload.
const QUEUE: usize = 1024;
/// Notices applied per round at most (the rest wait for the next round).
const BATCH: usize = 256;
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// What the listener changes.
#[derive(Clone)]
pub struct Targets {
    pub store: Store,
    pub router: Addr<BankRouter>,
    pub cache: Cache,
    pub clients: crate::auth::ClientDirectory,
}

/// Starts listening (and reconnecting) in the background.
pub fn spawn(db: DbUrl, targets: Targets) {
    tokio::spawn(run(db, targets));
}

async fn run(db: DbUrl, targets: Targets) {
    let mut pause = Duration::from_millis(100);
    loop {
        match db.listen(CHANNEL, QUEUE).await {
            Ok(mut listener) => {
                pause = Duration::from_millis(100);
                if let Err(e) = reload_all(&targets).await {
                    tracing::warn!(error = %e, "reloading the shared configuration failed");
                }
                loop {
                    let first =
                        tokio::time::timeout(Duration::from_secs(1), listener.payloads.recv())
                            .await;
                    let mut notices = BTreeSet::new();
                    match first {
                        Ok(Some(p)) => {
                            notices.insert(p);
                        }
                        Ok(None) => break,
                        Err(_) => {}
                    }
                    while notices.len() < BATCH {
                        match listener.payloads.try_recv() {
                            Ok(p) => {
                                notices.insert(p);
                            }
                            Err(_) => break,
                        }
                    }
                    let result = if listener.overflowed.swap(false, Ordering::AcqRel) {
                        reload_all(&targets).await
                    } else {
                        apply(&targets, &notices).await
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "applying configuration notices failed; reloading on reconnect");
                        break;
                    }
                    if listener.client.is_closed() {
                        break;
                    }
                }
                tracing::warn!("configuration listener disconnected; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for configuration changes"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Every bank, every circuit override, and a fresh VPA memo.
pub async fn reload_all(t: &Targets) -> Result<(), StoreError> {
    for bank in t.store.banks().await? {
        set_bank(t, bank).await;
    }
    if let Ok(all) = t.router.send(AllBanks).await {
        apply_overrides(&t.store, &t.router, all.into_iter().map(|(code, _)| code)).await?;
    }
    t.cache.forget_local_vpas();
    let clients = t.store.clients().await?;
    t.clients
        .replace_all(clients.iter().map(crate::auth::Client::from_record));
    Ok(())
}

async fn apply(t: &Targets, notices: &BTreeSet<String>) -> Result<(), StoreError> {
    let mut circuits = BTreeSet::new();
    for notice in notices {
        match notice.split_once(':') {
            Some(("bank", code)) => {
                if let Some(bank) = t.store.bank(code).await? {
                    set_bank(t, bank).await;
                }
                // New endpoints start in auto: put the overrides back.
                circuits.insert(code.to_string());
            }
            Some(("circuit", code)) => {
                circuits.insert(code.to_string());
            }
            Some(("client", id)) => match t.store.client(id).await? {
                Some(c) => t.clients.set(crate::auth::Client::from_record(&c)),
                None => t.clients.remove(id),
            },
            Some(("vpa", vpa)) => {
                if let Some(vpa) = Vpa::parse(vpa) {
                    t.cache.forget_local_vpa(&vpa);
                }
            }
            _ => tracing::warn!(notice = %notice, "unknown configuration notice"),
        }
    }
    if !circuits.is_empty() {
        apply_overrides(&t.store, &t.router, circuits).await?;
    }
    Ok(())
}

/// Gives each of these banks' supervisors the circuit overrides stored for
/// it (none: every endpoint back to auto). The one way overrides reach a
/// supervisor: the operator's PUT, a notice, a reload.
pub async fn apply_overrides(
    store: &Store,
    router: &Addr<BankRouter>,
    codes: impl IntoIterator<Item = String>,
) -> Result<(), StoreError> {
    let mut overrides = store.circuit_overrides().await?;
    for code in codes {
        if let Ok(Some(sup)) = router.send(Lookup(code.clone())).await {
            let modes = modes(overrides.remove(&code).unwrap_or_default());
            let _ = sup.send(ApplyOverrides(modes)).await;
        }
    }
    Ok(())
}

/// Hands a registration to the router (the same endpoints again change nothing).
async fn set_bank(t: &Targets, bank: BankRecord) {
    let _ = t
        .router
        .send(SetBank {
            code: bank.code,
            endpoints: bank.endpoints,
        })
        .await;
}

fn modes(stored: HashMap<String, String>) -> HashMap<String, Mode> {
    stored
        .into_iter()
        .filter_map(|(endpoint, mode)| Mode::parse(&mode).map(|m| (endpoint, m)))
        .collect()
}
