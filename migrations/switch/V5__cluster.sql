-- Several switch nodes on one database (issue 12).

-- Every running switch process is a node with a lease it renews (one row
-- update per renewal, whatever it holds). A node whose lease has run out is
-- dead to the others: they claim its sagas.
CREATE TABLE switch_nodes (
    node_id     uuid        PRIMARY KEY,
    -- What operators see: --node-name, else host:port.
    name        text        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    renewed_at  timestamptz NOT NULL DEFAULT now(),
    -- By the database's clock: only the database's clock decides leases.
    lease_until timestamptz NOT NULL,
    draining    boolean     NOT NULL DEFAULT false
);

-- The node that holds an unfinished saga. Set when the saga is created (by
-- the node that accepted it) and by every claim, which also bumps `version`
-- (and writes a RESUMED checkpoint), so an earlier holder is fenced off
-- before the new one sends anything. NULL: handed back, anyone may claim it.
ALTER TABLE transactions ADD COLUMN owner uuid;

-- Operator circuit overrides live here, so every node applies them and a
-- restarted node finds them again. endpoint '' = every endpoint of the bank.
CREATE TABLE circuit_overrides (
    bank_code  text        NOT NULL REFERENCES banks (code) ON DELETE CASCADE,
    endpoint   text        NOT NULL,
    mode       text        NOT NULL CHECK (mode IN ('open', 'closed')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bank_code, endpoint)
);

-- Any change to the shared configuration is announced on channel
-- `upi_config` when it commits, however it was made: every node reloads what
-- the payload names ('bank:<code>', 'vpa:<vpa>', 'circuit:<code>').
CREATE FUNCTION notify_config() RETURNS trigger AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    IF TG_TABLE_NAME = 'banks' THEN
        PERFORM pg_notify('upi_config', 'bank:' || r.code);
    ELSIF TG_TABLE_NAME = 'vpas' THEN
        PERFORM pg_notify('upi_config', 'vpa:' || r.vpa);
    ELSE
        PERFORM pg_notify('upi_config', 'circuit:' || r.bank_code);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER banks_notify AFTER INSERT OR UPDATE OR DELETE ON banks
    FOR EACH ROW EXECUTE FUNCTION notify_config();
CREATE TRIGGER vpas_notify AFTER INSERT OR UPDATE OR DELETE ON vpas
    FOR EACH ROW EXECUTE FUNCTION notify_config();
CREATE TRIGGER circuit_overrides_notify AFTER INSERT OR UPDATE OR DELETE ON circuit_overrides
    FOR EACH ROW EXECUTE FUNCTION notify_config();
