use std::time::Duration;

/// What kind of failure an error is, independent of where it happened.
///
/// Library errors say which kind they are through [`Classify`]; the service kit maps each kind
/// to one HTTP status in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    NotFound,
    Conflict,
    InvalidArgument,
    Unauthenticated,
    Forbidden,
    RateLimited,
    Unavailable,
    Timeout,
    Internal,
}

impl ErrorCode {
    /// The HTTP status this kind of failure is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::InvalidArgument => 422,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
            ErrorCode::Internal => 500,
        }
    }

    /// A stable snake_case name, used in problem bodies (`code`) and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether trying the same operation again later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited | ErrorCode::Unavailable | ErrorCode::Timeout
        )
    }

    /// Whether the detail of such an error may be shown to a caller (5xx details stay in logs).
    pub fn is_client_error(self) -> bool {
        self.http_status() < 500
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every library error so that callers (and the service kit) can decide what to
/// do without matching on another crate's variants.
pub trait Classify {
    /// The kind of failure.
    fn code(&self) -> ErrorCode;

    /// When the caller should try again, if the error knows.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_unavailability_and_timeouts_are_transient() {
        let transient: Vec<_> = [
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::InvalidArgument,
            ErrorCode::Unauthenticated,
            ErrorCode::Forbidden,
            ErrorCode::RateLimited,
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
            ErrorCode::Internal,
        ]
        .into_iter()
        .filter(|code| code.is_transient())
        .collect();
        assert_eq!(
            transient,
            [
                ErrorCode::RateLimited,
                ErrorCode::Unavailable,
                ErrorCode::Timeout
            ]
        );
    }

    #[test]
    fn statuses_follow_http_semantics() {
        assert_eq!(ErrorCode::InvalidArgument.http_status(), 422);
        assert_eq!(ErrorCode::Timeout.http_status(), 504);
        assert!(!ErrorCode::Internal.is_client_error());
        assert!(ErrorCode::Conflict.is_client_error());
    }
}
