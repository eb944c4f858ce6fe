use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{
    AssertSqlSafe, PgConnection, PgPool, Postgres, Row as _, Sqlite, SqliteConnection, SqlitePool,
};

use crate::value::{Decodable, Value};
use crate::{Error, Result};

/// A statement written once for both engines: `$1`, `$2`, ... placeholders (SQLite reads them
/// as positional parameters too).
#[must_use = "a query does nothing until executed"]
#[derive(Debug, Clone)]
pub struct Query {
    sql: std::borrow::Cow<'static, str>,
    args: Vec<Value>,
}

/// Starts a query. The text is `'static` on purpose: values go through `bind`, never `format!`.
pub fn query(sql: &'static str) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// A statement whose text is generated at run time — for placeholder lists such as multi-row
/// `VALUES ($1, $2), ($3, $4)` built with [`placeholders`]. Values still go through `bind`:
/// never put a value into the text.
pub fn generated_query(sql: String) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// `rows` groups of `columns` numbered placeholders starting at `$first`:
/// `placeholders(2, 2, 1)` is `($1, $2), ($3, $4)`.
pub fn placeholders(rows: usize, columns: usize, first: usize) -> String {
    let mut text = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            text.push_str(", ");
        }
        text.push('(');
        for column in 0..columns {
            if column > 0 {
                text.push_str(", ");
            }
            text.push('$');
            text.push_str(&(first + row * columns + column).to_string());
        }
        text.push(')');
    }
    text
}

/// Where a query runs: a pool (`&Db`) or an open transaction (`&mut Tx`).
pub trait Executor<'c> {
    #[doc(hidden)]
    fn target(self) -> Target<'c>;
}

#[doc(hidden)]
pub enum Target<'c> {
    SqlitePool(&'c SqlitePool),
    PgPool(&'c PgPool),
    SqliteConn(&'c mut SqliteConnection),
    PgConn(&'c mut PgConnection),
}

/// One result row, read by column name.
#[derive(Debug)]
pub struct Row(RowInner);

#[derive(Debug)]
enum RowInner {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    /// Decodes a column; a missing column or wrong type is an error naming the column.
    pub fn get<T: Decodable>(&self, column: &str) -> Result<T> {
        match &self.0 {
            RowInner::Sqlite(row) => row.try_get(column),
            RowInner::Postgres(row) => row.try_get(column),
        }
        .map_err(Error::from)
    }
}

/// Binds every value to a sqlx query of either engine (the same code, two concrete types).
macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Value::NullInt => query.bind(None::<i64>),
                Value::NullText => query.bind(None::<String>),
                Value::NullFloat => query.bind(None::<f64>),
                Value::NullBool => query.bind(None::<bool>),
                Value::NullBytes => query.bind(None::<Vec<u8>>),
                Value::Bool(v) => query.bind(v),
                Value::Int(v) => query.bind(v),
                Value::Float(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
                Value::Bytes(v) => query.bind(v),
            };
        }
        query
    }};
}

type SqliteQuery = sqlx::query::Query<'static, Sqlite, SqliteArguments>;
type PgQuery = sqlx::query::Query<'static, Postgres, PgArguments>;

impl Query {
    /// Binds the next positional parameter.
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    fn sqlite(self) -> SqliteQuery {
        let query = match self.sql {
            std::borrow::Cow::Borrowed(text) => sqlx::query(text),
            std::borrow::Cow::Owned(text) => sqlx::query(AssertSqlSafe(text)),
        };
        bind_all!(query, self.args)
    }

    fn postgres(self) -> PgQuery {
        let query = match self.sql {
            std::borrow::Cow::Borrowed(text) => sqlx::query(text),
            std::borrow::Cow::Owned(text) => sqlx::query(AssertSqlSafe(text)),
        };
        bind_all!(query, self.args)
    }

    /// Runs the statement; returns the number of rows it changed.
    pub async fn execute<'c>(self, executor: impl Executor<'c>) -> Result<u64> {
        let affected = match executor.target() {
            Target::SqlitePool(pool) => self.sqlite().execute(pool).await?.rows_affected(),
            Target::SqliteConn(conn) => self.sqlite().execute(conn).await?.rows_affected(),
            Target::PgPool(pool) => self.postgres().execute(pool).await?.rows_affected(),
            Target::PgConn(conn) => self.postgres().execute(conn).await?.rows_affected(),
        };
        Ok(affected)
    }

    /// All rows of the result.
    pub async fn fetch_all<'c>(self, executor: impl Executor<'c>) -> Result<Vec<Row>> {
        let rows = match executor.target() {
            Target::SqlitePool(pool) => wrap_sqlite(self.sqlite().fetch_all(pool).await?),
            Target::SqliteConn(conn) => wrap_sqlite(self.sqlite().fetch_all(conn).await?),
            Target::PgPool(pool) => wrap_pg(self.postgres().fetch_all(pool).await?),
            Target::PgConn(conn) => wrap_pg(self.postgres().fetch_all(conn).await?),
        };
        Ok(rows)
    }

    /// The first row, if any.
    pub async fn fetch_optional<'c>(self, executor: impl Executor<'c>) -> Result<Option<Row>> {
        let row = match executor.target() {
            Target::SqlitePool(pool) => self.sqlite().fetch_optional(pool).await?.map(sqlite_row),
            Target::SqliteConn(conn) => self.sqlite().fetch_optional(conn).await?.map(sqlite_row),
            Target::PgPool(pool) => self.postgres().fetch_optional(pool).await?.map(pg_row),
            Target::PgConn(conn) => self.postgres().fetch_optional(conn).await?.map(pg_row),
        };
        Ok(row)
    }

    /// Exactly one row; none is `Error::NotFound`.
    pub async fn fetch_one<'c>(self, executor: impl Executor<'c>) -> Result<Row> {
        self.fetch_optional(executor).await?.ok_or(Error::NotFound)
    }
}

fn sqlite_row(row: SqliteRow) -> Row {
    Row(RowInner::Sqlite(row))
}

fn pg_row(row: PgRow) -> Row {
    Row(RowInner::Postgres(row))
}

fn wrap_sqlite(rows: Vec<SqliteRow>) -> Vec<Row> {
    rows.into_iter().map(sqlite_row).collect()
}

fn wrap_pg(rows: Vec<PgRow>) -> Vec<Row> {
    rows.into_iter().map(pg_row).collect()
}
