CREATE TABLE citizens (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    email TEXT NOT NULL,
    operator_id TEXT NOT NULL,
    operator_name TEXT NOT NULL,
    registered_at TEXT NOT NULL
);
CREATE TABLE operators (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    contact_mail TEXT NOT NULL,
    participants TEXT NOT NULL,
    transfer_api_url TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE authentications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id_citizen TEXT NOT NULL,
    url_document TEXT,
    document_title TEXT,
    authenticated_at TEXT NOT NULL
);
