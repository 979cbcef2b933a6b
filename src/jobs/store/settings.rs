//! Owner settings and named running totals kept beside the jobs.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::error::StoreError;
use super::JobStore;

impl JobStore {
    /// Named running totals (energy and earnings kept outside jobs), all 0 on a new store.
    pub fn totals(&self) -> Result<BTreeMap<String, f64>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached("SELECT name, value FROM totals")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets running totals, in one transaction. Values must be finite.
    pub fn save_totals(&self, values: &[(&str, f64)]) -> Result<(), StoreError> {
        if let Some((name, v)) = values.iter().find(|(_, v)| !v.is_finite()) {
            return Err(StoreError::InvalidArgument {
                field: (*name).to_string(),
                msg: format!("{v} is not finite"),
            });
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (name, v) in values {
            tx.execute(
                "INSERT INTO totals (name, value) VALUES (?1, ?2) \
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![name, v],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// An owner setting (JSON text), if set.
    pub fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Stores an owner setting (JSON text) durably.
    pub fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO settings (name, value) VALUES (?1, ?2) \
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
        Ok(())
    }
}
