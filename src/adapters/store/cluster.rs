//! The cluster's rows: nodes and their leases (`switch_nodes`), which node
//! holds each unfinished saga (`transactions.owner`), the claim that moves a
//! saga to a node, and the operators' circuit overrides every node applies.
//!
//! Invariants kept here:
//! - Leases are judged by the database's clock only (`now()`), never a node's.
//! - A claim bumps the saga's version and writes its RESUMED checkpoint and
//!   event in the same statement, before the claimer sends anything: an
//!   earlier holder's later writes are fenced off (`CheckpointError::VersionConflict`).
//! - A saga is claimed only when nobody holds it, its holder's lease has run
//!   out, or it is the claimer's own and idle (`FOR UPDATE SKIP LOCKED`: two
//!   claimers never get the same saga). The claim says which of the three
//!   it was (`ClaimReason`), from the row it locked: no extra read.

use super::{Store, StoreError, StoredSaga};
use crate::saga::Saga;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// One node as operators see it (`GET /v1/ops/nodes`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeRow {
    pub node_id: Uuid,
    pub name: String,
    pub started_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    pub alive: bool,
    pub draining: bool,
    /// Unfinished sagas it holds.
    pub sagas: i64,
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Renewed; the lease had not run out.
    Held,
    /// Renewed, but the lease had run out first (others may have claimed our sagas).
    Lapsed,
    /// Our row is gone (we were handed back or deleted): registered afresh.
    Gone,
}

/// Why a claim took a saga: the previous holder as the claim found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimReason {
    /// Another node held it and its lease had run out (or its row is gone).
    Takeover,
    /// Nobody held it: a draining node handed it back.
    HandedBack,
    /// This node held it but did not run it (a `Start` that did not fit).
    OwnIdle,
}

impl ClaimReason {
    pub const ALL: [ClaimReason; 3] = [
        ClaimReason::Takeover,
        ClaimReason::HandedBack,
        ClaimReason::OwnIdle,
    ];

    /// Label of `upi_sagas_claimed_total{reason}`, and the claim statement's word.
    pub fn label(self) -> &'static str {
        match self {
            ClaimReason::Takeover => "takeover",
            ClaimReason::HandedBack => "handed_back",
            ClaimReason::OwnIdle => "own_idle",
        }
    }

    fn parse(word: &str) -> Option<ClaimReason> {
        ClaimReason::ALL.into_iter().find(|r| r.label() == word)
    }
}

/// What one claim statement took: the sagas it could read, and why each
/// row was taken (unreadable sagas included: they were claimed all the same).
#[derive(Debug, Default)]
pub struct Claims {
    pub sagas: Vec<StoredSaga>,
    pub reasons: Vec<ClaimReason>,
}

const CLAIM: &str = "
WITH picked AS (
    SELECT t.txn_id,
           CASE WHEN t.owner IS NULL THEN 'handed_back'
                WHEN t.owner = $1 THEN 'own_idle'
                ELSE 'takeover' END AS reason
    FROM transactions t
    WHERE t.status = 'PENDING' AND NOT (t.txn_id = ANY($2))
      AND (t.owner IS NULL
           OR (t.owner = $1 AND t.updated_at < now() - make_interval(secs => $4))
           OR (t.owner <> $1 AND NOT EXISTS (
                 SELECT 1 FROM switch_nodes n WHERE n.node_id = t.owner AND n.lease_until > now())))
    ORDER BY t.created_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE transactions t
    SET owner = $1, version = t.version + 1, updated_at = now()
    FROM picked
    WHERE t.txn_id = picked.txn_id AND t.status = 'PENDING'
    RETURNING t.txn_id, t.saga, t.version, t.type, t.payer_vpa, t.payee_vpa, t.amount_paise,
              t.payer_bank, t.payee_bank, t.created_at, t.original_txn_id, picked.reason
), cp AS (
    INSERT INTO txn_checkpoints (txn_id, version, state, op_id, detail)
    SELECT txn_id, version, 'RESUMED', NULL, $5 FROM upd
), ob AS (
    INSERT INTO outbox (txn_id, seq, event_type, state, status, op_id, reason_code, reason_detail,
                        txn_type, payer_vpa, payee_vpa, amount_paise,
                        payer_bank, payee_bank, merchant_vpa, txn_created_at)
    SELECT txn_id, version, 'txn.resumed', 'RESUMED', 'PENDING', NULL, NULL, $5,
           type, payer_vpa, payee_vpa, amount_paise, payer_bank, payee_bank,
           CASE WHEN upd.type IN ('P2M', 'COLLECT') THEN upd.payee_vpa
                WHEN upd.type = 'REFUND' THEN (SELECT upd.payer_vpa FROM transactions o
                    WHERE o.txn_id = upd.original_txn_id AND o.type = 'P2M') END,
           created_at
    FROM upd
)
SELECT saga, version, reason FROM upd";

const REGISTER: &str = "INSERT INTO switch_nodes (node_id, name, lease_until)
     VALUES ($1, $2, now() + make_interval(secs => $3::float8 / 1000))
     ON CONFLICT (node_id) DO UPDATE SET lease_until = EXCLUDED.lease_until,
         renewed_at = now(), draining = false";

/// Extends this node's lease by `lease_ms` from the database's now, on the
/// lease keeper's own connection (a renewal never queues behind the pool's
/// work: a busy node must not lose its lease for being busy).
pub async fn renew(
    client: &tokio_postgres::Client,
    node_id: Uuid,
    name: &str,
    lease_ms: i64,
    draining: bool,
) -> Result<Renewal, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "WITH old AS (
                 SELECT lease_until FROM switch_nodes WHERE node_id = $1 FOR UPDATE)
             UPDATE switch_nodes n
             SET lease_until = now() + make_interval(secs => $2::float8 / 1000),
                 renewed_at = now(), draining = $3
             FROM old WHERE n.node_id = $1
             RETURNING old.lease_until < now()",
            &[&node_id, &(lease_ms as f64), &draining],
        )
        .await?;
    match row {
        Some(r) if r.get::<_, bool>(0) => Ok(Renewal::Lapsed),
        Some(_) => Ok(Renewal::Held),
        None => {
            client
                .execute(REGISTER, &[&node_id, &name, &(lease_ms as f64)])
                .await?;
            Ok(Renewal::Gone)
        }
    }
}

impl Store {
    /// Registers this node with a fresh lease (or renews it, if it exists),
    /// and forgets nodes gone for an hour that hold nothing.
    pub async fn register_node(
        &self,
        node_id: Uuid,
        name: &str,
        lease_ms: i64,
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(REGISTER, &[&node_id, &name, &(lease_ms as f64)])
            .await?;
        // Nodes gone for an hour and holding nothing are forgotten, once per
        // node start rather than on every read of the list.
        client
            .execute(
                "DELETE FROM switch_nodes n WHERE lease_until < now() - interval '1 hour'
                 AND NOT EXISTS (SELECT 1 FROM transactions t
                                 WHERE t.owner = n.node_id AND t.status = 'PENDING')",
                &[],
            )
            .await?;
        Ok(())
    }

    /// Hands every unfinished saga of this node back (anyone may claim them
    /// at once) and removes the node: the last act of a draining node.
    pub async fn release_node(&self, node_id: Uuid) -> Result<u64, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let released = tx
            .execute(
                "UPDATE transactions SET owner = NULL
                 WHERE owner = $1 AND status = 'PENDING'",
                &[&node_id],
            )
            .await?;
        tx.execute("DELETE FROM switch_nodes WHERE node_id = $1", &[&node_id])
            .await?;
        tx.commit().await?;
        Ok(released)
    }

    /// Claims up to `limit` unfinished sagas this node may take (see the
    /// module's invariants), oldest first, excluding `running` (its own,
    /// running here). Its own idle ones only after `own_idle_secs`.
    pub async fn claim(
        &self,
        node_id: Uuid,
        running: &[Uuid],
        limit: i64,
        own_idle_secs: f64,
    ) -> Result<Claims, StoreError> {
        let client = self.pool.get().await?;
        let detail = format!("claimed by node {node_id}");
        let rows = client
            .query(
                &client.prepare_cached(CLAIM).await?,
                &[&node_id, &running, &limit, &own_idle_secs, &detail],
            )
            .await?;
        let mut claims = Claims::default();
        for r in &rows {
            let word: &str = r.get(2);
            match ClaimReason::parse(word) {
                Some(reason) => claims.reasons.push(reason),
                None => {
                    tracing::error!(reason = word, "the claim statement gave an unknown reason")
                }
            }
            let text: &str = r.get(0);
            match serde_json::from_str::<Saga>(text) {
                Ok(saga) => claims.sagas.push(StoredSaga {
                    saga,
                    version: r.get(1),
                }),
                // Never silently: this saga cannot run until someone looks.
                Err(e) => {
                    tracing::error!(error = %e, "a stored saga cannot be read; it is not resumed")
                }
            }
        }
        Ok(claims)
    }

    /// Unfinished sagas this node holds or may take without waiting for a
    /// lease (its own, and those nobody holds).
    pub async fn claimable_count(&self, node_id: Uuid) -> Result<i64, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &client
                    .prepare_cached(
                        "SELECT count(*) FROM transactions
                         WHERE status = 'PENDING' AND (owner IS NULL OR owner = $1)",
                    )
                    .await?,
                &[&node_id],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Every node registered, with the sagas each holds.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT n.node_id, n.name, n.started_at, n.renewed_at, n.lease_until,
                        n.lease_until > now(), n.draining,
                        (SELECT count(*) FROM transactions t
                         WHERE t.owner = n.node_id AND t.status = 'PENDING')
                 FROM switch_nodes n ORDER BY n.started_at",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| NodeRow {
                node_id: r.get(0),
                name: r.get(1),
                started_at: r.get(2),
                renewed_at: r.get(3),
                lease_until: r.get(4),
                alive: r.get(5),
                draining: r.get(6),
                sagas: r.get(7),
            })
            .collect())
    }

    /// Stores an operator's circuit override, with the meaning the operator
    /// gave it. `endpoint` None is the whole bank: it replaces every override
    /// of the bank (`auto` then leaves none). One endpoint's mode, `auto`
    /// included, is stored for that endpoint and wins over the bank's.
    pub async fn set_circuit_override(
        &self,
        bank: &str,
        endpoint: Option<&str>,
        mode: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        super::audit::as_actor(&tx, actor).await?;
        let url = endpoint.unwrap_or("");
        if endpoint.is_none() {
            tx.execute(
                "DELETE FROM circuit_overrides WHERE bank_code = $1",
                &[&bank],
            )
            .await?;
        }
        if endpoint.is_some() || mode != "auto" {
            tx.execute(
                "INSERT INTO circuit_overrides (bank_code, endpoint, mode) VALUES ($1, $2, $3)
                 ON CONFLICT (bank_code, endpoint) DO UPDATE
                 SET mode = EXCLUDED.mode, updated_at = now()",
                &[&bank, &url, &mode],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The circuit overrides of every bank: bank → (endpoint or "" → mode).
    pub async fn circuit_overrides(
        &self,
    ) -> Result<HashMap<String, HashMap<String, String>>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT bank_code, endpoint, mode FROM circuit_overrides",
                &[],
            )
            .await?;
        let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
        for r in rows {
            out.entry(r.get(0)).or_default().insert(r.get(1), r.get(2));
        }
        Ok(out)
    }

    /// One bank's registration, if it exists.
    pub async fn bank(&self, code: &str) -> Result<Option<super::BankRecord>, StoreError> {
        Ok(self.banks().await?.into_iter().find(|b| b.code == code))
    }
}
