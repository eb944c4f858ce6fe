//! Carpeta Ciudadana, the flagship telar system: a citizen-folder operator's services
//! (`shared/systems/carpeta.md`). One crate, one module per service; each service has its own
//! database and talks to the others over HTTP and the bus only (ADR 0012).

pub mod citizen;
pub mod domain;
pub mod hub;
pub mod iam;
pub mod ingestion;
pub mod metadata;
pub mod read_models;
pub mod shared;
pub mod sharing;
pub mod signature;
pub mod transfer;
