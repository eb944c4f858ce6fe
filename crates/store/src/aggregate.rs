//! Event-sourced aggregates: `handle(command) -> events`, `apply(event)`, and a repository that
//! loads an aggregate by replaying its stream and saves new events at the version it loaded.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use telar_types::{Classify, ErrorCode};

use crate::event::{ExpectedVersion, Metadata, NewEvent, RecordedEvent};
use crate::{Appended, Error, EventStore, snapshot};

/// A consistency boundary whose state is the fold of its events.
///
/// Events are a serde enum in adjacently tagged form — `#[serde(tag = "type", content =
/// "data")]` — so the variant name is the stored event type and its fields the payload.
pub trait Aggregate: Default + Send + Sync + 'static {
    /// The stream prefix: an aggregate `42` of kind `folder` lives in stream `folder-42`.
    const KIND: &'static str;
    type Command: Send;
    type Event: Serialize + DeserializeOwned + Send + Sync;
    /// Why a command is refused (its `Classify` code becomes the HTTP status).
    type Error: std::error::Error + Classify + Send + Sync + 'static;

    /// Decides: the events a command produces, or why it is refused. Never mutates.
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
    /// Evolves the state by one event. Never fails: events are facts.
    fn apply(&mut self, event: &Self::Event);
}

/// Why a command did not produce stored events.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The aggregate refused it.
    #[error(transparent)]
    Rejected(E),
    /// The store failed, or another writer got there first (`Error::Conflict`).
    #[error(transparent)]
    Store(#[from] Error),
}

impl<E: std::error::Error + Classify + 'static> Classify for CommandError<E> {
    fn code(&self) -> ErrorCode {
        match self {
            CommandError::Rejected(error) => error.code(),
            CommandError::Store(error) => error.code(),
        }
    }
}

/// An aggregate as loaded, with the version its stream was at.
#[derive(Debug)]
pub struct Loaded<A> {
    pub state: A,
    /// 0: the stream does not exist yet.
    pub version: i64,
    /// The version of the snapshot it started from (0: replayed from the start).
    pub snapshot: i64,
}

/// Loads and saves aggregates of one kind.
pub struct Repository<A> {
    store: EventStore,
    snapshots: Option<Snapshots<A>>,
    _kind: PhantomData<fn() -> A>,
}

/// How a repository snapshots its aggregates (set by [`Repository::with_snapshots`], where the
/// state's serde bounds are known).
struct Snapshots<A> {
    every: i64,
    schema: u32,
    encode: fn(&A) -> Option<String>,
    decode: fn(&str) -> Option<A>,
}

impl<A> Clone for Snapshots<A> {
    fn clone(&self) -> Self {
        Snapshots { ..*self }
    }
}

impl<A> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            snapshots: self.snapshots.clone(),
            _kind: PhantomData,
        }
    }
}

impl<A: Aggregate + Serialize + DeserializeOwned> Repository<A> {
    /// Saves the state every `every` events; `schema` names the state's shape (bump it when the
    /// struct changes: older snapshots are then ignored and replaced).
    pub fn with_snapshots(mut self, every: u32, schema: u32) -> Self {
        self.snapshots = Some(Snapshots {
            every: i64::from(every.max(1)),
            schema,
            encode: |state: &A| serde_json::to_string(state).ok(),
            decode: |text: &str| serde_json::from_str(text).ok(),
        });
        self
    }
}

/// Events read per round trip while replaying.
const PAGE: u32 = 1_000;

impl<A: Aggregate> Repository<A> {
    pub fn new(store: EventStore) -> Self {
        Repository {
            store,
            snapshots: None,
            _kind: PhantomData,
        }
    }

    pub fn stream(id: &str) -> String {
        format!("{}-{id}", A::KIND)
    }

    /// Replays the aggregate's stream.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, Error> {
        let stream = Self::stream(id);
        let mut loaded = Loaded {
            state: A::default(),
            version: 0,
            snapshot: 0,
        };
        if let Some(snapshots) = &self.snapshots
            && let Some((version, text)) =
                snapshot::read(self.store.db(), &stream, snapshots.schema).await?
            && let Some(state) = (snapshots.decode)(&text)
        {
            loaded = Loaded {
                state,
                version,
                snapshot: version,
            };
        }
        loop {
            let page = self
                .store
                .read_stream(&stream, loaded.version + 1, PAGE)
                .await?;
            let done = page.len() < PAGE as usize;
            for recorded in page {
                loaded.state.apply(&decode::<A>(&recorded)?);
                loaded.version = recorded.version;
            }
            if done {
                return Ok(loaded);
            }
        }
    }

    /// Loads, handles `command`, and appends its events at the loaded version: a concurrent
    /// writer makes this a `Conflict` (retry by calling again). Returns the events and where
    /// they landed (`None` when the command produced no event).
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        metadata: Metadata,
    ) -> Result<(Vec<A::Event>, Option<Appended>), CommandError<A::Error>> {
        let loaded = self.load(id).await?;
        let events = loaded
            .state
            .handle(command)
            .map_err(CommandError::Rejected)?;
        if events.is_empty() {
            return Ok((events, None));
        }
        let new = events
            .iter()
            .map(|event| {
                encode::<A>(event).map(|e| {
                    let version = self.store.current_version(&e.ty);
                    e.version(version).metadata(metadata.clone())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let expected = match loaded.version {
            0 => ExpectedVersion::NoStream,
            version => ExpectedVersion::Exact(version),
        };
        let stream = Self::stream(id);
        let appended = self.store.append(&stream, expected, new).await?;
        if let Some(snapshots) = &self.snapshots
            // At most `every` events to replay after the snapshot, whatever wrote them.
            && appended.version - loaded.snapshot >= snapshots.every
        {
            let mut state = loaded.state;
            for event in &events {
                state.apply(event);
            }
            // A snapshot is a cache: failing to write one costs a longer load, nothing else.
            if let Some(text) = (snapshots.encode)(&state) {
                let _ = snapshot::write(
                    self.store.db(),
                    &stream,
                    appended.version,
                    snapshots.schema,
                    text,
                )
                .await;
            }
        }
        Ok((events, Some(appended)))
    }
}

/// The stored form of a domain event: its serde tag is the type, its content the data.
pub fn encode<A: Aggregate>(event: &A::Event) -> Result<NewEvent, Error> {
    let value = serde_json::to_value(event).map_err(|e| Error::Invalid(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(Error::Invalid(
            "an aggregate's events must serialize as {\"type\": …, \"data\": …}".into(),
        ));
    };
    let ty = match map.remove("type") {
        Some(Value::String(ty)) => ty,
        _ => {
            return Err(Error::Invalid(
                "an aggregate's events need #[serde(tag = \"type\", content = \"data\")]".into(),
            ));
        }
    };
    Ok(NewEvent::new(ty, map.remove("data").unwrap_or(Value::Null)))
}

/// A stored event as the aggregate's event type; an unknown type or a payload that no longer
/// fits is an error naming the stream and position.
pub fn decode<A: Aggregate>(recorded: &RecordedEvent) -> Result<A::Event, Error> {
    let value = match &recorded.data {
        Value::Null => json!({"type": recorded.ty}),
        data => json!({"type": recorded.ty, "data": data}),
    };
    serde_json::from_value(value).map_err(|e| Error::Corrupt {
        stream: recorded.stream.clone(),
        position: recorded.position,
        reason: format!("{} v{}: {e}", recorded.ty, recorded.type_version),
    })
}
