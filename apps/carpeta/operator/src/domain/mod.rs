//! Carpeta's domain rules, free of HTTP and SQL: citizen ids, emails, masking for logs, and the
//! event types the services publish.

mod citizen;
mod mask;

pub use citizen::{CitizenId, validate_email};
pub use mask::{mask_email, mask_id};

/// CloudEvents `type`s (`shared/systems/carpeta.md`, "Events").
pub mod events {
    pub const CITIZEN_REGISTERED: &str = "carpeta.citizen.registered";
    pub const CITIZEN_UPDATED: &str = "carpeta.citizen.updated";
    pub const CITIZEN_REGISTRATION_FAILED: &str = "carpeta.citizen.registration_failed";
    pub const HUB_CALL_QUEUED: &str = "carpeta.hub.call_queued";
    pub const HUB_CALL_COMPLETED: &str = "carpeta.hub.call_completed";
    pub const HUB_CALL_FAILED: &str = "carpeta.hub.call_failed";
}
