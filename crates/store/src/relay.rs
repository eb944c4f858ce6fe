//! The store is its own outbox: a relay publishes appended events in position order and moves
//! its checkpoint only after the publisher confirmed them. A crash between the two publishes
//! them again (at least once; the bus drops a re-published envelope id where it can, and
//! consumers use the inbox); an outage of the bus delays them, never loses them.

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use telar_types::Envelope;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::event::RecordedEvent;
use crate::{EventStore, Result, checkpoint};

/// Publishes a batch durably (e.g. `move |batch| Box::pin(bus.publish_batch(batch))`).
pub type Publish =
    Box<dyn Fn(Vec<Envelope>) -> BoxFuture<'static, std::result::Result<(), String>> + Send + Sync>;

const BATCH: u32 = 256;
const POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct StoreRelay {
    store: EventStore,
    name: String,
    source: String,
    publish: Publish,
}

impl StoreRelay {
    /// A relay named `name` (its checkpoint, in the store's database); envelopes carry `source`
    /// (e.g. `/carpeta/citizen`).
    pub async fn new(
        store: EventStore,
        name: &str,
        source: &str,
        publish: Publish,
    ) -> Result<Self> {
        let name = format!("relay:{name}");
        checkpoint::prepare(store.db(), &name).await?;
        Ok(StoreRelay {
            store,
            name,
            source: source.to_owned(),
            publish,
        })
    }

    /// Publishes until `shutdown`; woken by this process's appends, polling for others'.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let appended = self.store.appended();
        let mut backoff = Duration::from_millis(100);
        loop {
            let woken = appended.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let wait = match self.catch_up().await {
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    POLL
                }
                Err(error) => {
                    tracing::warn!(relay = %self.name, %error, "publishing events failed; retrying");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    backoff
                }
            };
            tokio::select! {
                _ = &mut woken, if wait == POLL => {}
                _ = tokio::time::sleep(wait) => {}
                _ = &mut shutdown => return,
            }
        }
    }

    /// Publishes everything after the checkpoint; returns how many events.
    pub async fn catch_up(&self) -> std::result::Result<u64, String> {
        let mut published = 0;
        loop {
            let from = checkpoint::read(self.store.db(), &self.name)
                .await
                .map_err(|e| e.to_string())?;
            let events = self
                .store
                .read_all_as(from, BATCH, false)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = events.last().map(|e| e.position) else {
                return Ok(published);
            };
            let count = events.len();
            let envelopes = events.iter().map(|e| envelope(e, &self.source)).collect();
            (self.publish)(envelopes).await?;
            let mut tx = self.store.db().begin().await.map_err(|e| e.to_string())?;
            checkpoint::advance(&mut tx, &self.name, from, last)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            published += count as u64;
            metrics::counter!("store_relay_published", "relay" => self.name.clone())
                .increment(count as u64);
            if count < BATCH as usize {
                return Ok(published);
            }
        }
    }
}

/// The CloudEvents envelope of a stored event: its id, type and data; the stream as subject;
/// position and stream version as extensions; correlation, causation and trace context from its
/// metadata.
pub fn envelope(event: &RecordedEvent, source: &str) -> Envelope {
    let mut envelope = Envelope::new(source, event.ty.clone(), event.data.clone())
        .with_subject(event.stream.clone());
    envelope.id = event.id.clone();
    envelope.time = OffsetDateTime::parse(&event.recorded_at, &Rfc3339).ok();
    envelope.correlationid = event.metadata.correlation_id.clone();
    envelope.causationid = event.metadata.causation_id.clone();
    envelope.traceparent = event
        .metadata
        .extra
        .get("traceparent")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    envelope
        .extensions
        .insert("position".into(), event.position.into());
    envelope
        .extensions
        .insert("streamversion".into(), event.version.into());
    envelope
}
