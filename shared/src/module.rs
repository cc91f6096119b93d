//! The contents of a model module besides its code: model card, training profile and
//! conformance vectors (custom sections), and the loader that checks a module against the ABI.
//!
//! Only this file knows how the custom sections are encoded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmparser::{ExternalKind, Parser, Payload, ValType, Validator, WasmFeatures};

use crate::abi::{self, ABI_VERSION};
use crate::profile::Profile;

/// What a person (and a device) needs to know about the model inside a module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub abi_version: u32,
    pub kind: String,
    pub feature_names: Vec<String>,
    pub target_name: String,
    /// Class names by class index (empty for regression).
    pub classes: Vec<String>,
    /// Names of the values in one output row.
    pub outputs: Vec<String>,
    pub dataset: DatasetRef,
    pub params: BTreeMap<String, serde_json::Value>,
    pub metrics: BTreeMap<String, f64>,
    /// The dashboard build (git commit) that trained and compiled the model.
    pub code_version: String,
}

impl ModelCard {
    /// Whether `label` can be the truth for one of this model's predictions: a class index
    /// (a whole number from 0 to classes - 1) for a classifier or clusterer, any finite
    /// number for a regression. The error says why not.
    pub fn check_label(&self, label: f64) -> Result<(), String> {
        if !label.is_finite() {
            return Err(format!("{label} is not a finite number"));
        }
        let k = self.classes.len();
        if k == 0 {
            return Ok(());
        }
        let classes = format!("the model has {k} classes, 0 to {}", k - 1);
        if label.fract() != 0.0 {
            return Err(format!(
                "{label} is not a class index (a whole number; {classes})"
            ));
        }
        if label < 0.0 || label >= k as f64 {
            return Err(format!("{label} is not a class index ({classes})"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRef {
    pub name: String,
    pub hash: String,
    pub n_rows: usize,
}

/// A WebAssembly feature a module may need beyond the ABI's baseline. A module that uses one
/// declares it in its `wasmops.requires` section; loaders refuse undeclared use, features they
/// do not know, and (always) relaxed SIMD, whose results differ between runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WasmFeature {
    /// Fixed-width SIMD (`simd128`); models use only its deterministic `f64x2` operations.
    Simd128,
}

impl WasmFeature {
    pub const ALL: [WasmFeature; 1] = [WasmFeature::Simd128];

    /// The feature's name in the section (and in error messages).
    pub fn name(self) -> &'static str {
        match self {
            WasmFeature::Simd128 => "simd128",
        }
    }

    /// What the feature is, for messages: `SIMD (simd128)`.
    pub fn describe(self) -> &'static str {
        match self {
            WasmFeature::Simd128 => "SIMD (simd128)",
        }
    }

    pub fn from_name(name: &str) -> Option<WasmFeature> {
        WasmFeature::ALL.into_iter().find(|f| f.name() == name)
    }

    fn validator_flags(self) -> WasmFeatures {
        match self {
            WasmFeature::Simd128 => WasmFeatures::SIMD,
        }
    }
}

/// The smallest module that uses SIMD (one function returning a `v128.const`): a host checks
/// with it whether its WebAssembly runs SIMD, e.g. the browser's `WebAssembly.validate`, so it
/// can refuse a module that needs SIMD with that reason instead of a bare compile error.
pub const SIMD_PROBE: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
    0x03, 0x02, 0x01, 0x00, // functions: one of type 0
    0x0a, 0x16, 0x01, 0x14, 0x00, 0xfd, 0x0c, // code: v128.const
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b, // 16 zero bytes, end
];

/// The `wasmops.requires` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requires {
    /// Feature names ([`WasmFeature::name`]).
    pub wasm_features: Vec<String>,
}

impl Requires {
    pub fn new(features: &[WasmFeature]) -> Requires {
        Requires {
            wasm_features: features.iter().map(|f| f.name().to_string()).collect(),
        }
    }
}

/// Inputs and the exact output bits the module must produce for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conformance {
    pub abi_version: u32,
    pub n_rows: usize,
    pub n_features: usize,
    pub n_outputs: usize,
    /// Row-major input bits as 16-digit hex (JSON cannot carry NaN or infinities).
    pub inputs: Vec<Hex64>,
    pub expected: Vec<Hex64>,
}

/// An f64 carried by its bit pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Hex64(pub u64);

impl From<Hex64> for String {
    fn from(h: Hex64) -> String {
        format!("{:016x}", h.0)
    }
}

impl TryFrom<String> for Hex64 {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.len() != 16 {
            return Err(format!("expected 16 hex digits, found {s:?}"));
        }
        u64::from_str_radix(&s, 16)
            .map(Hex64)
            .map_err(|e| format!("{s:?}: {e}"))
    }
}

impl Conformance {
    pub fn input_values(&self) -> Vec<f64> {
        self.inputs.iter().map(|h| f64::from_bits(h.0)).collect()
    }

    /// Compares a runtime's outputs with the expected bits; the first mismatch is the error.
    pub fn verify(&self, outputs: &[f64]) -> Result<(), ConformanceMismatch> {
        if outputs.len() != self.expected.len() {
            return Err(ConformanceMismatch::Length {
                expected: self.expected.len(),
                found: outputs.len(),
            });
        }
        for (i, (got, want)) in outputs.iter().zip(&self.expected).enumerate() {
            if got.to_bits() != want.0 {
                // `checked_*`: a section that was never checked may say 0 outputs per row.
                return Err(ConformanceMismatch::Value {
                    row: i.checked_div(self.n_outputs).unwrap_or(i),
                    output: i.checked_rem(self.n_outputs).unwrap_or(0),
                    expected: want.0,
                    found: got.to_bits(),
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConformanceMismatch {
    #[error("expected {expected} output values, runtime produced {found}")]
    Length { expected: usize, found: usize },
    #[error("row {row}, output {output}: expected bits {expected:016x} ({}), runtime produced {found:016x} ({})", f64::from_bits(*expected), f64::from_bits(*found))]
    Value {
        row: usize,
        output: usize,
        expected: u64,
        found: u64,
    },
}

/// Why a module was refused. Each variant says what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    #[error("not a valid WebAssembly module: {0}")]
    Invalid(String),
    #[error("module imports {module}::{name}; model modules must import nothing")]
    HasImports { module: String, name: String },
    #[error("module lacks the export `{0}`")]
    MissingExport(&'static str),
    #[error("export `{name}` has the wrong type: expected {expected}")]
    WrongExportType {
        name: &'static str,
        expected: &'static str,
    },
    #[error("module lacks the custom section `{0}`")]
    MissingSection(&'static str),
    #[error("custom section `{section}` is corrupt: {reason}")]
    CorruptSection {
        section: &'static str,
        reason: String,
    },
    #[error("module uses ABI version {found}; this build supports version {supported}")]
    UnsupportedAbi { found: u32, supported: u32 },
    #[error("module metadata disagrees: {0}")]
    Inconsistent(String),
    #[error("module requires the WebAssembly feature {0}, which this build does not know")]
    UnknownFeature(String),
    #[error("module uses WebAssembly {} without declaring it in `{}`", .0.describe(), abi::SECTION_REQUIRES)]
    UndeclaredFeature(WasmFeature),
}

/// A section the loader checked: only [`ModuleInfo::parse`] makes one, so holding a
/// `Checked<T>` means `T` has the shape every consumer of a loaded module relies on (see
/// [`ModuleInfo`]). Read it through `Deref`; [`Checked::into_inner`] gives the plain value
/// back (for editing, e.g. in tests), which is no longer checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked<T>(T);

impl<T> Checked<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Checked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A module that passed every static check, with its sections decoded and checked:
/// - the card lists at least one feature and at least one output;
/// - the profile has one entry per card feature, named alike, each with
///   [`profile::N_EDGES`](crate::profile::N_EDGES) finite edges and
///   [`profile::N_BINS`](crate::profile::N_BINS) counts;
/// - the conformance vectors hold at least one row, and exactly `n_rows` rows of the card's
///   features and outputs.
///
/// So a host can index rows by feature count, chunk outputs by output count and bin values
/// by the profile without a case that panics.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleInfo {
    pub hash: String,
    pub size: usize,
    pub card: Checked<ModelCard>,
    pub profile: Checked<Profile>,
    pub conformance: Checked<Conformance>,
    /// WebAssembly features the module declares and uses beyond the baseline (none for
    /// scalar modules); a runtime must support each of them (see `edge-runtime`'s sandbox).
    pub wasm_features: Vec<WasmFeature>,
}

impl ModuleInfo {
    /// Validates a module and reads its sections. It does not run it: a runtime must still
    /// check the conformance vectors before serving (see `Conformance::verify`).
    pub fn parse(bytes: &[u8]) -> Result<ModuleInfo, ModuleError> {
        let wasm_features = declared_features(bytes)?;
        // The baseline, plus what the module declares; relaxed SIMD never (its results differ
        // between runtimes, which would break bit identity).
        let mut features = WasmFeatures::default();
        features.remove(WasmFeatures::RELAXED_SIMD);
        for f in WasmFeature::ALL {
            if !wasm_features.contains(&f) {
                features.remove(f.validator_flags());
            }
        }
        if let Err(e) = Validator::new_with_features(features).validate_all(bytes) {
            // Say so plainly when the module would be valid with a feature it did not declare.
            for f in WasmFeature::ALL {
                if !wasm_features.contains(&f)
                    && Validator::new_with_features(features | f.validator_flags())
                        .validate_all(bytes)
                        .is_ok()
                {
                    return Err(ModuleError::UndeclaredFeature(f));
                }
            }
            return Err(ModuleError::Invalid(e.to_string()));
        }

        let mut func_types: Vec<(Vec<ValType>, Vec<ValType>)> = Vec::new();
        let mut func_type_idx: Vec<u32> = Vec::new();
        let mut exports: BTreeMap<String, (ExternalKind, u32)> = BTreeMap::new();
        let mut sections: BTreeMap<String, Vec<u8>> = BTreeMap::new();

        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(|e| ModuleError::Invalid(e.to_string()))? {
                Payload::TypeSection(reader) => {
                    for ty in reader.into_iter_err_on_gc_types() {
                        let ty = ty.map_err(|e| ModuleError::Invalid(e.to_string()))?;
                        func_types.push((ty.params().to_vec(), ty.results().to_vec()));
                    }
                }
                Payload::ImportSection(reader) => {
                    if let Some(import) = reader.into_imports().next() {
                        let import = import.map_err(|e| ModuleError::Invalid(e.to_string()))?;
                        return Err(ModuleError::HasImports {
                            module: import.module.to_string(),
                            name: import.name.to_string(),
                        });
                    }
                }
                Payload::FunctionSection(reader) => {
                    for idx in reader {
                        func_type_idx.push(idx.map_err(|e| ModuleError::Invalid(e.to_string()))?);
                    }
                }
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let export = export.map_err(|e| ModuleError::Invalid(e.to_string()))?;
                        exports.insert(export.name.to_string(), (export.kind, export.index));
                    }
                }
                Payload::CustomSection(reader) => {
                    sections.insert(reader.name().to_string(), reader.data().to_vec());
                }
                _ => {}
            }
        }

        let func_sig = |name: &'static str| -> Result<&(Vec<ValType>, Vec<ValType>), ModuleError> {
            match exports.get(name) {
                Some((ExternalKind::Func, idx)) => func_type_idx
                    .get(*idx as usize)
                    .and_then(|t| func_types.get(*t as usize))
                    .ok_or(ModuleError::MissingExport(name)),
                Some(_) => Err(ModuleError::WrongExportType {
                    name,
                    expected: "a function",
                }),
                None => Err(ModuleError::MissingExport(name)),
            }
        };
        match exports.get(abi::EXPORT_MEMORY) {
            Some((ExternalKind::Memory, _)) => {}
            Some(_) => {
                return Err(ModuleError::WrongExportType {
                    name: abi::EXPORT_MEMORY,
                    expected: "a memory",
                })
            }
            None => return Err(ModuleError::MissingExport(abi::EXPORT_MEMORY)),
        }
        for name in [
            abi::EXPORT_ABI_VERSION,
            abi::EXPORT_N_FEATURES,
            abi::EXPORT_N_OUTPUTS,
            abi::EXPORT_HEAP_BASE,
        ] {
            if *func_sig(name)? != (vec![], vec![ValType::I32]) {
                return Err(ModuleError::WrongExportType {
                    name,
                    expected: "() -> i32",
                });
            }
        }
        if *func_sig(abi::EXPORT_PREDICT)? != (vec![ValType::I32; 4], vec![ValType::I32]) {
            return Err(ModuleError::WrongExportType {
                name: abi::EXPORT_PREDICT,
                expected: "(i32, i32, i32, i32) -> i32",
            });
        }

        let card: ModelCard = read_section(&sections, abi::SECTION_CARD)?;
        if card.abi_version != ABI_VERSION {
            return Err(ModuleError::UnsupportedAbi {
                found: card.abi_version,
                supported: ABI_VERSION,
            });
        }
        let profile: Profile = read_section(&sections, abi::SECTION_PROFILE)?;
        let conformance: Conformance = read_section(&sections, abi::SECTION_CONFORMANCE)?;
        if conformance.abi_version != ABI_VERSION {
            return Err(ModuleError::UnsupportedAbi {
                found: conformance.abi_version,
                supported: ABI_VERSION,
            });
        }
        check_card(&card)?;
        check_conformance(&conformance, &card)?;
        if profile.features.len() != card.feature_names.len() {
            return Err(ModuleError::Inconsistent(format!(
                "the profile covers {} features; the card lists {}",
                profile.features.len(),
                card.feature_names.len()
            )));
        }
        profile
            .check(&card.feature_names)
            .map_err(|reason| ModuleError::CorruptSection {
                section: abi::SECTION_PROFILE,
                reason,
            })?;

        Ok(ModuleInfo {
            hash: crate::digest::content_hash(bytes),
            size: bytes.len(),
            card: Checked(card),
            profile: Checked(profile),
            conformance: Checked(conformance),
            wasm_features,
        })
    }
}

/// The features a module's `wasmops.requires` section names (none without the section).
fn declared_features(bytes: &[u8]) -> Result<Vec<WasmFeature>, ModuleError> {
    let mut requires: Option<Requires> = None;
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::CustomSection(reader) =
            payload.map_err(|e| ModuleError::Invalid(e.to_string()))?
        {
            if reader.name() == abi::SECTION_REQUIRES {
                if requires.is_some() {
                    return Err(ModuleError::CorruptSection {
                        section: abi::SECTION_REQUIRES,
                        reason: "the section appears twice".into(),
                    });
                }
                requires = Some(serde_json::from_slice(reader.data()).map_err(|e| {
                    ModuleError::CorruptSection {
                        section: abi::SECTION_REQUIRES,
                        reason: e.to_string(),
                    }
                })?);
            }
        }
    }
    let mut features = Vec::new();
    for name in requires.map(|r| r.wasm_features).unwrap_or_default() {
        let f = WasmFeature::from_name(&name)
            .ok_or_else(|| ModuleError::UnknownFeature(crate::quote::bounded(&name)))?;
        if !features.contains(&f) {
            features.push(f);
        }
    }
    features.sort();
    Ok(features)
}

fn check_card(card: &ModelCard) -> Result<(), ModuleError> {
    let corrupt = |reason: &str| ModuleError::CorruptSection {
        section: abi::SECTION_CARD,
        reason: reason.into(),
    };
    if card.feature_names.is_empty() {
        return Err(corrupt(
            "the card lists no features; a model takes at least one",
        ));
    }
    if card.outputs.is_empty() {
        return Err(corrupt(
            "the card lists no outputs; a model writes at least one value per row",
        ));
    }
    Ok(())
}

fn check_conformance(conformance: &Conformance, card: &ModelCard) -> Result<(), ModuleError> {
    let d = card.feature_names.len();
    if conformance.n_rows == 0 {
        return Err(ModuleError::CorruptSection {
            section: abi::SECTION_CONFORMANCE,
            reason: "no conformance rows; a module carries at least one".into(),
        });
    }
    if conformance.n_features != d
        || conformance.n_rows.checked_mul(d) != Some(conformance.inputs.len())
    {
        return Err(ModuleError::Inconsistent(format!(
            "conformance vectors hold {} inputs for {} rows of {} features; the card lists {d} features",
            conformance.inputs.len(),
            conformance.n_rows,
            conformance.n_features
        )));
    }
    if conformance.n_outputs != card.outputs.len()
        || conformance.n_rows.checked_mul(conformance.n_outputs) != Some(conformance.expected.len())
    {
        return Err(ModuleError::Inconsistent(format!(
            "conformance vectors hold {} outputs for {} rows; the card lists {} outputs per row",
            conformance.expected.len(),
            conformance.n_rows,
            card.outputs.len()
        )));
    }
    Ok(())
}

fn read_section<T: serde::de::DeserializeOwned>(
    sections: &BTreeMap<String, Vec<u8>>,
    section: &'static str,
) -> Result<T, ModuleError> {
    let data = sections
        .get(section)
        .ok_or(ModuleError::MissingSection(section))?;
    serde_json::from_slice(data).map_err(|e| ModuleError::CorruptSection {
        section,
        reason: e.to_string(),
    })
}

/// Encodes a section payload; the compiler uses this so reader and writer share one format.
pub(crate) fn encode_section<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("section types serialize infallibly")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simd_probe_is_valid_only_with_simd() {
        let mut features = WasmFeatures::default();
        assert!(Validator::new_with_features(features)
            .validate_all(SIMD_PROBE)
            .is_ok());
        features.remove(WasmFeatures::SIMD | WasmFeatures::RELAXED_SIMD);
        assert!(Validator::new_with_features(features)
            .validate_all(SIMD_PROBE)
            .is_err());
    }
}
