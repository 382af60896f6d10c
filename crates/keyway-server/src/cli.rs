//! The `keyway` command line: `serve` and `workspaces create`; the client commands
//! (`access-codes`, `devices`, `events`, `completions`) are in `commands`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use keyway_core::delivery::DeliveryPolicy;
use keyway_core::retry::RetryPolicy;
use keyway_core::{Clock, SystemClock};
use keyway_store::{DeviceCodeRules, Durability, NewWorkspace, Store, StoreOptions, SEED};
use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::app::{ServerConfig, ZwaveJsSettings};
use crate::engine::EngineConfig;
use crate::webhooks::WebhookConfig;
use keyway_drivers::zwave_js::ZwaveJsConfig;

#[derive(Parser)]
#[command(
    name = "keyway",
    version,
    about = "Self-hostable, Seam-compatible access-code server"
)]
pub struct Cli {
    #[command(flatten)]
    pub client: crate::commands::ClientArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the API server and its engine.
    Serve(ServeArgs),
    /// Manage workspaces.
    #[command(subcommand)]
    Workspaces(WorkspacesCommand),
    /// Manage the Z-Wave JS servers of a workspace.
    #[command(subcommand, name = "zwave-js")]
    ZwaveJs(ZwaveJsCommand),
    #[command(flatten)]
    Client(crate::commands::ClientCommand),
}

#[derive(Subcommand)]
pub enum WorkspacesCommand {
    /// Create a workspace and print its API key (shown once, stored hashed).
    Create(CreateWorkspaceArgs),
}

#[derive(Subcommand)]
pub enum ZwaveJsCommand {
    /// Add a Z-Wave JS server to a workspace as a connected account (idempotent); a running
    /// `keyway serve` picks it up at its next start.
    Connect(ZwaveJsConnectArgs),
}

#[derive(Args)]
pub struct ZwaveJsConnectArgs {
    /// Workspace the server's locks belong to.
    #[arg(long)]
    pub workspace_id: String,
    /// The server's websocket URL, e.g. ws://127.0.0.1:3000.
    #[arg(long)]
    pub url: String,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// Adds a Z-Wave JS server to a workspace; answers its connected account id.
pub async fn connect_zwave_js(args: &ZwaveJsConnectArgs) -> anyhow::Result<String> {
    let store = args.storage.open_store().await?;
    if store.get_workspace(&args.workspace_id).await?.is_none() {
        anyhow::bail!("no workspace {}", args.workspace_id);
    }
    let account =
        crate::zwave::add_account(&store, &args.workspace_id, &args.url, SystemClock.now()).await;
    store.close().await;
    account
}

#[derive(Args, Clone)]
pub struct StorageArgs {
    /// Directory holding the SQLite database.
    #[arg(long, env = "KEYWAY_DATA_DIR", default_value = "keyway-data")]
    pub data_dir: PathBuf,
    /// Database URL (`sqlite://PATH` or `postgres://USER@HOST:PORT/DB`); overrides --data-dir.
    #[arg(long, env = "KEYWAY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Database connections in the pool (SQLite: reader connections besides the one writer).
    #[arg(long, env = "KEYWAY_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
    /// Longest a database statement may run, in milliseconds (SQLite: longest wait for the
    /// write lock); also bounds the wait for a pooled connection (at most 5 s).
    #[arg(long, env = "KEYWAY_STATEMENT_TIMEOUT_MS", default_value_t = 10_000)]
    pub statement_timeout_ms: u64,
    /// fsync every commit, so acknowledged writes also survive a power loss (slower). Without
    /// it they survive a crash or `kill -9` of Keyway. SQLite only.
    #[arg(long, env = "KEYWAY_FSYNC_EVERY_COMMIT")]
    pub fsync_every_commit: bool,
}

impl StorageArgs {
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.database_max_connections.max(1),
            statement_timeout: Duration::from_millis(self.statement_timeout_ms.max(100)),
            durability: self.durability(),
        }
    }

    /// Opens (and migrates) the store these flags name.
    pub async fn open_store(&self) -> anyhow::Result<Store> {
        let options = self.options();
        Ok(match &self.database_url {
            Some(url) => Store::open(url, &options).await?,
            None => Store::open_dir(&self.data_dir, &options).await?,
        })
    }

    pub fn durability(&self) -> Durability {
        if self.fsync_every_commit {
            Durability::PowerLoss
        } else {
            Durability::ProcessCrash
        }
    }
}

#[derive(Args)]
pub struct ServeArgs {
    /// Create the seed workspaces, API keys and sandbox locks of Seam's fake server.
    #[arg(long, env = "KEYWAY_SEED")]
    pub seed: bool,
    /// Address to listen on (default 127.0.0.1:8080, or 127.0.0.1:$PORT when PORT is set).
    #[arg(long, env = "KEYWAY_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Delay of each sandbox lock operation, in milliseconds.
    #[arg(long, env = "KEYWAY_SANDBOX_DELAY_MS", default_value_t = 500)]
    pub sandbox_delay_ms: u64,
    /// First retry back-off for an unreachable lock, in milliseconds (doubles up to a minute).
    #[arg(long, env = "KEYWAY_RETRY_BASE_MS", default_value_t = 1000)]
    pub retry_base_ms: u64,
    /// Seconds of failed attempts before a code carries a `delay_in_*` warning.
    #[arg(long, env = "KEYWAY_WARN_AFTER_SECS", default_value_t = 60)]
    pub warn_after_secs: u64,
    /// Seconds of failed attempts before the engine gives up (`failed_to_*` error).
    #[arg(long, env = "KEYWAY_GIVE_UP_AFTER_SECS", default_value_t = 900)]
    pub give_up_after_secs: u64,
    /// Locks the engine works on at once.
    #[arg(long, env = "KEYWAY_ENGINE_CONCURRENCY", default_value_t = 256)]
    pub engine_concurrency: usize,
    /// Milliseconds a busy lock's next round waits for more codes to gather (0: none).
    #[arg(long, env = "KEYWAY_ENGINE_GATHER_MS", default_value_t = 20)]
    pub engine_gather_ms: u64,
    /// Backup codes kept on each lock whose backup pool is on.
    #[arg(long, env = "KEYWAY_BACKUP_POOL_SIZE", default_value_t = 5)]
    pub backup_pool_size: u32,
    /// Seconds between read-backs of each lock (jittered; backs off while a lock is offline).
    #[arg(long, env = "KEYWAY_POLL_INTERVAL_SECS", default_value_t = 60.0)]
    pub poll_interval_secs: f64,
    /// Seconds a device lease lasts without renewal: how long the locks of an instance that
    /// died stay untouched before another instance takes over.
    #[arg(long, env = "KEYWAY_LEASE_SECS", default_value_t = 30.0)]
    pub lease_secs: f64,
    /// Seconds before a code's window opens that its lock is read and its slot recorded, so
    /// that it is programmed as the window opens (at most a third of the lease).
    #[arg(long, env = "KEYWAY_ENGINE_LEAD_SECS", default_value_t = 10.0)]
    pub engine_lead_secs: f64,
    /// Seconds a call to a lock's driver may take before the engine abandons it as timed out
    /// (read back and retried). Drivers bound their own calls; this is the net under one that
    /// hangs. A batch of puts gets it once.
    #[arg(long, env = "KEYWAY_DRIVER_TIMEOUT_SECS", default_value_t = 600.0)]
    pub driver_timeout_secs: f64,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    #[command(flatten)]
    pub zwave_js: ZwaveJsArgs,
}

/// Z-Wave JS servers to connect.
#[derive(Args)]
pub struct ZwaveJsArgs {
    /// A Z-Wave JS server (`ws://HOST:3000`) whose locks Keyway manages; repeat for several.
    /// Added as a connected account of --zwave-js-workspace-id (or of the seed workspace).
    #[arg(
        long = "zwave-js-url",
        env = "KEYWAY_ZWAVE_JS_URL",
        value_delimiter = ','
    )]
    pub urls: Vec<String>,
    /// Workspace the --zwave-js-url servers belong to (default: the seed workspace).
    #[arg(long, env = "KEYWAY_ZWAVE_JS_WORKSPACE_ID")]
    pub zwave_js_workspace_id: Option<String>,
    /// Seconds a Z-Wave lock's slot table is trusted (kept current by its events) before a
    /// read fetches every slot from the lock again.
    #[arg(long, env = "KEYWAY_ZWAVE_JS_FULL_READ_SECS", default_value_t = 900)]
    pub zwave_js_full_read_secs: u64,
    /// Seconds to wait for one Z-Wave command's result.
    #[arg(long, env = "KEYWAY_ZWAVE_JS_TIMEOUT_SECS", default_value_t = 15)]
    pub zwave_js_timeout_secs: u64,
}

impl ZwaveJsArgs {
    pub fn settings(&self) -> ZwaveJsSettings {
        ZwaveJsSettings {
            urls: self.urls.clone(),
            workspace_id: self.zwave_js_workspace_id.clone(),
            driver: ZwaveJsConfig {
                request_timeout: Duration::from_secs(self.zwave_js_timeout_secs.max(1)),
                full_read_interval: Duration::from_secs(self.zwave_js_full_read_secs.max(1)),
                ..ZwaveJsConfig::default()
            },
        }
    }
}

/// The webhook sender's flags.
#[derive(Args)]
pub struct WebhookArgs {
    /// Seconds a webhook receiver has to answer one delivery attempt.
    #[arg(long, env = "KEYWAY_WEBHOOK_TIMEOUT_SECS", default_value_t = 10)]
    pub webhook_timeout_secs: u64,
    /// Delay before retrying a failed webhook delivery, in milliseconds (doubles each time).
    #[arg(long, env = "KEYWAY_WEBHOOK_RETRY_BASE_MS", default_value_t = 1000)]
    pub webhook_retry_base_ms: u64,
    /// Longest delay between two attempts of a webhook delivery, in seconds.
    #[arg(long, env = "KEYWAY_WEBHOOK_RETRY_CAP_SECS", default_value_t = 3600)]
    pub webhook_retry_cap_secs: u64,
    /// Attempts of a webhook delivery before it is marked failed.
    #[arg(long, env = "KEYWAY_WEBHOOK_MAX_ATTEMPTS", default_value_t = 12)]
    pub webhook_max_attempts: u32,
}

impl WebhookArgs {
    pub fn config(&self) -> WebhookConfig {
        WebhookConfig {
            timeout: Duration::from_secs(self.webhook_timeout_secs.max(1)),
            policy: DeliveryPolicy {
                base: Duration::from_millis(self.webhook_retry_base_ms.max(1)),
                cap: Duration::from_secs(self.webhook_retry_cap_secs.max(1)),
                max_attempts: self.webhook_max_attempts.max(1),
            },
            ..WebhookConfig::default()
        }
    }
}

impl ServeArgs {
    pub fn config(&self) -> ServerConfig {
        let listen = self.listen.unwrap_or_else(|| {
            let port = std::env::var("PORT")
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or(8080);
            SocketAddr::from(([127, 0, 0, 1], port))
        });
        ServerConfig {
            listen,
            data_dir: self.storage.data_dir.clone(),
            database_url: self.storage.database_url.clone(),
            store: self.storage.options(),
            durability: self.storage.durability(),
            seed: self.seed,
            sandbox_delay: Duration::from_millis(self.sandbox_delay_ms),
            backup_pool_size: self.backup_pool_size.clamp(1, 50),
            engine: EngineConfig {
                retry: RetryPolicy {
                    base: Duration::from_millis(self.retry_base_ms.max(1)),
                    cap: Duration::from_secs(60),
                    warn_after: Duration::from_secs(self.warn_after_secs),
                    give_up_after: Duration::from_secs(self.give_up_after_secs),
                },
                concurrency: self.engine_concurrency.clamp(1, 100_000),
                poll_interval: Duration::try_from_secs_f64(self.poll_interval_secs)
                    .unwrap_or(Duration::from_secs(60))
                    .max(Duration::from_millis(100)),
                lease: Duration::try_from_secs_f64(self.lease_secs)
                    .unwrap_or(Duration::from_secs(30))
                    .max(Duration::from_millis(500)),
                lead: Duration::try_from_secs_f64(self.engine_lead_secs)
                    .unwrap_or(Duration::from_secs(10)),
                gather: Duration::from_millis(self.engine_gather_ms.min(1000)),
                driver_timeout: Duration::try_from_secs_f64(self.driver_timeout_secs)
                    .unwrap_or(Duration::from_secs(600))
                    .max(Duration::from_millis(100)),
                ..EngineConfig::default()
            },
            webhooks: self.webhooks.config(),
            zwave_js: self.zwave_js.settings(),
        }
    }
}

#[derive(Args)]
pub struct CreateWorkspaceArgs {
    /// Name of the workspace.
    pub name: String,
    /// Sandbox locks to add to the workspace.
    #[arg(long, default_value_t = 2)]
    pub sandbox_locks: u32,
    /// Delay of each sandbox lock operation, in milliseconds.
    #[arg(long, env = "KEYWAY_SANDBOX_DELAY_MS", default_value_t = 500)]
    pub sandbox_delay_ms: u64,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// A fresh API key: `seam_` (what the SDKs require) and 40 random characters.
pub fn new_api_key() -> String {
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("seam_kw_{random}")
}

pub async fn create_workspace(args: &CreateWorkspaceArgs) -> anyhow::Result<(String, String)> {
    let store = args.storage.open_store().await?;
    let now = SystemClock.now();
    let api_key = new_api_key();
    let workspace = store
        .create_workspace(
            NewWorkspace {
                workspace_id: None,
                name: &args.name,
                is_sandbox: true,
                api_key: &api_key,
            },
            now,
        )
        .await?;
    if args.sandbox_locks > 0 {
        let account_id = uuid::Uuid::new_v4().to_string();
        store
            .insert_connected_account(
                &workspace.workspace_id,
                &account_id,
                "sandbox",
                "sandbox",
                now,
            )
            .await?;
        for n in 1..=args.sandbox_locks {
            store
                .insert_sandbox_device(
                    &workspace.workspace_id,
                    &account_id,
                    &uuid::Uuid::new_v4().to_string(),
                    "august_lock",
                    &format!("Sandbox Lock {n}"),
                    "august",
                    &DeviceCodeRules {
                        supported_code_lengths: vec![4, 5, 6],
                        max_active_codes_supported: 250,
                        code_constraints: vec![],
                        supports_backup_access_code_pool: true,
                    },
                    args.sandbox_delay_ms,
                    now,
                )
                .await?;
        }
    }
    store.close().await;
    Ok((workspace.workspace_id, api_key))
}

/// The two lines `serve` prints first: the URL and, when seeded, the sandbox API key.
pub fn banner(url: &str, seeded: bool) -> String {
    let mut text = format!("Keyway listening on {url}\n");
    if seeded {
        text.push_str(&format!(
            "API key: {} (workspace {})\n",
            SEED.seam_apikey1_token, SEED.seed_workspace_1
        ));
    }
    text
}
