use telar_types::{Classify, ErrorCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another writer appended to the stream first.
    #[error("stream `{stream}` is at version {actual}, expected {expected}")]
    Conflict {
        stream: String,
        expected: String,
        actual: i64,
    },
    #[error("invalid event: {0}")]
    Invalid(String),
    /// A stored event that no longer decodes, named by stream and position.
    #[error("event at position {position} of stream `{stream}` does not decode: {reason}")]
    Corrupt {
        stream: String,
        position: i64,
        reason: String,
    },
    #[error(transparent)]
    Sql(#[from] telar_sql::Error),
}

impl Classify for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::Conflict { .. } => ErrorCode::Conflict,
            Error::Invalid(_) => ErrorCode::InvalidArgument,
            Error::Corrupt { .. } => ErrorCode::Internal,
            Error::Sql(error) => error.code(),
        }
    }
}
