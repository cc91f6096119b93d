//! `--trusted-keys DIR`: the public keys whose signatures this device accepts.
//!
//! Every `*.pem` file in the directory is one P-256 public key (`-----BEGIN PUBLIC KEY-----`,
//! what the dashboard exports and `openssl ec -pubout` writes); several files are how keys are
//! rotated (trust the new key, re-sign, drop the old file). A file that is not such a key
//! stops the start with its name: a device that meant to check signatures must never quietly
//! trust fewer keys than it was given. Other files (a README, `*.pem~` backups) are ignored.

use std::path::Path;

use wasmops_shared::signature::TrustedKeys;

/// A key file is a few hundred bytes; anything bigger is not one.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// Reads every `*.pem` in `dir` (in name order). Errors name the directory or the file.
pub fn load_dir(dir: &Path) -> Result<TrustedKeys, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "trusted keys: cannot read the directory {}: {e}",
            dir.display()
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("trusted keys: listing {}: {e}", dir.display()))?;
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "pem") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "trusted keys: no `*.pem` public key in {}; with --trusted-keys set the device would trust no module (add the dashboard's public key, or leave --trusted-keys out to accept any module)",
            dir.display()
        ));
    }
    let mut pems = Vec::new();
    for path in &files {
        let size = std::fs::metadata(path)
            .map_err(|e| format!("trusted key {}: {e}", path.display()))?
            .len();
        if size > MAX_KEY_FILE {
            return Err(format!(
                "trusted key {}: {size} bytes is not a public key (at most {MAX_KEY_FILE})",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("trusted key {}: {e}", path.display()))?;
        pems.push((path.display().to_string(), text));
    }
    TrustedKeys::from_pems(
        pems.iter()
            .map(|(name, text)| (name.clone(), text.as_str())),
    )
    .map_err(|e| format!("trusted key {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_file_or_an_empty_dir_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("wasmops-trust-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let err = load_dir(&dir).unwrap_err();
        assert!(err.contains("no `*.pem` public key"), "{err}");
        std::fs::write(dir.join("README"), "not a key, ignored").unwrap();
        std::fs::write(dir.join("broken.pem"), "-----BEGIN PUBLIC KEY-----\nAAAA\n").unwrap();
        let err = load_dir(&dir).unwrap_err();
        assert!(err.contains("broken.pem"), "{err}");
        assert!(err.contains("not a P-256 public key"), "{err}");
        let err = load_dir(&dir.join("missing")).unwrap_err();
        assert!(err.contains("cannot read the directory"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
