//! Store errors.

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk holding the database is full. SQLite rolled the write back; writes succeed
    /// again once space is freed.
    #[error("the disk holding the database is full ({0})")]
    DiskFull(rusqlite::Error),
    /// The database cannot be written: its file, directory or file system is read-only.
    #[error("the database is read-only ({0})")]
    ReadOnly(rusqlite::Error),
    /// The disk or its file system failed a read or write (for example a file system that the
    /// kernel turned read-only after an error).
    #[error("the disk or file system failed ({0})")]
    Io(rusqlite::Error),
    /// The database refused or failed the operation otherwise (constraint, lock, corruption).
    #[error("database error: {0}")]
    Database(rusqlite::Error),
    /// The database file could not be opened or created.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The database file.
        path: std::path::PathBuf,
        /// What went wrong.
        source: rusqlite::Error,
    },
    /// The database was written by a newer twinledger.
    #[error("database schema version {found} is newer than this program's {supported}")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Newest version this program knows.
        supported: i64,
    },
    /// No PostgreSQL server answered at the address given (none listening, or unreachable).
    #[error("cannot reach PostgreSQL at {target}: {}", detail(source))]
    Unreachable {
        /// User, hosts, ports and database, the password left out.
        target: String,
        /// What the connection attempt got.
        source: tokio_postgres::Error,
    },
    /// The PostgreSQL server refused the credentials given.
    #[error("PostgreSQL at {target} refused the credentials: {}", detail(source))]
    AuthenticationFailed {
        /// User, hosts, ports and database, the password left out.
        target: String,
        /// The server's answer.
        source: tokio_postgres::Error,
    },
    /// The PostgreSQL URL (libpq connection string) does not parse.
    #[error("invalid PostgreSQL URL: {}", detail(.0))]
    InvalidUrl(tokio_postgres::Error),
    /// PostgreSQL refused or failed a statement, or the connection broke.
    #[error("PostgreSQL error: {}", detail(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("no PostgreSQL connection available: {0}")]
    Pool(String),
    /// The store's own bookkeeping contradicts itself (for example a twin row whose latest
    /// leaf hash is not 32 bytes); appending on top of it would extend a broken chain.
    #[error("store is inconsistent: {0}")]
    Inconsistent(String),
}

impl From<rusqlite::Error> for StoreError {
    /// Names the storage faults an operator can fix (space, permissions, the disk) apart from
    /// other database errors, so that a client's 503 says which it is.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => Self::DiskFull(e),
            Some(ErrorCode::ReadOnly) => Self::ReadOnly(e),
            Some(ErrorCode::SystemIoFailure) => Self::Io(e),
            _ => Self::Database(e),
        }
    }
}

/// A PostgreSQL error with its cause: the error's own text is only its kind ("db error").
fn detail(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
