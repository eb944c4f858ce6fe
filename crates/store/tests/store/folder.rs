//! A small aggregate (a citizen's folder) for the aggregate and repository tests.

use serde::{Deserialize, Serialize};
use telar_store::Aggregate;
use telar_types::{Classify, ErrorCode};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Folder {
    pub owner: Option<String>,
    pub documents: Vec<String>,
}

pub enum FolderCommand {
    Open { owner: String },
    Upload { document: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum FolderEvent {
    Opened { owner: String },
    Uploaded { document: String },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FolderError {
    #[error("the folder is already open")]
    AlreadyOpen,
    #[error("the folder is not open")]
    NotOpen,
    #[error("document {0} is already in the folder")]
    Duplicate(String),
}

impl Classify for FolderError {
    fn code(&self) -> ErrorCode {
        match self {
            FolderError::NotOpen => ErrorCode::NotFound,
            FolderError::AlreadyOpen | FolderError::Duplicate(_) => ErrorCode::Conflict,
        }
    }
}

impl Aggregate for Folder {
    const KIND: &'static str = "folder";
    type Command = FolderCommand;
    type Event = FolderEvent;
    type Error = FolderError;

    fn handle(&self, command: FolderCommand) -> Result<Vec<FolderEvent>, FolderError> {
        match command {
            FolderCommand::Open { owner } => match self.owner {
                Some(_) => Err(FolderError::AlreadyOpen),
                None => Ok(vec![FolderEvent::Opened { owner }]),
            },
            FolderCommand::Upload { document } => {
                if self.owner.is_none() {
                    return Err(FolderError::NotOpen);
                }
                if self.documents.contains(&document) {
                    return Err(FolderError::Duplicate(document));
                }
                Ok(vec![FolderEvent::Uploaded { document }])
            }
        }
    }

    fn apply(&mut self, event: &FolderEvent) {
        match event {
            FolderEvent::Opened { owner } => self.owner = Some(owner.clone()),
            FolderEvent::Uploaded { document } => self.documents.push(document.clone()),
        }
    }
}
