-- Settlement (issue 15): the double-entry ledger, settlement windows and
-- their positions, reconciliation against the banks' change feeds, and a
-- durable outbox for events that are not a transaction's.

-- One journal per payment that turned SUCCESS, written by the group-commit
-- statement that writes that checkpoint (never by anything else). Its id is
-- what settlement windows are cut on: the sequence must stay CACHE 1 (the
-- default), so ids grow in the order the inserting transactions ran.
CREATE TABLE ledger_journals (
    id           bigserial   PRIMARY KEY,
    txn_id       uuid        NOT NULL UNIQUE,
    type         text        NOT NULL,
    payer_bank   text        NOT NULL,
    payee_bank   text        NOT NULL,
    amount_paise bigint      NOT NULL CHECK (amount_paise > 0),
    posted_at    timestamptz NOT NULL DEFAULT now()
);

-- Two postings per journal: the payer bank's settlement account debited,
-- the payee bank's credited, by the journal's amount. No foreign key (the
-- one statement that writes the journal writes both: see V4 on why).
CREATE TABLE ledger_postings (
    journal_id   bigint NOT NULL,
    direction    text   NOT NULL CHECK (direction IN ('DEBIT', 'CREDIT')),
    bank_code    text   NOT NULL,
    amount_paise bigint NOT NULL CHECK (amount_paise > 0),
    PRIMARY KEY (journal_id, direction)
);

-- The ledger is append-only.
CREATE FUNCTION forbid_ledger_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_journals_append_only BEFORE UPDATE OR DELETE ON ledger_journals
    FOR EACH ROW EXECUTE FUNCTION forbid_ledger_change();
CREATE TRIGGER ledger_journals_no_truncate BEFORE TRUNCATE ON ledger_journals
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_change();
CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE ON ledger_postings
    FOR EACH ROW EXECUTE FUNCTION forbid_ledger_change();
CREATE TRIGGER ledger_postings_no_truncate BEFORE TRUNCATE ON ledger_postings
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_ledger_change();

-- A window is the journal-id range (after_journal_id, last_journal_id]; the
-- upper bound is fixed by the close, under LOCK TABLE ledger_journals IN
-- SHARE MODE, so every journal lands in exactly one window.
CREATE TABLE settlement_windows (
    window_id          bigint      PRIMARY KEY,
    status             text        NOT NULL CHECK (status IN ('OPEN', 'CLOSED')),
    opened_at          timestamptz NOT NULL DEFAULT now(),
    -- An operator asked to close it: durable before the close runs, so a
    -- switch killed in between finishes the close after restart.
    close_requested_at timestamptz,
    closed_at          timestamptz,
    closed_by          text,
    after_journal_id   bigint      NOT NULL,
    last_journal_id    bigint,
    -- Set once its positions (and its closing event) are written.
    positions_at       timestamptz,
    txn_count          bigint,
    gross_paise        bigint,
    CHECK ((status = 'OPEN') = (last_journal_id IS NULL)),
    CHECK (last_journal_id IS NULL OR last_journal_id >= after_journal_id)
);
-- Exactly one window is open.
CREATE UNIQUE INDEX settlement_one_open ON settlement_windows ((true)) WHERE status = 'OPEN';
CREATE INDEX settlement_windows_unfinished ON settlement_windows (window_id)
    WHERE status = 'CLOSED' AND positions_at IS NULL;
INSERT INTO settlement_windows (window_id, status, after_journal_id) VALUES (1, 'OPEN', 0);

-- Multilateral net positions of a closed window, one row per bank.
CREATE TABLE settlement_positions (
    window_id     bigint NOT NULL,
    bank_code     text   NOT NULL,
    debits_paise  bigint NOT NULL,
    credits_paise bigint NOT NULL,
    txn_count     bigint NOT NULL,
    PRIMARY KEY (window_id, bank_code)
);

-- Events that are not a transaction's (settlement.window_closed,
-- settlement.mismatch), written in the transaction that makes their fact
-- and deleted by the outbox relay once RabbitMQ confirmed them.
CREATE TABLE settlement_outbox (
    id          bigserial   PRIMARY KEY,
    event_id    text        NOT NULL UNIQUE,
    event_type  text        NOT NULL,
    routing_key text        NOT NULL,
    body        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Reconciliation: where each bank's feed was read up to (durable cursor).
CREATE TABLE recon_cursors (
    bank_code text   PRIMARY KEY,
    after_seq bigint NOT NULL
);

-- One run per closed window (re-run on request).
CREATE TABLE recon_runs (
    window_id    bigint      PRIMARY KEY,
    status       text        NOT NULL CHECK (status IN ('PENDING', 'RUNNING', 'DONE')),
    requested_at timestamptz NOT NULL DEFAULT now(),
    -- Transactions terminal by this instant are judged; later ones carried.
    as_of        timestamptz,
    finished_at  timestamptz,
    matched      bigint      NOT NULL DEFAULT 0,
    compared     bigint      NOT NULL DEFAULT 0
);
CREATE INDEX recon_runs_open ON recon_runs (window_id) WHERE status <> 'DONE';

-- Every op read from a bank's feed, as read; `verdict` NULL until a run
-- judged it (carried while its transaction is not terminal).
CREATE TABLE recon_ops (
    bank_code      text   NOT NULL,
    seq            bigint NOT NULL,
    op_id          text   NOT NULL,
    kind           text   NOT NULL,
    status         text   NOT NULL,
    amount_paise   bigint NOT NULL,
    original_op_id text,
    -- The feed's txn_id, as the bank recorded it.
    txn_id         text,
    verdict        text,
    judged_in      bigint,
    PRIMARY KEY (bank_code, seq)
);
CREATE INDEX recon_ops_unjudged ON recon_ops (bank_code, seq) WHERE verdict IS NULL;
CREATE INDEX recon_ops_op ON recon_ops (op_id, bank_code);
CREATE INDEX recon_ops_original ON recon_ops (original_op_id) WHERE original_op_id IS NOT NULL;
CREATE INDEX recon_ops_judged ON recon_ops (judged_in) WHERE judged_in IS NOT NULL;

CREATE TABLE recon_mismatches (
    id        bigserial PRIMARY KEY,
    window_id bigint    NOT NULL,
    kind      text      NOT NULL CHECK (kind IN ('MISSING_AT_BANK', 'MISSING_AT_SWITCH',
                                                 'AMOUNT_MISMATCH', 'STATUS_MISMATCH')),
    bank_code text      NOT NULL,
    op_id     text      NOT NULL,
    txn_id    text,
    detail    text      NOT NULL
);
CREATE INDEX recon_mismatches_window ON recon_mismatches (window_id, id);
