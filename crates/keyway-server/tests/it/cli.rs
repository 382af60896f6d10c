//! The `keyway` binary's client commands against a spawned server: tables, `--json`, exit
//! codes and error messages, `events list --follow`, and shell completions.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use assert_cmd::prelude::OutputAssertExt;
use keyway_client::{Client, CreateAccessCode};
use predicates::prelude::*;
use serde_json::Value;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_keyway");

/// `keyway` with no endpoint or key inherited from the developer's environment.
fn keyway(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("KEYWAY_ENDPOINT")
        .env_remove("KEYWAY_API_KEY")
        .env_remove("SEAM_ENDPOINT")
        .env_remove("SEAM_API_KEY")
        .env("RUST_LOG", "warn");
    command
}

/// Runs `keyway --endpoint <app> --api-key KEY1 <args>` off the async runtime (the server
/// answers on it meanwhile).
async fn run(app: &TestApp, args: &[&str]) -> Output {
    let mut command = keyway(args);
    command.args(["--endpoint", &app.server.url(), "--api-key", KEY1]);
    run_command(command).await
}

async fn run_command(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("keyway runs"))
        .await
        .expect("joined")
}

fn stdout_json(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn devices_print_as_a_table_and_as_json() {
    let app = spawn_app().await;
    run(&app, &["devices", "list"])
        .await
        .assert()
        .success()
        .stdout(
            predicate::str::contains("DEVICE ID")
                .and(predicate::str::contains("august_device_1"))
                .and(predicate::str::contains("Front Door"))
                .and(predicate::str::contains("schlage_device_id")),
        );
    let output = run(&app, &["devices", "list", "--json"]).await;
    output.clone().assert().success();
    let devices = stdout_json(&output);
    assert_eq!(devices.as_array().map(Vec::len), Some(3));
    let output = run(&app, &["devices", "get", DEVICE1, "--json"]).await;
    assert_eq!(stdout_json(&output)["display_name"], "Front Door");
    run(&app, &["devices", "get", DEVICE1])
        .await
        .assert()
        .success()
        .stdout(predicate::str::contains("supported_code_lengths"));
}

#[tokio::test]
async fn a_code_is_created_waited_for_updated_and_deleted_from_the_shell() {
    let app = spawn_app().await;
    let output = run(
        &app,
        &[
            "access-codes",
            "create",
            "--device-id",
            DEVICE1,
            "--name",
            "Guest",
            "--code",
            "4821",
            "--wait",
            "--json",
        ],
    )
    .await;
    output.clone().assert().success();
    let code = stdout_json(&output);
    assert_eq!(code["status"], "set");
    assert_eq!(code["code"], "4821");
    let id = code["access_code_id"].as_str().expect("id").to_owned();

    run(&app, &["access-codes", "list", "--device-id", DEVICE1])
        .await
        .assert()
        .success()
        .stdout(
            predicate::str::contains("ACCESS CODE ID")
                .and(predicate::str::contains(id.as_str()))
                .and(predicate::str::contains("Guest"))
                .and(predicate::str::contains(" set ")),
        );
    // Without --device-id: every device's codes.
    let output = run(&app, &["access-codes", "list", "--json"]).await;
    assert_eq!(stdout_json(&output).as_array().map(Vec::len), Some(1));
    run(&app, &["access-codes", "get", &id])
        .await
        .assert()
        .success()
        .stdout(predicate::str::contains("4821").and(predicate::str::contains("ongoing")));

    let output = run(
        &app,
        &[
            "access-codes",
            "update",
            &id,
            "--name",
            "Cleaner",
            "--wait",
            "--json",
        ],
    )
    .await;
    output.clone().assert().success();
    assert_eq!(stdout_json(&output)["name"], "Cleaner");

    let output = run(&app, &["access-codes", "delete", &id, "--wait", "--json"]).await;
    output.clone().assert().success();
    let attempt = stdout_json(&output);
    assert_eq!(attempt["action_type"], "DELETE_ACCESS_CODE");
    assert_eq!(attempt["status"], "success");
    assert!(app.lock_pins(DEVICE1).await.is_empty());
    run(&app, &["access-codes", "get", &id])
        .await
        .assert()
        .code(1)
        .stdout("")
        .stderr("error: access_code_not_found: Access code not found\n");
}

#[tokio::test]
async fn api_errors_print_their_type_and_message_and_exit_1() {
    let app = spawn_app().await;
    run(&app, &["devices", "get", "nope"])
        .await
        .assert()
        .code(1)
        .stderr("error: device_not_found: Device not found\n");

    run(
        &app,
        &[
            "access-codes",
            "create",
            "--device-id",
            DEVICE1,
            "--code",
            "7777",
        ],
    )
    .await
    .assert()
    .success();
    run(
        &app,
        &[
            "access-codes",
            "create",
            "--device-id",
            DEVICE1,
            "--code",
            "7777",
        ],
    )
    .await
    .assert()
    .code(1)
    .stderr(predicate::str::starts_with(
        "error: duplicate_access_code: ",
    ));

    run(
        &app,
        &[
            "access-codes",
            "create",
            "--device-id",
            DEVICE1,
            "--code",
            "12",
        ],
    )
    .await
    .assert()
    .code(1)
    .stderr(
        predicate::str::starts_with("error: invalid_input: ")
            .and(predicate::str::contains("\n  code: ")),
    );

    // An unknown code: the API's answer is shown as it is.
    run(&app, &["access-codes", "unmanaged", "convert", "some_code"])
        .await
        .assert()
        .code(1)
        .stderr("error: access_code_not_found: Access code not found\n");

    let mut stranger = keyway(&["devices", "list"]);
    stranger.args(["--endpoint", &app.server.url(), "--api-key", "seam_unknown"]);
    run_command(stranger)
        .await
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("error: unauthorized: "));
}

#[tokio::test]
async fn usage_network_and_configuration_errors_exit_non_zero() {
    let app = spawn_app().await;
    // A missing required flag is a usage error (clap exits 2).
    run(&app, &["access-codes", "create", "--code", "1234"])
        .await
        .assert()
        .code(2);
    run(
        &app,
        &[
            "access-codes",
            "create",
            "--device-id",
            DEVICE1,
            "--starts-at",
            "tomorrow",
            "--ends-at",
            "later",
        ],
    )
    .await
    .assert()
    .code(2)
    .stderr(predicate::str::contains("RFC 3339"));

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let mut unreachable = keyway(&["devices", "list"]);
    unreachable.args(["--endpoint", &closed, "--api-key", KEY1]);
    run_command(unreachable)
        .await
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "error: request to /devices/list failed: ",
        ));

    let mut no_key = keyway(&["devices", "list"]);
    no_key.args(["--endpoint", &app.server.url()]);
    run_command(no_key)
        .await
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no API key"));
}

#[tokio::test]
async fn the_environment_names_the_server_keyway_first_then_seam() {
    let app = spawn_app().await;
    let mut seam_env = keyway(&["devices", "list", "--json"]);
    seam_env
        .env("SEAM_ENDPOINT", app.server.url())
        .env("SEAM_API_KEY", KEY1);
    let output = run_command(seam_env).await;
    output.clone().assert().success();
    assert_eq!(stdout_json(&output).as_array().map(Vec::len), Some(3));

    // KEYWAY_API_KEY wins over SEAM_API_KEY: the empty workspace has no devices.
    let mut keyway_env = keyway(&["devices", "list"]);
    keyway_env
        .env("KEYWAY_ENDPOINT", app.server.url())
        .env("KEYWAY_API_KEY", KEY2)
        .env("SEAM_API_KEY", KEY1);
    run_command(keyway_env)
        .await
        .assert()
        .success()
        .stdout("No devices.\n");
}

#[tokio::test]
async fn unmanaged_codes_and_events_list() {
    let app = spawn_app().await;
    let client = Client::new(app.server.url(), KEY1).expect("client");
    client
        .access_codes()
        .simulate_create_unmanaged(DEVICE1, "Keypad", "3333")
        .await
        .expect("simulate");
    run(
        &app,
        &["access-codes", "unmanaged", "list", "--device-id", DEVICE1],
    )
    .await
    .assert()
    .success()
    .stdout(predicate::str::contains("Keypad").and(predicate::str::contains("3333")));

    let output = run(
        &app,
        &[
            "events",
            "list",
            "--json",
            "--event-type",
            "access_code.unmanaged.created",
        ],
    )
    .await;
    output.clone().assert().success();
    let events = stdout_json(&output);
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{events}");
    run(&app, &["events", "list"])
        .await
        .assert()
        .success()
        .stdout(
            predicate::str::contains("EVENT TYPE")
                .and(predicate::str::contains("access_code.unmanaged.created")),
        );
}

#[tokio::test]
async fn events_follow_prints_new_events_as_they_happen() {
    let app = spawn_app().await;
    let client = Client::new(app.server.url(), KEY1).expect("client");
    let mut child = keyway(&["events", "list", "--follow", "--interval", "0.1", "--json"])
        .args(["--endpoint", &app.server.url(), "--api-key", KEY1])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("keyway starts");
    // Lines as the follower prints them.
    let (lines, received) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let created = client
        .access_codes()
        .create(&CreateAccessCode::new(DEVICE1).code("2222"))
        .await
        .expect("create");
    let id = created.access_code.access_code_id;
    let wanted = ["access_code.created", "access_code.set_on_device"];
    let mut seen: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while seen.len() < wanted.len() && std::time::Instant::now() < deadline {
        let line = match received.try_recv() {
            Ok(line) => line,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let event: Value = serde_json::from_str(&line).expect("one JSON event per line");
        if event["access_code_id"] == id.as_str() {
            seen.push(event["event_type"].as_str().unwrap_or_default().to_owned());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    assert_eq!(seen, wanted);
}

#[tokio::test]
async fn completions_are_generated_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_keyway()"),
        ("zsh", "#compdef keyway"),
        ("fish", "complete -c keyway"),
    ] {
        let output = run_command(keyway(&["completions", shell])).await;
        output
            .assert()
            .success()
            .stdout(predicate::str::contains(marker).and(predicate::str::contains("access-codes")));
    }
    run_command(keyway(&["completions", "tcsh"]))
        .await
        .assert()
        .code(2);
}
