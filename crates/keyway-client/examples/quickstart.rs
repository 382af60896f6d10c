//! The README's "Use it from Rust" example: put a code on a lock, wait for the lock, read the
//! events back. Run it against `keyway serve --seed` with
//! `KEYWAY_API_KEY=seam_apikey1_token cargo run -p keyway-client --example quickstart`.

use std::time::Duration;

use futures::TryStreamExt;
use keyway_client::{Client, CreateAccessCode, Error, ListEvents};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // KEYWAY_ENDPOINT / KEYWAY_API_KEY (or SEAM_ENDPOINT / SEAM_API_KEY); endpoint default
    // http://127.0.0.1:8080.
    let client = Client::from_env()?;

    let created = client
        .access_codes()
        .create(&CreateAccessCode::new("august_device_1").name("Guest"))
        .await?;
    let id = created.access_code.access_code_id;
    let code = client
        .access_codes()
        .wait_until_set(&id, Duration::from_secs(30))
        .await?;
    println!("{} is {:?} on {}", id, code.code, code.device_id);

    let events: Vec<_> = client
        .events()
        .list_stream(&ListEvents {
            access_code_id: Some(id.clone()),
            ..Default::default()
        })?
        .try_collect()
        .await?;
    for event in &events {
        println!("{} {}", event.occurred_at, event.event_type.as_str());
    }

    client.access_codes().delete(&id).await?;
    client
        .access_codes()
        .wait_until_deleted(&id, Duration::from_secs(30))
        .await?;

    match client.devices().get("no_such_device").await {
        Err(error @ Error::NotFound { .. }) => println!("as expected: {error}"),
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
