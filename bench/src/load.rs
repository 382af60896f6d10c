//! The load generator: `concurrency` clients looping on one request for a fixed time.
//!
//! Each client owns one keep-alive HTTP/1.1 connection (hyper's connection API, no pool) and
//! sends its next request once the last answer is read, as wrk does. On a 2-core machine the
//! client shares the CPU with the server it measures: what the client spends per request is
//! taken from the server, so it stays as small as a request allows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpStream;

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

/// Where and how every request goes.
struct Target {
    address: String,
    host: HeaderValue,
    path: String,
    authorization: HeaderValue,
}

impl Target {
    fn parse(url: &str, api_key: &str) -> anyhow::Result<Target> {
        let uri: Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
        let authority = uri
            .authority()
            .with_context(|| format!("no host in {url}"))?
            .as_str()
            .to_owned();
        Ok(Target {
            host: HeaderValue::from_str(&authority)?,
            address: authority,
            path: uri
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
            authorization: HeaderValue::from_str(&format!("Bearer {api_key}"))?,
        })
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(&self.address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// One request on `sender`; answers whether it succeeded (2xx, body read in full).
    async fn send(
        &self,
        sender: &mut SendRequest<Full<Bytes>>,
        body: &Value,
    ) -> anyhow::Result<bool> {
        let request = Request::post(self.path.as_str())
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let ok = response.status().is_success();
        response.into_body().collect().await?;
        Ok(ok)
    }
}

pub async fn run(
    url: String,
    api_key: &str,
    body: BodyFn,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let target = Arc::new(Target::parse(&url, api_key)?);
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let target = target.clone();
        let body = body.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("histogram");
            let mut errors = 0u64;
            let mut sender = None;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let begin = Instant::now();
                let ok = match sender.as_mut() {
                    Some(open) => target.send(open, &body(n)).await.unwrap_or(false),
                    None => match target.connect().await {
                        Ok(mut open) => {
                            let ok = target.send(&mut open, &body(n)).await.unwrap_or(false);
                            sender = Some(open);
                            ok
                        }
                        Err(_) => false,
                    },
                };
                let micros = begin.elapsed().as_micros() as u64;
                let _ = histogram.record(micros.max(1));
                if !ok {
                    errors += 1;
                    // A connection that failed is not reused.
                    sender = sender.filter(|open| !open.is_closed());
                }
            }
            (histogram, errors)
        }));
    }
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let mut errors = 0;
    for task in tasks {
        let (h, e) = task.await?;
        histogram.add(h)?;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = histogram.len();
    if requests == 0 {
        bail!("no request was sent to {url}");
    }
    Ok(LoadResult {
        requests,
        errors,
        requests_per_sec: requests as f64 / elapsed,
        p50_ms: histogram.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
    })
}
