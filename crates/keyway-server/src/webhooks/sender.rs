//! The webhook sender: claims due deliveries from the store's outbox and POSTs them, signed.
//!
//! One dispatcher loop claims work (leased, so a crash hands it to the next claim) and runs
//! each delivery as its own task: at most `concurrency` in all and `per_webhook_concurrency`
//! per webhook, so a slow or dead receiver holds only its own slots. Finished attempts come
//! back to the loop, which records them with their follow-up (retry time, or failed for good)
//! in one transaction before it claims again. Redirects are not followed. Dropping the `run`
//! future (aborting its task) aborts the deliveries in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keyway_core::Clock;
use keyway_model::Timestamp;
use keyway_store::{AttemptOutcome, ClaimLimits, ClaimedDelivery, FinishedAttempt, Store};
use tokio::task::{Id, JoinError, JoinSet};
use tracing::{debug, info, instrument, warn};

use super::{WebhookConfig, WebhookSecret};

/// Most bytes of a receiver's answer read (and discarded) so the connection can be reused.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Most deliveries claimed in one go.
const CLAIM_BATCH: usize = 100;

pub struct WebhookSender {
    store: Store,
    clock: Arc<dyn Clock>,
    config: WebhookConfig,
    client: reqwest::Client,
    owner: String,
}

impl WebhookSender {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        config: WebhookConfig,
    ) -> anyhow::Result<Arc<WebhookSender>> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("keyway-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(WebhookSender {
            store,
            clock,
            config,
            client,
            owner: format!("keyway-webhooks-{}", uuid::Uuid::new_v4()),
        }))
    }

    /// Delivers the outbox until the future is dropped.
    pub async fn run(self: Arc<Self>) {
        let signal = self.store.outbox_signal();
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        let mut in_flight = InFlight::default();
        let mut finished: Vec<Finished> = Vec::new();
        // Whether the outbox was signalled since the last claim: then the claim must go
        // through the writer whatever the reader pool shows yet.
        let mut signalled = true;
        loop {
            while let Some(done) = tasks.try_join_next_with_id() {
                finished.extend(in_flight.finish(done));
            }
            let free = self.config.concurrency.max(1).saturating_sub(tasks.len());
            let wanted = free.min(CLAIM_BATCH);
            // Finished attempts free their successors: claim after recording them.
            let claim =
                wanted > 0 && (signalled || !finished.is_empty() || self.anything_due().await);
            let mut claimed_all = false;
            if claim || !finished.is_empty() {
                if claim {
                    signalled = false;
                }
                let wanted = if claim { wanted } else { 0 };
                match self.exchange(&finished, wanted, &in_flight).await {
                    Ok(batch) => {
                        claimed_all = wanted > 0 && batch.len() == wanted;
                        for delivery in batch {
                            let sender = Arc::clone(&self);
                            let webhook_id = delivery.webhook_id.clone();
                            let task = tasks.spawn(async move { sender.deliver(delivery).await });
                            in_flight.start(task.id(), webhook_id);
                        }
                    }
                    Err(error) => {
                        // Unrecorded attempts: their leases run out and they are sent again.
                        warn!(%error, "recording or claiming webhook deliveries failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                finished.clear();
            }
            if claimed_all {
                // A full batch: there may be more due right now.
                continue;
            }
            let wait = self.idle_wait().await;
            tokio::select! {
                _ = signal.notified() => signalled = true,
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    finished.extend(in_flight.finish(done));
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Records finished attempts and claims up to `wanted` deliveries, in one transaction.
    async fn exchange(
        &self,
        finished: &[Finished],
        wanted: usize,
        in_flight: &InFlight,
    ) -> keyway_store::Result<Vec<ClaimedDelivery>> {
        let now = self.clock.now();
        let per_webhook = self.config.per_webhook_concurrency.max(1);
        let free_slots: Vec<(String, u32)> = in_flight
            .per_webhook
            .iter()
            .map(|(id, busy)| (id.clone(), per_webhook.saturating_sub(*busy)))
            .collect();
        self.store
            .claim_webhook_deliveries(
                &self.owner,
                finished,
                now,
                later(now, lease_for(self.config.timeout)),
                ClaimLimits {
                    total: u32::try_from(wanted).unwrap_or(u32::MAX),
                    per_webhook,
                    free_slots: &free_slots,
                },
            )
            .await
    }

    /// A cheap look (reader pool) before a claim (writer): most wake-ups find nothing due, and
    /// the single writer connection is shared with the API and the engine.
    async fn anything_due(&self) -> bool {
        self.store
            .webhook_delivery_due(self.clock.now())
            .await
            .unwrap_or(true)
    }

    /// How long to sleep when there is nothing to claim: until the next retry falls due, at
    /// most `poll`. New deliveries and finished ones wake the loop earlier.
    async fn idle_wait(&self) -> Duration {
        let now = self.clock.now();
        match self.store.next_webhook_retry_after(now).await {
            Ok(Some(at)) => Duration::from_millis((at.millis() - now.millis()).max(0) as u64)
                .min(self.config.poll),
            Ok(None) => self.config.poll,
            Err(error) => {
                warn!(%error, "reading the webhook outbox failed");
                self.config.poll
            }
        }
    }

    /// One attempt of one delivery, and its follow-up (recorded by the dispatcher).
    #[instrument(skip_all, fields(
        webhook_id = %delivery.webhook_id,
        event_id = %delivery.event.event_id,
        message_id = %delivery.message_id,
        attempt = delivery.attempts + 1,
    ))]
    async fn deliver(&self, delivery: ClaimedDelivery) -> Finished {
        let attempt = delivery.attempts.saturating_add(1);
        let outcome = match self.send(&delivery).await {
            Ok(status_code) => {
                debug!(status_code, "webhook delivered");
                AttemptOutcome::Delivered { status_code }
            }
            Err(failure) => {
                let now = self.clock.now();
                let retry_at = self
                    .config
                    .policy
                    .retry_in(attempt)
                    .map(|delay| later(now, delay));
                match retry_at {
                    Some(at) => {
                        info!(error = %failure.error, retry_at = %at, "webhook attempt failed")
                    }
                    None => warn!(error = %failure.error, "webhook delivery failed for good"),
                }
                AttemptOutcome::Failed {
                    status_code: failure.status_code,
                    error: failure.error,
                    retry_at,
                }
            }
        };
        (delivery.delivery_id, outcome, self.clock.now())
    }

    /// POSTs the event; the receiver's 2xx status, or why not.
    async fn send(&self, delivery: &ClaimedDelivery) -> Result<u16, Failure> {
        let secret = WebhookSecret::parse(&delivery.secret)
            .map_err(|_| Failure::new(None, "the webhook's secret is unusable"))?;
        let body = serde_json::to_vec(&delivery.event)
            .map_err(|e| Failure::new(None, format!("the event cannot be encoded: {e}")))?;
        let timestamp = self.clock.now().millis().div_euclid(1000);
        let signature = secret.sign(&delivery.message_id, timestamp, &body);
        let answer = self
            .client
            .post(&delivery.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &delivery.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::new(None, self.describe(e)))?;
        let status = answer.status();
        drain(answer).await;
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(Failure::new(
                Some(status.as_u16()),
                format!("the receiver answered HTTP {status}"),
            ))
        }
    }

    /// A transport error in a few words, without the URL (it may carry credentials).
    fn describe(&self, error: reqwest::Error) -> String {
        if error.is_timeout() {
            return format!("no answer within {:?}", self.config.timeout);
        }
        let kind = if error.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        let mut text = kind.to_owned();
        let error = error.without_url();
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// Reads (a bounded part of) an answer's body, so its connection can go back to the pool.
async fn drain(mut answer: reqwest::Response) {
    let mut read = 0;
    while read < MAX_ANSWER_BYTES {
        match answer.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            _ => break,
        }
    }
}

struct Failure {
    status_code: Option<u16>,
    error: String,
}

impl Failure {
    fn new(status_code: Option<u16>, error: impl Into<String>) -> Self {
        Failure {
            status_code,
            error: error.into(),
        }
    }
}

/// A finished attempt: delivery id, outcome, when it ended.
type Finished = FinishedAttempt;

/// Deliveries in flight from this sender, per webhook.
#[derive(Default)]
struct InFlight {
    per_webhook: HashMap<String, u32>,
    tasks: HashMap<Id, String>,
}

impl InFlight {
    fn start(&mut self, task: Id, webhook_id: String) {
        *self.per_webhook.entry(webhook_id.clone()).or_default() += 1;
        self.tasks.insert(task, webhook_id);
    }

    /// Forgets a finished task, and answers its attempt (none if the task panicked: its lease
    /// runs out and the delivery is claimed again).
    fn finish(&mut self, done: Result<(Id, Finished), JoinError>) -> Option<Finished> {
        let (task, finished) = match done {
            Ok((id, finished)) => (id, Some(finished)),
            Err(error) => {
                warn!(%error, "a webhook delivery task ended abnormally");
                (error.id(), None)
            }
        };
        if let Some(webhook_id) = self.tasks.remove(&task) {
            if let Some(busy) = self.per_webhook.get_mut(&webhook_id) {
                *busy = busy.saturating_sub(1);
                if *busy == 0 {
                    self.per_webhook.remove(&webhook_id);
                }
            }
        }
        finished
    }
}

/// How long a claimed delivery stays leased: its request's timeout, and time to record it.
fn lease_for(timeout: Duration) -> Duration {
    timeout + (timeout / 2).max(Duration::from_secs(1))
}

fn later(now: Timestamp, delay: Duration) -> Timestamp {
    let millis = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_millis(now.millis().saturating_add(millis)).unwrap_or(now)
}
