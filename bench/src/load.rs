//! The load generator: `concurrency` clients looping on one request for a fixed time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Builds the body of the n-th request (n counts across all clients).
pub type BodyFn = Arc<dyn Fn(u64) -> Value + Send + Sync>;

pub async fn run(
    client: &reqwest::Client,
    url: String,
    api_key: &str,
    body: BodyFn,
    concurrency: usize,
    duration: Duration,
) -> LoadResult {
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.clone();
        let key = api_key.to_owned();
        let body = body.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("histogram");
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let begin = Instant::now();
                let ok = match client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&body(n))
                    .send()
                    .await
                {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        ok && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                let micros = begin.elapsed().as_micros() as u64;
                let _ = histogram.record(micros.max(1));
                if !ok {
                    errors += 1;
                }
            }
            (histogram, errors)
        }));
    }
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let mut errors = 0;
    for task in tasks {
        if let Ok((h, e)) = task.await {
            let _ = histogram.add(h);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = histogram.len();
    LoadResult {
        requests,
        errors,
        requests_per_sec: requests as f64 / elapsed,
        p50_ms: histogram.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
    }
}
