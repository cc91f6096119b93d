//! Datasets as plain data, with a content hash over a canonical encoding.

use serde::{Deserialize, Serialize};

/// A tabular dataset: row-major features and one target column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub feature_names: Vec<String>,
    pub target_name: String,
    /// Class names for classification targets (target values are class indices).
    pub class_names: Vec<String>,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

impl Dataset {
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    pub fn n_rows(&self) -> usize {
        self.y.len()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        let d = self.n_features();
        &self.x[i * d..(i + 1) * d]
    }

    /// SHA-256 over a canonical byte encoding: names, then each value's little-endian bits.
    /// Changing any name, value or the row order gives a new version.
    pub fn content_hash(&self) -> String {
        let mut bytes = Vec::with_capacity(self.x.len() * 8 + self.y.len() * 8 + 256);
        let put_str = |bytes: &mut Vec<u8>, s: &str| {
            bytes.extend((s.len() as u64).to_le_bytes());
            bytes.extend(s.as_bytes());
        };
        put_str(&mut bytes, "wasmops-dataset-v1");
        bytes.extend((self.feature_names.len() as u64).to_le_bytes());
        for n in &self.feature_names {
            put_str(&mut bytes, n);
        }
        put_str(&mut bytes, &self.target_name);
        bytes.extend((self.class_names.len() as u64).to_le_bytes());
        for n in &self.class_names {
            put_str(&mut bytes, n);
        }
        bytes.extend((self.y.len() as u64).to_le_bytes());
        for v in self.x.iter().chain(&self.y) {
            bytes.extend(v.to_bits().to_le_bytes());
        }
        crate::digest::content_hash(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        Dataset {
            name: "tiny".into(),
            feature_names: vec!["a".into(), "b".into()],
            target_name: "y".into(),
            class_names: vec!["no".into(), "yes".into()],
            x: vec![1.0, 2.0, 3.0, 4.0],
            y: vec![0.0, 1.0],
        }
    }

    #[test]
    fn hash_changes_with_any_value_but_not_with_display_name() {
        let a = tiny();
        let mut b = tiny();
        b.name = "renamed".into();
        assert_eq!(a.content_hash(), b.content_hash());
        b.x[3] = 4.000000000000001;
        assert_ne!(a.content_hash(), b.content_hash());
        assert_eq!(a.row(1), &[3.0, 4.0]);
    }
}
