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
    /// The citizen moved to another operator: their data here is gone.
    pub const CITIZEN_TRANSFERRED: &str = "carpeta.citizen.transferred";
    pub const DOCUMENT_UPLOADED: &str = "carpeta.document.uploaded";
    pub const DOCUMENT_DELETED: &str = "carpeta.document.deleted";
    pub const DOCUMENT_AUTHENTICATED: &str = "carpeta.document.authenticated";
    pub const DOCUMENT_SHARED: &str = "carpeta.document.shared";
    pub const TRANSFER_REQUESTED: &str = "carpeta.transfer.requested";
    pub const TRANSFER_RECEIVED: &str = "carpeta.transfer.received";
    pub const TRANSFER_CONFIRMED: &str = "carpeta.transfer.confirmed";
    pub const TRANSFER_FAILED: &str = "carpeta.transfer.failed";
    pub const TRANSFER_COMPLETED: &str = "carpeta.transfer.completed";
    pub const HUB_CALL_QUEUED: &str = "carpeta.hub.call_queued";
    pub const HUB_CALL_COMPLETED: &str = "carpeta.hub.call_completed";
    pub const HUB_CALL_FAILED: &str = "carpeta.hub.call_failed";
}
