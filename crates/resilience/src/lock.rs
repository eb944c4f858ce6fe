//! Distributed locks with fencing tokens: acquiring returns a token larger than any given
//! before for that lock, so a resource can refuse a write from a holder whose lease expired while
//! it was paused (the classic lost-lock bug: two "holders" writing). Only the holder releases or
//! extends. Memory, Redis and SQL (PostgreSQL, or SQLite) backends, one conformance suite.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use telar_sql::{Db, Migration, Tx, query};
use tokio::time::Instant;

use crate::limit::{LimitError, now_ms, redis_connection};

/// Where locks live.
pub trait LockStore: Send + Sync + 'static {
    /// A fencing token if the lock was free (or its holder's lease expired), else `None`.
    fn acquire<'a>(
        &'a self,
        name: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, LimitError>>;
    /// Extends the lease of the holder of `token`; `false`: it is no longer the holder.
    fn extend<'a>(
        &'a self,
        name: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LimitError>>;
    /// Releases if `token` still holds it.
    fn release<'a>(&'a self, name: &'a str, token: u64) -> BoxFuture<'a, Result<bool, LimitError>>;
}

/// A held lock.
pub struct Lease {
    pub name: String,
    /// Hand it to every resource the holder writes to (see [`Fences`]).
    pub token: u64,
    store: Arc<dyn LockStore>,
}

impl Lease {
    pub async fn extend(&self, ttl: Duration) -> Result<bool, LimitError> {
        self.store.extend(&self.name, self.token, ttl).await
    }

    pub async fn release(self) -> Result<bool, LimitError> {
        self.store.release(&self.name, self.token).await
    }
}

#[derive(Clone)]
pub struct Locks {
    store: Arc<dyn LockStore>,
}

impl Locks {
    pub fn new(store: Arc<dyn LockStore>) -> Self {
        Locks { store }
    }

    pub async fn try_acquire(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, LimitError> {
        Ok(self.store.acquire(name, ttl).await?.map(|token| Lease {
            name: name.to_owned(),
            token,
            store: self.store.clone(),
        }))
    }

    /// Releases `name` if `token` still holds it (for a holder that kept only the token, e.g.
    /// in a saga's log across restarts).
    pub async fn release(&self, name: &str, token: u64) -> Result<bool, LimitError> {
        self.store.release(name, token).await
    }

    /// Tries until `wait` is over (polling with backoff up to 200 ms).
    pub async fn acquire(
        &self,
        name: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<Lease>, LimitError> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(lease) = self.try_acquire(name, ttl).await? {
                return Ok(Some(lease));
            }
            if Instant::now() + pause > deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

/// Per lock name: the last token given and until when its holder holds it.
type Held = HashMap<String, (u64, Option<Instant>)>;

/// In this process.
#[derive(Clone, Default)]
pub struct MemoryLocks {
    state: Arc<Mutex<Held>>,
}

impl MemoryLocks {
    pub fn new() -> Self {
        Self::default()
    }
}

impl LockStore for MemoryLocks {
    fn acquire<'a>(
        &'a self,
        name: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, LimitError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut state = self
                .state
                .lock()
                .map_err(|_| LimitError::Store("poisoned".into()))?;
            let (token, until) = state.entry(name.to_owned()).or_insert((0, None));
            if until.is_some_and(|u| u > now) {
                return Ok(None);
            }
            *token += 1;
            *until = Some(now + ttl);
            Ok(Some(*token))
        })
    }

    fn extend<'a>(
        &'a self,
        name: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LimitError>> {
        Box::pin(async move { self.holder_sets(name, token, Some(Instant::now() + ttl)) })
    }

    fn release<'a>(&'a self, name: &'a str, token: u64) -> BoxFuture<'a, Result<bool, LimitError>> {
        Box::pin(async move { self.holder_sets(name, token, None) })
    }
}

impl MemoryLocks {
    /// If `token` holds `name` now, sets its lease end (`None`: released) and answers `true`.
    fn holder_sets(
        &self,
        name: &str,
        token: u64,
        until: Option<Instant>,
    ) -> Result<bool, LimitError> {
        let now = Instant::now();
        let mut state = self
            .state
            .lock()
            .map_err(|_| LimitError::Store("poisoned".into()))?;
        match state.get_mut(name) {
            Some((held, lease)) if *held == token && lease.is_some_and(|u| u > now) => {
                *lease = until;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

const ACQUIRE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
"#;

const EXTEND: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// In Redis: `<prefix>:lock:<name>` holds the token (expiring with the lease);
/// `<prefix>:fence:<name>` counts tokens and never expires.
#[derive(Clone)]
pub struct RedisLocks {
    connection: redis::aio::ConnectionManager,
    prefix: String,
}

impl RedisLocks {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LimitError> {
        Ok(RedisLocks {
            connection: redis_connection(url).await?,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, part: &str, name: &str) -> String {
        format!("{}:{part}:{name}", self.prefix)
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl LockStore for RedisLocks {
    fn acquire<'a>(
        &'a self,
        name: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            redis::Script::new(ACQUIRE)
                .key(self.key("lock", name))
                .key(self.key("fence", name))
                .arg(millis(ttl))
                .invoke_async(&mut connection)
                .await
                .map_err(LimitError::from)
        })
    }

    fn extend<'a>(
        &'a self,
        name: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let extended: i64 = redis::Script::new(EXTEND)
                .key(self.key("lock", name))
                .arg(token)
                .arg(millis(ttl))
                .invoke_async(&mut connection)
                .await
                .map_err(LimitError::from)?;
            Ok(extended == 1)
        })
    }

    fn release<'a>(&'a self, name: &'a str, token: u64) -> BoxFuture<'a, Result<bool, LimitError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let released: i64 = redis::Script::new(RELEASE)
                .key(self.key("lock", name))
                .arg(token)
                .invoke_async(&mut connection)
                .await
                .map_err(LimitError::from)?;
            Ok(released == 1)
        })
    }
}

/// Locks and fences in the service's database (PostgreSQL, or SQLite). Lease times are this
/// process's clock in milliseconds.
pub const LOCK_MIGRATION: Migration = Migration {
    version: 1_000_300,
    name: "telar locks and fences",
    sqlite: "CREATE TABLE telar_locks (name TEXT PRIMARY KEY, token INTEGER NOT NULL, until_ms INTEGER NOT NULL);
             CREATE TABLE telar_fences (resource TEXT PRIMARY KEY, token INTEGER NOT NULL);",
    postgres: "CREATE TABLE telar_locks (name TEXT PRIMARY KEY, token BIGINT NOT NULL, until_ms BIGINT NOT NULL);
               CREATE TABLE telar_fences (resource TEXT PRIMARY KEY, token BIGINT NOT NULL);",
};

#[derive(Clone)]
pub struct SqlLocks {
    db: Db,
}

impl SqlLocks {
    pub async fn open(db: Db) -> Result<Self, LimitError> {
        db.migrate(&[LOCK_MIGRATION])
            .await
            .map_err(LimitError::from)?;
        Ok(SqlLocks { db })
    }
}

impl LockStore for SqlLocks {
    fn acquire<'a>(
        &'a self,
        name: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, LimitError>> {
        Box::pin(async move {
            let now = now_ms();
            let until = now + i64::try_from(millis(ttl)).unwrap_or(i64::MAX / 2);
            // One statement: a free (or expired) lock is taken with the next token; a held one
            // returns no row.
            let row = query(
                "INSERT INTO telar_locks (name, token, until_ms) VALUES ($1, 1, $2)
                 ON CONFLICT (name) DO UPDATE SET token = telar_locks.token + 1, until_ms = excluded.until_ms
                 WHERE telar_locks.until_ms <= $3
                 RETURNING token",
            )
            .bind(name)
            .bind(until)
            .bind(now)
            .fetch_optional(&self.db)
            .await
            .map_err(LimitError::from)?;
            match row {
                Some(row) => Ok(Some(
                    u64::try_from(row.get::<i64>("token").map_err(LimitError::from)?).unwrap_or(0),
                )),
                None => Ok(None),
            }
        })
    }

    fn extend<'a>(
        &'a self,
        name: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LimitError>> {
        Box::pin(async move {
            let now = now_ms();
            let moved = query(
                "UPDATE telar_locks SET until_ms = $3 WHERE name = $1 AND token = $2 AND until_ms > $4",
            )
            .bind(name)
            .bind(i64::try_from(token).unwrap_or(i64::MAX))
            .bind(now + i64::try_from(millis(ttl)).unwrap_or(i64::MAX / 2))
            .bind(now)
            .execute(&self.db)
            .await
            .map_err(LimitError::from)?;
            Ok(moved == 1)
        })
    }

    fn release<'a>(&'a self, name: &'a str, token: u64) -> BoxFuture<'a, Result<bool, LimitError>> {
        Box::pin(async move {
            let moved = query(
                "UPDATE telar_locks SET until_ms = 0 WHERE name = $1 AND token = $2 AND until_ms > $3",
            )
            .bind(name)
            .bind(i64::try_from(token).unwrap_or(i64::MAX))
            .bind(now_ms())
            .execute(&self.db)
            .await
            .map_err(LimitError::from)?;
            Ok(moved == 1)
        })
    }
}

/// The resource side of fencing: a write carrying a token older than one already seen for the
/// resource is refused. Call it inside the transaction that writes the resource.
pub struct Fences;

impl Fences {
    /// `true`: go on (and `token` is now the newest seen); `false`: a newer holder has written —
    /// this writer's lock expired, refuse its write.
    pub async fn admit(tx: &mut Tx, resource: &str, token: u64) -> Result<bool, LimitError> {
        let token = i64::try_from(token).unwrap_or(i64::MAX);
        let row = query(
            "INSERT INTO telar_fences (resource, token) VALUES ($1, $2)
             ON CONFLICT (resource) DO UPDATE SET token = excluded.token
             WHERE telar_fences.token <= excluded.token
             RETURNING token",
        )
        .bind(resource)
        .bind(token)
        .fetch_optional(tx)
        .await
        .map_err(LimitError::from)?;
        Ok(row.is_some())
    }
}
