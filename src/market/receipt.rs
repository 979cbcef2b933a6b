//! Device keys and signed receipts: what a tenant gets as proof that a device did its job.
//!
//! Each device has an ed25519 key, created on first start and kept in a file only its owner can
//! read. Its device id is derived from the public key, so an id cannot be claimed by another key.
//! A receipt is signed over its canonical JSON (the struct's fields in declaration order).

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Why a key cannot be loaded or a receipt does not hold.
#[derive(Debug, Error)]
pub enum ReceiptError {
    /// The key file cannot be read or written.
    #[error("device key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file holds no valid key.
    #[error("device key {path}: {msg}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// The receipt is malformed or its signature does not verify.
    #[error("receipt for job {job}: {msg}")]
    Invalid {
        /// The job the receipt claims.
        job: String,
        /// What does not hold.
        msg: String,
    },
}

/// A device's signing key.
pub struct DeviceKey {
    key: SigningKey,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKey")
            .field("device_id", &self.device_id())
            .finish_non_exhaustive()
    }
}

/// The device id of a public key: `dev-` and the first 16 hex digits of its SHA-256.
pub fn device_id_of(public: &VerifyingKey) -> String {
    let h = Sha256::digest(public.as_bytes());
    format!("dev-{}", hex::encode(&h[..8]))
}

impl DeviceKey {
    /// A new random key (not stored).
    pub fn generate() -> Self {
        Self {
            key: SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
        }
    }

    /// Loads the key in `path` (64 hex digits), or creates one there (mode 0600) if the file
    /// does not exist. Two processes racing to create it end up with the same key.
    pub fn load_or_create(path: &Path) -> Result<Self, ReceiptError> {
        let io = |source| ReceiptError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let key = Self::generate();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(path) {
            Ok(mut f) => {
                f.write_all(format!("{}\n", hex::encode(key.key.to_bytes())).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(io)?;
                tracing::info!(path = %path.display(), device = %key.device_id(), "created the device key");
                Ok(key)
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(io)?;
                Self::parse(path, &text)
            }
            Err(e) => Err(io(e)),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<Self, ReceiptError> {
        let bad = |msg: String| ReceiptError::BadKey {
            path: path.to_path_buf(),
            msg,
        };
        let bytes = hex::decode(text.trim()).map_err(|e| bad(format!("not hex: {e}")))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| bad(format!("{} bytes, want 32", b.len())))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The public key, hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// This device's id (derived from the public key).
    pub fn device_id(&self) -> String {
        device_id_of(&self.key.verifying_key())
    }

    /// Signs `receipt`, filling in its device id and public key.
    pub fn sign(&self, mut receipt: Receipt) -> SignedReceipt {
        receipt.device_id = self.device_id();
        receipt.public_key = self.public_hex();
        let sig = self.key.sign(&receipt.canonical());
        SignedReceipt {
            receipt,
            signature: hex::encode(sig.to_bytes()),
        }
    }
}

/// What a device attests about one finished job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The market job id.
    pub job_id: String,
    /// Which copy of a redundant job this was.
    pub replica: u8,
    /// The device that ran it.
    pub device_id: String,
    /// The device's ed25519 public key, hex.
    pub public_key: String,
    /// SHA-256 of the outputs (their f32 data, little-endian, in order), hex.
    pub result_sha256: String,
    /// Energy the job drew on this device (the last run: earlier runs elsewhere are theirs), J.
    pub joules: f64,
    /// GPU-busy seconds of that run.
    pub gpu_seconds: f64,
    /// Units the job had; `resumed_at` of them were done before this device took it.
    pub units: u64,
    /// Units done by earlier devices (from the checkpoint it resumed).
    pub resumed_at: u64,
    /// When it finished, Unix milliseconds.
    pub finished_unix_ms: u64,
}

impl Receipt {
    /// The signed bytes: the receipt's JSON, fields in declaration order.
    pub fn canonical(&self) -> Vec<u8> {
        // Serialising a struct of strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A receipt with the device's signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReceipt {
    /// What is attested.
    pub receipt: Receipt,
    /// ed25519 signature over [`Receipt::canonical`], hex.
    pub signature: String,
}

impl SignedReceipt {
    /// Checks that the device id belongs to the public key and that the signature verifies.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        let r = &self.receipt;
        let bad = |msg: String| ReceiptError::Invalid {
            job: r.job_id.clone(),
            msg,
        };
        let pk: [u8; 32] = hex::decode(&r.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("public_key is not 32 bytes of hex".into()))?;
        let vk = VerifyingKey::from_bytes(&pk).map_err(|e| bad(format!("public_key: {e}")))?;
        if device_id_of(&vk) != r.device_id {
            return Err(bad(format!(
                "device_id {} does not belong to public key {}",
                r.device_id, r.public_key
            )));
        }
        let sig: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("signature is not 64 bytes of hex".into()))?;
        vk.verify(&r.canonical(), &Signature::from_bytes(&sig))
            .map_err(|_| {
                bad(format!(
                    "signature does not verify for device {}",
                    r.device_id
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            job_id: "j1".into(),
            replica: 0,
            device_id: String::new(),
            public_key: String::new(),
            result_sha256: "ab".repeat(32),
            joules: 12.5,
            gpu_seconds: 0.25,
            units: 10,
            resumed_at: 3,
            finished_unix_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_signed_receipt_verifies_and_any_change_breaks_it() {
        let key = DeviceKey::generate();
        let signed = key.sign(receipt());
        signed.verify().unwrap();
        assert_eq!(signed.receipt.device_id, key.device_id());

        let mut t = signed.clone();
        t.receipt.result_sha256 = "cd".repeat(32);
        assert!(t
            .verify()
            .unwrap_err()
            .to_string()
            .contains("does not verify"));
        let mut t = signed.clone();
        t.receipt.joules = 1.0;
        assert!(t.verify().is_err());
        // Another key's signature over the same receipt, claiming the first device.
        let other = DeviceKey::generate().sign(receipt());
        let mut t = signed.clone();
        t.signature = other.signature.clone();
        assert!(t.verify().is_err());
        // A key swapped in without its id.
        let mut t = other.clone();
        t.receipt.device_id = key.device_id();
        assert!(t
            .verify()
            .unwrap_err()
            .to_string()
            .contains("does not belong"));
    }

    #[test]
    fn a_receipt_verifies_after_a_json_round_trip_whatever_its_floats() {
        let key = DeviceKey::generate();
        for j in [
            0.1 + 0.2,
            1e-300,
            123_456.789_012_345_67,
            2.0f64.powi(60) / 3.0,
        ] {
            let mut r = receipt();
            r.joules = j;
            r.gpu_seconds = j / 7.0;
            let json = serde_json::to_string(&key.sign(r)).unwrap();
            let back: SignedReceipt = serde_json::from_str(&json).unwrap();
            back.verify().unwrap();
        }
    }

    #[test]
    fn the_key_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/device.key");
        let a = DeviceKey::load_or_create(&path).unwrap();
        let b = DeviceKey::load_or_create(&path).unwrap();
        assert_eq!(a.public_hex(), b.public_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "zz").unwrap();
        assert!(DeviceKey::load_or_create(&path).is_err());
    }
}
