//! `hearth token`: API tokens in the data dir (add, list, revoke); no daemon needed.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Subcommand;

use hearth::api::auth::{Role, TokenStore};

use super::client::data_dir;

/// `hearth token`.
#[derive(Subcommand)]
pub enum TokenAction {
    /// Make a token; it is printed once.
    Add {
        /// owner, tenant or viewer.
        #[arg(long)]
        role: Role,
        /// The tenant a tenant token acts for.
        #[arg(long)]
        tenant: Option<String>,
        /// The data dir.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// List tokens (ids and roles; never the tokens).
    List {
        /// The data dir.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id (or a unique prefix of at least 4 characters).
    Revoke {
        /// The token's id.
        id: String,
        /// The data dir.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// `hearth token add|list|revoke`.
pub fn run(action: TokenAction) -> Result<()> {
    match action {
        TokenAction::Add {
            role,
            tenant,
            data_dir: d,
        } => {
            let dir = data_dir(&d)?;
            std::fs::create_dir_all(&dir)?;
            let (token, e) = TokenStore::new(&dir).add(role, tenant)?;
            println!("{token}");
            eprintln!(
                "token {} ({:?}{}) added; it is shown only this once",
                e.id,
                e.role,
                e.tenant
                    .map(|t| format!(", tenant {t}"))
                    .unwrap_or_default()
            );
            Ok(())
        }
        TokenAction::List { data_dir: d, json } => {
            let list = TokenStore::new(&data_dir(&d)?).list()?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|e| serde_json::json!({"id": e.id, "role": e.role, "tenant": e.tenant, "created_unix_s": e.created_unix_s}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for e in list {
                    println!(
                        "{}  {:<7}  {}",
                        e.id,
                        format!("{:?}", e.role).to_lowercase(),
                        e.tenant.unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        TokenAction::Revoke { id, data_dir: d } => {
            if TokenStore::new(&data_dir(&d)?).revoke(&id)? {
                println!("token {id} revoked");
                Ok(())
            } else {
                bail!("no token with id {id}")
            }
        }
    }
}
