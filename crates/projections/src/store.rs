//! The read store: where projections write and queries read. One API, one set of migrations,
//! two engines through `sqlx::Any`: embedded SQLite (default: `data/read.sqlite`) and PostgreSQL.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::{AnyPool, Executor};

use crate::error::ProjectionError;
use crate::sql::Tx;

/// The read store's schema migrations (`crates/projections/migrations`, shared by both
/// engines; 0001-0009 are the runner's and the ledger's, 0010+ the other projections').
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a SQLite connection waits for the write lock before failing.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;
/// Connections that serve queries.
const READ_POOL_SIZE: u32 = 4;
/// The SQLite writer's page cache, in KiB (SQLite's default is 2 MiB): a batch of thousands of
/// events touches pages all over the projections' indexes, and a transaction that outgrows the
/// cache spills pages into the WAL before its commit and reads them back. 64 MiB rebuilt no
/// faster and added 60 MB to serve's RSS.
const SQLITE_WRITER_CACHE_KIB: u32 = 16 * 1024;
/// Each query connection's page cache, in KiB: SQLite's default.
const SQLITE_READER_CACHE_KIB: u32 = 2_000;
/// Connections that write to PostgreSQL (the runner's projections and a rebuild in parallel).
const PG_WRITE_POOL_SIZE: u32 = 4;
/// How long to wait for a connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which engine a [`ReadStore`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        })
    }
}

/// A connected read store. Cheap to clone (the pools are shared).
#[derive(Clone)]
pub struct ReadStore {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    /// Where it is, without a password.
    location: String,
    /// Writes. One connection for SQLite: its writers take turns anyway, and one connection
    /// means no transaction ever waits on another of this process.
    writer: AnyPool,
    /// Queries.
    reader: AnyPool,
}

impl std::fmt::Debug for ReadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadStore")
            .field("engine", &self.inner.engine)
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

impl ReadStore {
    /// Connects to (creating if needed) the read store at `url_or_path` and brings its schema
    /// up to date:
    ///
    /// * `postgres://user@host:5432/db` (or `postgresql://`): PostgreSQL. The schema is the
    ///   connection's `search_path` (e.g. `?options=-csearch_path%3Dupline`).
    /// * `sqlite://path/read.sqlite`, `sqlite:path` or a plain file path: SQLite, in WAL mode,
    ///   created with its parent directories when missing.
    pub async fn connect(url_or_path: &str) -> Result<ReadStore, ProjectionError> {
        sqlx::any::install_default_drivers();
        let location_error = |reason: String| ProjectionError::Location {
            location: redact(url_or_path),
            reason,
        };
        let trimmed = url_or_path.trim();
        if trimmed.is_empty() {
            return Err(location_error("empty".into()));
        }
        let store = if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            Self::connect_postgres(trimmed).await?
        } else if let Some(rest) = trimmed.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or(path);
            let path = percent_decode(path).ok_or_else(|| location_error("bad %-escape".into()))?;
            if path.is_empty() || path == ":memory:" {
                return Err(location_error(
                    "a read store needs a file (in-memory is not supported)".into(),
                ));
            }
            Self::connect_sqlite(Path::new(&path)).await?
        } else if trimmed.contains("://") {
            return Err(location_error(
                "expected a file path, a sqlite: URL or a postgres:// URL".into(),
            ));
        } else {
            Self::connect_sqlite(Path::new(trimmed)).await?
        };
        MIGRATOR.run(&store.inner.writer).await?;
        Ok(store)
    }

    async fn connect_postgres(url: &str) -> Result<ReadStore, ProjectionError> {
        let options = || {
            AnyPoolOptions::new()
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // Keep the few notices (e.g. "does not exist, skipping") out of the logs.
                        conn.execute("SET client_min_messages TO WARNING").await?;
                        Ok(())
                    })
                })
        };
        let writer = options()
            .max_connections(PG_WRITE_POOL_SIZE)
            .connect(url)
            .await?;
        let reader = options()
            .max_connections(READ_POOL_SIZE)
            .connect(url)
            .await?;
        Ok(ReadStore {
            inner: Arc::new(Inner {
                engine: Engine::Postgres,
                location: redact(url),
                writer,
                reader,
            }),
        })
    }

    async fn connect_sqlite(path: &Path) -> Result<ReadStore, ProjectionError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| ProjectionError::Location {
                    location: path.display().to_string(),
                    reason: format!("cannot create {}: {e}", parent.display()),
                })?;
        }
        let url = sqlite_url(path);
        let options = |cache_kib: u32| {
            AnyPoolOptions::new()
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str(),
                        )
                        .await?;
                        conn.execute(format!("PRAGMA cache_size = -{cache_kib}").as_str())
                            .await?;
                        // Statement journals (a multi-row upsert may need to undo itself) in
                        // memory rather than in a temporary file: they were an eighth of a
                        // rebuild's time, most of it system calls.
                        conn.execute("PRAGMA temp_store = MEMORY").await?;
                        // WAL: queries read while projections write. NORMAL: a power loss may
                        // lose the last transactions, never split one (rows and checkpoint
                        // go together), and the projection redoes them from the event store.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        Ok(())
                    })
                })
        };
        let writer = options(SQLITE_WRITER_CACHE_KIB)
            .max_connections(1)
            .connect(&format!("{url}?mode=rwc"))
            .await?;
        let reader = options(SQLITE_READER_CACHE_KIB)
            .max_connections(READ_POOL_SIZE)
            .connect(&format!("{url}?mode=rw"))
            .await?;
        Ok(ReadStore {
            inner: Arc::new(Inner {
                engine: Engine::Sqlite,
                location: path.display().to_string(),
                writer,
                reader,
            }),
        })
    }

    pub fn engine(&self) -> Engine {
        self.inner.engine
    }

    /// Where the store is (a path, or the URL without its password), for logs and status.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// The pool queries go through. Read the views (`ledger_entries`, ...), never the
    /// generation tables behind them.
    pub fn pool(&self) -> &AnyPool {
        &self.inner.reader
    }

    /// The pool writes go through (the runner, rebuilds, tests).
    pub fn writer(&self) -> &AnyPool {
        &self.inner.writer
    }

    /// A write transaction.
    pub async fn begin(&self) -> Result<Tx<'static>, ProjectionError> {
        Ok(self.inner.writer.begin().await?)
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.reader.close().await;
    }
}

/// `sqlite://` URL of a path, escaping what a URL would misread.
fn sqlite_url(path: &Path) -> String {
    let mut url = String::from("sqlite://");
    for c in path.to_string_lossy().chars() {
        match c {
            ' ' | '"' | '#' | '<' | '>' | '?' | '`' | '{' | '}' | '%' => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    url.push_str(&format!("%{b:02X}"));
                }
            }
            c => url.push(c),
        }
    }
    url
}

/// `%XX` escapes of a URL path decoded (`None`: a bad escape or not UTF-8).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A URL without its password.
fn redact(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or("");
            let shown = if credentials.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{scheme}://{shown}@{host}{tail}")
        }
        None => location.to_string(),
    }
}

/// Rows a statement changed.
pub(crate) fn affected(result: &AnyQueryResult) -> u64 {
    result.rows_affected()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/upline"),
            "postgres://app:***@db:5432/upline"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact("data/read.sqlite"), "data/read.sqlite");
    }

    #[test]
    fn sqlite_url_paths_are_decoded() {
        assert_eq!(
            percent_decode("/tmp/a%20b/r.sqlite").unwrap(),
            "/tmp/a b/r.sqlite"
        );
        assert_eq!(percent_decode("plain").unwrap(), "plain");
        assert!(percent_decode("bad%2").is_none());
        assert!(percent_decode("bad%zz").is_none());
    }

    #[test]
    fn sqlite_urls_escape_paths() {
        assert_eq!(
            sqlite_url(Path::new("/tmp/a b/read?.sqlite")),
            "sqlite:///tmp/a%20b/read%3F.sqlite"
        );
        assert_eq!(
            sqlite_url(Path::new("data/read.sqlite")),
            "sqlite://data/read.sqlite"
        );
    }
}
