//! Choreography tracking: services react to each other's events; a tracker follows each saga by
//! correlation id against a rule table (event type → allowed next types, and which types end
//! the saga as a success, a failure or a case for review), writes the saga log, and flags
//! transitions the rules do not allow and sagas stuck past their deadline.
//!
//! AlpesPartners' rules, as written in its design:
//!
//! ```ignore
//! Choreography::new("partner-onboarding")
//!     .allow("CreatePartner", ["PartnerCreated", "PartnerCreationFailed"])
//!     .allow("PartnerCreated", ["ContratoCreado", "ContratoCreadoFailed"])
//!     .allow("PartnerCreationFailed", []).fails("PartnerCreationFailed")
//!     .allow("ContratoCreado", ["ContratoAprobado", "ContratoRechazado"])
//!     .allow("ContratoCreadoFailed", []).fails("ContratoCreadoFailed")
//!     .allow("ContratoAprobado", []).completes("ContratoAprobado")
//!     .allow("ContratoRechazado", ["RevisionContrato"])
//!     .allow("RevisionContrato", []).reviews("RevisionContrato")
//! ```

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use telar_sql::{Db, Migration, Row, query};
use telar_types::Envelope;
use utoipa::ToSchema;

use crate::engine::now_ms;
use crate::{Error, Result};

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1_000_201,
    name: "telar choreography log",
    sqlite: "
CREATE TABLE choreo_sagas (correlation_id TEXT PRIMARY KEY, saga_type TEXT NOT NULL, status TEXT NOT NULL,
    last_event TEXT NOT NULL, violations INTEGER NOT NULL DEFAULT 0, stuck INTEGER NOT NULL DEFAULT 0,
    deadline_at INTEGER NOT NULL, started_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX choreo_sagas_by_deadline ON choreo_sagas (status, deadline_at);
CREATE TABLE choreo_log (id INTEGER PRIMARY KEY AUTOINCREMENT, correlation_id TEXT NOT NULL, saga_type TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL,
    detail TEXT, received_at TEXT NOT NULL, processed_at TEXT);
CREATE INDEX choreo_log_by_saga ON choreo_log (correlation_id, id);",
    postgres: "
CREATE TABLE choreo_sagas (correlation_id TEXT PRIMARY KEY, saga_type TEXT NOT NULL, status TEXT NOT NULL,
    last_event TEXT NOT NULL, violations BIGINT NOT NULL DEFAULT 0, stuck BIGINT NOT NULL DEFAULT 0,
    deadline_at BIGINT NOT NULL, started_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX choreo_sagas_by_deadline ON choreo_sagas (status, deadline_at);
CREATE TABLE choreo_log (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, correlation_id TEXT NOT NULL, saga_type TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL,
    detail TEXT, received_at TEXT NOT NULL, processed_at TEXT);
CREATE INDEX choreo_log_by_saga ON choreo_log (correlation_id, id);",
}];

/// How a terminal event ends the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    Completed,
    Failed,
    /// Ends the automatic part: a person reviews it.
    PendingReview,
}

/// The rule table of one saga type.
#[derive(Debug, Clone)]
pub struct Choreography {
    saga_type: String,
    allowed: HashMap<String, Vec<String>>,
    endings: HashMap<String, Ending>,
    deadline: Duration,
}

impl Choreography {
    pub fn new(saga_type: impl Into<String>) -> Self {
        Choreography {
            saga_type: saga_type.into(),
            allowed: HashMap::new(),
            endings: HashMap::new(),
            deadline: Duration::from_secs(3600),
        }
    }

    /// After `event`, only these types may follow (none: the saga ends there).
    pub fn allow<const N: usize>(mut self, event: &str, next: [&str; N]) -> Self {
        self.allowed.insert(
            event.to_owned(),
            next.iter().map(|s| (*s).to_owned()).collect(),
        );
        self
    }

    pub fn completes(mut self, event: &str) -> Self {
        self.endings.insert(event.to_owned(), Ending::Completed);
        self
    }

    pub fn fails(mut self, event: &str) -> Self {
        self.endings.insert(event.to_owned(), Ending::Failed);
        self
    }

    pub fn reviews(mut self, event: &str) -> Self {
        self.endings.insert(event.to_owned(), Ending::PendingReview);
        self
    }

    /// A saga not ended this long after its first event is flagged as stuck.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The rule table as the seeds write it — `{"CreatePartner": ["PartnerCreated", …], …}` —
    /// plus which empty-list types end as what (`{"ContratoAprobado": "Completed", …}`).
    pub fn from_json(saga_type: &str, rules: &Value, endings: &Value) -> Result<Self> {
        let rules: HashMap<String, Vec<String>> = serde_json::from_value(rules.clone())
            .map_err(|e| Error::Invalid(format!("rules: {e}")))?;
        let endings: HashMap<String, Ending> = serde_json::from_value(endings.clone())
            .map_err(|e| Error::Invalid(format!("endings: {e}")))?;
        let choreography = Choreography {
            saga_type: saga_type.to_owned(),
            allowed: rules,
            endings,
            deadline: Duration::from_secs(3600),
        };
        choreography.validate()?;
        Ok(choreography)
    }

    /// Every ending is a known type with no successor; every type without successors ends.
    pub fn validate(&self) -> Result<()> {
        for (event, next) in &self.allowed {
            if next.is_empty() && !self.endings.contains_key(event) {
                return Err(Error::Invalid(format!(
                    "`{event}` allows nothing after it but is not declared as an ending"
                )));
            }
        }
        for event in self.endings.keys() {
            if self.allowed.get(event).is_some_and(|next| !next.is_empty()) {
                return Err(Error::Invalid(format!(
                    "ending `{event}` allows successors"
                )));
            }
        }
        Ok(())
    }

    /// Types that start a saga: keys that no rule leads to.
    fn starts(&self) -> HashSet<&str> {
        let targets: HashSet<&str> = self
            .allowed
            .values()
            .flatten()
            .map(String::as_str)
            .collect();
        self.allowed
            .keys()
            .map(String::as_str)
            .filter(|k| !targets.contains(k))
            .collect()
    }

    fn knows(&self, event: &str) -> bool {
        self.allowed.contains_key(event)
            || self.allowed.values().any(|n| n.iter().any(|t| t == event))
    }
}

/// A tracked saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrackedSaga {
    pub correlation_id: String,
    pub saga_type: String,
    /// `InProgress`, `Completed`, `Failed` or `PendingReview`.
    pub status: String,
    pub last_event: String,
    pub violations: i64,
    pub stuck: bool,
    pub started_at: String,
    pub updated_at: String,
}

/// One row of the saga log, in the clinical lab's `GET /saga/logs` shape (`id, topic,
/// event_type, status, data, created_at`, plus `saga_id`, `event_id`, `error`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SagaLogEntry {
    /// Row number, in arrival order.
    pub id: i64,
    /// The bus topic: the event type without its last part (`clinic.user.created` → `clinic.user`).
    pub topic: String,
    pub event_type: String,
    /// `RECEIVED`, `PROCESSED` or `FAILED`.
    pub status: String,
    #[schema(value_type = Object)]
    pub data: Value,
    /// When it arrived (RFC 3339).
    pub created_at: String,
    pub processed_at: Option<String>,
    pub saga_id: String,
    pub saga_type: String,
    pub event_id: String,
    /// Why it FAILED (a forbidden transition, …).
    pub error: Option<String>,
}

/// Follows choreographed sagas by correlation id.
#[derive(Clone)]
pub struct Tracker {
    db: Db,
    rules: HashMap<String, Choreography>,
}

impl Tracker {
    pub async fn open(
        db: Db,
        choreographies: impl IntoIterator<Item = Choreography>,
    ) -> Result<Self> {
        let mut rules = HashMap::new();
        for choreography in choreographies {
            choreography.validate()?;
            rules.insert(choreography.saga_type.clone(), choreography);
        }
        db.migrate(MIGRATIONS).await?;
        Ok(Tracker { db, rules })
    }

    /// The saga type an event belongs to (the first whose rules know its type).
    fn saga_type_of(&self, event: &str) -> Option<&Choreography> {
        let mut types: Vec<&Choreography> =
            self.rules.values().filter(|c| c.knows(event)).collect();
        types.sort_by(|a, b| a.saga_type.cmp(&b.saga_type));
        types.into_iter().next()
    }

    /// Records one event of a saga (idempotent by event id). Returns the saga as it stands.
    pub async fn track(&self, envelope: &Envelope) -> Result<Option<TrackedSaga>> {
        let Some(rules) = self.saga_type_of(&envelope.ty) else {
            return Ok(None);
        };
        let correlation = envelope.correlation().to_owned();
        let now = now_text();
        let mut tx = self.db.begin().await?;
        let logged = query(
            "INSERT INTO choreo_log (correlation_id, saga_type, event_id, event_type, payload, state, received_at)
             VALUES ($1, $2, $3, $4, $5, 'RECEIVED', $6) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&correlation)
        .bind(&rules.saga_type)
        .bind(&envelope.id)
        .bind(&envelope.ty)
        .bind(envelope.data.clone().unwrap_or(Value::Null).to_string())
        .bind(&now)
        .execute(&mut tx)
        .await?;
        if logged == 0 {
            // Seen before (a redelivery): nothing changes.
            tx.rollback().await?;
            return self.saga(&correlation).await.map(Some);
        }
        let current =
            query("SELECT last_event, status FROM choreo_sagas WHERE correlation_id = $1")
                .bind(&correlation)
                .fetch_optional(&mut tx)
                .await?;
        let violation = match &current {
            None if rules.starts().contains(envelope.ty.as_str()) => None,
            None => Some(format!(
                "`{}` cannot start a {} saga",
                envelope.ty, rules.saga_type
            )),
            Some(row) => {
                let last: String = row.get("last_event")?;
                let status: String = row.get("status")?;
                let allowed = rules
                    .allowed
                    .get(&last)
                    .is_some_and(|n| n.contains(&envelope.ty));
                if status != "InProgress" {
                    Some(format!(
                        "`{}` arrived after the saga ended ({status})",
                        envelope.ty
                    ))
                } else if allowed {
                    None
                } else {
                    Some(format!(
                        "transition {last} → {} is not allowed",
                        envelope.ty
                    ))
                }
            }
        };
        let status = match (&violation, rules.endings.get(&envelope.ty)) {
            (Some(_), _) => "PendingReview",
            (None, Some(Ending::Completed)) => "Completed",
            (None, Some(Ending::Failed)) => "Failed",
            (None, Some(Ending::PendingReview)) => "PendingReview",
            (None, None) => "InProgress",
        };
        let deadline = now_ms() + i64::try_from(rules.deadline.as_millis()).unwrap_or(i64::MAX / 2);
        query(
            "INSERT INTO choreo_sagas (correlation_id, saga_type, status, last_event, violations, deadline_at, started_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (correlation_id) DO UPDATE SET status = excluded.status, last_event = excluded.last_event,
               violations = choreo_sagas.violations + excluded.violations, updated_at = excluded.updated_at",
        )
        .bind(&correlation)
        .bind(&rules.saga_type)
        .bind(status)
        .bind(&envelope.ty)
        .bind(i64::from(violation.is_some()))
        .bind(deadline)
        .bind(&now)
        .execute(&mut tx)
        .await?;
        query(
            "UPDATE choreo_log SET state = $2, detail = $3, processed_at = $4 WHERE event_id = $1",
        )
        .bind(&envelope.id)
        .bind(if violation.is_some() {
            "FAILED"
        } else {
            "PROCESSED"
        })
        .bind(violation.clone())
        .bind(now_text())
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        if violation.is_some() {
            metrics::counter!("saga_transition_violations", "saga" => rules.saga_type.clone())
                .increment(1);
        }
        self.saga(&correlation).await.map(Some)
    }

    /// Flags sagas still in progress past their deadline; returns them.
    pub async fn flag_stuck(&self) -> Result<Vec<TrackedSaga>> {
        query("UPDATE choreo_sagas SET stuck = 1 WHERE status = 'InProgress' AND deadline_at <= $1 AND stuck = 0")
            .bind(now_ms())
            .execute(&self.db)
            .await?;
        let rows = query("SELECT correlation_id, saga_type, status, last_event, violations, stuck, started_at, updated_at
             FROM choreo_sagas WHERE status = 'InProgress' AND stuck = 1 ORDER BY started_at",
        )
        .fetch_all(&self.db)
        .await?;
        let stuck: Vec<TrackedSaga> = rows.iter().map(tracked).collect::<Result<_>>()?;
        metrics::gauge!("saga_stuck").set(stuck.len() as f64);
        Ok(stuck)
    }

    pub async fn saga(&self, correlation_id: &str) -> Result<TrackedSaga> {
        let row = query(
            "SELECT correlation_id, saga_type, status, last_event, violations, stuck, started_at, updated_at
             FROM choreo_sagas WHERE correlation_id = $1",
        )
        .bind(correlation_id)
        .fetch_optional(&self.db)
        .await?
        .ok_or_else(|| Error::NotFound(correlation_id.to_owned()))?;
        tracked(&row)
    }

    /// The saga log in arrival order, filtered.
    pub async fn log(&self, correlation_id: Option<&str>, limit: u32) -> Result<Vec<SagaLogEntry>> {
        self.search(&LogFilter {
            saga_id: correlation_id.map(str::to_owned),
            limit: Some(limit),
            ..LogFilter::default()
        })
        .await
    }

    /// The saga log by any of: saga, state, event type, stuck sagas only; at most `limit`
    /// (default 100, max 1 000).
    pub async fn search(&self, filter: &LogFilter) -> Result<Vec<SagaLogEntry>> {
        let rows = query(
            "SELECT l.id, l.correlation_id, l.saga_type, l.event_id, l.event_type, l.payload, l.state, l.detail,
                    l.received_at, l.processed_at
             FROM choreo_log l LEFT JOIN choreo_sagas s ON s.correlation_id = l.correlation_id
             WHERE ($1 IS NULL OR l.correlation_id = $1) AND ($2 IS NULL OR l.state = $2)
               AND ($3 IS NULL OR l.event_type = $3) AND ($4 = 0 OR s.stuck = 1)
             ORDER BY l.id LIMIT $5",
        )
        .bind(filter.saga_id.clone())
        .bind(filter.status.clone())
        .bind(filter.event_type.clone())
        .bind(i64::from(filter.stuck.unwrap_or(false)))
        .bind(i64::from(filter.limit.unwrap_or(100).min(1_000)))
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|row| {
                let payload: String = row.get("payload")?;
                let event_type: String = row.get("event_type")?;
                Ok(SagaLogEntry {
                    id: row.get("id")?,
                    topic: event_type
                        .rsplit_once('.')
                        .map_or(event_type.clone(), |(topic, _)| topic.to_owned()),
                    event_type,
                    status: row.get("state")?,
                    data: serde_json::from_str(&payload).unwrap_or(Value::Null),
                    created_at: row.get("received_at")?,
                    processed_at: row.get("processed_at")?,
                    saga_id: row.get("correlation_id")?,
                    saga_type: row.get("saga_type")?,
                    event_id: row.get("event_id")?,
                    error: row.get("detail")?,
                })
            })
            .collect()
    }
}

/// Which saga-log rows to list (`GET /saga/logs` query).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogFilter {
    pub saga_id: Option<String>,
    /// `RECEIVED`, `PROCESSED` or `FAILED`.
    pub status: Option<String>,
    pub event_type: Option<String>,
    /// Only sagas flagged stuck.
    pub stuck: Option<bool>,
    /// Default 100, at most 1 000.
    pub limit: Option<u32>,
}

fn tracked(row: &Row) -> Result<TrackedSaga> {
    Ok(TrackedSaga {
        correlation_id: row.get("correlation_id")?,
        saga_type: row.get("saga_type")?,
        status: row.get("status")?,
        last_event: row.get("last_event")?,
        violations: row.get("violations")?,
        stuck: row.get::<i64>("stuck")? != 0,
        started_at: row.get("started_at")?,
        updated_at: row.get("updated_at")?,
    })
}

fn now_text() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
