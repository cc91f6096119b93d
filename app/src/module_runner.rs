//! Running a model module in the browser through the WebAssembly JS API, with the same ABI
//! and batch layout (`wasmops_shared::abi`) the device uses, so outputs can be compared bit for
//! bit.

use js_sys::{Function, Object, Reflect, Uint8Array, WebAssembly};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasmops_shared::abi::{self, BatchLayout, Status};

pub struct BrowserModule {
    instance: WebAssembly::Instance,
    memory: WebAssembly::Memory,
    n_features: usize,
    n_outputs: usize,
    heap_base: u32,
}

fn js_err(what: &str) -> impl Fn(JsValue) -> String + '_ {
    move |e| format!("{what}: {}", js_sys::Error::from(e).message())
}

/// Whether this browser's WebAssembly runs SIMD (`WebAssembly.validate` of a tiny SIMD module).
fn simd_supported() -> bool {
    let probe = Uint8Array::from(wasmops_shared::module::SIMD_PROBE);
    WebAssembly::validate(&probe.into()).unwrap_or(false)
}

impl BrowserModule {
    /// Compiles and instantiates module bytes with an empty import object (modules import
    /// nothing; one that did would fail here).
    pub async fn instantiate(bytes: &[u8]) -> Result<BrowserModule, String> {
        let result =
            match JsFuture::from(WebAssembly::instantiate_buffer(bytes, &Object::new())).await {
                Ok(result) => result,
                // Modules of the dense kinds need SIMD: say so rather than "invalid opcode".
                Err(_) if !simd_supported() => {
                    return Err(
                        "this browser's WebAssembly has no SIMD (simd128), which this module needs"
                            .to_string(),
                    )
                }
                Err(e) => return Err(js_err("WebAssembly.instantiate failed")(e)),
            };
        let instance: WebAssembly::Instance = Reflect::get(&result, &"instance".into())
            .map_err(js_err("no instance"))?
            .dyn_into()
            .map_err(|_| "WebAssembly.instantiate returned no instance".to_string())?;
        let exports = instance.exports();
        let memory: WebAssembly::Memory = Reflect::get(&exports, &abi::EXPORT_MEMORY.into())
            .map_err(js_err("no memory export"))?
            .dyn_into()
            .map_err(|_| "module exports no memory".to_string())?;
        let mut m = BrowserModule {
            instance,
            memory,
            n_features: 0,
            n_outputs: 0,
            heap_base: 0,
        };
        m.n_features = m.call_i32(abi::EXPORT_N_FEATURES, &[])? as usize;
        m.n_outputs = m.call_i32(abi::EXPORT_N_OUTPUTS, &[])? as usize;
        m.heap_base = m.call_i32(abi::EXPORT_HEAP_BASE, &[])? as u32;
        Ok(m)
    }

    fn call_i32(&self, name: &str, args: &[i32]) -> Result<i32, String> {
        let f: Function = Reflect::get(&self.instance.exports(), &name.into())
            .map_err(js_err("export lookup"))?
            .dyn_into()
            .map_err(|_| format!("module export `{name}` is not a function"))?;
        let js_args = js_sys::Array::new();
        for a in args {
            js_args.push(&JsValue::from(*a));
        }
        let v = f.apply(&JsValue::NULL, &js_args).map_err(js_err(name))?;
        v.as_f64()
            .map(|x| x as i32)
            .ok_or_else(|| format!("`{name}` returned a non-number"))
    }

    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// Predicts a row-major batch; returns `rows * n_outputs` values.
    pub fn predict(&self, rows: &[f64]) -> Result<Vec<f64>, String> {
        let d = self.n_features;
        if d == 0 || rows.is_empty() || !rows.len().is_multiple_of(d) {
            return Err(format!(
                "batch holds {} values, not whole rows of {d} features",
                rows.len()
            ));
        }
        let n_rows = rows.len() / d;
        let layout = BatchLayout::new(self.heap_base, n_rows, d, self.n_outputs)
            .ok_or_else(|| format!("a batch of {n_rows} rows does not fit a 32-bit memory"))?;
        let have_pages = self.buffer().byte_length() as u64 / abi::PAGE_SIZE;
        if layout.pages() > have_pages {
            self.memory.grow((layout.pages() - have_pages) as u32);
        }
        let input: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.buffer()
            .set(&Uint8Array::from(input.as_slice()), layout.in_ptr);
        let code = self.call_i32(
            abi::EXPORT_PREDICT,
            &[
                layout.in_ptr as i32,
                n_rows as i32,
                d as i32,
                layout.out_ptr as i32,
            ],
        )?;
        if code != Status::Ok as i32 {
            return Err(format!(
                "module returned status {code}: {}",
                Status::describe(code)
            ));
        }
        let n_bytes = (n_rows * self.n_outputs * 8) as u32;
        let out = self
            .buffer()
            .subarray(layout.out_ptr, layout.out_ptr + n_bytes)
            .to_vec();
        Ok(out
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8")))
            .collect())
    }

    /// A fresh view: growing memory detaches earlier ArrayBuffers.
    fn buffer(&self) -> Uint8Array {
        Uint8Array::new(&self.memory.buffer())
    }
}
