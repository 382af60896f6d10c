//! The servers under test, as child processes on 127.0.0.1: Keyway, Seam's fake, the ceiling.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A child process killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub started_in: Duration,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process, from /proc.
    pub fn rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `GET {url}/health` (or any answer at all for the ceiling) comes back.
async fn wait_ready(
    url: &str,
    path: &str,
    child: &mut Child,
    started: Instant,
) -> anyhow::Result<Duration> {
    let client = reqwest::Client::new();
    while started.elapsed() < Duration::from_secs(120) {
        if let Some(status) = child.try_wait()? {
            bail!("server exited early with {status}");
        }
        if let Ok(response) = client.get(format!("{url}{path}")).send().await {
            if response.status().as_u16() < 500 {
                return Ok(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("server at {url} never became ready")
}

pub struct KeywayOptions<'a> {
    pub data_dir: &'a Path,
    pub seed: bool,
    pub engine_concurrency: usize,
    pub poll_interval_secs: f64,
}

pub async fn start_keyway(binary: &Path, options: KeywayOptions<'_>) -> anyhow::Result<Server> {
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(options.data_dir)
        .arg("--sandbox-delay-ms")
        .arg("0")
        .arg("--engine-concurrency")
        .arg(options.engine_concurrency.to_string())
        .arg("--poll-interval-secs")
        .arg(options.poll_interval_secs.to_string())
        .env("RUST_LOG", "warn")
        .env_remove("KEYWAY_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // The server's log, for looking into a run: `KEYWAY_BENCH_SERVER_LOG=file`.
    if let Some(path) = std::env::var_os("KEYWAY_BENCH_SERVER_LOG") {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        command.stderr(log);
    }
    if options.seed {
        command.arg("--seed");
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let started_in = wait_ready(&url, "/health", &mut child, started).await?;
    Ok(Server {
        child,
        url,
        started_in,
    })
}

pub async fn start_fake(fake_dir: &Path) -> anyhow::Result<Server> {
    let fake_dir = fake_dir.canonicalize().context("bench/fake")?;
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(fake_dir.join("launch.mjs"))
        .current_dir(fake_dir)
        .env("PORT", port.to_string())
        .env("NODE_ENV", "production")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting Seam's fake (node)")?;
    let started_in = wait_ready(&url, "/health", &mut child, started).await?;
    Ok(Server {
        child,
        url,
        started_in,
    })
}

pub async fn start_ceiling(body: &Path) -> anyhow::Result<Server> {
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("ceiling")
        .arg("--port")
        .arg(port.to_string())
        .arg("--body")
        .arg(body)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let started_in = wait_ready(&url, "/", &mut child, started).await?;
    Ok(Server {
        child,
        url,
        started_in,
    })
}

/// The ceiling: a bare axum server answering every request with the same JSON body.
pub async fn serve_ceiling(port: u16, body: PathBuf) -> anyhow::Result<()> {
    let body: &'static [u8] = Box::leak(std::fs::read(&body)?.into_boxed_slice());
    let app = axum::Router::new().fallback(move || async move {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
