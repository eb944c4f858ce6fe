use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use telar_types::Envelope;

/// One delivery of a message to a consumer group.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub envelope: Envelope,
    pub group: String,
    /// 1 for the first delivery.
    pub attempt: u32,
}

/// What a handler decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: never deliver again to this group.
    Ack,
    /// Try again later (after `after`, or the policy's backoff); past the group's max attempts
    /// the message goes to the dead letters with `reason`.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Never retry: straight to the dead letters.
    Reject { reason: String },
}

impl Outcome {
    pub fn retry(reason: impl Into<String>) -> Self {
        Outcome::Retry {
            reason: reason.into(),
            after: None,
        }
    }

    pub fn retry_after(reason: impl Into<String>, after: Duration) -> Self {
        Outcome::Retry {
            reason: reason.into(),
            after: Some(after),
        }
    }

    pub fn reject(reason: impl Into<String>) -> Self {
        Outcome::Reject {
            reason: reason.into(),
        }
    }
}

/// Handles deliveries of a subscription. Any `Fn(Delivery) -> impl Future<Output = Outcome>`
/// is a handler.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Outcome>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    fn handle(&self, delivery: Delivery) -> BoxFuture<'static, Outcome> {
        Box::pin(self(delivery))
    }
}
