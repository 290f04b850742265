-- Transactional outbox: one row per saga transition, written by the same
-- statement as its checkpoint, deleted by the relay only after RabbitMQ
-- confirmed the message. Facts that never change after creation (VPAs,
-- amount, type) are joined from `transactions` when the event is published.
CREATE TABLE outbox (
    id            bigserial   PRIMARY KEY,
    txn_id        uuid        NOT NULL,
    -- The checkpoint version this event records: the per-transaction order.
    seq           integer     NOT NULL,
    event_type    text        NOT NULL,
    state         text        NOT NULL,
    status        text        NOT NULL,
    op_id         text,
    reason_code   text,
    reason_detail text,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (txn_id, seq)
);
