//! `Client` and `ClientBuilder`: where the server is, who is calling, and how one request is
//! sent, answered, classified and (for reads only) retried.
//!
//! Every call is a `POST` with a JSON body: both Keyway and Seam's API accept it on every route,
//! which keeps one encoding for all parameters. Routes and their parameters live in the resource
//! modules (`access_codes`, `devices`, …), not here.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Error;

/// Where a client connects when neither an argument nor the environment names an endpoint:
/// `keyway serve`'s default address.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

/// The `seam-sdk-name` header this client sends.
pub const SDK_NAME: &str = "keyway-client";

/// The `seam-sdk-version` header this client sends (the crate's version).
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A handle on one Keyway (or Seam) workspace, reached with one API key.
///
/// Cloning is cheap and clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: String,
    max_retries: u32,
    retry_base: Duration,
    poll_interval: Duration,
}

/// Whether a request may be sent twice without changing its effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Reads: retried on 429, 5xx and connection errors.
    Read,
    /// Writes: sent exactly once.
    Write,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the API key.
        f.debug_struct("Client")
            .field("endpoint", &self.inner.endpoint)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `endpoint` with `api_key`, and default settings.
    ///
    /// ```no_run
    /// let client = keyway_client::Client::new("http://127.0.0.1:8080", "seam_apikey1_token")?;
    /// # Ok::<(), keyway_client::Error>(())
    /// ```
    pub fn new(endpoint: impl Into<String>, api_key: impl Into<String>) -> Result<Self, Error> {
        ClientBuilder::new()
            .endpoint(endpoint)
            .api_key(api_key)
            .build()
    }

    /// A client configured from the environment: `KEYWAY_ENDPOINT` / `KEYWAY_API_KEY`, falling
    /// back to `SEAM_ENDPOINT` / `SEAM_API_KEY`.
    pub fn from_env() -> Result<Self, Error> {
        ClientBuilder::new().build()
    }

    /// A builder, to set the endpoint, the API key, retries and polling.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// The base URL requests go to, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    pub(crate) fn poll_interval(&self) -> Duration {
        self.inner.poll_interval
    }

    /// Sends `params` to `route` and answers the value under `key` in the success body.
    pub(crate) async fn call<P, T>(
        &self,
        route: &str,
        params: &P,
        key: &str,
        idempotency: Idempotency,
    ) -> Result<T, Error>
    where
        P: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let mut body = self.send(route, params, idempotency).await?;
        take(route, &mut body, key)
    }

    /// Sends `params` to `route` and answers the whole success body as a JSON object.
    pub(crate) async fn send<P>(
        &self,
        route: &str,
        params: &P,
        idempotency: Idempotency,
    ) -> Result<Map<String, Value>, Error>
    where
        P: Serialize + ?Sized,
    {
        let mut attempt = 0;
        loop {
            let result = self.send_once(route, params).await;
            match result {
                Err(error)
                    if idempotency == Idempotency::Read
                        && attempt < self.inner.max_retries
                        && error.is_transient() =>
                {
                    let delay = self.backoff(attempt);
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    /// Exponential back-off with a little jitter: base, 2·base, 4·base, … capped at 10 s.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.inner.retry_base.saturating_mul(1 << attempt.min(16));
        let base = base.min(Duration::from_secs(10));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let spread = (base.as_millis() as u64 / 4).max(1);
        base + Duration::from_millis(u64::from(nanos) % spread)
    }

    async fn send_once<P>(&self, route: &str, params: &P) -> Result<Map<String, Value>, Error>
    where
        P: Serialize + ?Sized,
    {
        let url = format!("{}{route}", self.inner.endpoint);
        let transport = |source| Error::Transport {
            route: route.to_owned(),
            source,
        };
        let response = self
            .inner
            .http
            .post(url)
            .json(params)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = response.bytes().await.map_err(transport)?;
        if !(200..300).contains(&status) {
            let error = Error::from_answer(status, &bytes);
            if let (Some(seconds), true) = (retry_after, error.is_transient()) {
                // Honour the server's pace, within reason, before the caller's back-off.
                tokio::time::sleep(Duration::from_secs(seconds.min(10))).await;
            }
            return Err(error);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(Error::Decode {
                route: route.to_owned(),
                message: "the body is not a JSON object".into(),
            }),
            Err(e) => Err(Error::Decode {
                route: route.to_owned(),
                message: format!("the body is not JSON: {e}"),
            }),
        }
    }
}

/// Takes `key` out of a success body and reads it as `T`, naming the failing field if any.
pub(crate) fn take<T: DeserializeOwned>(
    route: &str,
    body: &mut Map<String, Value>,
    key: &str,
) -> Result<T, Error> {
    let value = body.remove(key).unwrap_or(Value::Null);
    decode(route, key, value)
}

/// Reads `value` (found under `key`) as `T`, naming the failing field if any.
pub(crate) fn decode<T: DeserializeOwned>(
    route: &str,
    key: &str,
    value: Value,
) -> Result<T, Error> {
    if value.is_null() {
        // An absent key: let `Option<T>` read it as `None`, anything else says what is missing.
        return serde_json::from_value(Value::Null).map_err(|_| Error::Decode {
            route: route.to_owned(),
            message: format!("the answer has no `{key}`"),
        });
    }
    serde_path_to_error::deserialize(value).map_err(|e| Error::Decode {
        route: route.to_owned(),
        message: format!("`{key}.{}`: {}", e.path(), e.inner()),
    })
}

/// Builds a [`Client`]. Unset values come from the environment, then defaults.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoint: Option<String>,
    api_key: Option<String>,
    timeout: Duration,
    max_retries: u32,
    retry_base: Duration,
    poll_interval: Duration,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            endpoint: None,
            api_key: None,
            timeout: Duration::from_secs(60),
            max_retries: 3,
            retry_base: Duration::from_millis(200),
            poll_interval: Duration::from_millis(200),
        }
    }
}

impl ClientBuilder {
    pub fn new() -> Self {
        ClientBuilder::default()
    }

    /// The server's base URL, e.g. `http://127.0.0.1:8080`. Default: `KEYWAY_ENDPOINT`, then
    /// `SEAM_ENDPOINT`, then [`DEFAULT_ENDPOINT`].
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The workspace's API key (`seam_…`). Default: `KEYWAY_API_KEY`, then `SEAM_API_KEY`.
    pub fn api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(api_key.into());
        self
    }

    /// Sets the endpoint only when `endpoint` is `Some` (handy for optional CLI flags).
    pub fn endpoint_opt(self, endpoint: Option<String>) -> Self {
        match endpoint {
            Some(endpoint) => self.endpoint(endpoint),
            None => self,
        }
    }

    /// Sets the API key only when `api_key` is `Some`.
    pub fn api_key_opt(self, api_key: Option<String>) -> Self {
        match api_key {
            Some(api_key) => self.api_key(api_key),
            None => self,
        }
    }

    /// Time allowed for one request, answer included. Default 60 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often a read is repeated after a 429, a 5xx or a connection error. Default 3.
    /// Writes (create, update, delete, simulate) are never repeated.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// First back-off between retries; it doubles each time. Default 200 ms.
    pub fn retry_base(mut self, retry_base: Duration) -> Self {
        self.retry_base = retry_base;
        self
    }

    /// Pause between two polls of the wait helpers. Default 200 ms.
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        let endpoint = self
            .endpoint
            .filter(|e| !e.trim().is_empty())
            .or_else(|| env_var("KEYWAY_ENDPOINT"))
            .or_else(|| env_var("SEAM_ENDPOINT"))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let endpoint = endpoint.trim().trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|e| Error::Config(format!("invalid endpoint {endpoint:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "invalid endpoint {endpoint:?}: use an http:// or https:// URL"
            )));
        }
        let api_key = self
            .api_key
            .filter(|k| !k.trim().is_empty())
            .or_else(|| env_var("KEYWAY_API_KEY"))
            .or_else(|| env_var("SEAM_API_KEY"))
            .ok_or_else(|| {
                Error::Config(
                    "no API key: pass one, or set KEYWAY_API_KEY (or SEAM_API_KEY)".to_owned(),
                )
            })?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", api_key.trim()))
            .map_err(|_| Error::Config("the API key contains invalid characters".to_owned()))?;
        authorization.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization);
        headers.insert("seam-sdk-name", HeaderValue::from_static(SDK_NAME));
        headers.insert("seam-sdk-version", HeaderValue::from_static(SDK_VERSION));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("keyway-client/", env!("CARGO_PKG_VERSION")))
            .timeout(self.timeout)
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                endpoint,
                max_retries: self.max_retries,
                retry_base: self.retry_base,
                poll_interval: self.poll_interval.max(Duration::from_millis(10)),
            }),
        })
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_values_win_and_trailing_slashes_go() {
        let client = Client::new("http://127.0.0.1:9/", "seam_x").expect("client");
        assert_eq!(client.endpoint(), "http://127.0.0.1:9");
        assert!(!format!("{client:?}").contains("seam_x"));
        let error = Client::new("ftp://x", "seam_x").unwrap_err();
        assert!(matches!(error, Error::Config(_)));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let client = Client::builder()
            .endpoint("http://127.0.0.1:9")
            .api_key("seam_x")
            .retry_base(Duration::from_millis(100))
            .build()
            .expect("client");
        let first = client.backoff(0);
        let third = client.backoff(2);
        assert!(first >= Duration::from_millis(100) && first < Duration::from_millis(126));
        assert!(third >= Duration::from_millis(400) && third < Duration::from_millis(501));
        assert!(client.backoff(30) <= Duration::from_millis(12_500));
    }
}
