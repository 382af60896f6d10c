//! `/access_codes/*` and `/access_codes/unmanaged/*`: the typed parameters of each route, the
//! calls, and the helpers that wait for a code to reach the lock or leave it.
//!
//! Nothing here decides policy (which PINs are valid, when a code is due): the server does.

use std::time::Duration;

use keyway_model::{
    AccessCode, AccessCodeStatus, AccessCodeType, ActionAttempt, GeneratedCode, Timestamp,
    UnmanagedAccessCode,
};
use serde::Serialize;
use serde_json::json;

use crate::client::{Client, Idempotency};
use crate::error::Error;
use crate::pagination::{self, ItemStream, Page};
use crate::wait::Poll;

/// Parameters of `/access_codes/create`. Only `device_id` is required.
///
/// Without `starts_at`/`ends_at` the code is `ongoing`; with both it is `time_bound`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateAccessCode {
    pub device_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The PIN; the server generates one under the lock's rules when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_code_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_external_modification: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_one_time_use: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_backup_access_code_pool: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_code_length: Option<u32>,
}

impl CreateAccessCode {
    /// An ongoing code with a generated PIN on `device_id`.
    pub fn new(device_id: impl Into<String>) -> Self {
        CreateAccessCode {
            device_id: device_id.into(),
            ..Default::default()
        }
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Makes the code time-bound: active from `starts_at` until `ends_at`.
    pub fn window(mut self, starts_at: Timestamp, ends_at: Timestamp) -> Self {
        self.starts_at = Some(starts_at);
        self.ends_at = Some(ends_at);
        self
    }
}

/// The answer of `/access_codes/create`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedAccessCode {
    pub access_code: AccessCode,
    /// The `CREATE_ACCESS_CODE` attempt. Keyway always sends it; Seam's fake does not.
    pub action_attempt: Option<ActionAttempt>,
}

/// Parameters of `/access_codes/update`. Absent fields keep their value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateAccessCode {
    pub access_code_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    /// `Ongoing` turns a time-bound code into an ongoing one.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<AccessCodeType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_external_modification: Option<bool>,
}

impl UpdateAccessCode {
    pub fn new(access_code_id: impl Into<String>) -> Self {
        UpdateAccessCode {
            access_code_id: access_code_id.into(),
            ..Default::default()
        }
    }
}

/// Parameters of `/access_codes/list`: `device_id` or `access_code_ids` is required.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListAccessCodes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_code_ids: Option<Vec<String>>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Where to start; streams follow the next cursors by themselves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_cursor: Option<String>,
}

impl ListAccessCodes {
    /// The codes of one device.
    pub fn device(device_id: impl Into<String>) -> Self {
        ListAccessCodes {
            device_id: Some(device_id.into()),
            ..Default::default()
        }
    }
}

/// Parameters of `/access_codes/unmanaged/list`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListUnmanagedAccessCodes {
    pub device_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_cursor: Option<String>,
}

impl ListUnmanagedAccessCodes {
    pub fn device(device_id: impl Into<String>) -> Self {
        ListUnmanagedAccessCodes {
            device_id: device_id.into(),
            ..Default::default()
        }
    }
}

/// Parameters of `/access_codes/unmanaged/convert_to_managed`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConvertToManaged {
    pub access_code_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_external_modification: Option<bool>,
    /// Take the code over even when another workspace manages it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

/// Managed access codes: `client.access_codes()`.
#[derive(Debug, Clone, Copy)]
pub struct AccessCodes<'a> {
    client: &'a Client,
}

impl Client {
    /// `/access_codes/*`.
    pub fn access_codes(&self) -> AccessCodes<'_> {
        AccessCodes { client: self }
    }
}

impl<'a> AccessCodes<'a> {
    /// Unmanaged codes: the ones found on a lock that the API did not put there.
    pub fn unmanaged(&self) -> UnmanagedAccessCodes<'a> {
        UnmanagedAccessCodes {
            client: self.client,
        }
    }

    /// Records a code for a lock. The answer comes at once (`setting`, or `unset` before a
    /// window opens); see [`AccessCodes::wait_until_set`] to wait for the lock.
    ///
    /// Never retried: a lost answer could otherwise create the code twice.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), keyway_client::Error> {
    /// use keyway_client::{Client, CreateAccessCode};
    /// let client = Client::new("http://127.0.0.1:8080", "seam_apikey1_token")?;
    /// let created = client
    ///     .access_codes()
    ///     .create(&CreateAccessCode::new("august_device_1").name("Guest").code("4821"))
    ///     .await?;
    /// println!("{} is {:?}", created.access_code.access_code_id, created.access_code.status);
    /// # Ok(()) }
    /// ```
    pub async fn create(&self, params: &CreateAccessCode) -> Result<CreatedAccessCode, Error> {
        const ROUTE: &str = "/access_codes/create";
        let mut body = self.client.send(ROUTE, params, Idempotency::Write).await?;
        let access_code = crate::client::take(ROUTE, &mut body, "access_code")?;
        let action_attempt = crate::client::take(ROUTE, &mut body, "action_attempt")?;
        Ok(CreatedAccessCode {
            access_code,
            action_attempt,
        })
    }

    /// One code, by id.
    pub async fn get(&self, access_code_id: &str) -> Result<AccessCode, Error> {
        self.client
            .call(
                "/access_codes/get",
                &json!({ "access_code_id": access_code_id }),
                "access_code",
                Idempotency::Read,
            )
            .await
    }

    /// The code holding `code` on `device_id`.
    pub async fn get_by_code(&self, device_id: &str, code: &str) -> Result<AccessCode, Error> {
        self.client
            .call(
                "/access_codes/get",
                &json!({ "device_id": device_id, "code": code }),
                "access_code",
                Idempotency::Read,
            )
            .await
    }

    /// One page of codes.
    pub async fn list(&self, params: &ListAccessCodes) -> Result<Page<AccessCode>, Error> {
        let params = pagination::to_object(params)?;
        pagination::page(self.client, "/access_codes/list", &params, "access_codes").await
    }

    /// Every code matching `params`, across pages.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), keyway_client::Error> {
    /// use futures::TryStreamExt;
    /// use keyway_client::{Client, ListAccessCodes};
    /// let client = Client::from_env()?;
    /// let codes: Vec<_> = client
    ///     .access_codes()
    ///     .list_stream(&ListAccessCodes::device("august_device_1"))?
    ///     .try_collect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn list_stream(&self, params: &ListAccessCodes) -> Result<ItemStream<AccessCode>, Error> {
        let params = pagination::to_object(params)?;
        Ok(pagination::items(
            self.client.clone(),
            "/access_codes/list",
            params,
            "access_codes",
        ))
    }

    /// Changes a code; the lock is reprogrammed when its PIN or window changed.
    /// Answers the `UPDATE_ACCESS_CODE` action attempt. Never retried.
    pub async fn update(&self, params: &UpdateAccessCode) -> Result<ActionAttempt, Error> {
        self.client
            .call(
                "/access_codes/update",
                params,
                "action_attempt",
                Idempotency::Write,
            )
            .await
    }

    /// Asks for a code to be removed from its lock and deleted; see
    /// [`AccessCodes::wait_until_deleted`]. Answers the `DELETE_ACCESS_CODE` action attempt.
    pub async fn delete(&self, access_code_id: &str) -> Result<ActionAttempt, Error> {
        self.client
            .call(
                "/access_codes/delete",
                &json!({ "access_code_id": access_code_id }),
                "action_attempt",
                Idempotency::Write,
            )
            .await
    }

    /// A PIN that the device would accept and that no code on it uses yet (nothing is stored).
    pub async fn generate_code(&self, device_id: &str) -> Result<GeneratedCode, Error> {
        self.client
            .call(
                "/access_codes/generate_code",
                &json!({ "device_id": device_id }),
                "generated_code",
                Idempotency::Read,
            )
            .await
    }

    /// Sandbox only: types a code at the lock's keypad, which the server then finds as an
    /// unmanaged code.
    pub async fn simulate_create_unmanaged(
        &self,
        device_id: &str,
        name: &str,
        code: &str,
    ) -> Result<UnmanagedAccessCode, Error> {
        self.client
            .call(
                "/access_codes/simulate/create_unmanaged_access_code",
                &json!({ "device_id": device_id, "name": name, "code": code }),
                "access_code",
                Idempotency::Write,
            )
            .await
    }

    /// Polls the code until the lock confirmed it (`status: set`), for at most `timeout`.
    ///
    /// Fails early with [`Error::AccessCodeFailed`] when the code carries an error of its own
    /// (the server gave up, e.g. `failed_to_set_on_device`); device errors such as an offline
    /// lock only delay it.
    ///
    /// ```no_run
    /// # async fn run(client: keyway_client::Client, id: &str) -> Result<(), keyway_client::Error> {
    /// use std::time::Duration;
    /// let code = client.access_codes().wait_until_set(id, Duration::from_secs(30)).await?;
    /// assert_eq!(code.status, keyway_model::AccessCodeStatus::Set);
    /// # Ok(()) }
    /// ```
    pub async fn wait_until_set(
        &self,
        access_code_id: &str,
        timeout: Duration,
    ) -> Result<AccessCode, Error> {
        let mut poll = Poll::new(self.client.poll_interval(), timeout);
        loop {
            let code = self.get(access_code_id).await?;
            if code.status == AccessCodeStatus::Set {
                return Ok(code);
            }
            if let Some(error) = code
                .errors
                .iter()
                .find(|e| e.is_access_code_error == Some(true))
            {
                return Err(Error::AccessCodeFailed {
                    access_code_id: code.access_code_id.clone(),
                    error_code: error.error_code.clone(),
                    message: error.message.clone(),
                });
            }
            poll.tick(|| {
                format!(
                    "access code {access_code_id} did not reach `set` (still `{}`)",
                    code.status.as_str()
                )
            })
            .await?;
        }
    }

    /// Polls the code until the server answers `404` for it (it left the lock and was deleted),
    /// for at most `timeout`.
    pub async fn wait_until_deleted(
        &self,
        access_code_id: &str,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut poll = Poll::new(self.client.poll_interval(), timeout);
        loop {
            let status = match self.get(access_code_id).await {
                Err(Error::NotFound { .. }) => return Ok(()),
                Err(other) => return Err(other),
                Ok(code) => code.status,
            };
            poll.tick(|| {
                format!(
                    "access code {access_code_id} was not deleted (still `{}`)",
                    status.as_str()
                )
            })
            .await?;
        }
    }
}

/// Unmanaged access codes: `client.access_codes().unmanaged()`.
#[derive(Debug, Clone, Copy)]
pub struct UnmanagedAccessCodes<'a> {
    client: &'a Client,
}

impl UnmanagedAccessCodes<'_> {
    /// One unmanaged code, by id.
    pub async fn get(&self, access_code_id: &str) -> Result<UnmanagedAccessCode, Error> {
        self.client
            .call(
                "/access_codes/unmanaged/get",
                &json!({ "access_code_id": access_code_id }),
                "access_code",
                Idempotency::Read,
            )
            .await
    }

    /// One page of a device's unmanaged codes.
    pub async fn list(
        &self,
        params: &ListUnmanagedAccessCodes,
    ) -> Result<Page<UnmanagedAccessCode>, Error> {
        let params = pagination::to_object(params)?;
        pagination::page(
            self.client,
            "/access_codes/unmanaged/list",
            &params,
            "access_codes",
        )
        .await
    }

    /// Every unmanaged code of a device, across pages.
    pub fn list_stream(
        &self,
        params: &ListUnmanagedAccessCodes,
    ) -> Result<ItemStream<UnmanagedAccessCode>, Error> {
        let params = pagination::to_object(params)?;
        Ok(pagination::items(
            self.client.clone(),
            "/access_codes/unmanaged/list",
            params,
            "access_codes",
        ))
    }

    /// Asks the server to manage an unmanaged code from now on. Never retried.
    pub async fn convert_to_managed(&self, params: &ConvertToManaged) -> Result<(), Error> {
        self.client
            .send(
                "/access_codes/unmanaged/convert_to_managed",
                params,
                Idempotency::Write,
            )
            .await
            .map(drop)
    }
}
