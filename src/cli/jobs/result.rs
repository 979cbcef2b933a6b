//! `hearth jobs result`: a finished job's outputs, checked against its digest and written as
//! `.npy`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use hearth::api::pb;
use hearth::gpu::tensor::Tensor;

use super::format::{job_id, job_name};
use crate::cli::client::{grpc, rt, Conn};

/// Writes output tensors as `.npy`: `path` for one, `path.0.npy`, `path.1.npy`, ... for several.
/// Returns the files written.
pub fn write_outputs(path: &Path, outputs: &[Tensor]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::with_capacity(outputs.len());
    for (i, t) in outputs.iter().enumerate() {
        let p = if outputs.len() == 1 {
            path.to_path_buf()
        } else {
            path.with_extension(format!("{i}.npy"))
        };
        std::fs::write(&p, t.to_npy()).with_context(|| format!("writing {}", p.display()))?;
        written.push(p);
    }
    Ok(written)
}

/// Splits a result stream's bytes into the outputs after checking them against the digest.
fn assemble(digest: &str, shapes: &[pb::Tensor], data: &[u8]) -> Result<Vec<Tensor>> {
    let got = hex::encode(Sha256::digest(data));
    if got != digest {
        bail!("refusing the result: its data hashes to sha256 {got}, but the daemon's digest is {digest:?}");
    }
    let mut outputs = Vec::with_capacity(shapes.len());
    let mut at = 0usize;
    for (i, s) in shapes.iter().enumerate() {
        let shape: Vec<usize> = s
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .with_context(|| format!("output {i}: dimension too large"))?;
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|v| v.checked_mul(4))
            .with_context(|| format!("output {i}: shape {shape:?} overflows"))?;
        let bytes = data
            .get(at..at.saturating_add(n))
            .with_context(|| format!("output {i}: the result ends early"))?;
        at += n;
        let values = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        outputs.push(Tensor::new(shape, values).with_context(|| format!("output {i}"))?);
    }
    if at != data.len() {
        bail!(
            "the result has {} bytes past its outputs' shapes",
            data.len() - at
        );
    }
    Ok(outputs)
}

/// Runs `hearth jobs result`.
pub(super) fn run(id: String, out: PathBuf, conn: Conn) -> Result<()> {
    let name = job_name(&id)?;
    rt()?.block_on(async move {
        let mut stream = conn
            .jobs()
            .await?
            .get_job_result(pb::GetJobResultRequest { name: name.clone() })
            .await
            .map_err(grpc)?
            .into_inner();
        let first = stream
            .message()
            .await
            .map_err(grpc)?
            .with_context(|| format!("the daemon sent no result for {name}"))?;
        let mut data = first.data;
        while let Some(chunk) = stream.message().await.map_err(grpc)? {
            data.extend_from_slice(&chunk.data);
        }
        let outputs =
            assemble(&first.digest, &first.outputs, &data).with_context(|| name.clone())?;
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let files = write_outputs(&out.join(format!("job-{}.npy", job_id(&name))), &outputs)?;
        if conn.json {
            println!(
                "{}",
                serde_json::json!({
                    "id": job_id(&name), "name": name, "sha256": first.digest,
                    "files": files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                })
            );
        } else {
            for f in &files {
                println!("wrote {}", f.display());
            }
            println!("sha256: {}", first.digest);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::jobs::submit::shape_of;

    #[test]
    fn a_result_whose_data_does_not_match_its_digest_is_refused() {
        let t = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let u = Tensor::new(vec![3], vec![5.0, 6.0, 7.0]).unwrap();
        let digest = hearth::gpu::tensor::digest(&[t.clone(), u.clone()]);
        let shapes: Vec<pb::Tensor> = [&t, &u]
            .iter()
            .map(|t| pb::Tensor {
                shape: shape_of(t),
                data: Vec::new(),
            })
            .collect();
        let mut data = t.le_bytes();
        data.extend(u.le_bytes());
        assert_eq!(assemble(&digest, &shapes, &data).unwrap(), vec![t, u]);
        data[0] ^= 1;
        let err = assemble(&digest, &shapes, &data).unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        // Right digest, wrong length for the shapes.
        let short = &data[..8];
        let d = hex::encode(Sha256::digest(short));
        assert!(assemble(&d, &shapes, short).is_err());
    }
}
