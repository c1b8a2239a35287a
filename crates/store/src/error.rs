//! Store errors.

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed the operation (I/O, full disk, read-only file, lock).
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
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
    /// The store's own bookkeeping contradicts itself (for example a twin row whose latest
    /// leaf hash is not 32 bytes); appending on top of it would extend a broken chain.
    #[error("store is inconsistent: {0}")]
    Inconsistent(String),
}
