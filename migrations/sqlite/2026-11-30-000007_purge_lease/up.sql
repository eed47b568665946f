-- One purge at a time across servers (API.md section 4, "Retention"): a
-- lease row, taken by a purge's first batch, renewed by each batch and
-- released at its end, so that it holds through the rests between batches
-- (a transaction-scoped lock held only during each batch let several
-- servers' purges interleave their batches). A purge that died lets it lapse.
CREATE TABLE leases (
    name TEXT NOT NULL PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
