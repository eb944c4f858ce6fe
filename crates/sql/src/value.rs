use sqlx::{Postgres, Sqlite};

/// A bind parameter. NULLs carry their type so PostgreSQL can check them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    NullInt,
    NullText,
    NullFloat,
    NullBool,
    NullBytes,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

macro_rules! value_from {
    ($($ty:ty => $variant:ident / $null:ident, $conv:expr;)*) => {$(
        impl From<$ty> for Value {
            fn from(value: $ty) -> Self {
                let convert: fn($ty) -> Value = $conv;
                convert(value)
            }
        }
        impl From<Option<$ty>> for Value {
            fn from(value: Option<$ty>) -> Self {
                match value {
                    Some(value) => Value::from(value),
                    None => Value::$null,
                }
            }
        }
    )*};
}

value_from! {
    bool => Bool / NullBool, Value::Bool;
    i64 => Int / NullInt, Value::Int;
    i32 => Int / NullInt, |v| Value::Int(i64::from(v));
    u32 => Int / NullInt, |v| Value::Int(i64::from(v));
    f64 => Float / NullFloat, Value::Float;
    String => Text / NullText, Value::Text;
    &str => Text / NullText, |v| Value::Text(v.to_owned());
    Vec<u8> => Bytes / NullBytes, Value::Bytes;
}

impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Value::Text(value.clone())
    }
}

/// A Rust type that both engines can decode from a column.
///
/// Integers are `i64` (`BIGINT` in PostgreSQL migrations, `INTEGER` in SQLite); text, bool,
/// `f64` (`DOUBLE PRECISION` / `REAL`) and bytes (`BYTEA` / `BLOB`) map directly.
pub trait Decodable:
    for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
    + for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
{
}

impl<T> Decodable for T where
    T: for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
{
}
