//! `keyway`: the server and its command line.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use keyway_server::cli::{
    banner, connect_zwave_js, create_workspace, Cli, Command, WorkspacesCommand, ZwaveJsCommand,
};
use tracing_subscriber::EnvFilter;

/// mimalloc: the server allocates many short-lived buffers (rows, JSON bodies) across threads,
/// where it spends less time than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = args.config();
            let seeded = config.seed;
            let server = keyway_server::start(config).await?;
            let mut stdout = std::io::stdout();
            stdout.write_all(banner(&server.url(), seeded).as_bytes())?;
            stdout.flush()?;
            tokio::select! {
                _ = server.wait() => {}
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!("shutting down");
                }
            }
        }
        Command::Workspaces(WorkspacesCommand::Create(args)) => {
            let (workspace_id, api_key) = create_workspace(&args).await?;
            println!("workspace_id: {workspace_id}");
            println!("api_key: {api_key}");
        }
        Command::ZwaveJs(ZwaveJsCommand::Connect(args)) => {
            let account_id = connect_zwave_js(&args).await?;
            println!("connected_account_id: {account_id}");
        }
        Command::Client(command) => {
            return Ok(keyway_server::commands::run(cli.client, command).await);
        }
    }
    Ok(ExitCode::SUCCESS)
}
