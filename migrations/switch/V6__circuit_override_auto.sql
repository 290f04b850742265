-- An operator who forces a whole bank's circuits and then hands one endpoint
-- back to its breaker has said "auto" for that endpoint: it must be stored,
-- or every node would read the bank-wide override for it.
ALTER TABLE circuit_overrides DROP CONSTRAINT circuit_overrides_mode_check;
ALTER TABLE circuit_overrides
    ADD CONSTRAINT circuit_overrides_mode_check CHECK (mode IN ('open', 'closed', 'auto'));
