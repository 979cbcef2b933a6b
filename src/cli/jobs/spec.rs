//! The `--spec job.toml` job file: the kernel and its parameters, its inputs and its lease
//! fields, with the file and the key named in every error.

use std::path::Path;

use anyhow::{anyhow, Context, Result};

use hearth::gpu::job::{GpuJob, KernelSpec};

use super::args::{builtin_kernel, inputs_of, read_npy, FileLease, KERNELS};
use crate::cli::client::one_line;

/// A job file's values, read with its path and the key in every error.
struct SpecReader<'a> {
    path: &'a Path,
}

impl SpecReader<'_> {
    fn err(&self, key: &str, msg: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("{}: key `{key}`: {msg}", self.path.display())
    }

    fn unknown_keys(&self, t: &toml::Table, prefix: &str, known: &[&str]) -> Result<()> {
        match t.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(self.err(
                &format!("{prefix}{k}"),
                format!("unknown key (known: {})", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    fn str(&self, t: &toml::Table, key: &str, full: &str) -> Result<Option<String>> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.err(full, format!("expected a string, got {}", v.type_str()))),
        }
    }

    fn f64(&self, t: &toml::Table, key: &str, full: &str) -> Result<Option<f64>> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Float(f)) => Ok(Some(*f)),
            Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(v) => Err(self.err(full, format!("expected a number, got {}", v.type_str()))),
        }
    }

    fn int<T: TryFrom<i64>>(&self, t: &toml::Table, key: &str, full: &str) -> Result<Option<T>> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => T::try_from(*i)
                .map(Some)
                .map_err(|_| self.err(full, format!("{i} is out of range"))),
            Some(v) => Err(self.err(full, format!("expected an integer, got {}", v.type_str()))),
        }
    }

    fn list<T>(
        &self,
        t: &toml::Table,
        key: &str,
        full: &str,
        item: impl Fn(&toml::Value) -> Option<T>,
        what: &str,
    ) -> Result<Option<Vec<T>>> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    item(v).ok_or_else(|| {
                        self.err(
                            &format!("{full}[{i}]"),
                            format!("expected {what}, got {}", v.type_str()),
                        )
                    })
                })
                .collect::<Result<Vec<T>>>()
                .map(Some),
            Some(v) => Err(self.err(
                full,
                format!("expected an array of {what}s, got {}", v.type_str()),
            )),
        }
    }
}

fn nonneg<T: TryFrom<i64>>(v: &toml::Value) -> Option<T> {
    v.as_integer().and_then(|i| T::try_from(i).ok())
}

/// Reads a job file: the kernel and its parameters, its inputs (paths relative to the file, or
/// `size` for random ones) and its lease fields. Errors name the file and the key.
pub fn load_spec(path: &Path) -> Result<(GpuJob, FileLease)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        anyhow!(
            "{}: not valid TOML: {}",
            path.display(),
            one_line(e.message())
        )
    })?;
    let r = SpecReader { path };
    r.unknown_keys(
        &doc,
        "",
        &[
            "kernel",
            "inputs",
            "size",
            "tenant",
            "price",
            "deadline_in",
            "priority",
        ],
    )?;
    let base = path.parent().unwrap_or(Path::new("."));
    let empty = toml::Table::new();
    let (ty, kt) = match doc.get("kernel") {
        None => return Err(r.err("kernel", format!("required: one of {KERNELS}"))),
        Some(toml::Value::String(s)) => (s.clone(), &empty),
        Some(toml::Value::Table(t)) => {
            r.unknown_keys(
                t,
                "kernel.",
                &[
                    "type",
                    "op",
                    "lr",
                    "batch",
                    "epochs",
                    "wgsl",
                    "source",
                    "entry",
                    "workgroups",
                    "outputs",
                ],
            )?;
            let ty = r
                .str(t, "type", "kernel.type")?
                .ok_or_else(|| r.err("kernel.type", format!("required: one of {KERNELS}")))?;
            (ty, t)
        }
        Some(v) => {
            return Err(r.err(
                "kernel",
                format!("expected a kernel name or a table, got {}", v.type_str()),
            ))
        }
    };
    // The keys each kernel takes besides `type`.
    let takes: &[&str] = match ty.as_str() {
        "elementwise" => &["op"],
        "mlp_train" => &["lr", "batch", "epochs"],
        "custom" => &["wgsl", "source", "entry", "workgroups", "outputs"],
        _ => &[],
    };
    if let Some(k) = kt
        .keys()
        .find(|k| k.as_str() != "type" && !takes.contains(&k.as_str()))
    {
        return Err(r.err(&format!("kernel.{k}"), format!("not a parameter of {ty}")));
    }
    let kernel = if ty == "elementwise" {
        let op = r.str(kt, "op", "kernel.op")?.ok_or_else(|| {
            r.err(
                "kernel.op",
                "required for elementwise: add, mul, relu or gelu",
            )
        })?;
        match builtin_kernel(&op, 0.0, 0, 0) {
            Some(k @ KernelSpec::Elementwise { .. }) => k,
            _ => return Err(r.err("kernel.op", format!("{op:?}: add, mul, relu or gelu"))),
        }
    } else if ty == "custom" {
        let wgsl = match (
            r.str(kt, "wgsl", "kernel.wgsl")?,
            r.str(kt, "source", "kernel.source")?,
        ) {
            (Some(file), None) => {
                let p = base.join(file);
                std::fs::read_to_string(&p)
                    .map_err(|e| r.err("kernel.wgsl", format!("reading {}: {e}", p.display())))?
            }
            (None, Some(src)) => src,
            (Some(_), Some(_)) => {
                return Err(r.err(
                    "kernel.source",
                    "give kernel.wgsl (a file) or kernel.source, not both",
                ))
            }
            (None, None) => {
                return Err(r.err(
                    "kernel.wgsl",
                    "required for custom: a WGSL file (or kernel.source, the WGSL inline)",
                ))
            }
        };
        let workgroups = r
            .list(
                kt,
                "workgroups",
                "kernel.workgroups",
                nonneg::<u32>,
                "an integer",
            )?
            .unwrap_or_else(|| vec![1, 1, 1]);
        let [x, y, z] = workgroups[..] else {
            return Err(r.err("kernel.workgroups", "give [x, y, z]"));
        };
        KernelSpec::Custom {
            wgsl,
            entry_point: r
                .str(kt, "entry", "kernel.entry")?
                .unwrap_or_else(|| "main".into()),
            workgroups: [x, y, z],
            outputs: r
                .list(
                    kt,
                    "outputs",
                    "kernel.outputs",
                    nonneg::<usize>,
                    "an integer",
                )?
                .ok_or_else(|| {
                    r.err(
                        "kernel.outputs",
                        "required for custom: f32 length of each output",
                    )
                })?,
        }
    } else {
        let lr = r.f64(kt, "lr", "kernel.lr")?.unwrap_or(0.1) as f32;
        let batch = r.int(kt, "batch", "kernel.batch")?.unwrap_or(32);
        let epochs = r.int(kt, "epochs", "kernel.epochs")?.unwrap_or(10);
        builtin_kernel(&ty, lr, batch, epochs)
            .ok_or_else(|| r.err("kernel.type", format!("unknown kernel {ty:?}: {KERNELS}")))?
    };
    let lease = FileLease {
        tenant: r.str(&doc, "tenant", "tenant")?,
        price: r.f64(&doc, "price", "price")?,
        deadline_in: r.f64(&doc, "deadline_in", "deadline_in")?,
        priority: r.int(&doc, "priority", "priority")?,
    };
    let files = r.list(
        &doc,
        "inputs",
        "inputs",
        |v| v.as_str().map(|s| base.join(s)),
        "a path",
    )?;
    let size = r.list(&doc, "size", "size", nonneg::<usize>, "an integer")?;
    let inputs = match (files, size) {
        (Some(_), Some(_)) => return Err(r.err("size", "give inputs or size, not both")),
        (Some(files), None) => files
            .iter()
            .enumerate()
            .map(|(i, p)| read_npy(p).map_err(|e| r.err(&format!("inputs[{i}]"), format!("{e:#}"))))
            .collect::<Result<_>>()?,
        (None, Some(size)) => {
            inputs_of(&kernel, &[], &size).map_err(|e| anyhow!("{}: {e:#}", path.display()))?
        }
        (None, None) => {
            return Err(r.err(
                "inputs",
                "required: the input .npy files (or size = [...] for random inputs)",
            ))
        }
    };
    Ok((GpuJob { kernel, inputs }, lease))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth::gpu::tensor::Tensor;

    #[test]
    fn a_job_file_names_the_bad_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("job.toml");
        let a = dir.path().join("a.npy");
        std::fs::write(&a, Tensor::new(vec![2, 3], vec![1.0; 6]).unwrap().to_npy()).unwrap();
        std::fs::write(
            dir.path().join("b.npy"),
            Tensor::new(vec![3, 2], vec![2.0; 6]).unwrap().to_npy(),
        )
        .unwrap();
        std::fs::write(
            &p,
            "inputs = [\"a.npy\", \"b.npy\"]\ntenant = \"acme\"\nprice = 0.5\ndeadline_in = 60\npriority = -2\n[kernel]\ntype = \"matmul\"\n",
        )
        .unwrap();
        let (job, lease) = load_spec(&p).unwrap();
        assert_eq!(job.kernel, KernelSpec::Matmul);
        assert_eq!(job.inputs[1].shape, vec![3, 2]);
        assert_eq!(
            lease,
            FileLease {
                tenant: Some("acme".into()),
                price: Some(0.5),
                deadline_in: Some(60.0),
                priority: Some(-2)
            }
        );
        for (text, key) in [
            ("kernel = \"mlp_train\"\nsize = [8,2,4,2]\n[x]\n", "`x`"),
            (
                "[kernel]\ntype = \"mlp_train\"\nlrr = 0.1\n",
                "`kernel.lrr`",
            ),
            ("[kernel]\ntype = \"matmul\"\nlr = 0.1\n", "`kernel.lr`"),
            (
                "[kernel]\ntype = \"mlp_train\"\nepochs = \"ten\"\n",
                "`kernel.epochs`",
            ),
            ("kernel = \"matmull\"\n", "`kernel.type`"),
            (
                "kernel = \"matmul\"\ninputs = [\"nope.npy\"]\n",
                "`inputs[0]`",
            ),
            ("kernel = \"matmul\"\nprice = \"free\"\n", "`price`"),
            (
                "[kernel]\ntype = \"elementwise\"\nop = \"pow\"\n",
                "`kernel.op`",
            ),
            (
                "[kernel]\ntype = \"custom\"\noutputs = [4]\n",
                "`kernel.wgsl`",
            ),
            ("tenant = \"x\"\n", "`kernel`"),
            ("kernel = \n", "not valid TOML"),
        ] {
            std::fs::write(&p, text).unwrap();
            let err = format!("{:#}", load_spec(&p).unwrap_err());
            assert!(
                err.contains(key) && err.lines().count() == 1,
                "{text:?}: {err}"
            );
        }
        // An elementwise op by its short name, with random inputs.
        std::fs::write(&p, "kernel = \"relu\"\nsize = [16]\n").unwrap();
        let (job, _) = load_spec(&p).unwrap();
        assert_eq!(job.inputs[0].shape, vec![16]);
    }
}
