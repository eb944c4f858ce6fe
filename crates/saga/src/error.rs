use telar_types::{Classify, ErrorCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown saga type `{0}`")]
    UnknownType(String),
    #[error("saga {0} not found")]
    NotFound(String),
    #[error("saga {id} is {status}: {reason}")]
    State {
        id: String,
        status: String,
        reason: String,
    },
    #[error("invalid saga: {0}")]
    Invalid(String),
    #[error(transparent)]
    Sql(#[from] telar_sql::Error),
}

impl Classify for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::UnknownType(_) | Error::Invalid(_) => ErrorCode::InvalidArgument,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::State { .. } => ErrorCode::Conflict,
            Error::Sql(error) => error.code(),
        }
    }
}
