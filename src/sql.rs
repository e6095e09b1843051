//! Running one statement on either database.
//!
//! Both services write their SQL once, in plain Rust, and run it on SQLite or PostgreSQL: a
//! [`Query`] is SQL text with `$1, $2, …` placeholders (which sqlx accepts on both backends) and
//! its arguments as [`Arg`]s, and a [`Db`] or a [`Tx`] runs it on whichever pool it holds.
//! Statements that only one backend has (PostgreSQL's `COPY`, SQLite's pragmas) reach the pool
//! inside through the enum's variant.
//!
//! sqlx's own `Any` driver would run portable SQL too, but converts every value through its own
//! types, cannot bind PostgreSQL arrays or `COPY`, and opens connections from a URL alone, losing
//! the SQLite options the services set; what is needed here is a typed bind per argument kind.

use std::borrow::Cow;
use std::fmt::Write as _;

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, PgPool, Postgres, Sqlite, SqlitePool};

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A value bound to a placeholder. Each variant binds as one SQL type on both backends, NULLs
/// included (PostgreSQL needs the type of a NULL).
#[derive(Debug, Clone, PartialEq)]
pub enum Arg<'a> {
    /// `BIGINT`/`INTEGER`.
    Int(Option<i64>),
    /// `DOUBLE PRECISION`/`REAL`.
    Float(Option<f64>),
    /// `TEXT`.
    Text(Option<Cow<'a, str>>),
    /// `BYTEA`/`BLOB`.
    Bytes(Option<&'a [u8]>),
    /// `BIGINT[]`: PostgreSQL only.
    IntArray(Vec<i64>),
    /// `BIGINT[]`, NULLs included: PostgreSQL only.
    OptIntArray(Vec<Option<i64>>),
    /// `TEXT[]`: PostgreSQL only.
    TextArray(Vec<&'a str>),
    /// `DOUBLE PRECISION[]`, NULLs included: PostgreSQL only.
    FloatArray(Vec<Option<f64>>),
    /// `BYTEA[]`: PostgreSQL only.
    BytesArray(Vec<&'a [u8]>),
}

impl<'a> Arg<'a> {
    /// Elements `range` of an array, as an array of their own; a single value is itself.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Arg<'a> {
        match self {
            Arg::IntArray(v) => Arg::IntArray(v[range].to_vec()),
            Arg::OptIntArray(v) => Arg::OptIntArray(v[range].to_vec()),
            Arg::TextArray(v) => Arg::TextArray(v[range].to_vec()),
            Arg::FloatArray(v) => Arg::FloatArray(v[range].to_vec()),
            Arg::BytesArray(v) => Arg::BytesArray(v[range].to_vec()),
            single => single.clone(),
        }
    }

    /// Element `i` of an array as a value of the element's type (NULL past the end); a single
    /// value is itself.
    pub fn element(&self, i: usize) -> Arg<'a> {
        match self {
            Arg::IntArray(v) => Arg::Int(v.get(i).copied()),
            Arg::OptIntArray(v) => Arg::Int(v.get(i).copied().flatten()),
            Arg::TextArray(v) => Arg::Text(v.get(i).map(|s| Cow::Borrowed(*s))),
            Arg::FloatArray(v) => Arg::Float(v.get(i).copied().flatten()),
            Arg::BytesArray(v) => Arg::Bytes(v.get(i).copied()),
            single => single.clone(),
        }
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl From<f64> for Arg<'_> {
    fn from(v: f64) -> Self {
        Arg::Float(Some(v))
    }
}

impl From<Option<f64>> for Arg<'_> {
    fn from(v: Option<f64>) -> Self {
        Arg::Float(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}

impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Some(Cow::Owned(v)))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v.map(Cow::Borrowed))
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Bytes(Some(v))
    }
}

/// SQL text and the arguments of its placeholders.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    sql: Cow<'a, str>,
    args: Vec<Arg<'a>>,
}

impl<'a> Query<'a> {
    /// A statement whose placeholders (`$1`, `$2`, …) are already in `sql`; bind them in order
    /// with [`Query::bind`].
    pub fn new(sql: impl Into<Cow<'a, str>>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    /// Binds the next placeholder.
    pub fn bind(mut self, arg: impl Into<Arg<'a>>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends SQL text.
    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.to_mut().push_str(sql);
        self
    }

    /// Appends a placeholder for `arg`.
    pub fn push_bind(&mut self, arg: impl Into<Arg<'a>>) -> &mut Self {
        self.args.push(arg.into());
        let n = self.args.len();
        // Writing to a String cannot fail.
        let _ = write!(self.sql.to_mut(), "${n}");
        self
    }

    /// Appends a placeholder for each of `args`, separated by commas (an `IN` list, a tuple).
    pub fn push_binds<A: Into<Arg<'a>>>(&mut self, args: impl IntoIterator<Item = A>) -> &mut Self {
        for (n, arg) in args.into_iter().enumerate() {
            if n > 0 {
                self.push(", ");
            }
            self.push_bind(arg);
        }
        self
    }

    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    fn sqlite(self) -> Result<(Cow<'a, str>, SqliteArguments<'a>), sqlx::Error> {
        let n = self.args.len();
        let mut out = SqliteArguments::default();
        for arg in self.args {
            match arg {
                Arg::Int(v) => out.add(v),
                Arg::Float(v) => out.add(v),
                Arg::Text(v) => out.add(v),
                Arg::Bytes(v) => out.add(v),
                Arg::IntArray(_)
                | Arg::OptIntArray(_)
                | Arg::TextArray(_)
                | Arg::FloatArray(_)
                | Arg::BytesArray(_) => {
                    return Err(sqlx::Error::Encode("arrays are PostgreSQL only".into()));
                }
            }
            .map_err(sqlx::Error::Encode)?;
        }
        let sql = match anonymous_placeholders(&self.sql, n) {
            Some(sql) => Cow::Owned(sql),
            None => self.sql,
        };
        Ok((sql, out))
    }

    fn postgres(self) -> Result<(Cow<'a, str>, PgArguments), sqlx::Error> {
        let mut out = PgArguments::default();
        for arg in self.args {
            match arg {
                Arg::Int(v) => out.add(v),
                Arg::Float(v) => out.add(v),
                Arg::Text(v) => out.add(v.as_deref()),
                Arg::Bytes(v) => out.add(v),
                Arg::IntArray(v) => out.add(v),
                Arg::OptIntArray(v) => out.add(v),
                Arg::TextArray(v) => out.add(v),
                Arg::FloatArray(v) => out.add(v),
                Arg::BytesArray(v) => out.add(v),
            }
            .map_err(sqlx::Error::Encode)?;
        }
        Ok((self.sql, out))
    }
}

/// `items` in statements of at most `max` rows, in few distinct sizes: whole chunks of `max`,
/// then the rest in powers of two. A many-row statement's text depends on its row count, and
/// each connection keeps every distinct text it ran prepared (a large upsert's program is
/// hundreds of KiB), so a size per remainder would fill memory with statements used once.
pub fn statement_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let max = max.max(1);
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = if rest.len() >= max {
            max
        } else {
            // The largest power of two not above what is left.
            1 << (usize::BITS - 1 - rest.len().leading_zeros())
        };
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// `sql` with its placeholders written as anonymous `?`, when they are `$1` to `$n`, each once
/// and in order (as [`Query::push_bind`] writes them); otherwise `None`. Binding a numbered
/// placeholder makes sqlx ask SQLite for its name, which SQLite finds by a linear scan of the
/// statement's names: a statement of thousands of placeholders (a many-row upsert) then spends
/// most of its time binding. Anonymous placeholders have no name to find.
fn anonymous_placeholders(sql: &str, n: usize) -> Option<String> {
    let mut out = String::with_capacity(sql.len());
    let mut expected = 1usize;
    let mut quote: Option<char> = None;
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '$') if chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) => {
                let mut number = 0usize;
                while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                    number = number
                        .checked_mul(10)?
                        .checked_add(d as usize - '0' as usize)?;
                    chars.next();
                }
                if number != expected {
                    return None;
                }
                expected += 1;
                out.push('?');
                continue;
            }
            (None, _) => {}
        }
        out.push(c);
    }
    (expected - 1 == n).then_some(out)
}

/// A row type both backends can return: anything that derives `sqlx::FromRow` with columns both
/// decode (integers, doubles, text, bytes, and options of them).
pub trait Row:
    for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Row for T where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}

/// A connection pool on either backend.
#[derive(Debug, Clone)]
pub enum Db {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

impl Db {
    /// Which backend.
    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs a statement; the number of rows it changed.
    pub async fn execute(&self, q: Query<'_>) -> Result<u64, sqlx::Error> {
        match self {
            Db::Sqlite(pool) => sqlite_execute(pool, q).await,
            Db::Postgres(pool) => postgres_execute(pool, q).await,
        }
    }

    /// Every row a query returns.
    pub async fn fetch_all<R: Row>(&self, q: Query<'_>) -> Result<Vec<R>, sqlx::Error> {
        match self {
            Db::Sqlite(pool) => sqlite_fetch(pool, q).await,
            Db::Postgres(pool) => postgres_fetch(pool, q).await,
        }
    }

    /// The first row a query returns, if any.
    pub async fn fetch_optional<R: Row>(&self, q: Query<'_>) -> Result<Option<R>, sqlx::Error> {
        Ok(self.fetch_all(q).await?.into_iter().next())
    }

    /// The rows of a query, read one at a time while `fits` accepts each (it sees every row; the
    /// first is taken whatever it says), so that a query whose rows are large stops before they all sit in memory.
    /// The second value says whether a row was refused: the rows stopped short.
    pub async fn fetch_while<R: Row>(
        &self,
        q: Query<'_>,
        mut fits: impl FnMut(&R) -> bool + Send,
    ) -> Result<(Vec<R>, bool), sqlx::Error> {
        let mut out = Vec::new();
        let more = self
            .for_each(q, |row| {
                // Every row is shown to `fits`, the first one too, so that it can count them all.
                if !fits(&row) && !out.is_empty() {
                    return Ok::<_, sqlx::Error>(false);
                }
                out.push(row);
                Ok(true)
            })
            .await?;
        Ok((out, more))
    }

    /// Hands each row of a query to `each` as it is read, until `each` returns false (or an
    /// error), so that what is built from many rows never waits beside all of them. Whether
    /// `each` stopped it before the rows ran out.
    pub async fn for_each<R: Row, E: From<sqlx::Error>>(
        &self,
        q: Query<'_>,
        each: impl FnMut(R) -> Result<bool, E> + Send,
    ) -> Result<bool, E> {
        match self {
            Db::Sqlite(pool) => {
                let (sql, args) = q.sqlite()?;
                drain(sqlx::query_as_with(&sql, args).fetch(pool), each).await
            }
            Db::Postgres(pool) => {
                let (sql, args) = q.postgres()?;
                drain(sqlx::query_as_with(&sql, args).fetch(pool), each).await
            }
        }
    }

    /// The first row a query returns; `RowNotFound` if none.
    pub async fn fetch_one<R: Row>(&self, q: Query<'_>) -> Result<R, sqlx::Error> {
        self.fetch_optional(q)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// Begins a transaction that will write. SQLite takes its write lock up front
    /// (`BEGIN IMMEDIATE`), so that a read followed by a write cannot fail half-way with
    /// `SQLITE_BUSY`; PostgreSQL begins normally.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.execute(Query::new("SELECT 1")).await.map(|_| ())
    }

    /// The pool's size and idle connections, for metrics.
    pub fn pool_stats(&self) -> (u32, usize) {
        match self {
            Db::Sqlite(pool) => (pool.size(), pool.num_idle()),
            Db::Postgres(pool) => (pool.size(), pool.num_idle()),
        }
    }
}

/// A transaction on either backend; rolled back if dropped before [`Tx::commit`].
#[derive(Debug)]
pub enum Tx {
    /// SQLite.
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    /// PostgreSQL.
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    /// Runs a statement; the number of rows it changed.
    pub async fn execute(&mut self, q: Query<'_>) -> Result<u64, sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => sqlite_execute(&mut **tx, q).await,
            Tx::Postgres(tx) => postgres_execute(&mut **tx, q).await,
        }
    }

    /// Every row a query returns.
    pub async fn fetch_all<R: Row>(&mut self, q: Query<'_>) -> Result<Vec<R>, sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => sqlite_fetch(&mut **tx, q).await,
            Tx::Postgres(tx) => postgres_fetch(&mut **tx, q).await,
        }
    }

    /// The first row a query returns, if any.
    pub async fn fetch_optional<R: Row>(&mut self, q: Query<'_>) -> Result<Option<R>, sqlx::Error> {
        Ok(self.fetch_all(q).await?.into_iter().next())
    }

    /// The first row a query returns; `RowNotFound` if none.
    pub async fn fetch_one<R: Row>(&mut self, q: Query<'_>) -> Result<R, sqlx::Error> {
        self.fetch_optional(q)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// Hands each row to `each` as it is read, until `each` says stop (false) or fails; whether
/// it stopped before the rows ran out.
async fn drain<R, E: From<sqlx::Error>>(
    mut rows: impl futures_util::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    mut each: impl FnMut(R) -> Result<bool, E>,
) -> Result<bool, E> {
    use futures_util::TryStreamExt;
    while let Some(row) = rows.try_next().await? {
        if !each(row)? {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn sqlite_execute<'e>(
    executor: impl sqlx::Executor<'e, Database = Sqlite>,
    q: Query<'_>,
) -> Result<u64, sqlx::Error> {
    let (sql, args) = q.sqlite()?;
    let done = sqlx::query_with(&sql, args).execute(executor).await?;
    Ok(done.rows_affected())
}

async fn sqlite_fetch<'e, R: Row>(
    executor: impl sqlx::Executor<'e, Database = Sqlite>,
    q: Query<'_>,
) -> Result<Vec<R>, sqlx::Error> {
    let (sql, args) = q.sqlite()?;
    sqlx::query_as_with(&sql, args).fetch_all(executor).await
}

async fn postgres_execute<'e>(
    executor: impl sqlx::Executor<'e, Database = Postgres>,
    q: Query<'_>,
) -> Result<u64, sqlx::Error> {
    let (sql, args) = q.postgres()?;
    let done = sqlx::query_with(&sql, args).execute(executor).await?;
    Ok(done.rows_affected())
}

/// Every row a query returns, on a PostgreSQL connection the caller holds (a transaction's,
/// for statements the portable [`Tx`] does not cover, such as `COPY` beside them).
pub async fn fetch_all_on<R: Row>(
    connection: &mut sqlx::PgConnection,
    q: Query<'_>,
) -> Result<Vec<R>, sqlx::Error> {
    postgres_fetch(connection, q).await
}

async fn postgres_fetch<'e, R: Row>(
    executor: impl sqlx::Executor<'e, Database = Postgres>,
    q: Query<'_>,
) -> Result<Vec<R>, sqlx::Error> {
    let (sql, args) = q.postgres()?;
    sqlx::query_as_with(&sql, args).fetch_all(executor).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut q = Query::new("SELECT * FROM t WHERE a = ");
        q.push_bind(1).push(" AND b = ").push_bind("x");
        assert_eq!(q.sql(), "SELECT * FROM t WHERE a = $1 AND b = $2");
        let q = Query::new("SELECT $1, $2").bind(Some(3)).bind(None::<&str>);
        assert_eq!(q.args, [Arg::Int(Some(3)), Arg::Text(None)]);
    }

    #[test]
    fn an_array_element_binds_as_a_value_of_its_type() {
        let ints = Arg::IntArray(vec![4, 5]);
        assert_eq!(ints.element(1), Arg::Int(Some(5)));
        assert_eq!(ints.element(2), Arg::Int(None));
        let texts = Arg::TextArray(vec!["a", "b"]);
        assert_eq!(texts.element(0), Arg::Text(Some(Cow::Borrowed("a"))));
        let floats = Arg::FloatArray(vec![Some(1.5), None]);
        assert_eq!(floats.element(0), Arg::Float(Some(1.5)));
        assert_eq!(floats.element(1), Arg::Float(None));
        let optional = Arg::OptIntArray(vec![None, Some(2)]);
        assert_eq!(optional.element(0), Arg::Int(None));
        assert_eq!(optional.element(1), Arg::Int(Some(2)));
        assert_eq!(Arg::from(7).element(3), Arg::Int(Some(7)));
    }

    #[test]
    fn statements_come_in_few_sizes() {
        let items: Vec<u32> = (0..1234).collect();
        let sizes: Vec<usize> = statement_chunks(&items, 500).map(<[u32]>::len).collect();
        assert_eq!(sizes, [500, 500, 128, 64, 32, 8, 2]);
        let again: Vec<u32> = statement_chunks(&items, 500).flatten().copied().collect();
        assert_eq!(again, items);
        assert_eq!(statement_chunks(&items[..0], 500).count(), 0);
    }

    #[test]
    fn placeholders_in_order_become_anonymous_for_sqlite() {
        assert_eq!(
            anonymous_placeholders("SELECT '$1', \"$2\", $1 FROM t WHERE a = $2", 2).as_deref(),
            Some("SELECT '$1', \"$2\", ? FROM t WHERE a = ?")
        );
        // Reused, out of order, or not matching the arguments: left numbered.
        assert_eq!(anonymous_placeholders("SELECT $1, $1", 1), None);
        assert_eq!(anonymous_placeholders("SELECT $2, $1", 2), None);
        assert_eq!(anonymous_placeholders("SELECT $1", 2), None);
        assert_eq!(
            anonymous_placeholders("SELECT json_extract(p, '$.a') WHERE x = $1", 1).as_deref(),
            Some("SELECT json_extract(p, '$.a') WHERE x = ?")
        );
    }

    #[tokio::test]
    async fn the_same_query_runs_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::database::sqlite_pool(&dir.path().join("t.db"), 1)
            .await
            .unwrap();
        let db = Db::Sqlite(pool);
        db.execute(Query::new("CREATE TABLE t (a INTEGER, b TEXT, c BLOB)"))
            .await
            .unwrap();
        let mut tx = db.begin_write().await.unwrap();
        let n = tx
            .execute(
                Query::new("INSERT INTO t VALUES ($1, $2, $3)")
                    .bind(7)
                    .bind("seven")
                    .bind(&b"\x07"[..]),
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        tx.commit().await.unwrap();
        let row: (i64, String, Vec<u8>) = db
            .fetch_one(Query::new("SELECT a, b, c FROM t WHERE a = $1").bind(7))
            .await
            .unwrap();
        assert_eq!(row, (7, "seven".to_owned(), vec![7]));
        let none: Option<(i64,)> = db
            .fetch_optional(Query::new("SELECT a FROM t WHERE b = $1").bind("eight"))
            .await
            .unwrap();
        assert_eq!(none, None);
        assert!(
            db.execute(Query::new("SELECT $1").bind(Arg::IntArray(vec![1])))
                .await
                .is_err()
        );
    }
}
