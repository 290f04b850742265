-- The switch's source of truth: registrations, transactions, append-only
-- saga checkpoints.
CREATE TABLE banks (
    code       text        PRIMARY KEY,
    name       text        NOT NULL,
    -- [{"url": "...", "priority": 0}, ...]
    endpoints  jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vpas (
    -- Lower-cased: VPAs compare case-insensitively.
    vpa        text        PRIMARY KEY,
    bank_code  text        NOT NULL REFERENCES banks (code),
    account    text        NOT NULL,
    name       text        NOT NULL,
    merchant   boolean     NOT NULL DEFAULT false,
    mcc        text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE transactions (
    txn_id          uuid        PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE,
    type            text        NOT NULL CHECK (type IN ('P2P')),
    payer_vpa       text        NOT NULL,
    payee_vpa       text        NOT NULL,
    payer_bank      text        NOT NULL,
    payer_account   text        NOT NULL,
    payee_bank      text        NOT NULL,
    payee_account   text        NOT NULL,
    amount_paise    bigint      NOT NULL CHECK (amount_paise > 0),
    note            text,
    status          text        NOT NULL CHECK (status IN ('PENDING', 'SUCCESS', 'FAILED', 'REVERSED')),
    reason_code     text,
    reason_detail   text,
    -- The saga's last checkpointed state (serialised saga::Saga).
    saga            jsonb       NOT NULL,
    -- Bumped by every checkpoint; a writer must name the version it read (fencing).
    version         integer     NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX transactions_pending ON transactions (created_at) WHERE status = 'PENDING';

-- Append-only: one row per checkpoint, never updated or deleted.
CREATE TABLE txn_checkpoints (
    txn_id  uuid        NOT NULL REFERENCES transactions (txn_id),
    version integer     NOT NULL,
    state   text        NOT NULL,
    op_id   text,
    detail  text,
    saga    jsonb       NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (txn_id, version)
);

-- A terminal status never changes again, whatever the code above does.
CREATE FUNCTION forbid_terminal_change() RETURNS trigger AS $$
BEGIN
    IF OLD.status <> 'PENDING' THEN
        RAISE EXCEPTION 'transaction % is terminal (%) and cannot change', OLD.txn_id, OLD.status;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER transactions_terminal_is_final
    BEFORE UPDATE ON transactions
    FOR EACH ROW EXECUTE FUNCTION forbid_terminal_change();
