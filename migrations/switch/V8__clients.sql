-- Who may call (issue 14): registered clients (PSP apps), their Ed25519
-- public keys and the VPA handles they serve, and the nonces their signed
-- calls used up.

CREATE TABLE clients (
    client_id  text        PRIMARY KEY,
    name       text        NOT NULL,
    -- Lower-cased PSP handles (the part of a VPA after '@').
    handles    text[]      NOT NULL,
    -- [{"key_id": "k1", "public_key": "<base64 of 32 bytes>"}, ...]; a key
    -- left out of a later registration is revoked.
    keys       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A nonce is used up by every call whose signature verified. The database
-- is the judge (one insert), so a replay is refused on every node and after
-- any restart; rows older than the replay window are purged.
CREATE TABLE client_nonces (
    client_id text        NOT NULL,
    nonce     text        NOT NULL,
    used_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, nonce)
);
CREATE INDEX client_nonces_used ON client_nonces (used_at);

-- Clients join the shared configuration: a change is announced as
-- 'client:<id>' and every node reloads that client (a revoked key stops
-- working everywhere at once).
CREATE OR REPLACE FUNCTION notify_config() RETURNS trigger AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    IF TG_TABLE_NAME = 'banks' THEN
        PERFORM pg_notify('upi_config', 'bank:' || r.code);
    ELSIF TG_TABLE_NAME = 'vpas' THEN
        PERFORM pg_notify('upi_config', 'vpa:' || r.vpa);
    ELSIF TG_TABLE_NAME = 'clients' THEN
        PERFORM pg_notify('upi_config', 'client:' || r.client_id);
    ELSE
        PERFORM pg_notify('upi_config', 'circuit:' || r.bank_code);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER clients_notify AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION notify_config();
