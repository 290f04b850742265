-- Merchant payments forwarded to the two payment processors (the "Rinha de
-- Backend 2025" contract). One row per correlationId; the row is the truth
-- about where a payment is and by which requestedAt each processor knows it.
CREATE TABLE merchant_payments (
    correlation_id        uuid        PRIMARY KEY,
    amount_cents          bigint      NOT NULL CHECK (amount_cents > 0),
    -- PENDING: no send with an unknown outcome; SENDING: the latest send to
    -- `processor` has an unknown outcome; ACCEPTED: `processor` has it (final).
    state                 text        NOT NULL CHECK (state IN ('PENDING', 'SENDING', 'ACCEPTED')),
    processor             text        CHECK (processor IN ('default', 'fallback')),
    -- The accepting processor's requestedAt (what both summaries count by).
    requested_at          timestamptz,
    -- The requestedAt chosen for each processor, durable before the first send
    -- there and reused for every later send there.
    default_requested_at  timestamptz,
    fallback_requested_at timestamptz,
    -- Sends announced (each one durably, before it left).
    attempts              integer     NOT NULL DEFAULT 0,
    -- Times the payment was handed back unfinished (held).
    holds                 integer     NOT NULL DEFAULT 0,
    -- When the latest send that got no answer left (switch clock).
    unanswered_since      timestamptz,
    next_attempt_at       timestamptz NOT NULL DEFAULT now(),
    -- The claim of the forwarder working on it, until lease_until (database clock).
    claim                 uuid,
    lease_until           timestamptz,
    last_error            text,
    received_at           timestamptz NOT NULL DEFAULT now(),
    accepted_at           timestamptz,
    CONSTRAINT merchant_sending_has_processor CHECK (state <> 'SENDING' OR processor IS NOT NULL),
    CONSTRAINT merchant_accepted_is_complete CHECK (
        state <> 'ACCEPTED' OR (processor IS NOT NULL AND requested_at IS NOT NULL))
);

CREATE INDEX merchant_payments_unfinished ON merchant_payments (next_attempt_at)
    WHERE state <> 'ACCEPTED';
CREATE INDEX merchant_payments_accepted ON merchant_payments (requested_at)
    INCLUDE (processor, amount_cents) WHERE state = 'ACCEPTED';

-- An accepted payment never changes again (a purge deletes it; nothing updates it).
CREATE FUNCTION merchant_forbid_accepted_change() RETURNS trigger AS $$
BEGIN
    IF OLD.state = 'ACCEPTED' THEN
        RAISE EXCEPTION 'merchant payment % is accepted by % and cannot change',
            OLD.correlation_id, OLD.processor;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER merchant_payments_accepted_is_final
    BEFORE UPDATE ON merchant_payments
    FOR EACH ROW EXECUTE FUNCTION merchant_forbid_accepted_change();
