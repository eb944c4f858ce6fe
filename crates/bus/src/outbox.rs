//! The transactional outbox: envelopes appended in the service's own transaction, published by
//! a relay after commit, deleted only once the bus has them durably. Order: the envelopes of one
//! transaction keep their order; concurrent transactions are published in sequence order as far
//! as they have committed (on PostgreSQL a transaction that commits late is published later). A broker outage delays
//! delivery; it never loses an event. The relay is woken by commits, with a slow poll as a
//! safety net (e.g. rows committed by another process).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use telar_sql::{Db, Migration, Tx, generated_query, placeholders, query};
use telar_types::Envelope;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::{Bus, Result};

/// Envelopes published per round trip.
const RELAY_BATCH: i64 = 256;
const IDLE_POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Appends envelopes inside a transaction and wakes the relay on commit. Cheap to clone.
#[derive(Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl Outbox {
    /// The outbox table; add it to the service's migrations. Platform tables use versions
    /// above 1 000 000 so they never collide with a service's own.
    pub const MIGRATION: Migration = Migration {
        version: 1_000_001,
        name: "telar outbox",
        sqlite: "CREATE TABLE telar_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, envelope TEXT NOT NULL, created_at TEXT NOT NULL);",
        postgres: "CREATE TABLE telar_outbox (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, envelope TEXT NOT NULL, created_at TEXT NOT NULL);",
    };

    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `envelope` to the outbox as part of `tx`: it is published if and only if `tx`
    /// commits.
    /// Appended while handling a request or a message, the envelope carries that trace
    /// (`traceparent`) through a producer span.
    pub async fn append(&self, tx: &mut Tx, envelope: &Envelope) -> Result<()> {
        let traced;
        let (envelope, span) = if telar_telemetry::in_hop() {
            let mut copy = [envelope.clone()];
            let span = producer_span(&mut copy);
            traced = copy;
            (&traced[0], span)
        } else {
            (envelope, tracing::Span::none())
        };
        let text = String::from_utf8(envelope.to_json()).unwrap_or_default();
        query("INSERT INTO telar_outbox (id, envelope, created_at) VALUES ($1, $2, $3)")
            .bind(&envelope.id)
            .bind(text)
            .bind(crate::dead_letter_sql::now_rfc3339())
            .execute(tx)
            .instrument(span)
            .await?;
        Ok(())
    }

    /// Commits `tx` and wakes the relay.
    pub async fn commit(&self, tx: Tx) -> Result<()> {
        tx.commit().await?;
        self.wake.notify_one();
        Ok(())
    }

    /// The relay that publishes this outbox's rows from `db` to `bus`.
    pub fn relay(&self, db: Db, bus: Bus) -> OutboxRelay {
        OutboxRelay {
            db,
            bus,
            wake: self.wake.clone(),
        }
    }
}

/// A producer span for publishing `envelopes` (named after the first one's topic), whose
/// context goes into each envelope: a message published while handling a request or a message
/// is that hop's child, even when it copied its cause's `traceparent` (`caused_by`), so the
/// tree stays a tree. A disabled span when nothing is being traced (the hot path pays nothing
/// then, and envelopes keep the `traceparent` they have).
pub(crate) fn producer_span(envelopes: &mut [Envelope]) -> tracing::Span {
    if !telar_telemetry::in_hop() {
        return tracing::Span::none();
    }
    let topic = envelopes.first().map_or("", |e| e.ty.as_str());
    let span = tracing::info_span!(
        "publish",
        otel.kind = "producer",
        otel.name = format!("{topic} publish"),
        messaging.destination.name = topic,
        messaging.batch.message_count = envelopes.len(),
    );
    if let Some(context) = telar_telemetry::outgoing(&span) {
        let header = context.to_header();
        for envelope in envelopes.iter_mut() {
            envelope.traceparent = Some(header.clone());
        }
    }
    span
}

/// Publishes committed outbox rows in order, then deletes them.
pub struct OutboxRelay {
    db: Db,
    bus: Bus,
    wake: Arc<Notify>,
}

impl OutboxRelay {
    /// One pass: publishes up to a batch of pending rows. Returns how many were published.
    pub async fn publish_pending(&self) -> Result<usize> {
        let rows = query("SELECT seq, envelope FROM telar_outbox ORDER BY seq LIMIT $1")
            .bind(RELAY_BATCH)
            .fetch_all(&self.db)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut seqs = Vec::with_capacity(rows.len());
        let mut envelopes = Vec::with_capacity(rows.len());
        for row in &rows {
            seqs.push(row.get::<i64>("seq")?);
            let text: String = row.get("envelope")?;
            match Envelope::from_json(text.as_bytes()) {
                Ok(envelope) => envelopes.push(envelope),
                // Only `append` writes here; a row that does not parse was damaged outside telar.
                Err(error) => {
                    tracing::error!(seq = row.get::<i64>("seq").unwrap_or(0), %error, "dropping corrupt outbox row")
                }
            }
        }
        let count = envelopes.len();
        self.bus.publish_batch(envelopes).await?;
        // Exactly the rows read: on PostgreSQL a lower seq may commit after a higher one, and
        // must not be deleted before it is published.
        let mut delete = generated_query(format!(
            "DELETE FROM telar_outbox WHERE seq IN {}",
            placeholders(1, seqs.len(), 1)
        ));
        for seq in seqs {
            delete = delete.bind(seq);
        }
        delete.execute(&self.db).await?;
        Ok(count)
    }

    /// Relays until `shutdown` resolves; a failing bus is retried with backoff (up to 5 s).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(50);
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = match self.publish_pending().await {
                Ok(0) => {
                    backoff = Duration::from_millis(50);
                    IDLE_POLL
                }
                Ok(_) => {
                    backoff = Duration::from_millis(50);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "outbox relay cannot publish yet");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(wait) => {}
                _ = &mut shutdown => return,
            }
        }
    }
}
