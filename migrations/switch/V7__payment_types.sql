-- Every way money moves (issue 13): P2M, refunds, collect requests, limits.

ALTER TABLE transactions DROP CONSTRAINT transactions_type_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_type_check
    CHECK (type IN ('P2P', 'P2M', 'REFUND', 'COLLECT'));

-- A collect's payment has no client key of its own: it is unique per
-- collect request (`collect_id`), so approving twice finds the same one.
ALTER TABLE transactions ALTER COLUMN idempotency_key DROP NOT NULL;
ALTER TABLE transactions
    ADD COLUMN merchant_ref    text,
    -- The payee merchant's MCC when accepted (P2M).
    ADD COLUMN mcc             text,
    -- A refund's original (a SUCCESS P2P or P2M).
    ADD COLUMN original_txn_id uuid REFERENCES transactions (txn_id),
    ADD COLUMN collect_id      uuid UNIQUE,
    ADD CONSTRAINT transactions_key_or_collect
        CHECK ((idempotency_key IS NULL) = (type = 'COLLECT' AND collect_id IS NOT NULL)),
    ADD CONSTRAINT transactions_refund_has_original
        CHECK ((type = 'REFUND') = (original_txn_id IS NOT NULL));

-- The refunds of one original (its cap, its `refunded` sum).
CREATE INDEX transactions_refunds ON transactions (original_txn_id, status)
    WHERE original_txn_id IS NOT NULL;
-- A payer VPA's payments of one IST day (the daily limits).
CREATE INDEX transactions_payer_day ON transactions (payer_vpa, created_at)
    WHERE type <> 'REFUND';

CREATE TABLE collects (
    collect_id      uuid        PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE,
    payee_vpa       text        NOT NULL,
    payer_vpa       text        NOT NULL,
    amount_paise    bigint      NOT NULL CHECK (amount_paise > 0),
    note            text,
    status          text        NOT NULL
        CHECK (status IN ('REQUESTED', 'APPROVED', 'DECLINED', 'EXPIRED')),
    -- The durable deadline, by the database's clock: no restart moves it.
    expires_at      timestamptz NOT NULL,
    -- The payment its approval made (set in the statement that creates it).
    txn_id          uuid        UNIQUE REFERENCES transactions (txn_id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'APPROVED') = (txn_id IS NOT NULL))
);

-- The expiry sweep's work list.
CREATE INDEX collects_due ON collects (expires_at) WHERE status = 'REQUESTED';

-- Only a REQUESTED collect changes; approved, declined and expired are final.
CREATE FUNCTION forbid_collect_change() RETURNS trigger AS $$
BEGIN
    IF OLD.status <> 'REQUESTED' THEN
        RAISE EXCEPTION 'collect % is % and cannot change', OLD.collect_id, OLD.status;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER collects_final_is_final
    BEFORE UPDATE ON collects
    FOR EACH ROW EXECUTE FUNCTION forbid_collect_change();
