//! Group commit of sandbox slot writes. SQLite has one writer; a transaction per slot write made
//! the writer the engine's bottleneck when thousands of simulated locks are programmed at once.
//! Writes queue here and a single task commits everything queued in one transaction, then answers
//! each caller: no write is acknowledged before it is committed, and none waits for company (a
//! lone write commits at once; writes arriving during a commit share the next one).

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

/// Writes committed together at most.
const MAX_BATCH: usize = 1024;

struct SlotWrite {
    device_id: String,
    slot: u32,
    code: Option<(String, Option<String>)>,
    done: oneshot::Sender<Result<(), String>>,
}

#[derive(Clone)]
pub(crate) struct SlotWrites {
    queue: mpsc::Sender<SlotWrite>,
}

impl SlotWrites {
    pub(crate) fn start(writer: SqlitePool) -> SlotWrites {
        let (queue, mut pending) = mpsc::channel::<SlotWrite>(MAX_BATCH * 4);
        tokio::spawn(async move {
            while let Some(first) = pending.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match pending.try_recv() {
                        Ok(write) => batch.push(write),
                        Err(_) => break,
                    }
                }
                let outcome = commit(&writer, &batch).await.map_err(|e| e.to_string());
                for write in batch {
                    let _ = write.done.send(outcome.clone());
                }
            }
        });
        SlotWrites { queue }
    }

    /// Writes (`Some`) or clears (`None`) one slot and counts the operation; answers once
    /// committed.
    pub(crate) async fn write(
        &self,
        device_id: &str,
        slot: u32,
        code: Option<(&str, Option<&str>)>,
    ) -> Result<(), String> {
        let (done, committed) = oneshot::channel();
        let write = SlotWrite {
            device_id: device_id.to_owned(),
            slot,
            code: code.map(|(c, n)| (c.to_owned(), n.map(str::to_owned))),
            done,
        };
        self.queue
            .send(write)
            .await
            .map_err(|_| "the store is closed".to_owned())?;
        committed
            .await
            .map_err(|_| "the store is closed".to_owned())?
    }
}

async fn commit(writer: &SqlitePool, batch: &[SlotWrite]) -> Result<(), sqlx::Error> {
    let mut tx = writer.begin().await?;
    for write in batch {
        match &write.code {
            Some((code, name)) => {
                sqlx::query(
                    "INSERT INTO sandbox_slots (device_id, slot, code, name) VALUES (?, ?, ?, ?)
                     ON CONFLICT (device_id, slot) DO UPDATE SET code = excluded.code,
                        name = excluded.name",
                )
                .bind(&write.device_id)
                .bind(i64::from(write.slot))
                .bind(code)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM sandbox_slots WHERE device_id = ? AND slot = ?")
                    .bind(&write.device_id)
                    .bind(i64::from(write.slot))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query("UPDATE sandbox_locks SET operations = operations + 1 WHERE device_id = ?")
            .bind(&write.device_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
