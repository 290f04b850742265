-- Ownership and isolation (issue 14): every transaction and collect
-- request names the client that made it ('' when authentication is off),
-- and idempotency keys are per client: the same key from two clients names
-- two transactions.

ALTER TABLE transactions ADD COLUMN client_id text NOT NULL DEFAULT '';
ALTER TABLE transactions DROP CONSTRAINT transactions_idempotency_key_key;
CREATE UNIQUE INDEX transactions_client_key ON transactions (client_id, idempotency_key);

ALTER TABLE collects ADD COLUMN client_id text NOT NULL DEFAULT '';
ALTER TABLE collects DROP CONSTRAINT collects_idempotency_key_key;
ALTER TABLE collects ADD CONSTRAINT collects_client_key UNIQUE (client_id, idempotency_key);
