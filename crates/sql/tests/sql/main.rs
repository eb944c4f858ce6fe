//! One conformance suite for both engines: every test runs on SQLite and on the running
//! PostgreSQL server (`TELAR_TEST_POSTGRES_URL`).

use telar_sql::{Db, Error, Migration, query};
use telar_types::{Classify, ErrorCode};

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "people",
        sqlite: "CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT, score REAL, active BOOLEAN NOT NULL DEFAULT TRUE, photo BLOB);",
        postgres: "CREATE TABLE people (id BIGINT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT, score DOUBLE PRECISION, active BOOLEAN NOT NULL DEFAULT TRUE, photo BYTEA);",
    },
    Migration {
        version: 2,
        name: "counter",
        sqlite: "CREATE TABLE counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL); INSERT INTO counter VALUES ('hits', 0);",
        postgres: "CREATE TABLE counter (name TEXT PRIMARY KEY, value BIGINT NOT NULL); INSERT INTO counter VALUES ('hits', 0);",
    },
];

async fn migrated(db: Db) -> Db {
    db.migrate(MIGRATIONS).await.expect("migrations apply");
    db
}

async fn migrations_apply_once_and_refuse_edits(db: Db) {
    assert_eq!(db.migrate(MIGRATIONS).await.expect("first run"), 2);
    assert_eq!(db.migrate(MIGRATIONS).await.expect("second run"), 0);
    let edited = [Migration {
        sqlite: "CREATE TABLE people (id INTEGER);",
        postgres: "CREATE TABLE people (id BIGINT);",
        ..MIGRATIONS[0]
    }];
    let error = db
        .migrate(&edited)
        .await
        .expect_err("edited script refused");
    assert!(error.to_string().contains("changed"), "{error}");
}

async fn failed_migration_leaves_nothing_behind(db: Db) {
    let broken = [
        MIGRATIONS[0],
        Migration {
            version: 2,
            name: "broken",
            sqlite: "CREATE TABLE half (id INTEGER); THIS IS NOT SQL;",
            postgres: "CREATE TABLE half (id BIGINT); THIS IS NOT SQL;",
        },
    ];
    let error = db.migrate(&broken).await.expect_err("broken script fails");
    assert!(
        error.to_string().contains("broken"),
        "names the migration: {error}"
    );
    let tables = query("SELECT COUNT(*) AS n FROM people")
        .fetch_one(&db)
        .await;
    assert!(tables.is_err(), "version 1 rolled back with version 2");
    assert_eq!(db.migrate(MIGRATIONS).await.expect("fixed set applies"), 2);
}

async fn values_round_trip(db: Db) {
    let db = migrated(db).await;
    let photo = vec![0u8, 159, 146, 150];
    query("INSERT INTO people (id, email, name, score, active, photo) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(1_032_456_789_i64)
        .bind("ana@example.co")
        .bind(Some("Ana Pérez"))
        .bind(4.5)
        .bind(false)
        .bind(photo.clone())
        .execute(&db)
        .await
        .expect("insert");
    query("INSERT INTO people (id, email, name, score, photo) VALUES ($1, $2, $3, $4, $5)")
        .bind(2_i64)
        .bind("b@example.com")
        .bind(None::<String>)
        .bind(None::<f64>)
        .bind(None::<Vec<u8>>)
        .execute(&db)
        .await
        .expect("insert with nulls");
    let row = query("SELECT * FROM people WHERE id = $1")
        .bind(1_032_456_789_i64)
        .fetch_one(&db)
        .await
        .expect("row");
    assert_eq!(row.get::<i64>("id").unwrap_or_default(), 1_032_456_789);
    assert_eq!(row.get::<String>("name").ok().as_deref(), Some("Ana Pérez"));
    assert_eq!(row.get::<f64>("score").ok(), Some(4.5));
    assert_eq!(row.get::<bool>("active").ok(), Some(false));
    assert_eq!(row.get::<Vec<u8>>("photo").ok(), Some(photo));
    let nulls = query("SELECT name, score, active FROM people WHERE id = $1")
        .bind(2_i64)
        .fetch_one(&db)
        .await
        .expect("row");
    assert_eq!(nulls.get::<Option<String>>("name").ok(), Some(None));
    assert_eq!(
        nulls.get::<bool>("active").ok(),
        Some(true),
        "default applied"
    );
    let missing = nulls.get::<String>("nope").expect_err("unknown column");
    assert!(missing.to_string().contains("nope"), "{missing}");
}

async fn returning_and_not_found(db: Db) {
    let db = migrated(db).await;
    let row = query("UPDATE counter SET value = value + $1 WHERE name = $2 RETURNING value")
        .bind(5_i64)
        .bind("hits")
        .fetch_one(&db)
        .await
        .expect("returning");
    assert_eq!(row.get::<i64>("value").ok(), Some(5));
    let error = query("SELECT value FROM counter WHERE name = $1")
        .bind("absent")
        .fetch_one(&db)
        .await
        .expect_err("no row");
    assert!(matches!(error, Error::NotFound));
    assert_eq!(error.code(), ErrorCode::NotFound);
}

async fn transactions_commit_or_leave_nothing(db: Db) {
    let db = migrated(db).await;
    let mut tx = db.begin().await.expect("begin");
    query("INSERT INTO people (id, email) VALUES ($1, $2)")
        .bind(10_i64)
        .bind("t@example.com")
        .execute(&mut tx)
        .await
        .expect("insert in tx");
    tx.rollback().await.expect("rollback");

    {
        let mut dropped = db.begin().await.expect("begin");
        query("INSERT INTO people (id, email) VALUES ($1, $2)")
            .bind(11_i64)
            .bind("d@example.com")
            .execute(&mut dropped)
            .await
            .expect("insert");
    }

    let mut tx = db.begin().await.expect("begin");
    query("INSERT INTO people (id, email) VALUES ($1, $2)")
        .bind(12_i64)
        .bind("c@example.com")
        .execute(&mut tx)
        .await
        .expect("insert");
    tx.commit().await.expect("commit");

    let ids: Vec<i64> = query("SELECT id FROM people ORDER BY id")
        .fetch_all(&db)
        .await
        .expect("select")
        .iter()
        .filter_map(|row| row.get("id").ok())
        .collect();
    assert_eq!(
        ids,
        [12],
        "rolled back and dropped transactions left nothing"
    );
}

async fn unique_violation_is_a_conflict(db: Db) {
    let db = migrated(db).await;
    let insert = || {
        query("INSERT INTO people (id, email) VALUES ($1, $2)")
            .bind(1_i64)
            .bind("same@example.com")
    };
    insert().execute(&db).await.expect("first insert");
    let error = insert().execute(&db).await.expect_err("duplicate");
    assert_eq!(error.code(), ErrorCode::Conflict, "{error}");
}

async fn concurrent_writers_exactly_one_wins(db: Db) {
    let db = migrated(db).await;
    let attempts = (0..16).map(|_| {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await?;
            let inserted =
                query("INSERT INTO people (id, email) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(7_i64)
                    .bind("race@example.com")
                    .execute(&mut tx)
                    .await?;
            query("UPDATE counter SET value = value + $1 WHERE name = 'hits'")
                .bind(inserted as i64)
                .execute(&mut tx)
                .await?;
            tx.commit().await?;
            Ok::<u64, Error>(inserted)
        })
    });
    let mut winners = 0;
    for attempt in futures::future::join_all(attempts).await {
        winners += attempt.expect("task").expect("no writer fails");
    }
    assert_eq!(winners, 1);
    let hits = query("SELECT value FROM counter WHERE name = 'hits'")
        .fetch_one(&db)
        .await
        .expect("counter");
    assert_eq!(hits.get::<i64>("value").ok(), Some(1));
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let (db, _dir) = telar_testkit::sqlite_db("conformance").await;
                    super::$test(db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(telar_testkit::postgres_db("sqltest").await).await;
                }
            )*
        }
    };
}

conformance!(
    migrations_apply_once_and_refuse_edits,
    failed_migration_leaves_nothing_behind,
    values_round_trip,
    returning_and_not_found,
    transactions_commit_or_leave_nothing,
    unique_violation_is_a_conflict,
    concurrent_writers_exactly_one_wins,
);

#[tokio::test]
async fn postgres_services_are_isolated_by_schema() {
    let citizen = migrated(telar_testkit::postgres_db("citizen").await).await;
    let other = telar_testkit::postgres_db("metadata").await;
    query("INSERT INTO people (id, email) VALUES (1, 'x@example.com')")
        .execute(&citizen)
        .await
        .expect("insert");
    let error = query("SELECT * FROM people").fetch_all(&other).await;
    assert!(
        error.is_err(),
        "another service's schema does not see the table"
    );
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_not_a_hang() {
    let config = telar_sql::PostgresConfig {
        url: "postgres://postgres@127.0.0.1:1/test".into(),
        acquire_timeout_ms: 500,
        ..Default::default()
    };
    let error = Db::postgres(&config, "nowhere").await.expect_err("refused");
    assert_eq!(error.code(), ErrorCode::Unavailable, "{error}");
}
