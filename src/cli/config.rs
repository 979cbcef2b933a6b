//! `hearth config`: print the defaults, or check a config file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use hearth::config::Config;

/// `hearth config` subcommands.
#[derive(Subcommand)]
pub enum ConfigAction {
    /// Print the built-in defaults as TOML.
    PrintDefault,
    /// Load a config (with HEARTH_* overrides), validate it and print the result.
    Check {
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Runs a `hearth config` subcommand.
pub fn run(action: ConfigAction) -> Result<()> {
    match action {
        ConfigAction::PrintDefault => {
            print!("{}", Config::default_toml());
            Ok(())
        }
        ConfigAction::Check { config } => {
            let cfg = Config::load(config.as_deref(), std::env::vars())?;
            print!("{}", toml::to_string_pretty(&cfg)?);
            Ok(())
        }
    }
}
