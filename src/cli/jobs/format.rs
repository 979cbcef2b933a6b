//! Jobs for people and for scripts: ids, state names, the JSON object, the table and the detail
//! view.

use anyhow::{anyhow, Result};

use hearth::api::convert::unix_s;
use hearth::api::pb;

use crate::cli::client::one_line;

/// `7` or `jobs/7` → `jobs/7`.
pub(super) fn job_name(id: &str) -> Result<String> {
    id.strip_prefix("jobs/")
        .unwrap_or(id)
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .map(|n| format!("jobs/{n}"))
        .ok_or_else(|| anyhow!("{id:?} is not a job id (7 or jobs/7)"))
}

pub(super) fn job_id(name: &str) -> u64 {
    name.strip_prefix("jobs/")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub(super) fn state_of(j: &pb::Job) -> pb::JobState {
    pb::JobState::try_from(j.state).unwrap_or(pb::JobState::Unspecified)
}

pub(super) fn state_name(j: &pb::Job) -> &'static str {
    state_of(j).as_str_name()
}

pub(super) fn is_terminal(j: &pb::Job) -> bool {
    matches!(
        state_of(j),
        pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled
    )
}

fn opt_str(s: &str) -> serde_json::Value {
    if s.is_empty() {
        serde_json::Value::Null
    } else {
        s.into()
    }
}

/// A job as one JSON object; the field names are stable.
pub(super) fn job_json(j: &pb::Job) -> serde_json::Value {
    let lease = j.lease.clone().unwrap_or_default();
    let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(unix_s);
    serde_json::json!({
        "id": job_id(&j.name),
        "name": j.name,
        "state": state_name(j),
        "kernel": j.kernel,
        "tenant": lease.tenant,
        "price_per_gpu_second": lease.price_per_gpu_second,
        "deadline_unix_s": time(&lease.deadline),
        "priority": lease.priority,
        "input_shapes": j.input_shapes.iter().map(|t| t.shape.clone()).collect::<Vec<_>>(),
        "create_unix_s": time(&j.create_time),
        "start_unix_s": time(&j.start_time),
        "end_unix_s": time(&j.end_time),
        "units_done": j.units_done,
        "units_total": j.units_total,
        "gpu_seconds": j.gpu_seconds,
        "energy_joules": j.energy_joules,
        "earned": j.earned,
        "result_digest": opt_str(&j.result_digest),
        "error": opt_str(&j.error),
        "history": j.history.iter().map(|c| serde_json::json!({
            "from": state_str(c.from_state),
            "to": state_str(c.to_state),
            "reason": c.reason,
            "unix_s": time(&c.time),
        })).collect::<Vec<_>>(),
    })
}

/// A proto state number's name; `None` for JOB_STATE_UNSPECIFIED (a submission's "from").
fn state_str(n: i32) -> Option<&'static str> {
    match pb::JobState::try_from(n) {
        Ok(pb::JobState::Unspecified) | Err(_) => None,
        Ok(s) => Some(s.as_str_name()),
    }
}

fn progress(j: &pb::Job) -> String {
    if j.units_total > 0 {
        format!("{}/{}", j.units_done, j.units_total)
    } else {
        j.units_done.to_string()
    }
}

/// The table's header line.
pub(super) fn table_header() -> String {
    format!(
        "{:>6}  {:<9}  {:<11}  {:<12}  {:>10}  {:>8}  {:>9}  {:>10}",
        "ID", "STATE", "KERNEL", "TENANT", "UNITS", "GPU-S", "ENERGY J", "EARNED"
    )
}

/// One table row.
pub(super) fn job_row(j: &pb::Job) -> String {
    let tenant = j.lease.as_ref().map_or("", |l| l.tenant.as_str());
    let mut row = format!(
        "{:>6}  {:<9}  {:<11}  {:<12}  {:>10}  {:>8.3}  {:>9.1}  {:>10.6}",
        job_id(&j.name),
        state_name(j),
        j.kernel,
        tenant,
        progress(j),
        j.gpu_seconds,
        j.energy_joules,
        j.earned
    );
    if !j.error.is_empty() {
        row.push_str(&format!("  error: {}", one_line(&j.error)));
    }
    row
}

fn when(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map_or("-".into(), |d| {
            d.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        })
}

/// One job, for people.
pub(super) fn print_job(j: &pb::Job) {
    let lease = j.lease.clone().unwrap_or_default();
    println!("{}  {}  {}", j.name, state_name(j), j.kernel);
    let shapes: Vec<String> = j
        .input_shapes
        .iter()
        .map(|t| format!("{:?}", t.shape))
        .collect();
    println!("  inputs     {}", shapes.join(" "));
    println!(
        "  lease      tenant {}  price {}/GPU-s  deadline {}  priority {}",
        lease.tenant,
        lease.price_per_gpu_second,
        when(&lease.deadline),
        lease.priority
    );
    println!(
        "  times      created {}  started {}  ended {}",
        when(&j.create_time),
        when(&j.start_time),
        when(&j.end_time)
    );
    println!(
        "  usage      {} units  {:.3} GPU-s  {:.1} J  earned {:.6}",
        progress(j),
        j.gpu_seconds,
        j.energy_joules,
        j.earned
    );
    if !j.error.is_empty() {
        println!("  error      {}", one_line(&j.error));
    }
    for (i, c) in j.history.iter().enumerate() {
        let label = if i == 0 { "history" } else { "" };
        let to = state_str(c.to_state).unwrap_or("?");
        let step = match state_str(c.from_state) {
            Some(from) => format!("{from} -> {to}"),
            None => to.to_string(),
        };
        println!(
            "  {label:<10} {}  {step:<21}  {}",
            when(&c.time),
            one_line(&c.reason)
        );
    }
    if !j.result_digest.is_empty() {
        println!("sha256: {}", j.result_digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_take_both_forms() {
        assert_eq!(job_name("7").unwrap(), "jobs/7");
        assert_eq!(job_name("jobs/7").unwrap(), "jobs/7");
        assert!(job_name("0").is_err() && job_name("x").is_err() && job_name("jobs/").is_err());
    }
}
