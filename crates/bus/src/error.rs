use telar_types::{Classify, ErrorCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid topic pattern `{pattern}`: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("consumer group `{group}` already subscribes to `{existing}`, not `{requested}`")]
    GroupPattern {
        group: String,
        existing: String,
        requested: String,
    },
    #[error("invalid subscription options: {0}")]
    Options(String),
    #[error("dead letter {0} not found")]
    DeadLetterNotFound(i64),
    #[error("the bus is closed")]
    Closed,
    #[error(transparent)]
    Sql(#[from] telar_sql::Error),
    #[error("invalid stored envelope: {0}")]
    Corrupt(String),
    #[error("bus storage: {0}")]
    Storage(String),
    /// The broker refused or did not answer (NATS, RabbitMQ).
    #[error("broker: {0}")]
    Broker(String),
}

impl Error {
    pub(crate) fn broker(error: impl std::fmt::Display) -> Self {
        Error::Broker(error.to_string())
    }
}

impl Classify for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::Pattern { .. } | Error::Options(_) => ErrorCode::InvalidArgument,
            Error::GroupPattern { .. } => ErrorCode::Conflict,
            Error::DeadLetterNotFound(_) => ErrorCode::NotFound,
            Error::Closed => ErrorCode::Unavailable,
            Error::Sql(error) => error.code(),
            Error::Corrupt(_) => ErrorCode::Internal,
            Error::Storage(_) | Error::Broker(_) => ErrorCode::Unavailable,
        }
    }
}
