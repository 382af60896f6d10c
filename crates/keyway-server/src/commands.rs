//! The `keyway` commands that talk to a running server (Keyway or Seam) through
//! `keyway-client`: access codes, unmanaged codes, devices, events, and shell completions.
//!
//! Output goes to stdout (tables, or JSON with `--json`); progress and errors go to stderr.
//! An API error prints as `error: <type>: <message>` and the command exits with 1; bad usage
//! exits with 2 (clap). These commands never open the database: `serve` and
//! `workspaces create` live in `cli`.

mod render;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Subcommand};
use clap_complete::Shell;
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget};
use keyway_client::model::{AccessCodeType, Timestamp};
use keyway_client::{
    Client, ConvertToManaged, CreateAccessCode, Error, ListAccessCodes, ListDevices, ListEvents,
    ListUnmanagedAccessCodes, UpdateAccessCode,
};

use crate::cli::Cli;

/// Where the server is and how to print; accepted before or after the subcommand.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Server URL of the client commands [default: $SEAM_ENDPOINT, else http://127.0.0.1:8080]
    #[arg(long, global = true, env = "KEYWAY_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// API key of the client commands [default: $SEAM_API_KEY]
    #[arg(
        long,
        global = true,
        env = "KEYWAY_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// Print JSON instead of tables (client commands).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Access codes on the workspace's locks.
    #[command(subcommand)]
    AccessCodes(AccessCodesCommand),
    /// The workspace's devices (locks).
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// The workspace's events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Print a completion script: `keyway completions bash > /etc/bash_completion.d/keyway`.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccessCodesCommand {
    /// List managed access codes (every page; every device unless --device-id).
    List {
        /// Only the codes of this device.
        #[arg(long)]
        device_id: Option<String>,
    },
    /// Show one access code.
    Get { access_code_id: String },
    /// Create an access code; ongoing, or time-bound with --starts-at and --ends-at.
    Create(CreateArgs),
    /// Change an access code's name, PIN or window.
    Update(UpdateArgs),
    /// Remove an access code from its lock and delete it.
    Delete {
        access_code_id: String,
        /// Wait until the code is gone from the lock.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait with --wait.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
    },
    /// Codes found on a lock that were not created through the API.
    #[command(subcommand)]
    Unmanaged(UnmanagedCommand),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The lock to program.
    #[arg(long)]
    device_id: String,
    /// A name for people (e.g. the guest's).
    #[arg(long)]
    name: Option<String>,
    /// The PIN (generated under the lock's rules when absent).
    #[arg(long)]
    code: Option<String>,
    /// Start of a time-bound code (RFC 3339, e.g. 2030-01-01T15:00:00Z).
    #[arg(long, value_parser = parse_instant, requires = "ends_at")]
    starts_at: Option<Timestamp>,
    /// End of a time-bound code (RFC 3339).
    #[arg(long, value_parser = parse_instant, requires = "starts_at")]
    ends_at: Option<Timestamp>,
    /// Wait until the lock confirmed the code (status `set`).
    #[arg(long)]
    wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    access_code_id: String,
    /// A new name.
    #[arg(long)]
    name: Option<String>,
    /// A new PIN.
    #[arg(long)]
    code: Option<String>,
    /// A new start (RFC 3339); makes the code time-bound.
    #[arg(long, value_parser = parse_instant)]
    starts_at: Option<Timestamp>,
    /// A new end (RFC 3339); makes the code time-bound.
    #[arg(long, value_parser = parse_instant)]
    ends_at: Option<Timestamp>,
    /// Make a time-bound code ongoing.
    #[arg(long, conflicts_with_all = ["starts_at", "ends_at"])]
    ongoing: bool,
    /// Wait until the server finished the update.
    #[arg(long)]
    wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
}

#[derive(Subcommand, Debug)]
pub enum UnmanagedCommand {
    /// List a device's unmanaged codes.
    List {
        #[arg(long)]
        device_id: String,
    },
    /// Let the API manage an unmanaged code from now on.
    Convert {
        access_code_id: String,
        /// Keep accepting changes made at the lock itself.
        #[arg(long)]
        allow_external_modification: bool,
        /// Take the code over even if another workspace manages it.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DevicesCommand {
    /// List devices (every page).
    List,
    /// Show one device.
    Get { device_id: String },
}

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// List events, oldest first; --follow keeps polling for new ones.
    List(EventsListArgs),
}

#[derive(Args, Debug)]
pub struct EventsListArgs {
    /// Only the events of this device.
    #[arg(long)]
    device_id: Option<String>,
    /// Only the events of this access code.
    #[arg(long)]
    access_code_id: Option<String>,
    /// e.g. access_code.set_on_device (repeatable).
    #[arg(long = "event-type", value_name = "TYPE")]
    event_types: Vec<String>,
    /// Only events at or after this instant (RFC 3339). Seam requires it.
    #[arg(long, value_parser = parse_instant)]
    since: Option<Timestamp>,
    /// Keep polling and print new events as they happen (Ctrl-C stops).
    #[arg(long, short = 'f')]
    follow: bool,
    /// Seconds between polls with --follow.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    interval: f64,
}

fn parse_instant(raw: &str) -> Result<Timestamp, String> {
    Timestamp::parse(raw)
        .ok_or_else(|| format!("{raw:?} is not an RFC 3339 instant (e.g. 2030-01-01T15:00:00Z)"))
}

/// Runs a client command and answers the process's exit code.
pub async fn run(args: ClientArgs, command: ClientCommand) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match command {
        ClientCommand::Completions { shell } => completions(shell, &mut out),
        command => match connect(&args) {
            Ok(client) => dispatch(&client, &args, command, &mut out).await,
            Err(error) => Err(error.into()),
        },
    };
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

/// `error: <type>: <message>`, then the causes of a transport error.
fn report(error: &anyhow::Error) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {error}");
    for cause in error.chain().skip(1) {
        let _ = writeln!(stderr, "  caused by: {cause}");
    }
    if let Some(Error::InvalidInput {
        validation_errors: Some(serde_json::Value::Object(fields)),
        ..
    }) = error.downcast_ref::<Error>()
    {
        // zod's `format()` shape: `{"_errors": [...], "<field>": {"_errors": [...]}}`.
        for (field, detail) in fields.iter().filter(|(field, _)| *field != "_errors") {
            let messages: Vec<&str> = detail["_errors"]
                .as_array()
                .map(|list| list.iter().filter_map(|m| m.as_str()).collect())
                .unwrap_or_default();
            let _ = writeln!(stderr, "  {field}: {}", messages.join("; "));
        }
    }
}

fn connect(args: &ClientArgs) -> Result<Client, Error> {
    Client::builder()
        .endpoint_opt(args.endpoint.clone())
        .api_key_opt(args.api_key.clone())
        .build()
}

fn completions(shell: Shell, out: &mut impl Write) -> anyhow::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "keyway", out);
    Ok(())
}

async fn dispatch(
    client: &Client,
    args: &ClientArgs,
    command: ClientCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let json = args.json;
    match command {
        ClientCommand::AccessCodes(command) => access_codes(client, json, command, out).await,
        ClientCommand::Devices(DevicesCommand::List) => {
            let devices: Vec<_> = client
                .devices()
                .list_stream(&ListDevices::default())?
                .try_collect()
                .await?;
            if json {
                render::json(out, &devices)
            } else {
                render::devices(out, &devices)
            }
        }
        ClientCommand::Devices(DevicesCommand::Get { device_id }) => {
            let device = client.devices().get(&device_id).await?;
            if json {
                render::json(out, &device)
            } else {
                render::device(out, &device)
            }
        }
        ClientCommand::Events(EventsCommand::List(list)) => events(client, json, list, out).await,
        ClientCommand::Completions { shell } => completions(shell, out),
    }
}

async fn access_codes(
    client: &Client,
    json: bool,
    command: AccessCodesCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let codes = client.access_codes();
    match command {
        AccessCodesCommand::List { device_id } => {
            // The API lists one device at a time; without --device-id, every device in turn.
            let device_ids = match device_id {
                Some(device_id) => vec![device_id],
                None => {
                    client
                        .devices()
                        .list_stream(&ListDevices::default())?
                        .map_ok(|device| device.device_id)
                        .try_collect()
                        .await?
                }
            };
            let mut listed = Vec::new();
            for device_id in device_ids {
                let mut page: Vec<_> = codes
                    .list_stream(&ListAccessCodes::device(device_id))?
                    .try_collect()
                    .await?;
                listed.append(&mut page);
            }
            if json {
                render::json(out, &listed)
            } else {
                render::access_codes(out, &listed)
            }
        }
        AccessCodesCommand::Get { access_code_id } => {
            let code = codes.get(&access_code_id).await?;
            if json {
                render::json(out, &code)
            } else {
                render::access_code(out, &code)
            }
        }
        AccessCodesCommand::Create(create) => {
            let params = CreateAccessCode {
                device_id: create.device_id,
                name: create.name,
                code: create.code,
                starts_at: create.starts_at,
                ends_at: create.ends_at,
                ..Default::default()
            };
            let created = codes.create(&params).await?;
            let mut code = created.access_code;
            if create.wait {
                let spinner = spinner(format!(
                    "waiting for {} to confirm access code {}",
                    code.device_id, code.access_code_id
                ));
                let waited = codes
                    .wait_until_set(&code.access_code_id, Duration::from_secs(create.timeout))
                    .await;
                spinner.finish_and_clear();
                code = waited?;
            }
            if json {
                render::json(out, &code)
            } else {
                render::access_code(out, &code)
            }
        }
        AccessCodesCommand::Update(update) => {
            let params = UpdateAccessCode {
                name: update.name,
                code: update.code,
                starts_at: update.starts_at,
                ends_at: update.ends_at,
                kind: update.ongoing.then_some(AccessCodeType::Ongoing),
                ..UpdateAccessCode::new(&update.access_code_id)
            };
            let attempt = codes.update(&params).await?;
            if !update.wait {
                return if json {
                    render::json(out, &attempt)
                } else {
                    render::action_attempt(out, &attempt)
                };
            }
            let spinner = spinner(format!("updating access code {}", update.access_code_id));
            let waited = client
                .action_attempts()
                .wait(
                    &attempt.action_attempt_id,
                    Duration::from_secs(update.timeout),
                )
                .await;
            spinner.finish_and_clear();
            waited?;
            let code = codes.get(&update.access_code_id).await?;
            if json {
                render::json(out, &code)
            } else {
                render::access_code(out, &code)
            }
        }
        AccessCodesCommand::Delete {
            access_code_id,
            wait,
            timeout,
        } => {
            let mut attempt = codes.delete(&access_code_id).await?;
            if wait {
                let spinner = spinner(format!(
                    "waiting for access code {access_code_id} to leave its lock"
                ));
                let waited = codes
                    .wait_until_deleted(&access_code_id, Duration::from_secs(timeout))
                    .await;
                spinner.finish_and_clear();
                waited?;
                // Show the settled attempt when the server still has it.
                if let Ok(settled) = client
                    .action_attempts()
                    .get(&attempt.action_attempt_id)
                    .await
                {
                    attempt = settled;
                }
            }
            if json {
                render::json(out, &attempt)
            } else {
                render::action_attempt(out, &attempt)
            }
        }
        AccessCodesCommand::Unmanaged(UnmanagedCommand::List { device_id }) => {
            let listed: Vec<_> = codes
                .unmanaged()
                .list_stream(&ListUnmanagedAccessCodes::device(device_id))?
                .try_collect()
                .await?;
            if json {
                render::json(out, &listed)
            } else {
                render::unmanaged_access_codes(out, &listed)
            }
        }
        AccessCodesCommand::Unmanaged(UnmanagedCommand::Convert {
            access_code_id,
            allow_external_modification,
            force,
        }) => {
            codes
                .unmanaged()
                .convert_to_managed(&ConvertToManaged {
                    access_code_id: access_code_id.clone(),
                    allow_external_modification: allow_external_modification.then_some(true),
                    force: force.then_some(true),
                })
                .await?;
            if json {
                render::json(
                    out,
                    &serde_json::json!({ "access_code_id": access_code_id, "converted": true }),
                )
            } else {
                writeln!(out, "Access code {access_code_id} is now managed.")?;
                Ok(())
            }
        }
    }
}

/// A spinner on stderr while waiting, only when stderr is a terminal.
fn spinner(message: String) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

async fn events(
    client: &Client,
    json: bool,
    args: EventsListArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut params = ListEvents {
        device_id: args.device_id,
        access_code_id: args.access_code_id,
        event_types: (!args.event_types.is_empty()).then_some(args.event_types),
        since: args.since,
        ..Default::default()
    };
    let first: Vec<_> = client.events().list_stream(&params)?.try_collect().await?;
    if !args.follow {
        return if json {
            render::json(out, &first)
        } else {
            render::events(out, &first, true)
        };
    }
    if !json && first.is_empty() {
        render::event_header(out)?;
    }
    print_events(out, json, &first, true)?;
    out.flush()?;
    let interval = Duration::from_secs_f64(args.interval.clamp(0.05, 3600.0));
    // Events already printed, by id, with the instant they occurred: a poll asks for events
    // since the newest instant seen, so the ones at that instant come back and are skipped.
    let mut seen: HashMap<String, Timestamp> = first
        .iter()
        .map(|e| (e.event_id.clone(), e.occurred_at))
        .collect();
    let mut newest = first.iter().map(|e| e.occurred_at).max().or(params.since);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
        params.since = newest;
        let polled: Result<Vec<_>, Error> = match client.events().list_stream(&params) {
            Ok(stream) => stream.try_collect().await,
            Err(error) => Err(error),
        };
        let batch = match polled {
            Ok(batch) => batch,
            Err(error) if error.is_transient() => {
                eprintln!("warning: {error} (retrying)");
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let fresh: Vec<_> = batch
            .into_iter()
            .filter(|e| !seen.contains_key(&e.event_id))
            .collect();
        print_events(out, json, &fresh, false)?;
        out.flush()?;
        for event in &fresh {
            seen.insert(event.event_id.clone(), event.occurred_at);
        }
        newest = seen.values().max().copied().or(newest);
        if let Some(newest) = newest {
            seen.retain(|_, at| *at >= newest);
        }
    }
}

fn print_events(
    out: &mut impl Write,
    json: bool,
    events: &[keyway_client::model::Event],
    header: bool,
) -> anyhow::Result<()> {
    if json {
        for event in events {
            render::json_line(out, event)?;
        }
        Ok(())
    } else {
        render::events(out, events, header)
    }
}
