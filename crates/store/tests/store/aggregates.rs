//! Aggregates: given/when/then without a database, and the repository on both backends.

use telar_store::testing::given;
use telar_store::{CommandError, Error, EventStore, Metadata, Repository};
use telar_types::{Classify, ErrorCode};

use crate::folder::{Folder, FolderCommand, FolderError, FolderEvent};

#[test]
fn an_open_folder_takes_a_new_document() {
    given::<Folder>([FolderEvent::Opened {
        owner: "1032456789".into(),
    }])
    .when(FolderCommand::Upload {
        document: "diploma".into(),
    })
    .then([FolderEvent::Uploaded {
        document: "diploma".into(),
    }]);
}

#[test]
fn a_document_is_not_uploaded_twice_nor_to_a_closed_folder() {
    given::<Folder>([
        FolderEvent::Opened {
            owner: "1032456789".into(),
        },
        FolderEvent::Uploaded {
            document: "diploma".into(),
        },
    ])
    .when(FolderCommand::Upload {
        document: "diploma".into(),
    })
    .then_refused(|e| *e == FolderError::Duplicate("diploma".into()));
    given::<Folder>([])
        .when(FolderCommand::Upload {
            document: "diploma".into(),
        })
        .then_refused(|e| e.code() == ErrorCode::NotFound);
}

pub async fn the_repository_replays_and_saves_at_the_loaded_version(store: EventStore) {
    let folders = Repository::<Folder>::new(store.clone());
    let open = FolderCommand::Open {
        owner: "1032456789".into(),
    };
    folders
        .execute("1032456789", open, Metadata::default())
        .await
        .expect("open");
    for document in ["cedula", "diploma"] {
        let (events, appended) = folders
            .execute(
                "1032456789",
                FolderCommand::Upload {
                    document: document.into(),
                },
                Metadata::default(),
            )
            .await
            .expect("upload");
        assert_eq!(events.len(), 1);
        assert!(appended.is_some());
    }
    let loaded = folders.load("1032456789").await.expect("load");
    assert_eq!(loaded.version, 3);
    assert_eq!(loaded.state.documents, ["cedula", "diploma"]);
    let refused = folders
        .execute(
            "1032456789",
            FolderCommand::Upload {
                document: "cedula".into(),
            },
            Metadata::default(),
        )
        .await
        .expect_err("duplicate");
    assert!(matches!(
        refused,
        CommandError::Rejected(FolderError::Duplicate(_))
    ));
    assert_eq!(refused.code(), ErrorCode::Conflict);
    assert_eq!(
        store.version("folder-1032456789").await.expect("version"),
        3,
        "a refused command writes nothing"
    );
}

pub async fn concurrent_commands_on_one_aggregate_conflict(store: EventStore) {
    let folders = Repository::<Folder>::new(store);
    folders
        .execute(
            "7",
            FolderCommand::Open { owner: "7".into() },
            Metadata::default(),
        )
        .await
        .expect("open");
    let uploads = (0..6).map(|n| {
        let folders = folders.clone();
        tokio::spawn(async move {
            folders
                .execute(
                    "7",
                    FolderCommand::Upload {
                        document: format!("d{n}"),
                    },
                    Metadata::default(),
                )
                .await
        })
    });
    let mut won = 0;
    for result in futures::future::join_all(uploads).await {
        match result.expect("task") {
            Ok(_) => won += 1,
            Err(CommandError::Store(Error::Conflict { .. })) => {}
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    let loaded = folders.load("7").await.expect("load");
    assert!(won >= 1);
    assert_eq!(
        loaded.state.documents.len(),
        won,
        "exactly the winners' events are stored"
    );
    assert_eq!(loaded.version, 1 + won as i64);
}

pub async fn an_unknown_event_type_is_reported_with_its_position(store: EventStore) {
    store
        .append(
            "folder-9",
            telar_store::ExpectedVersion::NoStream,
            vec![telar_store::NewEvent::new(
                "FolderRenamed",
                serde_json::json!({}),
            )],
        )
        .await
        .expect("append");
    let error = Repository::<Folder>::new(store)
        .load("9")
        .await
        .expect_err("unknown type");
    let text = error.to_string();
    assert!(
        text.contains("folder-9") && text.contains("FolderRenamed") && text.contains("position"),
        "{text}"
    );
}

pub async fn snapshots_bound_the_replay(store: EventStore) {
    let folders = Repository::<Folder>::new(store.clone()).with_snapshots(10, 1);
    folders
        .execute(
            "s",
            FolderCommand::Open { owner: "s".into() },
            Metadata::default(),
        )
        .await
        .expect("open");
    for n in 0..24 {
        folders
            .execute(
                "s",
                FolderCommand::Upload {
                    document: format!("d{n}"),
                },
                Metadata::default(),
            )
            .await
            .expect("upload");
    }
    let snapshot: i64 =
        telar_sql::query("SELECT version FROM es_snapshots WHERE stream = 'folder-s'")
            .fetch_one(store.db())
            .await
            .and_then(|row| row.get("version"))
            .expect("a snapshot was taken");
    assert_eq!(snapshot, 20, "every 10 events");
    // Damage an event the snapshot covers: a load that starts from the snapshot never reads it.
    telar_sql::query(
        "UPDATE es_events SET data = '{not json' WHERE stream = 'folder-s' AND version = 2",
    )
    .execute(store.db())
    .await
    .expect("damage");
    let loaded = folders.load("s").await.expect("load from the snapshot");
    assert_eq!(loaded.version, 25);
    assert_eq!(loaded.state.documents.len(), 24);
    // A new state shape (schema 2) ignores the old snapshot: full replay, which meets the damage.
    let reshaped = Repository::<Folder>::new(store).with_snapshots(10, 2);
    let error = reshaped
        .load("s")
        .await
        .expect_err("replays from the start");
    assert!(error.to_string().contains("folder-s"), "{error}");
}

pub async fn upcasters_turn_old_shapes_into_the_current_one(store: EventStore) {
    // Written by an older release: `Uploaded` v1 called the field `doc`.
    store
        .append(
            "folder-u",
            telar_store::ExpectedVersion::NoStream,
            vec![
                telar_store::NewEvent::new("Opened", serde_json::json!({"owner": "u"})),
                telar_store::NewEvent::new("Uploaded", serde_json::json!({"doc": "acta"})),
            ],
        )
        .await
        .expect("append old events");
    let store = store.with_upcasters(telar_store::Upcasters::new([telar_store::Upcaster::new(
        "Uploaded",
        1,
        |data| serde_json::json!({"document": data["doc"]}),
    )]));
    let stored = store.read_stream("folder-u", 1, 10).await.expect("read");
    assert_eq!(stored[1].type_version, 2);
    assert_eq!(stored[1].data, serde_json::json!({"document": "acta"}));
    let folders = Repository::<Folder>::new(store.clone());
    assert_eq!(
        folders.load("u").await.expect("load").state.documents,
        ["acta"]
    );
    folders
        .execute(
            "u",
            FolderCommand::Upload {
                document: "diploma".into(),
            },
            Metadata::default(),
        )
        .await
        .expect("upload");
    let newest = store.read_stream("folder-u", 3, 10).await.expect("read");
    assert_eq!(
        newest[0].type_version, 2,
        "new events are written at the current version"
    );
}
