//! Helpers the read models of this crate share: additive aggregates kept by difference, keys,
//! days and page tokens, and the per-order books of a batch (`books`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::error::ProjectionError;
use crate::sql::{to_e6, Tx};

/// One part of an aggregate's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Text(String),
    Int(i64),
}

/// A table of sums keyed by some columns. Each order adds its contribution (one vector of
/// values per key); when an order changes, the difference between what it contributed and
/// what it contributes now is added, so a row is always the sum over its orders. `presence`
/// (one of `values`) counts the contributors: a row whose count falls to zero is deleted.
pub struct Aggregate<'a> {
    pub table: &'a str,
    pub keys: &'static [&'static str],
    pub values: &'static [&'static str],
    pub presence: usize,
}

pub type Contributions = BTreeMap<Vec<Key>, Vec<i64>>;

/// Adds `values` to the contribution at `key`.
pub fn add(into: &mut Contributions, key: Vec<Key>, values: &[i64]) -> Result<(), ProjectionError> {
    let entry = into.entry(key).or_insert_with(|| vec![0; values.len()]);
    for (sum, v) in entry.iter_mut().zip(values) {
        *sum = sum
            .checked_add(*v)
            .ok_or_else(|| ProjectionError::Overflow {
                what: "an aggregate".into(),
            })?;
    }
    Ok(())
}

/// Adds what an order's contribution changed (`new - old`) to `changes`, the changes of a
/// batch: summed per key, so each row of the aggregate is written once per batch.
pub fn add_change(
    changes: &mut Contributions,
    old: &Contributions,
    new: &Contributions,
) -> Result<(), ProjectionError> {
    let keys: std::collections::BTreeSet<&Vec<Key>> = old.keys().chain(new.keys()).collect();
    for key in keys {
        let width = old.get(key).or_else(|| new.get(key)).map_or(0, Vec::len);
        let zero = vec![0; width];
        let before = old.get(key).unwrap_or(&zero);
        let after = new.get(key).unwrap_or(&zero);
        let delta = before
            .iter()
            .zip(after)
            .map(|(b, a)| a.checked_sub(*b))
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| ProjectionError::Overflow {
                what: "a change of an aggregate".into(),
            })?;
        add(changes, key.clone(), &delta)?;
    }
    Ok(())
}

/// Rows per multi-row statement: well under every engine's limit on bound parameters
/// (SQLite 32,766, PostgreSQL 65,535) for the widest row written this way (about 30 columns),
/// and small, because every statement is a hand-off to sqlx's SQLite worker thread.
pub const ROWS_PER_STATEMENT: usize = 32;

/// One value of a row that [`insert_rows`] writes.
pub enum Cell {
    Text(String),
    MaybeText(Option<String>),
    Int(i64),
}

impl From<&str> for Cell {
    fn from(value: &str) -> Cell {
        Cell::Text(value.to_string())
    }
}

impl From<String> for Cell {
    fn from(value: String) -> Cell {
        Cell::Text(value)
    }
}

impl From<Option<String>> for Cell {
    fn from(value: Option<String>) -> Cell {
        Cell::MaybeText(value)
    }
}

impl From<i64> for Cell {
    fn from(value: i64) -> Cell {
        Cell::Int(value)
    }
}

/// [`insert_rows`] into a table keyed by its first column: a row written again replaces the
/// one there.
pub async fn replace_rows(
    tx: &mut Tx<'_>,
    table: &str,
    columns: &[&str],
    rows: &[Vec<Cell>],
) -> Result<(), ProjectionError> {
    let updates = columns[1..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let conflict = format!("ON CONFLICT ({}) DO UPDATE SET {updates}", columns[0]);
    insert_rows(tx, table, columns, &conflict, rows).await
}

/// Writes `rows` (one cell per column each) into `table` with multi-row `INSERT INTO table
/// (columns) VALUES (..), (..) {conflict}`, [`ROWS_PER_STATEMENT`] rows a statement: each
/// statement is a hand-off to the database connection and back, and rows written one
/// statement each were most of a batch's hand-offs. A batch writes each key once (a
/// PostgreSQL upsert may not touch one row twice in a statement).
pub async fn insert_rows(
    tx: &mut Tx<'_>,
    table: &str,
    columns: &[&str],
    conflict: &str,
    rows: &[Vec<Cell>],
) -> Result<(), ProjectionError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {} {conflict}",
            columns.join(", "),
            values_list(tx, chunk.len(), columns.len())
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            debug_assert_eq!(row.len(), columns.len());
            for cell in row {
                query = match cell {
                    Cell::Text(s) => query.bind(s.as_str()),
                    Cell::MaybeText(s) => query.bind(s.as_deref()),
                    Cell::Int(i) => query.bind(*i),
                };
            }
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// `($first, $first+1, ..)` for `count` parameters on PostgreSQL; `(?, ?, ..)` on SQLite. A
/// plain `?` is bound by position, while sqlx's SQLite driver looks every `$N` up by name
/// (`sqlite3_bind_parameter_name`, a scan of the statement's names: quadratic per statement;
/// 3 % of serve's CPU with 32-row statements). The lists built here are a statement's only
/// parameters, in order, so `?` numbers them exactly as `$first..` would.
pub fn placeholders(tx: &Tx<'_>, first: usize, count: usize) -> String {
    let list: Vec<String> = if positional(tx) {
        vec!["?".to_owned(); count]
    } else {
        (first..first + count).map(|i| format!("${i}")).collect()
    };
    format!("({})", list.join(", "))
}

/// `VALUES (..), (..)` for `rows` rows of `width` parameters (see [`placeholders`]).
pub fn values_list(tx: &Tx<'_>, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| placeholders(tx, r * width + 1, width))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the read store is SQLite, whose `?` parameters are bound by position.
fn positional(tx: &Tx<'_>) -> bool {
    tx.backend_name().eq_ignore_ascii_case("sqlite")
}

fn bind_key<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    key: &'q [Key],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    key.iter().fold(query, |query, part| match part {
        Key::Text(s) => query.bind(s.as_str()),
        Key::Int(i) => query.bind(*i),
    })
}

impl Aggregate<'_> {
    /// Adds `changes` (per key, what to add to each value) to the table: one multi-row upsert
    /// per [`ROWS_PER_STATEMENT`] changed rows, then deletes the rows whose count of
    /// contributors fell to zero.
    pub async fn write(
        &self,
        tx: &mut Tx<'_>,
        changes: &Contributions,
    ) -> Result<(), ProjectionError> {
        let changed: Vec<(&Vec<Key>, &Vec<i64>)> = changes
            .iter()
            .filter(|(_, delta)| delta.iter().any(|d| *d != 0))
            .collect();
        let key_list = self.keys.join(", ");
        let value_list = self.values.join(", ");
        let width = self.keys.len() + self.values.len();
        let updates = self
            .values
            .iter()
            .map(|v| format!("{v} = {t}.{v} + excluded.{v}", t = self.table))
            .collect::<Vec<_>>()
            .join(", ");
        for chunk in changed.chunks(ROWS_PER_STATEMENT) {
            let upsert = format!(
                "INSERT INTO {t} ({key_list}, {value_list}) VALUES {values} \
                 ON CONFLICT ({key_list}) DO UPDATE SET {updates}",
                t = self.table,
                values = values_list(tx, chunk.len(), width),
            );
            let mut query = sqlx::query(&upsert);
            for (key, delta) in chunk {
                query = bind_key(query, key);
                for d in delta.iter() {
                    query = query.bind(*d);
                }
            }
            query.execute(&mut **tx).await?;
        }
        let matching = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} = ${}", i + 1))
            .collect::<Vec<_>>()
            .join(" AND ");
        let delete = format!(
            "DELETE FROM {t} WHERE {matching} AND {p} <= 0",
            t = self.table,
            p = self.values[self.presence]
        );
        for (key, delta) in &changed {
            if delta[self.presence] < 0 {
                bind_key(sqlx::query(&delete), key)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }
}

/// `value` in millionths, rounded half-even to the sixth decimal first. For figures that
/// are exact fractions of an amount (a base or a volume scaled by a partial refund), never
/// for money posted or paid, which is always exact.
pub fn e6_rounded(value: Decimal) -> Result<i64, ProjectionError> {
    to_e6(value.round_dp_with_strategy(6, RoundingStrategy::MidpointNearestEven))
}

/// The UTC day, `YYYY-MM-DD`.
pub fn day_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// The UTC month, `YYYY-MM`.
pub fn month_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m").to_string()
}

/// The platform named at the start of an order stream (`order-shopify-...`), if any.
pub fn platform_of_stream(order_stream: &str) -> Option<String> {
    let rest = order_stream.strip_prefix(upline_app::streams::ORDER_PREFIX)?;
    let name = rest.split('-').next()?;
    serde_json::from_value::<upline_domain::ids::Platform>(serde_json::Value::String(
        name.to_string(),
    ))
    .ok()
    .map(|p| p.as_str().to_string())
}

/// A page token: the last key of the page, as a JSON array.
pub fn token_of(key: &[Key]) -> String {
    let values: Vec<serde_json::Value> = key
        .iter()
        .map(|k| match k {
            Key::Text(s) => serde_json::Value::String(s.clone()),
            Key::Int(i) => serde_json::Value::from(*i),
        })
        .collect();
    serde_json::Value::Array(values).to_string()
}

/// Reads a token back, checking it against the key's shape (`true`: text, `false`: int).
/// Without a token: a key before every row (every key starts with a non-empty text).
pub fn key_of_token(token: Option<&str>, shape: &[bool]) -> Result<Vec<Key>, ProjectionError> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(shape
            .iter()
            .map(|text| {
                if *text {
                    Key::Text(String::new())
                } else {
                    Key::Int(i64::MIN)
                }
            })
            .collect());
    };
    let bad = || ProjectionError::InvalidPageToken(token.to_string());
    let values: Vec<serde_json::Value> = serde_json::from_str(token).map_err(|_| bad())?;
    if values.len() != shape.len() {
        return Err(bad());
    }
    values
        .into_iter()
        .zip(shape)
        .map(|(v, text)| match (v, text) {
            (serde_json::Value::String(s), true) => Ok(Key::Text(s)),
            (serde_json::Value::Number(n), false) => n.as_i64().map(Key::Int).ok_or_else(bad),
            _ => Err(bad()),
        })
        .collect()
}

/// A page size: 0 is `default`, at most `max`.
pub fn page_limit(limit: u32, default: u32, max: u32) -> u32 {
    match limit {
        0 => default,
        n => n.min(max),
    }
}

/// The read models that fold each order into a book (reconciliation, BI) keep it as JSON in a
/// state table (`order_stream`, `state`, `last_position`). A batch loads the books of all its
/// orders with a few queries, folds every event of an order into its book, and saves each book
/// once: what one event at a time would leave, with a few statements per batch instead of
/// several per event.
pub mod books {
    use std::collections::HashMap;

    use chrono::{DateTime, Utc};
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use sqlx::Row;

    use super::{placeholders, values_list, ROWS_PER_STATEMENT};
    use crate::error::ProjectionError;
    use crate::sql::Tx;

    /// A fact of a batch about an order: (position, recorded at, what it says).
    pub type Dated<F> = (i64, DateTime<Utc>, F);

    /// The facts not folded into a book yet: those after `last_position` (a replayed event
    /// is folded once).
    pub fn unfolded<F>(facts: Vec<Dated<F>>, last_position: i64) -> Vec<Dated<F>> {
        facts
            .into_iter()
            .filter(|(position, ..)| *position > last_position)
            .collect()
    }

    /// A batch's items grouped by order stream, each group in the batch's order, the groups in
    /// the order their first item came.
    pub fn by_order<T>(items: impl IntoIterator<Item = (String, T)>) -> Vec<(String, Vec<T>)> {
        let mut groups: Vec<(String, Vec<T>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (stream, item) in items {
            match index.get(&stream) {
                Some(&i) => groups[i].1.push(item),
                None => {
                    index.insert(stream.clone(), groups.len());
                    groups.push((stream, vec![item]));
                }
            }
        }
        groups
    }

    /// The stored books of `streams` in `state_table` (those that have one), each with the
    /// position of the last event folded into it. `projection` names it in errors.
    pub async fn load<B: DeserializeOwned>(
        tx: &mut Tx<'_>,
        projection: &str,
        state_table: &str,
        streams: &[&str],
    ) -> Result<HashMap<String, (B, i64)>, ProjectionError> {
        let mut found = HashMap::with_capacity(streams.len());
        for chunk in streams.chunks(ROWS_PER_STATEMENT * 4) {
            let list = placeholders(tx, 1, chunk.len());
            let sql = format!(
                "SELECT order_stream, state, last_position FROM {state_table} \
                 WHERE order_stream IN {list}"
            );
            let mut query = sqlx::query(&sql);
            for stream in chunk {
                query = query.bind(*stream);
            }
            for row in query.fetch_all(&mut **tx).await? {
                let stream: String = row.try_get("order_stream")?;
                let state: String = row.try_get("state")?;
                let book = serde_json::from_str(&state).map_err(|e| {
                    ProjectionError::Corrupt(format!("{projection} state of {stream}: {e}"))
                })?;
                found.insert(stream, (book, row.try_get("last_position")?));
            }
        }
        Ok(found)
    }

    /// Saves `books` (order stream, book, last position folded) into `state_table`, replacing
    /// what was there.
    pub async fn save<B: Serialize>(
        tx: &mut Tx<'_>,
        projection: &str,
        state_table: &str,
        books: &[(String, B, i64)],
    ) -> Result<(), ProjectionError> {
        for chunk in books.chunks(ROWS_PER_STATEMENT) {
            let states = chunk
                .iter()
                .map(|(_, book, _)| {
                    serde_json::to_string(book)
                        .map_err(|e| ProjectionError::Corrupt(format!("{projection} state: {e}")))
                })
                .collect::<Result<Vec<String>, _>>()?;
            let sql = format!(
                "INSERT INTO {state_table} (order_stream, state, last_position) VALUES {} \
                 ON CONFLICT (order_stream) DO UPDATE SET state = excluded.state, \
                 last_position = excluded.last_position",
                values_list(tx, chunk.len(), 3)
            );
            let mut query = sqlx::query(&sql);
            for ((stream, _, position), state) in chunk.iter().zip(&states) {
                query = query
                    .bind(stream.as_str())
                    .bind(state.as_str())
                    .bind(*position);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// What a projection reads back from the event store instead of keeping it in its state.
pub mod recorded {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use upline_app::orders::MAX_ORDER_EVENTS;
    use upline_app::records::PlanEvent;
    use upline_app::streams;
    use upline_domain::order::{CalculationInputs, OrderEvent};
    use upline_domain::plan::CommissionPlan;
    use upline_store::{Direction, EventStore, StreamStart};

    use crate::error::ProjectionError;

    /// Published plans by version, each read from its `plan-{version}` stream the first time a
    /// calculation names it, then kept with its content hash: a published version never
    /// changes, and a company publishes a handful.
    pub struct PublishedPlans {
        history: Arc<dyn EventStore>,
        known: Mutex<HashMap<String, (Arc<CommissionPlan>, String)>>,
    }

    impl PublishedPlans {
        pub fn new(history: Arc<dyn EventStore>) -> PublishedPlans {
            PublishedPlans {
                history,
                known: Mutex::new(HashMap::new()),
            }
        }

        /// The plan `inputs` name, checked against the content hash they recorded.
        /// `projection` names it in errors: a plan that is not published, or whose content
        /// differs from what the calculation used, is permanent (the event is held).
        pub async fn of(
            &self,
            projection: &str,
            inputs: &CalculationInputs,
        ) -> Result<Arc<CommissionPlan>, ProjectionError> {
            let version = inputs.plan_version.as_str();
            let (plan, hash) = match self.cached(version) {
                Some(known) => known,
                None => {
                    let loaded = self.load(projection, version).await?;
                    self.lock().insert(version.to_string(), loaded.clone());
                    loaded
                }
            };
            if hash != inputs.plan_hash {
                return Err(ProjectionError::Uncalculable(format!(
                    "plan {version} as published has content hash {hash}, the calculation \
                     recorded {}",
                    inputs.plan_hash
                )));
            }
            Ok(plan)
        }

        fn lock(
            &self,
        ) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<CommissionPlan>, String)>> {
            // A panic elsewhere cannot leave the map half-written: inserts are single calls.
            self.known
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }

        fn cached(&self, version: &str) -> Option<(Arc<CommissionPlan>, String)> {
            self.lock().get(version).cloned()
        }

        async fn load(
            &self,
            projection: &str,
            version: &str,
        ) -> Result<(Arc<CommissionPlan>, String), ProjectionError> {
            let stream = streams::plan(version);
            let events = self
                .history
                .read_stream(&stream, Direction::Forwards, StreamStart::Start, 1)
                .await?;
            let Some(recorded) = events.first() else {
                return Err(ProjectionError::Uncalculable(format!(
                    "plan {version}, named by a calculation, is not published ({stream} is empty)"
                )));
            };
            match upline_domain::events::decode::<PlanEvent>(&recorded.event_type, &recorded.data) {
                Ok(PlanEvent::PlanPublished { plan, .. }) => {
                    let hash = plan.content_hash();
                    Ok((Arc::new(plan), hash))
                }
                Err(e) => Err(ProjectionError::InvalidEvent {
                    projection: projection.to_string(),
                    position: recorded.position,
                    stream: recorded.stream_id.clone(),
                    event_type: recorded.event_type.clone(),
                    reason: e.to_string(),
                }),
            }
        }
    }

    /// The event type of an order's first calculation, which holds its inputs.
    const CALCULATED: &str = "CommissionCalculated";

    /// The inputs the order's `CommissionCalculated` recorded, read from `order_stream`, whose
    /// calculation the caller has seen. Reconciliation and BI keep only that a calculation was
    /// recorded (its inputs are about 2.7 KB an order, and an order's book is written again with
    /// every batch that touches it) and read the inputs back when a later fact of the order, a
    /// refund or a cancellation, needs them: about 2 % of orders. `projection` names it in
    /// errors; a stream without the calculation is an error, since the book saw one.
    pub async fn calculation_inputs(
        history: &dyn EventStore,
        projection: &str,
        order_stream: &str,
    ) -> Result<CalculationInputs, ProjectionError> {
        let events = history
            .read_stream(
                order_stream,
                Direction::Forwards,
                StreamStart::Start,
                MAX_ORDER_EVENTS,
            )
            .await?;
        let Some(recorded) = events.iter().find(|e| e.event_type == CALCULATED) else {
            return Err(ProjectionError::Corrupt(format!(
                "{projection} state of {order_stream} records a calculation its stream does not hold"
            )));
        };
        let invalid = |reason: String| ProjectionError::InvalidEvent {
            projection: projection.to_string(),
            position: recorded.position,
            stream: recorded.stream_id.clone(),
            event_type: recorded.event_type.clone(),
            reason,
        };
        match upline_domain::events::decode::<OrderEvent>(&recorded.event_type, &recorded.data) {
            Ok(OrderEvent::CommissionCalculated { inputs, .. }) => Ok(*inputs),
            Ok(_) => Err(invalid(format!("not a {CALCULATED}"))),
            Err(e) => Err(invalid(e.to_string())),
        }
    }
}
