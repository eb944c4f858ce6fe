//! Saga rows as read back: the instance and its step log.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use telar_sql::Row;
use utoipa::ToSchema;

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum SagaStatus {
    Running,
    Compensating,
    Completed,
    Compensated,
    /// A compensation failed past its budget; `reason` says which and why. Retry by hand.
    NeedsAttention,
}

impl SagaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStatus::Running => "Running",
            SagaStatus::Compensating => "Compensating",
            SagaStatus::Completed => "Completed",
            SagaStatus::Compensated => "Compensated",
            SagaStatus::NeedsAttention => "NeedsAttention",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "Running" => SagaStatus::Running,
            "Compensating" => SagaStatus::Compensating,
            "Completed" => SagaStatus::Completed,
            "Compensated" => SagaStatus::Compensated,
            "NeedsAttention" => SagaStatus::NeedsAttention,
            _ => return None,
        })
    }

    /// Nothing more happens without an operator.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::NeedsAttention
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SagaRecord {
    pub id: String,
    pub saga_type: String,
    pub status: SagaStatus,
    /// Running: the next step to run; Compensating: the next step to compensate.
    pub step: i64,
    #[schema(value_type = Object)]
    pub input: Value,
    #[schema(value_type = Object)]
    pub outputs: Map<String, Value>,
    pub reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl SagaRecord {
    pub(crate) fn from_row(row: &Row) -> Result<Self> {
        let status: String = row.get("status")?;
        let input: String = row.get("input")?;
        let outputs: String = row.get("outputs")?;
        Ok(SagaRecord {
            id: row.get("id")?,
            saga_type: row.get("saga_type")?,
            status: SagaStatus::parse(&status).unwrap_or(SagaStatus::NeedsAttention),
            step: row.get("step")?,
            input: serde_json::from_str(&input).unwrap_or(Value::Null),
            outputs: serde_json::from_str(&outputs).unwrap_or_default(),
            reason: row.get("reason")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }
}

/// One line of a saga's step log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepLogEntry {
    pub step: String,
    /// `action` or `compensation`.
    pub phase: String,
    /// `succeeded`, `failed` or `skipped`.
    pub outcome: String,
    pub attempt: u32,
    pub detail: Option<String>,
    pub duration_ms: i64,
    pub at: String,
}

impl StepLogEntry {
    pub(crate) fn from_row(row: &Row) -> Result<Self> {
        Ok(StepLogEntry {
            step: row.get("step")?,
            phase: row.get("phase")?,
            outcome: row.get("outcome")?,
            attempt: u32::try_from(row.get::<i64>("attempt")?).unwrap_or(u32::MAX),
            detail: row.get("detail")?,
            duration_ms: row.get("duration_ms")?,
            at: row.get("at")?,
        })
    }
}
