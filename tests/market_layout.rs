//! The market layout against a real `nats-server -js` (Debian's 2.9.10 on CI) started per test on
//! a free loopback port with a temp store dir.

use std::time::{Duration, Instant};

use async_nats::jetstream::{consumer, stream};
use base64::Engine;
use hearth::gpu::job::{GpuJob, KernelSpec};
use hearth::gpu::tensor::Tensor;
use hearth::jobs::{JobSpec, Lease};
use hearth::market::{
    ensure_layout, offer_subject, LayoutConfig, MarketError, MarketOffer, BLOBS_BUCKET,
    DEVICES_BUCKET, EVENTS_STREAM, JOBS_STREAM,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;

mod common;
use common::nats::NatsServer;

fn offer() -> MarketOffer {
    MarketOffer {
        job_id: "job-1".into(),
        replica: 0,
        stored_inputs: None,
        spec: JobSpec {
            job: GpuJob {
                kernel: KernelSpec::Matmul,
                inputs: vec![
                    Tensor {
                        shape: vec![2, 2],
                        data: vec![1.0, 2.0, 3.0, 4.0],
                    },
                    Tensor {
                        shape: vec![2, 1],
                        data: vec![1.0, -1.0],
                    },
                ],
            },
            lease: Lease {
                tenant: "acme".into(),
                price_per_gpu_second: 0.01,
                deadline_unix_s: None,
                priority: 0,
            },
        },
        price_per_gpu_second: 0.02,
        deadline_unix_s: u64::MAX / 2,
        redundancy: 1,
    }
}

#[tokio::test]
async fn layout_is_created_then_left_alone() {
    let server = NatsServer::start();
    let js = NatsServer::jetstream(&server.url).await;
    let cfg = LayoutConfig::default();
    let mut first = ensure_layout(&js, &cfg).await.unwrap();
    let jobs = first.jobs.info().await.unwrap().clone();
    assert_eq!(jobs.config.retention, stream::RetentionPolicy::WorkQueue);
    assert_eq!(jobs.config.storage, stream::StorageType::File);
    assert_eq!(jobs.config.subjects, vec!["market.jobs.>".to_string()]);
    assert_eq!(jobs.config.num_replicas, 1);
    let events = first.events.info().await.unwrap().clone();
    assert_eq!(events.config.retention, stream::RetentionPolicy::Limits);
    let kv = first.devices.status().await.unwrap();
    assert_eq!(kv.max_age(), cfg.device_ttl);
    assert_eq!(kv.history(), 1);

    let mut second = ensure_layout(&js, &cfg).await.unwrap();
    for (name, a) in [
        (JOBS_STREAM.to_string(), jobs),
        (EVENTS_STREAM.to_string(), events),
    ] {
        let b = js
            .get_stream(&name)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone();
        assert_eq!(a.created, b.created, "{name} recreated");
        assert_eq!(
            serde_json::to_value(&a.config).unwrap(),
            serde_json::to_value(&b.config).unwrap(),
            "{name} changed"
        );
    }
    let names: Vec<String> = js.stream_names().collect::<Result<_, _>>().await.unwrap();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("KV_{DEVICES_BUCKET}"),
            EVENTS_STREAM.to_string(),
            JOBS_STREAM.to_string(),
            format!("OBJ_{BLOBS_BUCKET}"),
        ]
    );
    assert_eq!(second.jobs.info().await.unwrap().state.messages, 0);
}

#[tokio::test]
async fn an_incompatible_stream_is_named() {
    let server = NatsServer::start();
    let js = NatsServer::jetstream(&server.url).await;
    js.create_stream(stream::Config {
        name: JOBS_STREAM.into(),
        subjects: vec!["market.jobs.>".into()],
        retention: stream::RetentionPolicy::Limits,
        ..Default::default()
    })
    .await
    .unwrap();
    let err = ensure_layout(&js, &LayoutConfig::default())
        .await
        .unwrap_err();
    match &err {
        MarketError::Incompatible { stream, field, .. } => {
            assert_eq!(stream, JOBS_STREAM);
            assert_eq!(*field, "retention");
        }
        other => panic!("want Incompatible, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("MARKET_JOBS") && msg.contains("WorkQueue"),
        "{msg}"
    );

    let err = ensure_layout(
        &js,
        &LayoutConfig {
            replicas: 0,
            ..LayoutConfig::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("replicas"), "{err}");
}

#[tokio::test]
async fn an_offer_is_taken_exactly_once() {
    let server = NatsServer::start();
    let js = NatsServer::jetstream(&server.url).await;
    let mut layout = ensure_layout(&js, &LayoutConfig::default()).await.unwrap();

    let sent = offer();
    sent.validate().unwrap();
    assert_eq!(sent.subject(), offer_subject("matmul"));
    let ack = js
        .publish(sent.subject(), serde_json::to_vec(&sent).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.stream, JOBS_STREAM);
    assert_eq!(layout.jobs.info().await.unwrap().state.messages, 1);

    let ack_wait = Duration::from_millis(300);
    let device = layout
        .jobs
        .create_consumer(consumer::pull::Config {
            durable_name: Some("device-a".into()),
            filter_subject: "market.jobs.matmul".into(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = device
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let msg = batch.next().await.unwrap().unwrap();
    assert_eq!(msg.subject.as_str(), "market.jobs.matmul");
    let got: MarketOffer = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(got, sent);
    assert_eq!(msg.info().unwrap().delivered, 1);
    msg.double_ack().await.unwrap();

    // Past the ack wait nothing comes back, and the work queue has dropped the offer.
    let mut again = device
        .fetch()
        .max_messages(1)
        .expires(ack_wait * 3)
        .messages()
        .await
        .unwrap();
    let mut redelivered = 0;
    while let Some(m) = again.next().await {
        m.unwrap();
        redelivered += 1;
    }
    assert_eq!(redelivered, 0);
    assert_eq!(layout.jobs.info().await.unwrap().state.messages, 0);
}

#[tokio::test]
async fn a_device_entry_expires_after_its_ttl() {
    let server = NatsServer::start();
    let js = NatsServer::jetstream(&server.url).await;
    let ttl = Duration::from_secs(1);
    let layout = ensure_layout(
        &js,
        &LayoutConfig {
            device_ttl: ttl,
            ..LayoutConfig::default()
        },
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    layout
        .devices
        .put("dev-1", r#"{"spare_w":300}"#.into())
        .await
        .unwrap();
    assert!(layout.devices.get("dev-1").await.unwrap().is_some());
    loop {
        if layout.devices.get("dev-1").await.unwrap().is_none() {
            break;
        }
        assert!(
            t0.elapsed() < ttl * 5,
            "entry still there after {:?}",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone = t0.elapsed();
    assert!(
        gone >= ttl - Duration::from_millis(100),
        "expired early: {gone:?}"
    );
}

#[tokio::test]
async fn a_blob_round_trips_with_its_digest() {
    let server = NatsServer::start();
    let js = NatsServer::jetstream(&server.url).await;
    let layout = ensure_layout(&js, &LayoutConfig::default()).await.unwrap();
    // Over two default 128 KiB chunks.
    let bytes: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let info = layout
        .blobs
        .put("inputs/job-1", &mut bytes.as_slice())
        .await
        .unwrap();
    assert_eq!(info.size, bytes.len());
    assert!(info.chunks > 1);
    let want = format!(
        "SHA-256={}",
        base64::engine::general_purpose::URL_SAFE.encode(Sha256::digest(&bytes))
    );
    assert_eq!(info.digest.as_deref(), Some(want.as_str()));

    let mut obj = layout.blobs.get("inputs/job-1").await.unwrap();
    let mut back = Vec::new();
    obj.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, bytes);
    assert_eq!(obj.info().digest.as_deref(), Some(want.as_str()));
}
