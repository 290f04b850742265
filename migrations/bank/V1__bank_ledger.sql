-- Bank simulator ledger. Several simulated banks may share one database; every
-- row is keyed by bank_code. Written only by the bank's single writer.
CREATE TABLE bank_accounts (
    bank_code     text   NOT NULL,
    account       text   NOT NULL,
    name          text   NOT NULL,
    status        text   NOT NULL CHECK (status IN ('ACTIVE', 'FROZEN')),
    -- May go below zero only when a credit is reversed (Bank API v1).
    balance_paise bigint NOT NULL,
    PRIMARY KEY (bank_code, account)
);

-- Every op the bank recorded, plus bare tombstones (kind and seq NULL) left by
-- reversing an op that had not arrived yet.
CREATE TABLE bank_ops (
    bank_code      text        NOT NULL,
    op_id          text        NOT NULL,
    seq            bigint,
    kind           text        CHECK (kind IN ('DEBIT', 'CREDIT', 'REVERSE')),
    status         text        NOT NULL CHECK (status IN ('APPLIED', 'DECLINED', 'REVERSED', 'NOOP')),
    -- Status of the definitive answer, replayed verbatim to every copy of the request.
    answer         text        NOT NULL CHECK (answer IN ('APPLIED', 'DECLINED', 'REVERSED', 'NOOP')),
    account        text,
    amount_paise   bigint      NOT NULL CHECK (amount_paise > 0),
    txn_id         text,
    code           text,
    original_op_id text,
    at             timestamptz NOT NULL,
    PRIMARY KEY (bank_code, op_id),
    CHECK ((kind IS NULL) = (seq IS NULL))
);

CREATE UNIQUE INDEX bank_ops_feed ON bank_ops (bank_code, seq) WHERE seq IS NOT NULL;
