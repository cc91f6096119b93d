//! The model-module ABI (version 1): export names, status codes and the batch memory layout.
//!
//! `docs/module-abi.md` is the human-readable contract; this file is its single source of truth
//! in code. Both the browser runner (`app`) and the device runner (`edge-runtime`) lay batches
//! out with [`BatchLayout`], so the two can never disagree about where rows go.

/// The ABI version this build writes and accepts.
pub const ABI_VERSION: u32 = 1;

/// Exported linear memory.
pub const EXPORT_MEMORY: &str = "memory";
/// `() -> i32`: the ABI version the module implements.
pub const EXPORT_ABI_VERSION: &str = "wasmops_abi_version";
/// `() -> i32`: features per input row.
pub const EXPORT_N_FEATURES: &str = "wasmops_n_features";
/// `() -> i32`: f64 values written per output row.
pub const EXPORT_N_OUTPUTS: &str = "wasmops_n_outputs";
/// `() -> i32`: first byte of memory the host may use for batches (8-aligned).
pub const EXPORT_HEAP_BASE: &str = "wasmops_heap_base";
/// `(in_ptr: i32, n_rows: i32, n_features: i32, out_ptr: i32) -> i32`: a [`Status`] code.
pub const EXPORT_PREDICT: &str = "wasmops_predict";

/// Custom section holding the model card (JSON).
pub const SECTION_CARD: &str = "wasmops.card";
/// Custom section holding the training profile (JSON).
pub const SECTION_PROFILE: &str = "wasmops.profile";
/// Custom section holding the conformance vectors (JSON).
pub const SECTION_CONFORMANCE: &str = "wasmops.conformance";
/// Custom section listing the WebAssembly features a module needs beyond the baseline (JSON,
/// e.g. `{"wasm_features":["simd128"]}`). Absent in modules that need none (every module
/// compiled before issue 17, and the tree kinds).
pub const SECTION_REQUIRES: &str = "wasmops.requires";

/// Bit pattern every NaN output is canonicalized to (positive quiet NaN).
pub const CANONICAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0000;

/// Wasm page size in bytes.
pub const PAGE_SIZE: u64 = 65_536;

/// What `wasmops_predict` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    /// `n_features` differs from the module's feature count.
    WrongFeatureCount = 1,
    /// `n_rows` is zero or negative.
    BadRowCount = 2,
    /// The input or output region does not fit in memory.
    OutOfBounds = 3,
}

impl Status {
    pub fn from_code(code: i32) -> Option<Status> {
        match code {
            0 => Some(Status::Ok),
            1 => Some(Status::WrongFeatureCount),
            2 => Some(Status::BadRowCount),
            3 => Some(Status::OutOfBounds),
            _ => None,
        }
    }

    pub fn describe(code: i32) -> String {
        match Status::from_code(code) {
            Some(Status::Ok) => "ok".into(),
            Some(Status::WrongFeatureCount) => "wrong feature count".into(),
            Some(Status::BadRowCount) => "row count must be positive".into(),
            Some(Status::OutOfBounds) => "batch does not fit in module memory".into(),
            None => format!("unknown status code {code}"),
        }
    }
}

/// Where a batch lives in module memory: inputs at `in_ptr`, outputs right after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLayout {
    pub in_ptr: u32,
    pub out_ptr: u32,
    /// Bytes of memory the batch needs, counted from address 0.
    pub end: u64,
}

impl BatchLayout {
    /// Lays out `n_rows` rows; `None` if the batch cannot be addressed by a 32-bit memory.
    pub fn new(heap_base: u32, n_rows: usize, n_features: usize, n_outputs: usize) -> Option<Self> {
        let in_ptr = (u64::from(heap_base) + 7) & !7;
        let in_bytes = (n_rows as u64)
            .checked_mul(n_features as u64)?
            .checked_mul(8)?;
        let out_ptr = in_ptr.checked_add(in_bytes)?;
        let out_bytes = (n_rows as u64)
            .checked_mul(n_outputs as u64)?
            .checked_mul(8)?;
        let end = out_ptr.checked_add(out_bytes)?;
        if end > u64::from(u32::MAX) {
            return None;
        }
        Some(BatchLayout {
            in_ptr: in_ptr as u32,
            out_ptr: out_ptr as u32,
            end,
        })
    }

    /// Memory pages needed to hold the batch.
    pub fn pages(&self) -> u64 {
        self.end.div_ceil(PAGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_aligns_and_counts_pages() {
        let l = BatchLayout::new(3, 2, 4, 3).unwrap();
        assert_eq!(l.in_ptr, 8);
        assert_eq!(l.out_ptr, 8 + 2 * 4 * 8);
        assert_eq!(l.end, 8 + 64 + 48);
        assert_eq!(l.pages(), 1);
        assert!(BatchLayout::new(0, 1 << 30, 4, 1).is_none());
    }

    #[test]
    fn status_codes_round_trip() {
        for s in [
            Status::Ok,
            Status::WrongFeatureCount,
            Status::BadRowCount,
            Status::OutOfBounds,
        ] {
            assert_eq!(Status::from_code(s as i32), Some(s));
        }
        assert!(Status::describe(42).contains("42"));
    }
}
