//! Given / when / then for aggregates, with no database:
//!
//! ```ignore
//! given::<Folder>([FolderEvent::Opened { owner: "1032456789".into() }])
//!     .when(FolderCommand::Upload { document: "d1".into() })
//!     .then([FolderEvent::Uploaded { document: "d1".into() }]);
//! ```

use std::fmt::Debug;

use crate::aggregate::Aggregate;

/// An aggregate built from past events.
pub fn given<A: Aggregate>(history: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let mut state = A::default();
    for event in history {
        state.apply(&event);
    }
    Given { state }
}

pub struct Given<A> {
    state: A,
}

impl<A: Aggregate> Given<A> {
    pub fn when(self, command: A::Command) -> Then<A> {
        Then {
            result: self.state.handle(command),
        }
    }
}

pub struct Then<A: Aggregate> {
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Then<A>
where
    A::Event: PartialEq + Debug,
{
    /// The command produced exactly these events.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => assert_eq!(events, expected, "events produced by the command"),
            Err(error) => panic!("expected events {expected:?}, the command was refused: {error}"),
        }
    }

    /// The command was refused, and `check` accepts the reason.
    #[track_caller]
    pub fn then_refused(self, check: impl FnOnce(&A::Error) -> bool) {
        match self.result {
            Ok(events) => panic!("expected a refusal, the command produced {events:?}"),
            Err(error) => assert!(check(&error), "unexpected refusal: {error}"),
        }
    }
}
