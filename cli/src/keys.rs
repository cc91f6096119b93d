//! `wasmops sign` and `wasmops pubkey`: detached signatures of modules with a PEM private key
//! (`wasmops_shared::signature::ModuleSigner`), and the public key devices trust.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use wasmops_shared::signature::{DetachedSignature, ModuleSigner};

/// Reads a P-256 private key (PKCS#8 or SEC1 PEM).
pub fn signer(key: &Path) -> anyhow::Result<ModuleSigner> {
    let pem = crate::read_text(key)?;
    ModuleSigner::from_pem(&key.display().to_string(), &pem).map_err(|e| anyhow!("{e}"))
}

/// Where a module's signature goes: beside it, `MODULE.wasm.sig`.
pub fn signature_path(module: &Path) -> PathBuf {
    let mut name = module.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Signs `module` and writes its signature beside it; returns the signature and its path.
pub fn sign(key: &Path, module: &Path) -> anyhow::Result<(DetachedSignature, PathBuf)> {
    let signer = signer(key)?;
    let bytes = crate::read(module)?;
    let signature = signer.sign(&bytes);
    let path = signature_path(module);
    crate::write(&path, signature.to_json().as_bytes())?;
    Ok((signature, path))
}
