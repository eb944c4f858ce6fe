//! Upcasters: old event shapes turned into the current one on read, so aggregates and
//! projections only ever see current events and stored events are never rewritten.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::event::RecordedEvent;

/// Turns version `from` of an event type into version `from + 1` (optionally renamed).
#[derive(Clone)]
pub struct Upcaster {
    ty: String,
    from: u32,
    rename: Option<String>,
    upcast: Arc<dyn Fn(Value) -> Value + Send + Sync>,
}

impl Upcaster {
    pub fn new(
        ty: impl Into<String>,
        from: u32,
        upcast: impl Fn(Value) -> Value + Send + Sync + 'static,
    ) -> Self {
        Upcaster {
            ty: ty.into(),
            from,
            rename: None,
            upcast: Arc::new(upcast),
        }
    }

    /// The upcast event is stored under a new type name from now on.
    pub fn renamed(mut self, ty: impl Into<String>) -> Self {
        self.rename = Some(ty.into());
        self
    }
}

/// The upcasters of one store, chained: v1 → v2 → v3 …
#[derive(Clone, Default)]
pub struct Upcasters {
    by_source: HashMap<(String, u32), Upcaster>,
}

impl Upcasters {
    pub fn new(upcasters: impl IntoIterator<Item = Upcaster>) -> Self {
        Upcasters {
            by_source: upcasters
                .into_iter()
                .map(|u| ((u.ty.clone(), u.from), u))
                .collect(),
        }
    }

    /// Applies every upcaster that matches, in chain.
    pub fn apply(&self, mut event: RecordedEvent) -> RecordedEvent {
        // Bounded: a cycle in a misconfigured chain cannot loop forever.
        for _ in 0..64 {
            let Some(upcaster) = self.by_source.get(&(event.ty.clone(), event.type_version)) else {
                break;
            };
            let data = std::mem::take(&mut event.data);
            event.data = (upcaster.upcast)(data);
            event.type_version += 1;
            if let Some(ty) = &upcaster.rename {
                event.ty = ty.clone();
            }
        }
        event
    }

    /// The version new events of `ty` are written at: one past the last upcaster of its chain.
    pub fn current_version(&self, ty: &str) -> u32 {
        let mut version = 1;
        while self.by_source.contains_key(&(ty.to_owned(), version)) {
            version += 1;
        }
        version
    }
}
