-- Analytics from the event stream (issue 16).
--
-- 1. Events carry what the summaries need. The outbox row (which carries its
--    transaction's unchanging facts, V4) also carries the payer and payee
--    bank codes, the transaction's creation time (the IST day it counts on)
--    and, for P2M and COLLECT payments and refunds of a P2M, the merchant's
--    full VPA (a person's VPA stays masked in events).
ALTER TABLE outbox
    ADD COLUMN payer_bank     text,
    ADD COLUMN payee_bank     text,
    ADD COLUMN merchant_vpa   text,
    ADD COLUMN txn_created_at timestamptz;
UPDATE outbox o
SET payer_bank = t.payer_bank, payee_bank = t.payee_bank, txn_created_at = t.created_at,
    merchant_vpa = CASE WHEN t.type IN ('P2M', 'COLLECT') THEN t.payee_vpa
                        WHEN t.type = 'REFUND' AND orig.type = 'P2M' THEN t.payer_vpa END
FROM transactions t LEFT JOIN transactions orig ON orig.txn_id = t.original_txn_id
WHERE t.txn_id = o.txn_id;

-- 2. Raw store: every delivery as received, append-only, partitioned by the
--    IST day its transaction was created (all events of one transaction in
--    one partition, so a day is rebuilt from one partition; a delivery that
--    names no valid creation time goes to the day it was received).
--    Partitions are created on demand by the ingest and dropped by its
--    retention. The key is (day, message_id): a redelivered message (same
--    id, same body, so same day) is stored once.
CREATE TABLE analytics_raw (
    day         date        NOT NULL,
    message_id  text        NOT NULL,
    routing_key text        NOT NULL,
    body        bytea       NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (day, message_id)
) PARTITION BY RANGE (day);

-- Deliveries refused by validation, with the reason; kept for good (never
-- lost). The message also goes to the exchange's dead-letter queue.
CREATE TABLE analytics_rejects (
    message_id  text        PRIMARY KEY,
    reason      text        NOT NULL,
    routing_key text        NOT NULL,
    body        bytea       NOT NULL,
    received_at timestamptz NOT NULL
);

-- 3. Clean store: one row per transaction, its latest status by `seq` (the
--    checkpoint version the event carries; strictly increasing per
--    transaction), so duplicates and late events of a lower seq change nothing.
CREATE TABLE analytics_txns (
    txn_id       uuid        PRIMARY KEY,
    -- IST day of created_at: the day it counts on, for good.
    day          date        NOT NULL,
    txn_type     text        NOT NULL CHECK (txn_type IN ('P2P', 'P2M', 'REFUND', 'COLLECT')),
    status       text        NOT NULL CHECK (status IN ('PENDING', 'SUCCESS', 'FAILED', 'REVERSED')),
    seq          integer     NOT NULL CHECK (seq > 0),
    amount_paise bigint      NOT NULL CHECK (amount_paise > 0),
    payer_bank   text        NOT NULL,
    payee_bank   text        NOT NULL,
    merchant_vpa text,
    created_at   timestamptz NOT NULL,
    -- The `at` of the event that set `status`.
    status_at    timestamptz NOT NULL
);
CREATE INDEX analytics_txns_day ON analytics_txns (day);

-- 4. Summaries, maintained by UPSERT of per-batch deltas (status
--    transitions of clean rows), recomputed from the clean store by rebuild.
--    Amounts in paise.
CREATE TABLE analytics_daily (
    day                  date   PRIMARY KEY,
    total                bigint NOT NULL DEFAULT 0,
    success              bigint NOT NULL DEFAULT 0,
    failed               bigint NOT NULL DEFAULT 0,
    reversed             bigint NOT NULL DEFAULT 0,
    pending              bigint NOT NULL DEFAULT 0,
    amount_success_paise bigint NOT NULL DEFAULT 0,
    amount_total_paise   bigint NOT NULL DEFAULT 0
);

CREATE TABLE analytics_merchant_daily (
    merchant_vpa         text   NOT NULL,
    day                  date   NOT NULL,
    total                bigint NOT NULL DEFAULT 0,
    success              bigint NOT NULL DEFAULT 0,
    failed               bigint NOT NULL DEFAULT 0,
    reversed             bigint NOT NULL DEFAULT 0,
    pending              bigint NOT NULL DEFAULT 0,
    amount_success_paise bigint NOT NULL DEFAULT 0,
    amount_total_paise   bigint NOT NULL DEFAULT 0,
    -- SUCCESS refunds of its P2M payments, on the day each refund was created.
    refunded_paise       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (merchant_vpa, day)
);

CREATE TABLE analytics_bank_daily (
    day                  date   NOT NULL,
    payer_bank           text   NOT NULL,
    payee_bank           text   NOT NULL,
    total                bigint NOT NULL DEFAULT 0,
    success              bigint NOT NULL DEFAULT 0,
    failed               bigint NOT NULL DEFAULT 0,
    reversed             bigint NOT NULL DEFAULT 0,
    pending              bigint NOT NULL DEFAULT 0,
    amount_success_paise bigint NOT NULL DEFAULT 0,
    amount_total_paise   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, payer_bank, payee_bank)
);

-- The ingest's counters (one row), written in each batch's transaction.
CREATE TABLE analytics_state (
    id              boolean     PRIMARY KEY DEFAULT true CHECK (id),
    events_ingested bigint      NOT NULL DEFAULT 0,
    events_rejected bigint      NOT NULL DEFAULT 0,
    duplicates      bigint      NOT NULL DEFAULT 0,
    -- When the last batch committed, and how old its oldest event was then.
    last_batch_at   timestamptz,
    lag_ms          bigint      NOT NULL DEFAULT 0
);
INSERT INTO analytics_state DEFAULT VALUES;
