-- Every change to what operators manage, durable (issue 14): who, what,
-- before and after. Written by triggers, in the transaction that makes the
-- change, so no change can be made without its entry, whatever made it;
-- the API names the operator in the transaction-local setting `upi.actor`,
-- anything else is recorded as the database user that did it.

CREATE TABLE audit_log (
    id      bigserial   PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    action  text        NOT NULL,
    target  text        NOT NULL,
    before  jsonb,
    after   jsonb
);

CREATE FUNCTION audit_change() RETURNS trigger AS $$
DECLARE
    actor  text := coalesce(nullif(current_setting('upi.actor', true), ''), 'db:' || current_user);
    r      record;
    target text;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    IF TG_TABLE_NAME = 'banks' THEN
        target := r.code;
    ELSIF TG_TABLE_NAME = 'vpas' THEN
        target := r.vpa;
    ELSIF TG_TABLE_NAME = 'clients' THEN
        target := r.client_id;
    ELSE
        target := r.bank_code || CASE WHEN r.endpoint = '' THEN '' ELSE ' ' || r.endpoint END;
    END IF;
    INSERT INTO audit_log (actor, action, target, before, after)
    VALUES (actor, TG_TABLE_NAME || '.' || lower(TG_OP), target,
            CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE to_jsonb(OLD) END,
            CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE to_jsonb(NEW) END);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER banks_audit AFTER INSERT OR UPDATE OR DELETE ON banks
    FOR EACH ROW EXECUTE FUNCTION audit_change();
CREATE TRIGGER vpas_audit AFTER INSERT OR UPDATE OR DELETE ON vpas
    FOR EACH ROW EXECUTE FUNCTION audit_change();
CREATE TRIGGER clients_audit AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION audit_change();
CREATE TRIGGER circuit_overrides_audit AFTER INSERT OR UPDATE OR DELETE ON circuit_overrides
    FOR EACH ROW EXECUTE FUNCTION audit_change();

-- The log is append-only.
CREATE FUNCTION forbid_audit_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION forbid_audit_change();
