//! The database schema: DDL of each version, the migrations v1 -> v3 and the live-load triggers.

use rusqlite::{Connection, TransactionBehavior};

use super::error::{corrupt, StoreError};
use super::DB_FILE;

/// The schema version this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 3;

const SCHEMA_V1: &str = "
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL,
    price_per_gpu_second REAL NOT NULL,
    deadline_unix_s REAL,
    kernel_json TEXT NOT NULL,
    input_bytes INTEGER NOT NULL,
    submitted_unix_s REAL NOT NULL,
    started_unix_s REAL,
    finished_unix_s REAL,
    updated_unix_s REAL NOT NULL,
    progress_units INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    result_digest TEXT,
    result_shapes_json TEXT,
    gpu_seconds REAL NOT NULL DEFAULT 0,
    joules REAL NOT NULL DEFAULT 0,
    earned REAL NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_state ON jobs(state, id);
CREATE INDEX jobs_by_tenant ON jobs(tenant, state, id);
CREATE TABLE inputs (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    shape_json TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
CREATE TABLE transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    from_state TEXT,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_unix_s REAL NOT NULL
);
CREATE INDEX transitions_by_job ON transitions(job_id, seq);
CREATE TABLE checkpoints (
    job_id INTEGER PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    done INTEGER NOT NULL,
    buffers INTEGER NOT NULL,
    saved_unix_s REAL NOT NULL
);
CREATE TABLE checkpoint_buffers (
    job_id INTEGER NOT NULL REFERENCES checkpoints(job_id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
";

/// Version 2: running totals (energy and earnings outside jobs) and owner settings.
const SCHEMA_V2: &str = "
CREATE TABLE totals (
    name TEXT PRIMARY KEY,
    value REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// Version 3: per-tenant load of unfinished jobs, kept by triggers whoever writes, so that the
/// submit limits are checked with one indexed lookup instead of a scan of the queue.
const SCHEMA_V3: &str = "
CREATE TABLE live_load (
    tenant TEXT PRIMARY KEY,
    jobs INTEGER NOT NULL,
    input_bytes INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO live_load (tenant, jobs, input_bytes)
    SELECT tenant, COUNT(*), SUM(input_bytes) FROM jobs
    WHERE state IN ('QUEUED', 'RUNNING', 'PAUSED') GROUP BY tenant;
CREATE TRIGGER live_load_insert AFTER INSERT ON jobs
WHEN NEW.state IN ('QUEUED', 'RUNNING', 'PAUSED') BEGIN
    INSERT INTO live_load (tenant, jobs, input_bytes) VALUES (NEW.tenant, 1, NEW.input_bytes)
    ON CONFLICT (tenant) DO UPDATE SET jobs = jobs + 1, input_bytes = input_bytes + excluded.input_bytes;
END;
CREATE TRIGGER live_load_enter AFTER UPDATE OF state ON jobs
WHEN OLD.state NOT IN ('QUEUED', 'RUNNING', 'PAUSED') AND NEW.state IN ('QUEUED', 'RUNNING', 'PAUSED') BEGIN
    INSERT INTO live_load (tenant, jobs, input_bytes) VALUES (NEW.tenant, 1, NEW.input_bytes)
    ON CONFLICT (tenant) DO UPDATE SET jobs = jobs + 1, input_bytes = input_bytes + excluded.input_bytes;
END;
CREATE TRIGGER live_load_leave AFTER UPDATE OF state ON jobs
WHEN OLD.state IN ('QUEUED', 'RUNNING', 'PAUSED') AND NEW.state NOT IN ('QUEUED', 'RUNNING', 'PAUSED') BEGIN
    UPDATE live_load SET jobs = jobs - 1, input_bytes = input_bytes - OLD.input_bytes
    WHERE tenant = OLD.tenant;
END;
CREATE TRIGGER live_load_delete AFTER DELETE ON jobs
WHEN OLD.state IN ('QUEUED', 'RUNNING', 'PAUSED') BEGIN
    UPDATE live_load SET jobs = jobs - 1, input_bytes = input_bytes - OLD.input_bytes
    WHERE tenant = OLD.tenant;
END;
";

/// The states of an unfinished job, as an SQL list.
pub(super) const LIVE_STATES: &str = "('QUEUED', 'RUNNING', 'PAUSED')";

/// Brings the database to [`SCHEMA_VERSION`], one version at a time, in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if !(0..=SCHEMA_VERSION).contains(&version) {
        return Err(corrupt(format!(
            "{DB_FILE} has schema version {version}; this build knows 0..={SCHEMA_VERSION}"
        )));
    }
    // Each step upgrades one version, in order.
    for (to, sql) in [(1, SCHEMA_V1), (2, SCHEMA_V2), (3, SCHEMA_V3)] {
        if version < to {
            tx.execute_batch(sql)?;
        }
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    tx.commit()?;
    Ok(())
}
