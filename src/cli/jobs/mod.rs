//! `hearth jobs ...`: leased jobs as a client of the running daemon's `Jobs` gRPC service (the
//! daemon is the job store's only writer). Also the kernel arguments `hearth gpu run` shares, and
//! the `--spec job.toml` job file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use hearth::jobs::JobState;

use super::client::Conn;

mod args;
mod format;
mod query;
mod result;
mod spec;
mod submit;

pub use args::JobArgs;
pub use result::write_outputs;

/// `hearth jobs` subcommands.
#[derive(Subcommand)]
pub enum JobsAction {
    /// Submit a job to the running daemon; it is stored durably before this returns.
    Submit {
        /// The kernel and its inputs (or --spec FILE).
        #[command(flatten)]
        job: Box<JobArgs>,
        /// Who pays (A-Z a-z 0-9 . _ -; default owner). Tenant tokens always act for their own.
        #[arg(long)]
        tenant: Option<String>,
        /// Price per GPU-second (default 0).
        #[arg(long)]
        price: Option<f64>,
        /// Deadline, seconds from now.
        #[arg(long, value_name = "SECONDS")]
        deadline_in: Option<f64>,
        /// Higher runs first among equal deadlines (default 0).
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i32>,
        /// Follow the job with a progress bar until it ends; fail unless it SUCCEEDED.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List jobs, in submission order.
    List {
        /// Only jobs in this state (QUEUED, RUNNING, PAUSED, SUCCEEDED, FAILED, CANCELLED).
        #[arg(long)]
        state: Option<JobState>,
        #[command(flatten)]
        conn: Conn,
    },
    /// One job: state, progress, usage, lease, times and result digest.
    Get {
        /// The job id (7 or jobs/7).
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Cancel a job that has not ended (a running one is stopped at its next chunk).
    Cancel {
        /// The job id (7 or jobs/7).
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Follow a job with a progress bar until it ends; fail unless it SUCCEEDED.
    Watch {
        /// The job id (7 or jobs/7).
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Fetch a finished job's outputs, check their SHA-256 and write them as .npy into DIR.
    Result {
        /// The job id (7 or jobs/7).
        id: String,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs a `hearth jobs` command against the daemon.
pub fn run(action: JobsAction) -> Result<()> {
    match action {
        JobsAction::Submit {
            job,
            tenant,
            price,
            deadline_in,
            priority,
            wait,
            conn,
        } => submit::run(job, tenant, price, deadline_in, priority, wait, conn),
        JobsAction::List { state, conn } => query::list(state, conn),
        JobsAction::Get { id, conn } => query::get_or_cancel(id, conn, false),
        JobsAction::Cancel { id, conn } => query::get_or_cancel(id, conn, true),
        JobsAction::Watch { id, conn } => query::watch(id, conn),
        JobsAction::Result { id, out, conn } => result::run(id, out, conn),
    }
}
