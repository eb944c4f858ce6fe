use crate::db::{Db, Dialect};
use crate::{Error, Result, query};

/// One schema change, written once per dialect. Versions are applied in ascending order and
/// never edited after release: a changed script is refused at start (checksum mismatch).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

impl Migration {
    fn script(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS _telar_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

pub(crate) async fn apply(db: &Db, migrations: &[Migration]) -> Result<usize> {
    let mut sorted: Vec<&Migration> = migrations.iter().collect();
    sorted.sort_by_key(|m| m.version);
    let mut tx = db.begin().await?;
    if tx.dialect() == Dialect::Postgres {
        // Serializes concurrent starts of the same service on this schema.
        query("SELECT pg_advisory_xact_lock(hashtext(current_schema())::bigint)")
            .execute(&mut tx)
            .await?;
    }
    tx.execute_script(CREATE_TABLE).await?;
    let applied = query("SELECT version, checksum FROM _telar_migrations")
        .fetch_all(&mut tx)
        .await?;
    let mut applied_versions = Vec::with_capacity(applied.len());
    for row in &applied {
        applied_versions.push((row.get::<i64>("version")?, row.get::<String>("checksum")?));
    }
    let mut count = 0;
    for migration in sorted {
        let script = migration.script(tx.dialect());
        let checksum = checksum(script);
        match applied_versions
            .iter()
            .find(|(v, _)| *v == migration.version)
        {
            Some((_, stored)) if *stored == checksum => continue,
            Some(_) => {
                return Err(Error::Migration {
                    version: migration.version,
                    name: migration.name.to_owned(),
                    reason: "script changed after it was applied".into(),
                });
            }
            None => {}
        }
        tx.execute_script(script)
            .await
            .map_err(|e| Error::Migration {
                version: migration.version,
                name: migration.name.to_owned(),
                reason: e.to_string(),
            })?;
        query("INSERT INTO _telar_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
            .bind(migration.version)
            .bind(migration.name)
            .bind(checksum)
            .bind(now_rfc3339())
            .execute(&mut tx)
            .await?;
        count += 1;
    }
    tx.commit().await?;
    if count > 0 {
        tracing::info!(
            location = db.location(),
            applied = count,
            "migrations applied"
        );
    }
    Ok(count)
}

/// FNV-1a: a stable fingerprint of a script, not a security measure.
fn checksum(script: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in script.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
