//! This browser's module-signing key: ECDSA P-256 made by WebCrypto, kept in IndexedDB as a
//! non-extractable `CryptoKey` (the page can sign with it; no script, export or backup can read
//! the private half), and its public half as PEM for devices' `--trusted-keys`.
//!
//! The signature format, key ids and verification are `wasmops_shared::signature`'s; this file
//! only holds the key and asks WebCrypto to sign.

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasmops_shared::signature::{self, DetachedSignature};
use web_sys::{CryptoKey, SubtleCrypto};

use crate::storage::Storage;

/// The `settings` record the key pair is stored under.
pub const KEY_RECORD: &str = "signing-key";

/// The public half of this browser's signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub id: String,
    pub pem: String,
}

struct Pair {
    private: CryptoKey,
    public: CryptoKey,
}

fn subtle() -> Result<SubtleCrypto, String> {
    let window = web_sys::window().ok_or("no window")?;
    let crypto = window.crypto().map_err(|_| {
        "this browser has no WebCrypto (a secure context is needed: https or localhost)".to_string()
    })?;
    Ok(crypto.subtle())
}

fn object(pairs: &[(&str, &str)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        let _ = Reflect::set(&o, &JsValue::from_str(k), &JsValue::from_str(v));
    }
    o
}

fn js_err(during: &str) -> impl Fn(JsValue) -> String + '_ {
    move |e| {
        let text = e
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .or_else(|| e.as_string())
            .unwrap_or_else(|| format!("{e:?}"));
        format!("{during}: {text}")
    }
}

fn key_field(value: &JsValue, name: &str) -> Option<CryptoKey> {
    Reflect::get(value, &JsValue::from_str(name))
        .ok()?
        .dyn_into::<CryptoKey>()
        .ok()
}

async fn pair(storage: &Storage) -> Result<Pair, String> {
    if let Some(stored) = storage
        .get_raw_setting(KEY_RECORD)
        .await
        .map_err(|e| e.to_string())?
    {
        if let (Some(private), Some(public)) =
            (key_field(&stored, "private"), key_field(&stored, "public"))
        {
            return Ok(Pair { private, public });
        }
    }
    let subtle = subtle()?;
    let algorithm = object(&[("name", "ECDSA"), ("namedCurve", "P-256")]);
    let usages = Array::of2(&JsValue::from_str("sign"), &JsValue::from_str("verify"));
    // extractable = false: the private key never leaves WebCrypto (the public one always can).
    let promise = subtle
        .generate_key_with_object(&algorithm, false, &usages)
        .map_err(js_err("making the signing key"))?;
    let made = JsFuture::from(promise)
        .await
        .map_err(js_err("making the signing key"))?;
    let private = key_field(&made, "privateKey").ok_or("WebCrypto returned no private key")?;
    let public = key_field(&made, "publicKey").ok_or("WebCrypto returned no public key")?;
    let record = Object::new();
    let _ = Reflect::set(&record, &"key".into(), &KEY_RECORD.into());
    let _ = Reflect::set(&record, &"private".into(), &private);
    let _ = Reflect::set(&record, &"public".into(), &public);
    // Another tab, or another task of this one, may have made a key since the read above:
    // the first one stored wins and every caller signs with it.
    let stored = storage
        .put_raw_setting_if_absent(KEY_RECORD, record.into())
        .await
        .map_err(|e| e.to_string())?;
    let (Some(private_stored), Some(public_stored)) =
        (key_field(&stored, "private"), key_field(&stored, "public"))
    else {
        return Err(format!(
            "the settings record {KEY_RECORD:?} holds no ECDSA key pair (written by another \
             program?); this browser cannot sign modules until it is removed from its storage"
        ));
    };
    if public_stored == public {
        crate::logs::info("signing", "made this browser's module-signing key (ECDSA P-256, kept non-extractable in this browser)");
    }
    Ok(Pair {
        private: private_stored,
        public: public_stored,
    })
}

async fn spki(public: &CryptoKey) -> Result<Vec<u8>, String> {
    let promise = subtle()?
        .export_key("spki", public)
        .map_err(js_err("reading the public key"))?;
    let der = JsFuture::from(promise)
        .await
        .map_err(js_err("reading the public key"))?;
    Ok(Uint8Array::new(&der).to_vec())
}

/// This browser's public key (made on first use).
pub async fn public_key(storage: &Storage) -> Result<PublicKey, String> {
    let pair = pair(storage).await?;
    let der = spki(&pair.public).await?;
    let pem = signature::spki_to_pem(&der).map_err(|e| e.to_string())?;
    Ok(PublicKey {
        id: signature::key_id(&der),
        pem,
    })
}

/// Signs a module's bytes with this browser's key: the detached signature document's JSON.
pub async fn sign(storage: &Storage, module: &[u8]) -> Result<String, String> {
    let pair = pair(storage).await?;
    let der = spki(&pair.public).await?;
    let algorithm = object(&[("name", "ECDSA"), ("hash", "SHA-256")]);
    let data = Uint8Array::from(module);
    let promise = subtle()?
        .sign_with_object_and_buffer_source(&algorithm, &pair.private, &data)
        .map_err(js_err("signing the module"))?;
    let raw = JsFuture::from(promise)
        .await
        .map_err(js_err("signing the module"))?;
    let raw = Uint8Array::new(&raw).to_vec();
    Ok(DetachedSignature::from_raw(&signature::key_id(&der), module, &raw).to_json())
}

/// The signature stored with a module, or a new one by this browser's key (then stored, so a
/// module is signed once). Modules pulled from MLflow keep the signature they came with.
pub async fn signature_of(storage: &Storage, hash: &str) -> Result<Option<String>, String> {
    let Some(mut module) = storage.module(hash).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if let Some(sig) = &module.signature {
        return Ok(Some(sig.clone()));
    }
    let sig = sign(storage, &module.bytes).await?;
    module.signature = Some(sig.clone());
    storage
        .put_module(&module)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(sig))
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use futures_channel::oneshot;
    use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

    use super::*;

    wasm_bindgen_test_configure!(run_in_browser);

    /// Starts `public_key` as its own task now; the receiver gets its result.
    fn key_in_a_task(storage: Storage) -> oneshot::Receiver<Result<PublicKey, String>> {
        let (tx, rx) = oneshot::channel();
        wasm_bindgen_futures::spawn_local(async move {
            let _ = tx.send(public_key(&storage).await);
        });
        rx
    }

    /// Two first uses at once (the Settings page and a compile, or two tabs) used to make two
    /// keys: each read "no key", made one and stored it, the second overwriting the first, so
    /// a module could be signed by a key the browser no longer had.
    #[wasm_bindgen_test]
    async fn two_first_uses_at_once_share_one_key() {
        // The log (which the first key's making writes to) spawns its writes as the app does.
        let _ = any_spawner::Executor::init_wasm_bindgen();
        idb::Factory::new()
            .unwrap()
            .delete(crate::storage::DB_NAME)
            .unwrap()
            .await
            .unwrap();
        let storage = Storage::open().await.unwrap();
        assert!(storage.get_raw_setting(KEY_RECORD).await.unwrap().is_none());
        let first = key_in_a_task(storage.clone());
        let second = key_in_a_task(storage.clone());
        let (first, second) = (
            first.await.unwrap().unwrap(),
            second.await.unwrap().unwrap(),
        );
        assert_eq!(first, second, "both callers must sign with the same key");
        let after = public_key(&storage).await.unwrap();
        assert_eq!(after, first, "the key stored is the one both callers used");
    }
}
