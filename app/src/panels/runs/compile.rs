//! Compile a run and verify the module in this browser.

use wasmops_shared::digest::content_hash;
use wasmops_shared::metrics::evaluate;
use wasmops_shared::module::ModuleInfo;

use crate::module_runner::BrowserModule;
use crate::run::Run;
use crate::state::CompiledModule;

/// Compiles a run's pipeline, runs the module through the browser's WebAssembly engine on
/// the conformance vectors (must match bit for bit) and the held-out split.
pub async fn compile_and_verify(run: &Run) -> Result<CompiledModule, String> {
    let bytes = run.compile().map_err(|e| format!("compile failed: {e}"))?;
    let info = ModuleInfo::parse(&bytes)
        .map_err(|e| format!("compiled module failed its own checks: {e}"))?;
    let module = BrowserModule::instantiate(&bytes).await?;
    let conformance_out = module.predict(&info.conformance.input_values())?;
    info.conformance
        .verify(&conformance_out)
        .map_err(|e| format!("module disagrees with the reference in this browser: {e}"))?;
    let test_outputs = module.predict(&run.test_x)?;
    let (metric, trained) = run.primary_metric();
    Ok(CompiledModule {
        run_id: run.id.clone(),
        hash: content_hash(&bytes),
        n_outputs: module.n_outputs(),
        metric,
        module_metric: evaluate(&run.pipeline, &run.test_x, &test_outputs, &run.test_y)
            .get(metric)
            .copied()
            .unwrap_or(f64::NAN),
        trained_metric: trained.unwrap_or(f64::NAN),
        conformance_rows: info.conformance.n_rows,
        compiled_at_ms: js_sys::Date::now(),
        test_outputs,
        bytes,
    })
}
