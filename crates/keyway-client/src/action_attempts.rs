//! `/action_attempts/*`: the handles of asynchronous operations, and waiting for one to settle.

use std::time::Duration;

use keyway_model::{ActionAttempt, ActionAttemptStatus};
use serde::Serialize;
use serde_json::json;

use crate::client::{Client, Idempotency};
use crate::error::Error;
use crate::pagination::{self, ItemStream, Page};
use crate::wait::Poll;

/// Parameters of `/action_attempts/list`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListActionAttempts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_attempt_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_cursor: Option<String>,
}

/// Action attempts: `client.action_attempts()`.
#[derive(Debug, Clone, Copy)]
pub struct ActionAttempts<'a> {
    client: &'a Client,
}

impl Client {
    /// `/action_attempts/*`.
    pub fn action_attempts(&self) -> ActionAttempts<'_> {
        ActionAttempts { client: self }
    }
}

impl ActionAttempts<'_> {
    /// One action attempt, by id.
    pub async fn get(&self, action_attempt_id: &str) -> Result<ActionAttempt, Error> {
        self.client
            .call(
                "/action_attempts/get",
                &json!({ "action_attempt_id": action_attempt_id }),
                "action_attempt",
                Idempotency::Read,
            )
            .await
    }

    /// One page of action attempts.
    pub async fn list(&self, params: &ListActionAttempts) -> Result<Page<ActionAttempt>, Error> {
        let params = pagination::to_object(params)?;
        pagination::page(
            self.client,
            "/action_attempts/list",
            &params,
            "action_attempts",
        )
        .await
    }

    /// Every action attempt matching `params`, across pages.
    pub fn list_stream(
        &self,
        params: &ListActionAttempts,
    ) -> Result<ItemStream<ActionAttempt>, Error> {
        let params = pagination::to_object(params)?;
        Ok(pagination::items(
            self.client.clone(),
            "/action_attempts/list",
            params,
            "action_attempts",
        ))
    }

    /// Polls an action attempt until it leaves `pending`, for at most `timeout`.
    ///
    /// Answers the attempt when it ended in `success`, and [`Error::ActionAttemptFailed`]
    /// (with the attempt's error type and message) when it ended in `error`.
    ///
    /// ```no_run
    /// # async fn run(client: keyway_client::Client) -> Result<(), keyway_client::Error> {
    /// use std::time::Duration;
    /// let attempt = client.access_codes().delete("some_access_code_id").await?;
    /// let done = client
    ///     .action_attempts()
    ///     .wait(&attempt.action_attempt_id, Duration::from_secs(10))
    ///     .await?;
    /// println!("{:?}", done.result);
    /// # Ok(()) }
    /// ```
    pub async fn wait(
        &self,
        action_attempt_id: &str,
        timeout: Duration,
    ) -> Result<ActionAttempt, Error> {
        let mut poll = Poll::new(self.client.poll_interval(), timeout);
        loop {
            let attempt = self.get(action_attempt_id).await?;
            match attempt.status {
                ActionAttemptStatus::Success => return Ok(attempt),
                ActionAttemptStatus::Error => {
                    let (kind, message) = attempt
                        .error
                        .map(|e| (e.kind, e.message))
                        .unwrap_or_else(|| ("unknown_error".into(), "no details".into()));
                    return Err(Error::ActionAttemptFailed {
                        action_attempt_id: attempt.action_attempt_id,
                        kind,
                        message,
                    });
                }
                ActionAttemptStatus::Pending => {}
            }
            poll.tick(|| format!("action attempt {action_attempt_id} is still pending"))
                .await?;
        }
    }
}
