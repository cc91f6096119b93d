//! Running untrusted model modules: one [`Sandbox`] (a wasmtime engine) per device, one
//! [`LoadedModule`] per accepted module, and a fresh `Store` and instance for every call.
//!
//! A call can never take the device down: modules import nothing (the linker is empty), memory
//! is capped by `StoreLimits` (and the pool's slot size), and fuel bounds the work per call, so
//! an endless loop or a memory bomb fails that one call with an error and nothing else.
//!
//! Instances come from wasmtime's pooling allocator: linear memories live in slots reserved
//! once at startup and are reset (zeroed, the module's data re-applied) when a call ends, so a
//! call costs no `mmap`/`munmap` and the next call still starts from a fresh instance.
//!
//! The pool's slots are split in two, so neither kind of caller can starve the other:
//! - [`Limits::max_concurrent_calls`] slots for serving ([`Sandbox::predict_async`]): a call
//!   waits for a slot on a tokio semaphore, so a full pool parks the *request*, never an async
//!   worker thread (health and everything else keep being served);
//! - [`Limits::max_concurrent_loads`] slots for blocking callers: loading a module (its ABI
//!   queries and conformance vectors), offline runs and tests ([`Sandbox::predict`]). The
//!   server takes a [`Sandbox::load_permit`] (async) before it loads anything on the blocking
//!   pool, so at most that many loads are ever in flight, however many uploads arrive.
//!
//! A load is bounded in rows ([`MAX_CONFORMANCE_ROWS`]) and fuel (the same budget per row as a
//! predict), so a module that loops in its conformance run is refused within a bounded time.

use std::sync::{Arc, Condvar, Mutex};
use wasmops_shared::abi::{self, BatchLayout, Status};
use wasmops_shared::module::{ModuleError, ModuleInfo, WasmFeature};

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder, Trap,
};

/// Bytes of each pooled linear memory (and table) reset with `memset` instead of `madvise`
/// when a call ends: model modules use a few pages, so resetting them costs no system call.
const KEEP_RESIDENT: usize = 1 << 20;

/// Resource limits for every call into a module.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear-memory cap per call, in bytes.
    pub max_memory: usize,
    /// Fuel for the fixed part of a call (instantiation, ABI queries).
    pub base_fuel: u64,
    /// Fuel granted per input row.
    pub fuel_per_row: u64,
    /// Rows per call at most.
    pub max_rows: usize,
    /// Serving calls that may run at the same time (instance slots in the pool); more wait.
    pub max_concurrent_calls: u32,
    /// Loads (and other blocking calls) that may run at the same time, in slots of their own.
    pub max_concurrent_loads: u32,
}

/// Most conformance rows a module may carry (the dashboard ships 16 plus 8 edge cases): the
/// device runs them all at upload, so they are bounded like a predict batch is.
pub const MAX_CONFORMANCE_ROWS: usize = 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory: 64 << 20,
            base_fuel: 1_000_000,
            fuel_per_row: 200_000,
            max_rows: 100_000,
            max_concurrent_calls: 64,
            max_concurrent_loads: 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Rejected(#[from] ModuleError),
    #[error("module failed to compile: {0}")]
    Compile(String),
    #[error("module's {export} reports {found}; its card says {expected}")]
    AbiMismatch {
        export: &'static str,
        found: i32,
        expected: i32,
    },
    #[error("conformance vectors do not reproduce: {0}")]
    Conformance(String),
    #[error("module ran out of its compute budget (possible endless loop)")]
    OutOfFuel,
    #[error("batch needs more memory than the module may use: {0}")]
    OutOfMemory(String),
    #[error("module could not be instantiated within the device's limits: {0}")]
    Instantiate(String),
    #[error("module trapped: {0}")]
    Trap(String),
    #[error("module returned status {code}: {}", Status::describe(*code))]
    Status { code: i32 },
    #[error("batch of {rows} rows exceeds the limit of {max} rows per call")]
    TooManyRows { rows: usize, max: usize },
    #[error("batch holds {values} values, not a whole number of {n_features}-feature rows")]
    RaggedBatch { values: usize, n_features: usize },
    #[error("module carries {rows} conformance rows; the device runs at most {max} at upload")]
    TooManyConformanceRows { rows: usize, max: usize },
    #[error("module needs WebAssembly {}, which this runtime has turned off: refused (enable it in the engine to run this module)", .0.describe())]
    FeatureDisabled(WasmFeature),
    #[error("internal runtime error: {0}")]
    Internal(String),
}

pub struct StoreData {
    limits: StoreLimits,
}

/// The device's wasmtime engine and call limits.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    linker: Arc<Linker<StoreData>>,
    limits: Limits,
    /// Slots for serving calls: waited for asynchronously.
    calls: Arc<tokio::sync::Semaphore>,
    /// Admission for loads: taken asynchronously before a load goes to the blocking pool.
    loads: Arc<tokio::sync::Semaphore>,
    /// Slots for blocking callers (loads, offline runs): a blocking thread may wait here.
    blocking_slots: Arc<CallSlots>,
    /// Whether the engine runs WebAssembly SIMD (`simd128`); modules that declare it need it.
    simd: bool,
}

/// A slot for one serving call, held while the call runs.
pub struct CallPermit(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

/// Admission for one load, held while it runs on the blocking pool.
pub struct LoadPermit(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

/// A counting semaphore over the blocking callers' slots. Blocking is fine here: only
/// blocking-pool threads and offline callers wait, and a slot is held for one call into a
/// module, which fuel bounds.
struct CallSlots {
    free: Mutex<u32>,
    freed: Condvar,
}

struct Slot<'a>(&'a CallSlots);

impl CallSlots {
    fn acquire(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// A module that passed static checks, compiled, and reproduced its conformance vectors.
pub struct LoadedModule {
    pub info: ModuleInfo,
    pre: InstancePre<StoreData>,
    n_features: usize,
    n_outputs: usize,
    heap_base: u32,
}

impl Sandbox {
    /// A sandbox with WebAssembly SIMD on, as model modules compiled since issue 17 need.
    pub fn new(limits: Limits) -> Result<Sandbox, SandboxError> {
        Sandbox::with_simd(limits, true)
    }

    /// A sandbox with SIMD on or off. Off, modules that declare `simd128` are refused at load
    /// (with [`SandboxError::FeatureDisabled`]); scalar modules run as before. Relaxed SIMD is
    /// always off: its results differ between hosts.
    pub fn with_simd(limits: Limits, simd: bool) -> Result<Sandbox, SandboxError> {
        let mut config = Config::new();
        config.wasm_relaxed_simd(false);
        config.wasm_simd(simd);
        config.consume_fuel(true);
        // Model modules are small and shallow; a tight stack turns deep recursion into a trap fast.
        config.max_wasm_stack(256 << 10);
        let calls = limits.max_concurrent_calls.max(1);
        let loads = limits.max_concurrent_loads.max(1);
        let slots = calls + loads;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_memory_size(limits.max_memory)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| SandboxError::Internal(e.to_string()))?;
        // Deliberately empty: nothing is importable, so a module with imports cannot link.
        let linker = Linker::new(&engine);
        Ok(Sandbox {
            engine,
            linker: Arc::new(linker),
            limits,
            calls: Arc::new(tokio::sync::Semaphore::new(calls as usize)),
            loads: Arc::new(tokio::sync::Semaphore::new(loads as usize)),
            blocking_slots: Arc::new(CallSlots {
                free: Mutex::new(loads),
                freed: Condvar::new(),
            }),
            simd,
        })
    }

    /// Waits (asynchronously) until a load may start. Hold it while the load runs.
    pub async fn load_permit(&self) -> LoadPermit {
        LoadPermit(
            self.loads
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed"),
        )
    }

    /// Waits (asynchronously) for a serving slot. Hold it while the call runs.
    pub async fn call_permit(&self) -> CallPermit {
        CallPermit(
            self.calls
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed"),
        )
    }

    /// Runs a batch in a serving slot: waits for the slot without blocking the async worker,
    /// then runs the call inline (small batches) or on the blocking pool (`inline == false`).
    pub async fn predict_async(
        &self,
        m: Arc<LoadedModule>,
        rows: Vec<f64>,
        inline: bool,
    ) -> (Arc<LoadedModule>, Vec<f64>, Result<Vec<f64>, SandboxError>) {
        let permit = self.call_permit().await;
        let sandbox = self.clone();
        // A panic in the call (a bug of ours, never the guest's doing) fails this call alone,
        // as an internal error, so the request still gets its answer and its record.
        let run = move || {
            let outputs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sandbox.predict_in_slot(&m, &rows, &permit)
            }))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(no message)");
                Err(SandboxError::Internal(format!(
                    "panic during a module call: {what}"
                )))
            });
            drop(permit);
            (m, rows, outputs)
        };
        if inline {
            run()
        } else {
            match tokio::task::spawn_blocking(run).await {
                Ok(done) => done,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether this runtime can run modules that need `feature`.
    pub fn supports(&self, feature: WasmFeature) -> bool {
        match feature {
            WasmFeature::Simd128 => self.simd,
        }
    }

    /// Checks, compiles and conformance-tests a module. Nothing is activated here.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedModule, SandboxError> {
        let info = ModuleInfo::parse(bytes)?;
        if let Some(f) = info.wasm_features.iter().find(|f| !self.supports(**f)) {
            return Err(SandboxError::FeatureDisabled(*f));
        }
        if info.conformance.n_rows > MAX_CONFORMANCE_ROWS {
            return Err(SandboxError::TooManyConformanceRows {
                rows: info.conformance.n_rows,
                max: MAX_CONFORMANCE_ROWS,
            });
        }
        let module = Module::new(&self.engine, bytes).map_err(compile_failed)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| SandboxError::Compile(e.to_string()))?;
        let mut loaded = LoadedModule {
            n_features: info.card.feature_names.len(),
            n_outputs: info.card.outputs.len(),
            heap_base: 0,
            info,
            pre,
        };
        let (abi_version, n_features, n_outputs, heap_base) = self.query_abi(&loaded)?;
        for (export, found, expected) in [
            (
                abi::EXPORT_ABI_VERSION,
                abi_version,
                abi::ABI_VERSION as i32,
            ),
            (abi::EXPORT_N_FEATURES, n_features, loaded.n_features as i32),
            (abi::EXPORT_N_OUTPUTS, n_outputs, loaded.n_outputs as i32),
        ] {
            if found != expected {
                return Err(SandboxError::AbiMismatch {
                    export,
                    found,
                    expected,
                });
            }
        }
        loaded.heap_base = u32::try_from(heap_base).map_err(|_| SandboxError::AbiMismatch {
            export: abi::EXPORT_HEAP_BASE,
            found: heap_base,
            expected: 0,
        })?;

        let conformance = &loaded.info.conformance;
        let outputs = self.predict(&loaded, &conformance.input_values())?;
        conformance
            .verify(&outputs)
            .map_err(|e| SandboxError::Conformance(e.to_string()))?;
        Ok(loaded)
    }

    fn new_store(&self, fuel: u64) -> Result<Store<StoreData>, SandboxError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.max_memory)
            .instances(1)
            .memories(1)
            .tables(1)
            .build();
        let mut store = Store::new(&self.engine, StoreData { limits });
        store.limiter(|d| &mut d.limits);
        store
            .set_fuel(fuel)
            .map_err(|e| SandboxError::Internal(e.to_string()))?;
        Ok(store)
    }

    fn query_abi(&self, m: &LoadedModule) -> Result<(i32, i32, i32, i32), SandboxError> {
        // Declared before the store, so the slot is given back only after the store is gone.
        let _slot = self.blocking_slots.acquire();
        let mut store = self.new_store(self.limits.base_fuel)?;
        let instance = m
            .pre
            .instantiate(&mut store)
            .map_err(instantiation_failed)?;
        let mut call = |name: &str| -> Result<i32, SandboxError> {
            let f = instance
                .get_typed_func::<(), i32>(&mut store, name)
                .map_err(|e| SandboxError::Internal(e.to_string()))?;
            f.call(&mut store, ()).map_err(classify)
        };
        Ok((
            call(abi::EXPORT_ABI_VERSION)?,
            call(abi::EXPORT_N_FEATURES)?,
            call(abi::EXPORT_N_OUTPUTS)?,
            call(abi::EXPORT_HEAP_BASE)?,
        ))
    }

    /// Runs a row-major batch through the module; returns `rows * n_outputs` values. Blocks
    /// the calling thread while all blocking slots are busy: for loads, offline runs and
    /// tests, never for an async task (those use [`Sandbox::predict_async`]).
    pub fn predict(&self, m: &LoadedModule, rows: &[f64]) -> Result<Vec<f64>, SandboxError> {
        // Declared before the store, so the slot is given back only after the store is gone.
        let _slot = self.blocking_slots.acquire();
        self.run(m, rows)
    }

    /// [`Sandbox::predict`] in a serving slot the caller already holds.
    pub fn predict_in_slot(
        &self,
        m: &LoadedModule,
        rows: &[f64],
        _slot: &CallPermit,
    ) -> Result<Vec<f64>, SandboxError> {
        self.run(m, rows)
    }

    /// One call, in a pool slot the caller holds (the pool has exactly as many slots as the
    /// two semaphores hand out, so instantiation never finds the pool exhausted).
    fn run(&self, m: &LoadedModule, rows: &[f64]) -> Result<Vec<f64>, SandboxError> {
        let d = m.n_features;
        if rows.is_empty() || !rows.len().is_multiple_of(d) {
            return Err(SandboxError::RaggedBatch {
                values: rows.len(),
                n_features: d,
            });
        }
        let n_rows = rows.len() / d;
        if n_rows > self.limits.max_rows {
            return Err(SandboxError::TooManyRows {
                rows: n_rows,
                max: self.limits.max_rows,
            });
        }
        let layout = BatchLayout::new(m.heap_base, n_rows, d, m.n_outputs).ok_or(
            SandboxError::TooManyRows {
                rows: n_rows,
                max: self.limits.max_rows,
            },
        )?;
        let fuel = self.limits.base_fuel + self.limits.fuel_per_row * n_rows as u64;
        let mut store = self.new_store(fuel)?;
        let instance = m
            .pre
            .instantiate(&mut store)
            .map_err(instantiation_failed)?;
        let memory = instance
            .get_memory(&mut store, abi::EXPORT_MEMORY)
            .ok_or_else(|| SandboxError::Internal("memory export vanished".into()))?;
        let have = memory.size(&store);
        if layout.pages() > have {
            memory
                .grow(&mut store, layout.pages() - have)
                .map_err(|e| SandboxError::OutOfMemory(format!("{e:#}")))?;
        }
        // Straight into linear memory (no intermediate buffer); the layout fits the pages grown
        // above, so a failed slice is a bug, reported rather than panicking.
        let in_bytes = rows.len() * 8;
        let input = memory
            .data_mut(&mut store)
            .get_mut(layout.in_ptr as usize..layout.in_ptr as usize + in_bytes)
            .ok_or_else(|| SandboxError::Internal("input does not fit the batch layout".into()))?;
        for (dst, v) in input.chunks_exact_mut(8).zip(rows) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        let predict = instance
            .get_typed_func::<(i32, i32, i32, i32), i32>(&mut store, abi::EXPORT_PREDICT)
            .map_err(|e| SandboxError::Internal(e.to_string()))?;
        let code = predict
            .call(
                &mut store,
                (
                    layout.in_ptr as i32,
                    n_rows as i32,
                    d as i32,
                    layout.out_ptr as i32,
                ),
            )
            .map_err(classify)?;
        if code != Status::Ok as i32 {
            return Err(SandboxError::Status { code });
        }
        let out_bytes = n_rows * m.n_outputs * 8;
        let out = memory
            .data(&store)
            .get(layout.out_ptr as usize..layout.out_ptr as usize + out_bytes)
            .ok_or_else(|| SandboxError::Internal("outputs do not fit the batch layout".into()))?;
        Ok(out
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8")))
            .collect())
    }
}

impl LoadedModule {
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }
}

/// Turns a wasmtime error from running guest code into what the operator needs to know.
fn classify(e: wasmtime::Error) -> SandboxError {
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => SandboxError::OutOfFuel,
        Some(trap) => SandboxError::Trap(trap.to_string()),
        None => SandboxError::Trap(format!("{e:#}")),
    }
}

/// Compilation also checks the module against the pool's limits (a minimum memory above the
/// cap, more than one memory or table): those are limit refusals, reported as such.
fn compile_failed(e: wasmtime::Error) -> SandboxError {
    let message = format!("{e:#}");
    if message.contains("exceeds the limit") || message.contains("exceeds the maximum") {
        SandboxError::Instantiate(message)
    } else {
        SandboxError::Compile(message)
    }
}

/// Instantiation fails when a module asks for more than the limits allow (e.g. a huge
/// initial memory) or burns its fuel in a start function.
fn instantiation_failed(e: wasmtime::Error) -> SandboxError {
    match e.downcast_ref::<Trap>() {
        Some(_) => classify(e),
        None => SandboxError::Instantiate(format!("{e:#}")),
    }
}
