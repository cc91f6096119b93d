//! Which model made a prediction, read before feedback is stored so that a label can be
//! checked against the classes of the model that predicted it.

use std::collections::BTreeMap;

use rusqlite::OptionalExtension;

use super::{TelemetryError, TelemetryStore};

impl TelemetryStore {
    /// The hash of the model that made each prediction (`None`: an id this store does not
    /// know, or a record without a model). One query per batch the ids fall in, not per id.
    pub fn prediction_models(&self, ids: &[u64]) -> Result<Vec<Option<String>>, TelemetryError> {
        let conn = self.reader();
        let mut find = conn.prepare_cached(
            "SELECT first_id, rows, model FROM records
             WHERE first_id IS NOT NULL AND first_id <= ?1 ORDER BY first_id DESC LIMIT 1",
        )?;
        // Batches found so far: first id -> (rows, model).
        let mut batches: BTreeMap<u64, (u64, Option<String>)> = BTreeMap::new();
        let mut models = Vec::with_capacity(ids.len());
        for &id in ids {
            let known = batches
                .range(..=id)
                .next_back()
                .filter(|(first, (rows, _))| id < first.saturating_add(*rows))
                .map(|(_, (_, model))| model.clone());
            if let Some(model) = known {
                models.push(model);
                continue;
            }
            // Ids are below 2^63 (allocated from 0); a larger one is unknown.
            let Ok(key) = i64::try_from(id) else {
                models.push(None);
                continue;
            };
            let hit = find
                .query_row([key], |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, Option<String>>(2)?,
                    ))
                })
                .optional()?;
            match hit {
                Some((first, rows, model)) if id < first.saturating_add(rows) => {
                    batches.insert(first, (rows, model.clone()));
                    models.push(model);
                }
                _ => models.push(None),
            }
        }
        Ok(models)
    }
}
