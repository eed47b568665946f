-- SQLite has no NOTIFY: every change a transaction announces is also a row
-- here, written in that transaction, and each server follows the table
-- (woken by PRAGMA data_version) to keep its credential cache fresh when
-- another process (the CLI) changed something. AUTOINCREMENT so that an id
-- is never handed out twice, even after the newest rows were pruned: a
-- follower's cursor never skips a row. PostgreSQL announces by NOTIFY and
-- has no such table.
CREATE TABLE change_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
