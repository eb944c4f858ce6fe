use telar_types::{Classify, ErrorCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Database failures, classified so that callers need not inspect engine errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unique constraint violated: {0}")]
    UniqueViolation(String),
    #[error("row not found")]
    NotFound,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("column `{column}`: {reason}")]
    Column { column: String, reason: String },
    #[error("migration {version} ({name}): {reason}")]
    Migration {
        version: i64,
        name: String,
        reason: String,
    },
    #[error("invalid database configuration: {0}")]
    Config(String),
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::RowNotFound => Error::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Error::Unavailable(error.to_string())
            }
            sqlx::Error::ColumnNotFound(column) => Error::Column {
                column,
                reason: "not in the result".into(),
            },
            sqlx::Error::ColumnDecode { index, source } => Error::Column {
                column: index,
                reason: source.to_string(),
            },
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Error::UniqueViolation(db.message().to_owned())
            }
            // SQLITE_BUSY / SQLITE_LOCKED after the busy timeout.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("5") | Some("6") | Some("517")) =>
            {
                Error::Unavailable(db.message().to_owned())
            }
            other => Error::Database(other.to_string()),
        }
    }
}

impl Classify for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::UniqueViolation(_) => ErrorCode::Conflict,
            Error::NotFound => ErrorCode::NotFound,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
}
