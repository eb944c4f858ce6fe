use telar_sql::Migration;

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "identity",
    sqlite: "
CREATE TABLE identity_accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    secret_hash TEXT NOT NULL, roles TEXT NOT NULL, permissions TEXT NOT NULL, org_id TEXT, created_at TEXT NOT NULL);
CREATE TABLE identity_refresh (token_hash TEXT PRIMARY KEY, family TEXT NOT NULL, account_id TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0, revoked INTEGER NOT NULL DEFAULT 0, expires_at INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX identity_refresh_by_family ON identity_refresh (family);
CREATE TABLE identity_keys (id INTEGER PRIMARY KEY, ring TEXT NOT NULL);",
    postgres: "
CREATE TABLE identity_accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    secret_hash TEXT NOT NULL, roles TEXT NOT NULL, permissions TEXT NOT NULL, org_id TEXT, created_at TEXT NOT NULL);
CREATE TABLE identity_refresh (token_hash TEXT PRIMARY KEY, family TEXT NOT NULL, account_id TEXT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0, revoked BIGINT NOT NULL DEFAULT 0, expires_at BIGINT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX identity_refresh_by_family ON identity_refresh (family);
CREATE TABLE identity_keys (id BIGINT PRIMARY KEY, ring TEXT NOT NULL);",
}];
