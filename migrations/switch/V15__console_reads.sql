-- The operators' console searches transactions by VPA (either party) and by
-- status, newest first. The payer side already has (payer_vpa, created_at)
-- (daily limits); these add the payee side and the status. Neither column
-- changes while a saga runs (only at its terminal checkpoint), so the
-- intermediate checkpoints' updates stay HOT.
CREATE INDEX transactions_payee_day ON transactions (payee_vpa, created_at);
CREATE INDEX transactions_status_day ON transactions (status, created_at);
