//! The embedded bus's reference: plain batched SQLite inserts.

use std::time::Instant;

use telar_sql::Synchronous;
use telar_types::Envelope;

const RAW_BATCH: usize = 500;

/// The reference: the same rows inserted with rusqlite (prepared statement, transactions of
/// 500) at the same durability — the fastest plain way to get them durably into SQLite.
pub async fn raw_inserts(
    messages: usize,
    payload: &str,
    synchronous: Synchronous,
) -> Result<f64, crate::BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("raw.db");
    let bodies: Vec<Vec<u8>> = (0..messages)
        .map(|n| {
            Envelope::new(
                "/bench",
                "bench.event",
                serde_json::json!({"p": payload, "n": n}),
            )
            .to_json()
        })
        .collect();
    let level = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    // On its own named thread, so profiles tell it from the bus's threads.
    let rate = std::thread::Builder::new().name("raw-sqlite".into()).spawn(move || -> Result<f64, rusqlite::Error> {
        let mut connection = rusqlite::Connection::open(&path)?;
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        connection.pragma_update(None, "synchronous", level)?;
        // The same checkpoint interval as the bus writer.
        connection.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        connection.execute(
            "CREATE TABLE rows (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, body BLOB NOT NULL)",
            [],
        )?;
        let started = Instant::now();
        for (index, chunk) in bodies.chunks(RAW_BATCH).enumerate() {
            let tx = connection.transaction()?;
            {
                let mut insert = tx.prepare_cached("INSERT INTO rows (id, topic, body) VALUES (?1, ?2, ?3)")?;
                for (offset, body) in chunk.iter().enumerate() {
                    insert.execute(rusqlite::params![format!("{index}-{offset}"), "bench.event", body])?;
                }
            }
            tx.commit()?;
        }
        Ok(bodies.len() as f64 / started.elapsed().as_secs_f64())
    })?
    .join()
    .map_err(|_| "the raw SQLite thread panicked")??;
    Ok(rate)
}
