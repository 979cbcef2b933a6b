//! `hearth mine scan`: scan a nonce range of a block header with a SHA-256d kernel.

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use hearth::mining::header::{decode_hex, display_hash, hash_difficulty, Target, HEADER_LEN};
use hearth::mining::sha256d::{self, Kernel, Prepared};

/// `hearth mine` subcommands.
#[derive(Subcommand)]
pub enum MineAction {
    /// Scan a nonce range of an 80-byte header for hashes that meet a target.
    Scan(ScanArgs),
}

/// `hearth mine scan` options.
#[derive(clap::Args)]
pub struct ScanArgs {
    /// The 80-byte block header, 160 hex digits (its nonce field is ignored).
    #[arg(long)]
    header: String,
    /// First nonce (decimal or 0x-hex).
    #[arg(long, default_value = "0", value_parser = parse_u32)]
    start: u32,
    /// Number of nonces (decimal or 0x-hex); default: up to 0xffffffff.
    #[arg(long, value_parser = parse_u64)]
    count: Option<u64>,
    /// Target as 64 hex digits, display (big-endian) order.
    #[arg(long, conflicts_with = "difficulty")]
    target: Option<String>,
    /// Share difficulty (difficulty 1 = 0x00000000FFFF0000…).
    #[arg(long, allow_negative_numbers = true)]
    difficulty: Option<f64>,
    /// Force a kernel (default: the fastest this CPU supports).
    #[arg(long, value_enum)]
    kernel: Option<Kernel>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    }
    .map_err(|e| format!("{s:?} is not a number: {e}"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    u32::try_from(parse_u64(s)?).map_err(|_| format!("{s} does not fit in 32 bits"))
}

/// Runs a `hearth mine` subcommand.
pub fn run(action: MineAction) -> Result<()> {
    match action {
        MineAction::Scan(args) => mine_scan(&args),
    }
}

fn mine_scan(a: &ScanArgs) -> Result<()> {
    let bytes = decode_hex("--header", &a.header)?;
    let header: [u8; HEADER_LEN] = bytes.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!(
            "--header: expected 80 bytes (160 hex digits), got {} bytes",
            bytes.len()
        )
    })?;
    let target = match (&a.target, a.difficulty) {
        (Some(t), _) => Target::from_hex(t).context("--target")?,
        (None, Some(d)) => Target::from_difficulty(d).context("--difficulty")?,
        (None, None) => {
            let nbits = u32::from_le_bytes([header[72], header[73], header[74], header[75]]);
            Target::from_nbits(nbits).context("the header's nbits")?
        }
    };
    let max = (1u64 << 32) - u64::from(a.start);
    let count = a.count.unwrap_or(max);
    if count > max {
        bail!(
            "--start {} + --count {count} runs past nonce 0xffffffff",
            a.start
        );
    }
    let kernel = a.kernel.unwrap_or_else(Kernel::best);
    let prepared = Prepared::new(&header);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let chunk = count.div_ceil(threads).max(1);
    let t0 = std::time::Instant::now();
    let mut found = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let first = u64::from(a.start) + i * chunk;
                let n = chunk.min((u64::from(a.start) + count).saturating_sub(first));
                s.spawn(move || -> Result<Vec<sha256d::Found>, sha256d::ScanError> {
                    let mut all = Vec::new();
                    let mut done = 0u64;
                    while done < n {
                        let step = (n - done).min(1 << 30) as u32;
                        all.extend(sha256d::scan(
                            kernel,
                            &prepared,
                            &target,
                            (first + done) as u32,
                            step,
                        )?);
                        done += u64::from(step);
                    }
                    Ok(all)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a scan thread panicked"))?
                    .map_err(anyhow::Error::from)
            })
            .collect::<Result<Vec<_>>>()
    })?
    .concat();
    found.sort_by_key(|f| f.nonce);
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        let out = serde_json::json!({
            "kernel": kernel.name(),
            "start": a.start,
            "count": count,
            "target": display_hash(&target.0.to_le_bytes()),
            "seconds": secs,
            "found": found.iter().map(|f| serde_json::json!({
                "nonce": format!("{:08x}", f.nonce),
                "nonce_decimal": f.nonce,
                "hash": display_hash(&f.hash),
                "difficulty": hash_difficulty(&f.hash),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "scanned {count} nonces from {:#010x} with {} in {secs:.2} s ({:.2} MH/s); target {}",
            a.start,
            kernel.name(),
            count as f64 / secs.max(1e-9) / 1e6,
            display_hash(&target.0.to_le_bytes())
        );
        if found.is_empty() {
            println!("no nonce meets the target");
        }
        for f in &found {
            println!(
                "nonce {:08x} ({})  hash {}  difficulty {:.3}",
                f.nonce,
                f.nonce,
                display_hash(&f.hash),
                hash_difficulty(&f.hash)
            );
        }
    }
    Ok(())
}
