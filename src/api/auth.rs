//! Bearer tokens with roles. Tokens are stored only as SHA-256 hashes, in `tokens.json` in the
//! data dir (mode 0600, written atomically); the owner token created at first start is also
//! written in plain text to `owner.token` (mode 0600), which the CLI reads by default.
//!
//! Roles: **owner** may do everything; **tenant** only job calls, on its own jobs; **viewer**
//! only reads the status. The daemon re-reads `tokens.json` when it changes, so `hearth token
//! add` and `revoke` take effect on the next call.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The token file in the data dir.
pub const TOKENS_FILE: &str = "tokens.json";
/// The owner's plain-text token in the data dir.
pub const OWNER_TOKEN_FILE: &str = "owner.token";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Owner,
    /// Job calls on its own jobs.
    Tenant,
    /// Read-only status.
    Viewer,
}

/// Who is calling, as its token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's role.
    pub role: Role,
    /// The tenant a tenant token acts for.
    pub tenant: Option<String>,
    /// The token's id (the first 12 hex digits of its hash).
    pub token_id: String,
}

/// A stored token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// The first 12 hex digits of the hash: how `list` and `revoke` name it.
    pub id: String,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// Its role.
    pub role: Role,
    /// The tenant, for tenant tokens.
    pub tenant: Option<String>,
    /// When it was made, unix seconds.
    pub created_unix_s: f64,
}

/// A token operation failed.
#[derive(Debug, Error)]
pub enum AuthError {
    /// File I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The token file is not valid JSON.
    #[error("{path}: {msg}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A request was invalid; names the field.
    #[error("{field}: {msg}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        msg: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuthError + '_ {
    move |source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token file of a data dir.
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: PathBuf,
}

impl TokenStore {
    /// The tokens of data dir `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(TOKENS_FILE)
    }

    /// Every stored token.
    pub fn list(&self) -> Result<Vec<TokenEntry>, AuthError> {
        self.parse(self.read()?.as_deref())
    }

    /// The token file's bytes (`None` when there is none yet).
    fn read(&self) -> Result<Option<Vec<u8>>, AuthError> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The tokens in the file's bytes `bytes`.
    fn parse(&self, bytes: Option<&[u8]>) -> Result<Vec<TokenEntry>, AuthError> {
        match bytes {
            Some(b) => serde_json::from_slice(b).map_err(|e| AuthError::Corrupt {
                path: self.path(),
                msg: e.to_string(),
            }),
            None => Ok(Vec::new()),
        }
    }

    fn write(&self, entries: &[TokenEntry]) -> Result<(), AuthError> {
        let json = serde_json::to_vec_pretty(entries).map_err(|e| AuthError::Corrupt {
            path: self.path(),
            msg: e.to_string(),
        })?;
        write_private(&self.dir, TOKENS_FILE, &json)
    }

    /// Makes a new token; returns it in plain text (shown once) with its entry.
    pub fn add(
        &self,
        role: Role,
        tenant: Option<String>,
    ) -> Result<(String, TokenEntry), AuthError> {
        match (role, &tenant) {
            (Role::Tenant, None) => {
                return Err(AuthError::Invalid {
                    field: "tenant",
                    msg: "a tenant token needs --tenant NAME".into(),
                })
            }
            (Role::Tenant, Some(t)) => {
                let lease = crate::jobs::Lease {
                    tenant: t.clone(),
                    price_per_gpu_second: 0.0,
                    deadline_unix_s: None,
                    priority: 0,
                };
                lease.validate().map_err(|e| AuthError::Invalid {
                    field: "tenant",
                    msg: e.msg,
                })?;
            }
            (_, Some(_)) => {
                return Err(AuthError::Invalid {
                    field: "tenant",
                    msg: "only tenant tokens name a tenant".into(),
                })
            }
            _ => {}
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = format!("hth_{}", hex::encode(bytes));
        let sha256 = hash_token(&token);
        let entry = TokenEntry {
            id: sha256[..12].to_string(),
            sha256,
            role,
            tenant,
            created_unix_s: crate::jobs::store::now_unix_s(),
        };
        let mut all = self.list()?;
        all.push(entry.clone());
        self.write(&all)?;
        Ok((token, entry))
    }

    /// Removes the token with id `id` (or a unique prefix of it); returns whether one was.
    pub fn revoke(&self, id: &str) -> Result<bool, AuthError> {
        if id.len() < 4 {
            return Err(AuthError::Invalid {
                field: "id",
                msg: "give at least 4 characters of the token id".into(),
            });
        }
        let mut all = self.list()?;
        let n = all.iter().filter(|e| e.id.starts_with(id)).count();
        if n > 1 {
            return Err(AuthError::Invalid {
                field: "id",
                msg: format!("{id:?} matches {n} tokens"),
            });
        }
        all.retain(|e| !e.id.starts_with(id));
        if n == 1 {
            self.write(&all)?;
        }
        Ok(n == 1)
    }

    /// At first start: makes an owner token and writes it to `owner.token` (mode 0600), unless
    /// an owner token exists. Returns the file's path when it made one.
    pub fn ensure_owner(&self) -> Result<Option<PathBuf>, AuthError> {
        if self.list()?.iter().any(|e| e.role == Role::Owner) {
            return Ok(None);
        }
        let (token, _) = self.add(Role::Owner, None)?;
        write_private(&self.dir, OWNER_TOKEN_FILE, format!("{token}\n").as_bytes())?;
        Ok(Some(self.dir.join(OWNER_TOKEN_FILE)))
    }
}

/// Writes `dir/name` atomically with mode 0600.
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), AuthError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(())
}

/// The token file as last parsed: its bytes and its tokens by hash.
type Parsed = (Option<Vec<u8>>, HashMap<String, TokenEntry>);

/// Checks bearer tokens against the token file, re-parsing it when its contents change.
///
/// The file is read on every check and compared with the bytes last parsed: its mtime is not
/// enough, since filesystems stamp it from a coarse clock and a `revoke` right after an `add`
/// can leave it unchanged (the revoked token would then stay valid).
#[derive(Debug)]
pub struct Authenticator {
    store: TokenStore,
    cache: Mutex<Option<Parsed>>,
}

impl Authenticator {
    /// An authenticator over `store`.
    pub fn new(store: TokenStore) -> Self {
        Self {
            store,
            cache: Mutex::new(None),
        }
    }

    /// The caller an `authorization` header value names, or why not (a gRPC status).
    pub fn check(&self, header: Option<&str>) -> Result<Caller, tonic::Status> {
        let Some(value) = header else {
            return Err(tonic::Status::unauthenticated(
                "missing `authorization: Bearer TOKEN` metadata",
            ));
        };
        let Some(token) = value.strip_prefix("Bearer ") else {
            return Err(tonic::Status::unauthenticated(
                "authorization must be `Bearer TOKEN`",
            ));
        };
        let hash = hash_token(token.trim());
        let unreadable = |e: AuthError| {
            tracing::error!(error = %e, "cannot read the token file");
            tonic::Status::unavailable("the token file is unreadable")
        };
        let bytes = self.store.read().map_err(unreadable)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.as_ref().is_none_or(|(b, _)| *b != bytes) {
            let list = self.store.parse(bytes.as_deref()).map_err(unreadable)?;
            *cache = Some((
                bytes,
                list.into_iter().map(|e| (e.sha256.clone(), e)).collect(),
            ));
        }
        let tokens = &cache.as_ref().expect("parsed above").1;
        match tokens.get(&hash) {
            Some(e) => Ok(Caller {
                role: e.role,
                tenant: e.tenant.clone(),
                token_id: e.id.clone(),
            }),
            None => Err(tonic::Status::unauthenticated("unknown or revoked token")),
        }
    }
}

impl Caller {
    /// Allows only `roles`; otherwise PERMISSION_DENIED naming the role needed.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), tonic::Status> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(tonic::Status::permission_denied(format!(
                "{what} needs the {} role; this token is {:?}",
                roles
                    .iter()
                    .map(|r| format!("{r:?}").to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" or "),
                self.role
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hashed_checked_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let owner_file = store.ensure_owner().unwrap().unwrap();
        assert!(store.ensure_owner().unwrap().is_none(), "only once");
        let mode = fs::metadata(&owner_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let owner = fs::read_to_string(&owner_file).unwrap();
        let text = fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!text.contains(owner.trim()), "no plain-text token stored");
        let auth = Authenticator::new(store.clone());
        let c = auth
            .check(Some(&format!("Bearer {}", owner.trim())))
            .unwrap();
        assert_eq!(c.role, Role::Owner);
        let (t, e) = store.add(Role::Tenant, Some("acme".into())).unwrap();
        let c = auth.check(Some(&format!("Bearer {t}"))).unwrap();
        assert_eq!((c.role, c.tenant.as_deref()), (Role::Tenant, Some("acme")));
        assert!(store.revoke(&e.id).unwrap());
        // A revoked token fails at once (the file changed, even if its mtime did not).
        let err = auth.check(Some(&format!("Bearer {t}"))).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert_eq!(
            auth.check(None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert!(store.add(Role::Tenant, None).is_err());
        assert!(store.add(Role::Viewer, Some("x".into())).is_err());
        assert!(store.add(Role::Tenant, Some("bad name".into())).is_err());
    }
}
