//! The HTTP/1.1 the gateway speaks on both sides, written for a proxy: heads parsed in place by
//! `httparse` and copied on field by field (no header map is built), bodies moved as they
//! arrive and re-framed for the next hop, and strict framing rules so that the gateway and its
//! upstreams always agree where one message ends and the next begins (ADR 0014).

pub mod body;
pub mod chunked;
pub mod head;
pub mod write;

/// A small deterministic generator for the no-panic tests over random input.
#[cfg(test)]
pub(crate) fn test_rng(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
