//! The tenant's side of the market: offer a job, follow its events, fetch and verify its result,
//! list the devices.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::DeliverPolicy};
use tokio_stream::StreamExt;

use super::conn::{connect, publish_event};
use super::layout::{ensure_layout, event_subject, Layout, LayoutConfig, MarketError};
use super::offer::{new_job_id, validate_job_id, MarketOffer};
use super::receipt::SignedReceipt;
use super::wire::{self, DeviceInfo, Event, EventKind};
use crate::gpu::tensor::{digest, Tensor};
use crate::jobs::JobSpec;

/// Inline input bytes above which an offer's inputs go to the object store (NATS messages are
/// at most 1 MiB by default).
pub const INLINE_INPUT_BYTES: usize = 256 << 10;

/// A connection to the market as a tenant.
#[derive(Debug, Clone)]
pub struct MarketClient {
    js: jetstream::Context,
    layout: Layout,
}

/// A result whose receipts verified and whose copies agree.
#[derive(Debug, Clone)]
pub struct VerifiedResult {
    /// The outputs.
    pub outputs: Vec<Tensor>,
    /// One receipt per device that ran the job.
    pub receipts: Vec<SignedReceipt>,
}

fn js_err<E: std::error::Error + Send + Sync + 'static>(what: String, e: E) -> MarketError {
    MarketError::JetStream {
        what,
        source: Box::new(e),
    }
}

fn verify_err(job: &str, msg: String) -> MarketError {
    MarketError::Verify {
        job: job.to_string(),
        msg,
    }
}

impl MarketClient {
    /// Connects and makes sure the layout exists.
    pub async fn connect(
        url: &str,
        credentials: Option<&Path>,
        layout: &LayoutConfig,
    ) -> Result<Self, MarketError> {
        let js = connect(url, credentials, "hearth market client").await?;
        Self::open(js, layout).await
    }

    /// A client on an existing JetStream context.
    pub async fn open(js: jetstream::Context, layout: &LayoutConfig) -> Result<Self, MarketError> {
        let layout = ensure_layout(&js, layout).await?;
        Ok(Self { js, layout })
    }

    /// Offers `spec` to the market: `redundancy` copies, each for a different device. Inputs
    /// over [`INLINE_INPUT_BYTES`] go to the object store first. Returns the job id once every
    /// copy is stored in the stream.
    pub async fn submit(
        &self,
        spec: JobSpec,
        price_per_gpu_second: f64,
        deadline_unix_s: u64,
        redundancy: u8,
    ) -> Result<String, MarketError> {
        let mut offer = MarketOffer {
            job_id: new_job_id(),
            replica: 0,
            stored_inputs: None,
            spec,
            price_per_gpu_second,
            deadline_unix_s,
            redundancy,
        };
        offer.validate().map_err(MarketError::Offer)?;
        let bytes: usize = offer.spec.job.inputs.iter().map(Tensor::bytes).sum();
        if bytes > INLINE_INPUT_BYTES {
            let inputs = std::mem::take(&mut offer.spec.job.inputs);
            let name = wire::input_object(&offer.job_id);
            wire::put_blob(&self.layout.blobs, &name, &wire::pack(&inputs)).await?;
            offer.stored_inputs = Some(inputs.len());
        }
        self.offer(offer).await
    }

    /// Publishes an offer (all its copies) as it is, after its `offered` event; returns its id.
    pub async fn offer(&self, offer: MarketOffer) -> Result<String, MarketError> {
        let job = offer.job_id.clone();
        publish_event(
            &self.js,
            &job,
            EventKind::Offered {
                kernel: offer.kernel().to_string(),
                redundancy: offer.redundancy,
                price_per_gpu_second: offer.price_per_gpu_second,
                deadline_unix_s: offer.deadline_unix_s,
            },
        )
        .await?;
        let mut acks = Vec::new();
        for replica in 0..offer.redundancy.max(1) {
            let copy = MarketOffer {
                replica,
                ..offer.clone()
            };
            let body = serde_json::to_vec(&copy).unwrap_or_default();
            let ack = self
                .js
                .publish(copy.subject(), body.into())
                .await
                .map_err(|e| js_err(format!("offering job {job}"), e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| js_err(format!("storing the offer of job {job}"), e))?;
        }
        Ok(job)
    }

    /// Publishes raw bytes as an offer on `market.jobs.<kernel>` (tests of bad offers).
    pub async fn offer_raw(&self, kernel: &str, body: Vec<u8>) -> Result<(), MarketError> {
        self.js
            .publish(super::layout::offer_subject(kernel), body.into())
            .await
            .map_err(|e| js_err("publishing a raw offer".into(), e))?
            .await
            .map_err(|e| js_err("storing a raw offer".into(), e))?;
        Ok(())
    }

    /// Every event of `job` so far, oldest first.
    pub async fn events(&self, job: &str) -> Result<Vec<Event>, MarketError> {
        validate_job_id(job).map_err(MarketError::Offer)?;
        let subject = event_subject(job);
        let last = match self
            .layout
            .events
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(m) => m.sequence,
            Err(e) => {
                use async_nats::jetstream::stream::LastRawMessageErrorKind;
                if e.kind() == LastRawMessageErrorKind::NoMessageFound {
                    return Ok(Vec::new());
                }
                return Err(js_err(format!("reading events of job {job}"), e));
            }
        };
        let mut out = Vec::new();
        self.follow(job, |ev, seq| {
            out.push(ev);
            seq >= last
        })
        .await?;
        Ok(out)
    }

    /// Reads `job`'s events from the first on, handing each to `f` with its stream sequence,
    /// until `f` returns true.
    async fn follow(
        &self,
        job: &str,
        mut f: impl FnMut(Event, u64) -> bool,
    ) -> Result<(), MarketError> {
        let consumer = self
            .layout
            .events
            .create_consumer(pull::OrderedConfig {
                filter_subject: event_subject(job),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| js_err(format!("following job {job}"), e))?;
        let mut msgs = consumer
            .messages()
            .await
            .map_err(|e| js_err(format!("following job {job}"), e))?;
        while let Some(m) = msgs.next().await {
            let m = m.map_err(|e| js_err(format!("following job {job}"), e))?;
            let seq = m.info().map_or(0, |i| i.stream_sequence);
            match serde_json::from_slice::<Event>(&m.payload) {
                Ok(ev) => {
                    if f(ev, seq) {
                        return Ok(());
                    }
                }
                Err(e) => tracing::warn!(job, error = %e, "skipping an unreadable event"),
            }
        }
        Ok(())
    }

    /// Follows `job` until `redundancy` devices completed it or a copy failed, giving each
    /// event to `on_event`; at most `timeout`.
    pub async fn wait(
        &self,
        job: &str,
        redundancy: u8,
        timeout: Duration,
        mut on_event: impl FnMut(&Event),
    ) -> Result<Vec<Event>, MarketError> {
        let mut out = Vec::new();
        let mut done = std::collections::BTreeSet::new();
        let r = tokio::time::timeout(
            timeout,
            self.follow(job, |ev, _| {
                on_event(&ev);
                let end = match &ev.kind {
                    EventKind::Completed { receipt } => {
                        done.insert(receipt.receipt.device_id.clone());
                        done.len() >= usize::from(redundancy.max(1))
                    }
                    EventKind::Failed { .. } => true,
                    _ => false,
                };
                out.push(ev);
                end
            }),
        )
        .await;
        match r {
            Ok(r) => r.map(|()| out),
            Err(_) => Err(MarketError::Timeout(format!(
                "job {job} did not finish within {timeout:?}"
            ))),
        }
    }

    /// The job's result, verified: every receipt's signature, every result's SHA-256 against
    /// its receipt, and, with several devices, that their digests agree. Any failure is an
    /// error naming the device.
    pub async fn result(&self, job: &str) -> Result<VerifiedResult, MarketError> {
        let events = self.events(job).await?;
        // The latest receipt per device.
        let mut receipts: BTreeMap<String, SignedReceipt> = BTreeMap::new();
        for ev in events {
            if let EventKind::Completed { receipt } = ev.kind {
                receipts.insert(receipt.receipt.device_id.clone(), receipt);
            }
        }
        if receipts.is_empty() {
            return Err(MarketError::NotFound(format!(
                "job {job} has no completed copy yet"
            )));
        }
        let mut outputs: Option<(String, Vec<Tensor>)> = None;
        for (device, r) in &receipts {
            r.verify()
                .map_err(|e| verify_err(job, format!("receipt of device {device}: {e}")))?;
            if r.receipt.job_id != job {
                return Err(verify_err(
                    job,
                    format!("device {device}'s receipt is for job {}", r.receipt.job_id),
                ));
            }
            let name = wire::result_object(job, device);
            let bytes = wire::get_blob(&self.layout.blobs, &name)
                .await?
                .ok_or_else(|| verify_err(job, format!("result object {name} is missing")))?;
            let tensors = wire::unpack(&bytes)
                .map_err(|e| verify_err(job, format!("result object {name}: {e}")))?;
            let got = digest(&tensors);
            if got != r.receipt.result_sha256 {
                return Err(verify_err(
                    job,
                    format!(
                        "the result of device {device} has SHA-256 {got}, its receipt says {}",
                        r.receipt.result_sha256
                    ),
                ));
            }
            match &outputs {
                None => outputs = Some((device.clone(), tensors)),
                Some((first, t)) if digest(t) != got => {
                    return Err(verify_err(
                        job,
                        format!(
                            "MISMATCH: devices {first} and {device} returned different results ({} vs {got})",
                            digest(t)
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let (_, outputs) = outputs.unwrap_or_default();
        Ok(VerifiedResult {
            outputs,
            receipts: receipts.into_values().collect(),
        })
    }

    /// The devices whose entries have not expired, by id.
    pub async fn devices(&self) -> Result<Vec<DeviceInfo>, MarketError> {
        let kv = &self.layout.devices;
        let mut keys = match kv.keys().await {
            Ok(k) => k,
            Err(e) => return Err(js_err("listing devices".into(), e)),
        };
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(|e| js_err("listing devices".into(), e))?;
            if let Some(v) = kv
                .get(&k)
                .await
                .map_err(|e| js_err(format!("reading device {k}"), e))?
            {
                match serde_json::from_slice::<DeviceInfo>(&v) {
                    Ok(d) => out.push(d),
                    Err(e) => tracing::warn!(device = %k, error = %e, "unreadable device entry"),
                }
            }
        }
        out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(out)
    }

    /// The market's streams and stores.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }
}
