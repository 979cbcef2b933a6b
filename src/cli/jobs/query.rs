//! `hearth jobs list|get|cancel|watch`, and following a job to its end with a progress bar.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use hearth::api::convert::state_to;
use hearth::api::pb;
use hearth::jobs::JobState;

use super::format::{
    is_terminal, job_id, job_json, job_name, job_row, print_job, state_name, state_of, table_header,
};
use crate::cli::client::{grpc, one_line, rt, Conn, JobsClient};

/// The progress bar of `watch` and `submit --wait` (drawn on stderr only when it is a terminal;
/// cleared when dropped).
fn progress_bar(name: &str) -> Result<indicatif::ProgressBar> {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};
    let style = ProgressStyle::with_template(
        "{spinner} {prefix} [{bar:30}] {pos}/{len} units  {msg} ({elapsed})",
    )
    .context("the progress bar's template")?
    .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_prefix(name.to_string())
        .with_finish(ProgressFinish::AndClear);
    bar.enable_steady_tick(Duration::from_millis(120));
    Ok(bar)
}

fn update_bar(bar: &indicatif::ProgressBar, j: &pb::Job) {
    if j.units_total > 0 {
        bar.set_length(j.units_total);
    }
    bar.set_position(j.units_done);
    bar.set_message(format!(
        "{}  {:.2} GPU-s  {:.1} J",
        state_name(j),
        j.gpu_seconds,
        j.energy_joules
    ));
}

/// Follows `name` until it ends: a progress bar (none with `--json`), then the final job; fails
/// unless it SUCCEEDED.
pub(super) async fn follow(c: &mut JobsClient, name: &str, json: bool) -> Result<()> {
    let mut stream = c
        .watch_job(pb::WatchJobRequest { name: name.into() })
        .await
        .map_err(grpc)?
        .into_inner();
    let bar = if json {
        None
    } else {
        Some(progress_bar(name)?)
    };
    let mut last: Option<pb::Job> = None;
    while let Some(ev) = stream.message().await.map_err(grpc)? {
        if let Some(j) = ev.job {
            if let Some(b) = &bar {
                update_bar(b, &j);
            }
            last = Some(j);
        }
    }
    drop(bar);
    let job = match last {
        Some(j) if is_terminal(&j) => j,
        // The stream ended early (the daemon is stopping): ask once more.
        _ => c
            .get_job(pb::GetJobRequest { name: name.into() })
            .await
            .map_err(grpc)?
            .into_inner(),
    };
    if !is_terminal(&job) {
        bail!(
            "{name} is still {} but the daemon closed the stream (stopping?); follow it again with `hearth jobs watch {}`",
            state_name(&job),
            job_id(name)
        );
    }
    if json {
        println!("{}", job_json(&job));
    } else {
        println!("{}", job_row(&job));
        if !job.result_digest.is_empty() {
            println!("sha256: {}", job.result_digest);
        }
    }
    if state_of(&job) != pb::JobState::Succeeded {
        let why = if job.error.is_empty() {
            String::new()
        } else {
            format!(": {}", one_line(&job.error))
        };
        bail!("{name} ended {}{why}", state_name(&job));
    }
    Ok(())
}

/// `hearth jobs list`.
pub(super) fn list(state: Option<JobState>, conn: Conn) -> Result<()> {
    rt()?.block_on(async move {
        let mut c = conn.jobs().await?;
        let state = state.map_or(0, |s| state_to(s) as i32);
        let mut page_token = String::new();
        if !conn.json {
            println!("{}", table_header());
        }
        loop {
            let r = c
                .list_jobs(pb::ListJobsRequest {
                    page_size: 1000,
                    page_token,
                    state,
                })
                .await
                .map_err(grpc)?
                .into_inner();
            for j in &r.jobs {
                if conn.json {
                    println!("{}", job_json(j));
                } else {
                    println!("{}", job_row(j));
                }
            }
            if r.next_page_token.is_empty() {
                return Ok(());
            }
            page_token = r.next_page_token;
        }
    })
}

/// `hearth jobs get`, or with `cancel` `hearth jobs cancel`: the job as it is (after the cancel).
pub(super) fn get_or_cancel(id: String, conn: Conn, cancel: bool) -> Result<()> {
    let name = job_name(&id)?;
    rt()?.block_on(async move {
        let mut c = conn.jobs().await?;
        let j = if cancel {
            c.cancel_job(pb::CancelJobRequest { name }).await
        } else {
            c.get_job(pb::GetJobRequest { name }).await
        }
        .map_err(grpc)?
        .into_inner();
        if conn.json {
            println!("{}", job_json(&j));
        } else if cancel {
            println!("{} {}", j.name, state_name(&j));
        } else {
            print_job(&j);
        }
        Ok(())
    })
}

/// `hearth jobs watch`.
pub(super) fn watch(id: String, conn: Conn) -> Result<()> {
    let name = job_name(&id)?;
    rt()?.block_on(async move {
        let mut c = conn.jobs().await?;
        follow(&mut c, &name, conn.json).await
    })
}
