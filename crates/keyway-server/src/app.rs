//! Wiring: store, drivers, engine and HTTP router in one running server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use keyway_core::{Clock, SystemClock};
use keyway_drivers::sandbox::SandboxDriver;
use keyway_drivers::zwave_js::{ZwaveJsConfig, ZwaveJsProvider};
use keyway_drivers::LockDriver;
use keyway_store::{DeviceRecord, Durability, Store, StoreOptions, SEED};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;

use crate::auth::AuthCache;
use crate::engine::{Drivers, Engine, EngineConfig};
use crate::error::ApiError;
use crate::list_cache::ListCache;
use crate::webhooks::{WebhookConfig, WebhookSender};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// Pool size and statement timeout.
    pub store: StoreOptions,
    /// What an acknowledged write survives (SQLite).
    pub durability: Durability,
    pub seed: bool,
    pub sandbox_delay: Duration,
    /// Backup codes kept on a lock once its backup pool is turned on.
    pub backup_pool_size: u32,
    pub engine: EngineConfig,
    pub webhooks: WebhookConfig,
    pub zwave_js: ZwaveJsSettings,
}

/// Z-Wave JS servers to connect at start, and how to talk to them.
#[derive(Debug, Clone, Default)]
pub struct ZwaveJsSettings {
    /// Servers (`ws://…`) to add as connected accounts of `workspace_id` (by default the seed
    /// workspace, which must exist). Accounts already in the store are connected in any case.
    pub urls: Vec<String>,
    pub workspace_id: Option<String>,
    pub driver: ZwaveJsConfig,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub engine: Arc<Engine>,
    pub clock: Arc<dyn Clock>,
    pub sandbox: Arc<SandboxDriver>,
    pub seeded: bool,
    pub backup_pool_size: u32,
    pub auth_cache: Arc<AuthCache>,
    /// Pages of devices' codes, as sent (see `list_cache`).
    pub list_cache: Arc<ListCache>,
}

struct ProviderDrivers {
    sandbox: Arc<SandboxDriver>,
    zwave_js: Arc<ZwaveJsProvider>,
}

impl Drivers for ProviderDrivers {
    fn for_device(&self, device: &DeviceRecord) -> Option<Arc<dyn LockDriver>> {
        match device.provider.as_str() {
            "sandbox" => Some(self.sandbox.clone() as Arc<dyn LockDriver>),
            crate::zwave::PROVIDER => Some(self.zwave_js.clone() as Arc<dyn LockDriver>),
            _ => None,
        }
    }
}

/// A server running in this process: its address, and its tasks (stopped on drop).
pub struct RunningServer {
    pub addr: SocketAddr,
    pub store: Store,
    /// Its engine (to subscribe to "lock read and worked on" notices).
    pub engine: Arc<Engine>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and the engine at once, as a crash would (nothing is flushed on purpose).
    pub fn kill(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }

    /// Waits until the server stops (it only stops on error or when killed).
    pub async fn wait(mut self) {
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn open_store(config: &ServerConfig) -> anyhow::Result<Store> {
    let store_options = StoreOptions {
        durability: config.durability,
        ..config.store.clone()
    };
    let store = match &config.database_url {
        Some(url) => Store::open(url, &store_options).await?,
        None => Store::open_dir(&config.data_dir, &store_options).await?,
    };
    Ok(store)
}

/// Opens the store, seeds it if asked, binds the listener and starts the engine and the API.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

pub async fn start_with_clock(
    config: ServerConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<RunningServer> {
    let store = open_store(&config).await?;
    if config.seed {
        store
            .seed(config.sandbox_delay.as_millis() as u64, clock.now())
            .await?;
    }
    // A database this process owns (SQLite) holds only stale leases of a previous run; in a
    // shared one (Postgres) they belong to live instances, or expire.
    if store.is_exclusive() {
        store.release_all_leases().await?;
    }
    let sandbox = Arc::new(SandboxDriver::new(Arc::new(store.clone())));
    let zwave_js = Arc::new(ZwaveJsProvider::new(config.zwave_js.driver.clone()));
    let drivers = Arc::new(ProviderDrivers {
        sandbox: sandbox.clone(),
        zwave_js: zwave_js.clone(),
    });
    let engine = Engine::new(store.clone(), drivers, clock.clone(), config.engine.clone());
    if !config.zwave_js.urls.is_empty() {
        // The seed workspace unless told otherwise.
        let workspace_id = config
            .zwave_js
            .workspace_id
            .clone()
            .unwrap_or_else(|| SEED.seed_workspace_1.to_owned());
        if store.get_workspace(&workspace_id).await?.is_none() {
            anyhow::bail!(
                "no workspace {workspace_id} for the Z-Wave JS servers: \
                 give --zwave-js-workspace-id, or --seed for the seed workspace"
            );
        }
        for url in &config.zwave_js.urls {
            crate::zwave::add_account(&store, &workspace_id, url, clock.now()).await?;
        }
    }
    let zwave_tasks =
        crate::zwave::start(store.clone(), engine.clone(), clock.clone(), zwave_js).await?;
    let sender_clock = clock.clone();
    let state = AppState {
        store: store.clone(),
        engine: engine.clone(),
        clock,
        sandbox,
        seeded: config.seed,
        backup_pool_size: config.backup_pool_size,
        auth_cache: Arc::new(AuthCache::default()),
        list_cache: Arc::new(ListCache::default()),
    };
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let app = router(state);
    let server = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "HTTP server stopped");
        }
    });
    let engine_task = tokio::spawn(engine.clone().run());
    // Webhooks: a task of its own beside the engine, delivering the store's outbox.
    let webhook_sender = WebhookSender::new(store.clone(), sender_clock, config.webhooks.clone())?;
    let webhook_task = tokio::spawn(webhook_sender.run());
    let mut tasks = vec![server, engine_task, webhook_task];
    tasks.extend(zwave_tasks);
    Ok(RunningServer {
        addr,
        store,
        engine,
        tasks,
    })
}

pub fn router(state: AppState) -> Router {
    crate::routes::router()
        .fallback(|| async {
            ApiError::NotFound {
                kind: "not_found",
                message: "Route not found".into(),
            }
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(request_id))
        .layer(CatchPanicLayer::custom(|_| {
            use axum::response::IntoResponse;
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .layer(CorsLayer::permissive())
        .with_state(state)
}

/// Every answer carries a `seam-request-id`.
async fn request_id(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("seam-request-id"), value);
    }
    response
}
