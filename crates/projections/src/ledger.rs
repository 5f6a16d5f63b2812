//! The ledger: double entry, from the commission postings on `commissions-{id}` streams.
//!
//! Every `CommissionEarned` is a journal entry debiting `commission_expense` and crediting the
//! distributor's payable account `payable:{distributor}`; every `CommissionReversed` is the
//! opposite. (Payouts, once they exist, will debit the payable account against cash.) The entry's
//! id is the posting event's global position, so re-applying an event writes nothing twice.
//!
//! ## Tables (query the views; every amount is millionths, see [`crate::sql`])
//!
//! **`ledger_entries`**: append-only, one row per journal line; never updated or deleted.
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `entry_id` | BIGINT | the journal entry: the posting event's global position |
//! | `line` | BIGINT | 1 = the debit line, 2 = the credit line |
//! | `account` | TEXT | `commission_expense` or `payable:{distributor}` |
//! | `distributor_id` | TEXT | whose commission (on both lines) |
//! | `currency` | TEXT | ISO 4217 code |
//! | `debit_e6`, `credit_e6` | BIGINT | millionths; one of them is 0 |
//! | `kind` | TEXT | `earned` or `reversed` |
//! | `position` | BIGINT | the posting event's global position (= `entry_id`) |
//! | `event_id` | TEXT | the posting event's id |
//! | `order_stream`, `order_revision` | TEXT, BIGINT | the order event the posting comes from |
//! | `level` | BIGINT NULL | the level paid (earned only) |
//! | `plan_version` | TEXT | the plan of the calculation |
//! | `recorded_at` | TEXT | when the posting was recorded (RFC 3339 UTC) |
//!
//! **`ledger_balances`**: one row per (distributor, currency), updated as entries are written:
//! `earned_e6`, `reversed_e6`, `paid_e6` (0 until payouts exist), `balance_e6` = earned −
//! reversed − paid (= the payable account's credits − debits), `entries` (journal entries),
//! `last_position` and `updated_at` (`recorded_at` of the last entry).
//!
//! Invariants (checked by [`LedgerQuery::verify`] and the tests): every entry balances; for each
//! currency, all accounts sum to zero; every balance equals the sum of its entries.
//!
//! ```sql
//! -- Top payables in USD, in currency units
//! SELECT distributor_id, balance_e6 / 1e6 AS balance FROM ledger_balances
//! WHERE currency = 'USD' ORDER BY balance_e6 DESC LIMIT 10;
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::any::AnyRow;
use sqlx::Row;
use upline_app::records::PostingEvent;
use upline_app::streams::COMMISSIONS_PREFIX;
use upline_domain::money::Currency;
use upline_store::RecordedEvent;

use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::shared::{placeholders, values_list, ROWS_PER_STATEMENT};
use crate::sql::{
    from_e6_scaled, position_from_sql, position_to_sql, table, time_from_sql, time_to_sql, to_e6,
    Tx,
};
use crate::store::ReadStore;

/// The projection's name (checkpoint key, `upline projections rebuild ledger`).
pub const NAME: &str = "ledger";
/// The logical tables (views).
pub const ENTRIES: &str = "ledger_entries";
pub const BALANCES: &str = "ledger_balances";
/// The expense account every commission is booked against.
pub const EXPENSE_ACCOUNT: &str = "commission_expense";
/// Most rows one query returns.
pub const MAX_PAGE: u32 = 1_000;
/// Rows returned when the caller asks for 0.
pub const DEFAULT_PAGE: u32 = 100;

/// The payable account of a distributor.
pub fn payable_account(distributor: &str) -> String {
    format!("payable:{distributor}")
}

/// The ledger projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct LedgerProjection;

#[async_trait::async_trait]
impl Projection for LedgerProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stream_prefixes(&self) -> Vec<String> {
        vec![COMMISSIONS_PREFIX.to_string()]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[ENTRIES, BALANCES]
    }

    async fn create_tables(&self, tx: &mut Tx<'_>, generation: u32) -> Result<(), ProjectionError> {
        let entries = table(ENTRIES, generation);
        let balances = table(BALANCES, generation);
        let statements = [
            format!(
                "CREATE TABLE {entries} (
                    entry_id       BIGINT NOT NULL,
                    line           BIGINT NOT NULL,
                    account        TEXT   NOT NULL,
                    distributor_id TEXT   NOT NULL,
                    currency       TEXT   NOT NULL,
                    debit_e6       BIGINT NOT NULL,
                    credit_e6      BIGINT NOT NULL,
                    kind           TEXT   NOT NULL,
                    position       BIGINT NOT NULL,
                    event_id       TEXT   NOT NULL,
                    order_stream   TEXT   NOT NULL,
                    order_revision BIGINT NOT NULL,
                    level          BIGINT NULL,
                    plan_version   TEXT   NOT NULL,
                    recorded_at    TEXT   NOT NULL,
                    PRIMARY KEY (entry_id, line),
                    CHECK (debit_e6 >= 0 AND credit_e6 >= 0 AND (debit_e6 = 0 OR credit_e6 = 0)),
                    CHECK (kind IN ('earned', 'reversed'))
                )"
            ),
            format!(
                "CREATE TABLE {balances} (
                    distributor_id TEXT   NOT NULL,
                    currency       TEXT   NOT NULL,
                    earned_e6      BIGINT NOT NULL,
                    reversed_e6    BIGINT NOT NULL,
                    paid_e6        BIGINT NOT NULL,
                    balance_e6     BIGINT NOT NULL,
                    entries        BIGINT NOT NULL,
                    last_position  BIGINT NOT NULL,
                    updated_at     TEXT   NOT NULL,
                    PRIMARY KEY (distributor_id, currency)
                )"
            ),
        ];
        crate::sql::execute_all(tx, &statements).await
    }

    fn query_indexes(&self, generation: u32) -> Vec<String> {
        let entries = table(ENTRIES, generation);
        let balances = table(BALANCES, generation);
        vec![
            format!("CREATE INDEX {entries}_account ON {entries} (account, entry_id)"),
            format!("CREATE INDEX {entries}_distributor ON {entries} (distributor_id, entry_id)"),
            format!("CREATE INDEX {balances}_balance ON {balances} (balance_e6)"),
        ]
    }

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        generation: u32,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_all(tx, generation, &[event]).await
    }

    /// Writes the journal lines of the run's postings with a few multi-row inserts, then each
    /// changed balance once.
    async fn apply_all(
        &self,
        tx: &mut Tx<'_>,
        generation: u32,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut entries = Vec::with_capacity(events.len());
        for event in events {
            if let Some(entry) = Entry::of(event)? {
                entries.push(entry);
            }
        }
        let booked = write_entries(tx, generation, &entries).await?;
        write_balances(tx, generation, &booked).await
    }
}

/// One posting as the ledger books it: a journal entry of two lines.
struct Entry {
    position: i64,
    distributor: String,
    currency: Currency,
    /// `earned` or `reversed`.
    kind: &'static str,
    amount_e6: i64,
    event_id: String,
    order_stream: String,
    order_revision: i64,
    level: Option<i64>,
    plan_version: String,
    recorded_at: String,
}

impl Entry {
    /// The entry of a posting event; `None` for other events of the commissions streams.
    fn of(event: &RecordedEvent) -> Result<Option<Entry>, ProjectionError> {
        if event.event_type != PostingEvent::EARNED && event.event_type != PostingEvent::REVERSED {
            return Ok(None);
        }
        let invalid = |reason: String| ProjectionError::InvalidEvent {
            projection: NAME.to_string(),
            position: event.position,
            stream: event.stream_id.clone(),
            event_type: event.event_type.clone(),
            reason,
        };
        let distributor = event
            .stream_id
            .strip_prefix(COMMISSIONS_PREFIX)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| invalid("not a commissions stream".into()))?;
        let posting: PostingEvent = upline_domain::events::decode(&event.event_type, &event.data)
            .map_err(|e| invalid(e.to_string()))?;
        let (kind, source, currency, amount, level, plan_version) = match posting {
            PostingEvent::CommissionEarned {
                source,
                currency,
                amount,
                level,
                plan_version,
            } => ("earned", source, currency, amount, level, plan_version),
            PostingEvent::CommissionReversed {
                source,
                currency,
                amount,
                plan_version,
            } => ("reversed", source, currency, amount, None, plan_version),
        };
        if amount < Decimal::ZERO {
            return Err(invalid(format!("negative amount {amount}")));
        }
        Ok(Some(Entry {
            position: position_to_sql(event.position)?,
            distributor: distributor.to_string(),
            currency,
            kind,
            amount_e6: to_e6(amount).map_err(|e| invalid(e.to_string()))?,
            event_id: event.id.to_string(),
            order_stream: source.order_stream,
            order_revision: position_to_sql(source.order_revision)?,
            level: level.map(i64::from),
            plan_version: plan_version.as_str().to_string(),
            recorded_at: time_to_sql(event.recorded_at),
        }))
    }

    /// (debit account, credit account).
    fn accounts(&self) -> (String, String) {
        let payable = payable_account(&self.distributor);
        if self.kind == "earned" {
            (EXPENSE_ACCOUNT.to_string(), payable)
        } else {
            (payable, EXPENSE_ACCOUNT.to_string())
        }
    }
}

/// Entries per insert: two rows of 15 parameters each (kept small: see `ROWS_PER_STATEMENT`).
const ENTRIES_PER_STATEMENT: usize = 16;

/// Inserts both lines of every entry (nothing for an entry written before) and returns the
/// entries written now, which the balances must count.
async fn write_entries<'e>(
    tx: &mut Tx<'_>,
    generation: u32,
    entries: &'e [Entry],
) -> Result<Vec<&'e Entry>, ProjectionError> {
    let table_name = table(ENTRIES, generation);
    let mut booked = Vec::with_capacity(entries.len());
    for chunk in entries.chunks(ENTRIES_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO {table_name} (entry_id, line, account, distributor_id, currency, \
             debit_e6, credit_e6, kind, position, event_id, order_stream, order_revision, level, \
             plan_version, recorded_at) VALUES {} \
             ON CONFLICT (entry_id, line) DO NOTHING RETURNING entry_id",
            values_list(tx, chunk.len() * 2, 15)
        );
        let mut query = sqlx::query(&sql);
        let accounts: Vec<(String, String)> = chunk.iter().map(Entry::accounts).collect();
        for (entry, (debit, credit)) in chunk.iter().zip(&accounts) {
            for (line, account, debit_e6, credit_e6) in [
                (1_i64, debit, entry.amount_e6, 0_i64),
                (2, credit, 0, entry.amount_e6),
            ] {
                query = query
                    .bind(entry.position)
                    .bind(line)
                    .bind(account.as_str())
                    .bind(entry.distributor.as_str())
                    .bind(entry.currency.code())
                    .bind(debit_e6)
                    .bind(credit_e6)
                    .bind(entry.kind)
                    .bind(entry.position)
                    .bind(entry.event_id.as_str())
                    .bind(entry.order_stream.as_str())
                    .bind(entry.order_revision)
                    .bind(entry.level)
                    .bind(entry.plan_version.as_str())
                    .bind(entry.recorded_at.as_str());
            }
        }
        let mut lines_written: HashMap<i64, u32> = HashMap::new();
        for row in query.fetch_all(&mut **tx).await? {
            *lines_written.entry(row.try_get("entry_id")?).or_default() += 1;
        }
        for entry in chunk {
            match lines_written.get(&entry.position).copied().unwrap_or(0) {
                0 => {} // applied before: the balance already counts it
                2 => booked.push(entry),
                written => {
                    return Err(ProjectionError::Corrupt(format!(
                        "entry {} had {} of its 2 lines already",
                        entry.position,
                        2 - written
                    )))
                }
            }
        }
    }
    Ok(booked)
}

/// What a balance row holds.
#[derive(Default)]
struct Held {
    earned: i64,
    reversed: i64,
    paid: i64,
    entries: i64,
    last_position: i64,
    updated_at: String,
}

impl Held {
    /// earned − reversed − paid; `None` on overflow. Checked once, when written: `reversed`
    /// and `paid` only grow, so a balance overflowing part-way overflows at the end too.
    fn balance(&self) -> Option<i64> {
        self.earned
            .checked_sub(self.reversed)
            .and_then(|b| b.checked_sub(self.paid))
    }
}

/// Adds the `booked` entries to their balances: the changed balances are read with a few
/// queries, summed with overflow checks, and written back with a few multi-row upserts.
async fn write_balances(
    tx: &mut Tx<'_>,
    generation: u32,
    booked: &[&Entry],
) -> Result<(), ProjectionError> {
    if booked.is_empty() {
        return Ok(());
    }
    let balances = table(BALANCES, generation);
    let mut held: BTreeMap<(String, String), Held> = BTreeMap::new();
    let distributors: BTreeSet<&str> = booked.iter().map(|e| e.distributor.as_str()).collect();
    let distributors: Vec<&str> = distributors.into_iter().collect();
    for chunk in distributors.chunks(ROWS_PER_STATEMENT * 4) {
        let list = placeholders(tx, 1, chunk.len());
        let sql = format!(
            "SELECT distributor_id, currency, earned_e6, reversed_e6, paid_e6, entries \
             FROM {balances} WHERE distributor_id IN {list}"
        );
        let mut query = sqlx::query(&sql);
        for distributor in chunk {
            query = query.bind(*distributor);
        }
        for row in query.fetch_all(&mut **tx).await? {
            held.insert(
                (row.try_get("distributor_id")?, row.try_get("currency")?),
                Held {
                    earned: row.try_get("earned_e6")?,
                    reversed: row.try_get("reversed_e6")?,
                    paid: row.try_get("paid_e6")?,
                    entries: row.try_get("entries")?,
                    ..Held::default()
                },
            );
        }
    }
    let mut changed: BTreeMap<(String, String), Held> = BTreeMap::new();
    for entry in booked {
        let key = (entry.distributor.clone(), entry.currency.code().to_string());
        let balance = changed
            .entry(key.clone())
            .or_insert_with(|| held.remove(&key).unwrap_or_default());
        let overflow = || ProjectionError::Overflow {
            what: format!("the balance of {} in {}", entry.distributor, entry.currency),
        };
        if entry.kind == "earned" {
            balance.earned = balance
                .earned
                .checked_add(entry.amount_e6)
                .ok_or_else(overflow)?;
        } else {
            balance.reversed = balance
                .reversed
                .checked_add(entry.amount_e6)
                .ok_or_else(overflow)?;
        }
        balance.entries += 1;
        balance.last_position = entry.position;
        balance.updated_at.clone_from(&entry.recorded_at);
    }
    let changed: Vec<_> = changed.into_iter().collect();
    for chunk in changed.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO {balances} (distributor_id, currency, earned_e6, reversed_e6, paid_e6, \
             balance_e6, entries, last_position, updated_at) VALUES {} \
             ON CONFLICT (distributor_id, currency) DO UPDATE SET \
             earned_e6 = excluded.earned_e6, reversed_e6 = excluded.reversed_e6, \
             paid_e6 = excluded.paid_e6, balance_e6 = excluded.balance_e6, \
             entries = excluded.entries, last_position = excluded.last_position, \
             updated_at = excluded.updated_at",
            values_list(tx, chunk.len(), 9)
        );
        let mut query = sqlx::query(&sql);
        for ((distributor, currency), b) in chunk {
            let balance = b.balance().ok_or_else(|| ProjectionError::Overflow {
                what: format!("the balance of {distributor} in {currency}"),
            })?;
            query = query
                .bind(distributor.as_str())
                .bind(currency.as_str())
                .bind(b.earned)
                .bind(b.reversed)
                .bind(b.paid)
                .bind(balance)
                .bind(b.entries)
                .bind(b.last_position)
                .bind(b.updated_at.as_str());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// What a distributor holds in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub distributor_id: String,
    pub currency: String,
    pub earned: Decimal,
    pub reversed: Decimal,
    pub paid: Decimal,
    /// earned − reversed − paid.
    pub balance: Decimal,
    /// Journal entries counted.
    pub entries: u64,
    pub last_position: u64,
    pub updated_at: DateTime<Utc>,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerLine {
    pub entry_id: u64,
    pub line: u32,
    pub account: String,
    pub distributor_id: String,
    pub currency: String,
    pub debit: Decimal,
    pub credit: Decimal,
    /// `earned` or `reversed`.
    pub kind: String,
    pub position: u64,
    pub event_id: String,
    pub order_stream: String,
    pub order_revision: u64,
    pub level: Option<u32>,
    pub plan_version: String,
    pub recorded_at: DateTime<Utc>,
}

/// A page of journal lines; pass `next_page_token` back for the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerPage {
    pub lines: Vec<LedgerLine>,
    pub next_page_token: Option<String>,
}

/// Queries over the ledger's views.
#[derive(Debug, Clone)]
pub struct LedgerQuery {
    read: ReadStore,
}

const BALANCE_COLUMNS: &str = "distributor_id, currency, earned_e6, reversed_e6, paid_e6, \
                               balance_e6, entries, last_position, updated_at";
const LINE_COLUMNS: &str = "entry_id, line, account, distributor_id, currency, debit_e6, \
                            credit_e6, kind, position, event_id, order_stream, order_revision, \
                            level, plan_version, recorded_at";

impl LedgerQuery {
    pub fn new(read: ReadStore) -> LedgerQuery {
        LedgerQuery { read }
    }

    /// The distributor's balances, one per currency (`currency`: only that one), by currency.
    /// Empty when they have no entry.
    pub async fn balance(
        &self,
        distributor: &str,
        currency: Option<&str>,
    ) -> Result<Vec<Balance>, ProjectionError> {
        let rows = match currency {
            Some(currency) => {
                sqlx::query(&format!(
                    "SELECT {BALANCE_COLUMNS} FROM {BALANCES} \
                     WHERE distributor_id = $1 AND currency = $2"
                ))
                .bind(distributor)
                .bind(currency)
                .fetch_all(self.read.pool())
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {BALANCE_COLUMNS} FROM {BALANCES} WHERE distributor_id = $1 \
                     ORDER BY currency"
                ))
                .bind(distributor)
                .fetch_all(self.read.pool())
                .await?
            }
        };
        rows.iter().map(balance_of).collect()
    }

    /// The largest balances (any currency), largest first, at most `limit` (0: 100; at most
    /// 1,000).
    pub async fn top_balances(&self, limit: u32) -> Result<Vec<Balance>, ProjectionError> {
        let rows = sqlx::query(&format!(
            "SELECT {BALANCE_COLUMNS} FROM {BALANCES} \
             ORDER BY balance_e6 DESC, distributor_id, currency LIMIT $1"
        ))
        .bind(i64::from(page_limit(limit)))
        .fetch_all(self.read.pool())
        .await?;
        rows.iter().map(balance_of).collect()
    }

    /// The distributor's payable-account lines (one per posting: credit when earned, debit
    /// when reversed), oldest first, `limit` per page (0: 100; at most 1,000).
    pub async fn entries(
        &self,
        distributor: &str,
        page_token: Option<&str>,
        limit: u32,
    ) -> Result<LedgerPage, ProjectionError> {
        let after = parse_token(page_token)?;
        let limit = page_limit(limit);
        let rows = sqlx::query(&format!(
            "SELECT {LINE_COLUMNS} FROM {ENTRIES} \
             WHERE account = $1 AND entry_id > $2 ORDER BY entry_id LIMIT $3"
        ))
        .bind(payable_account(distributor))
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(self.read.pool())
        .await?;
        page_of(rows, limit)
    }

    /// Every journal line of entries after `after_entry` (0: from the start), in entry order,
    /// `limit` lines per page (whole entries: a page never splits one). For feeds such as
    /// `WatchLedger`: pass the last `entry_id` seen.
    pub async fn journal(
        &self,
        after_entry: u64,
        limit: u32,
    ) -> Result<Vec<LedgerLine>, ProjectionError> {
        let limit = page_limit(limit).max(2);
        let rows = sqlx::query(&format!(
            "SELECT {LINE_COLUMNS} FROM {ENTRIES} \
             WHERE entry_id > $1 ORDER BY entry_id, line LIMIT $2"
        ))
        .bind(position_to_sql(after_entry)?)
        .bind(i64::from(limit))
        .fetch_all(self.read.pool())
        .await?;
        let mut lines = rows.iter().map(line_of).collect::<Result<Vec<_>, _>>()?;
        // Drop a trailing incomplete entry; the next call starts at it.
        if lines.len() == limit as usize {
            if let Some(last) = lines.last().map(|l| l.entry_id) {
                let whole = lines.iter().filter(|l| l.entry_id == last).count() == 2;
                if !whole {
                    lines.retain(|l| l.entry_id != last);
                }
            }
        }
        Ok(lines)
    }

    /// Checks the ledger's invariants; returns what is wrong (empty: all hold):
    /// every entry has two lines and balances; for each currency all accounts sum to zero;
    /// every balance row equals the sum of its payable account's lines (and its earned and
    /// reversed parts those of its entries).
    pub async fn verify(&self) -> Result<Vec<String>, ProjectionError> {
        let mut problems = Vec::new();
        let pool = self.read.pool();
        let unbalanced = sqlx::query(&format!(
            "SELECT entry_id, CAST(COUNT(*) AS BIGINT) AS lines, \
             CAST(SUM(debit_e6) AS BIGINT) AS debit, CAST(SUM(credit_e6) AS BIGINT) AS credit \
             FROM {ENTRIES} GROUP BY entry_id \
             HAVING COUNT(*) <> 2 OR SUM(debit_e6) <> SUM(credit_e6) ORDER BY entry_id"
        ))
        .fetch_all(pool)
        .await?;
        for row in unbalanced {
            problems.push(format!(
                "entry {} has {} lines, debits {} and credits {}",
                row.try_get::<i64, _>("entry_id")?,
                row.try_get::<i64, _>("lines")?,
                row.try_get::<i64, _>("debit")?,
                row.try_get::<i64, _>("credit")?,
            ));
        }
        let currencies = sqlx::query(&format!(
            "SELECT currency, CAST(SUM(debit_e6) AS BIGINT) AS debit, \
             CAST(SUM(credit_e6) AS BIGINT) AS credit FROM {ENTRIES} \
             GROUP BY currency ORDER BY currency"
        ))
        .fetch_all(pool)
        .await?;
        for row in currencies {
            let (debit, credit): (i64, i64) = (row.try_get("debit")?, row.try_get("credit")?);
            if debit != credit {
                problems.push(format!(
                    "{}: accounts sum to {} (debits {debit}, credits {credit}, millionths)",
                    row.try_get::<String, _>("currency")?,
                    debit - credit
                ));
            }
        }
        let mismatched = sqlx::query(&format!(
            "SELECT b.distributor_id, b.currency, b.balance_e6, b.earned_e6, b.reversed_e6, \
             b.entries, \
             CAST(COALESCE(SUM(e.credit_e6 - e.debit_e6), 0) AS BIGINT) AS sum_e6, \
             CAST(COALESCE(SUM(e.credit_e6), 0) AS BIGINT) AS credits_e6, \
             CAST(COALESCE(SUM(e.debit_e6), 0) AS BIGINT) AS debits_e6, \
             CAST(COUNT(e.entry_id) AS BIGINT) AS lines \
             FROM {BALANCES} b LEFT JOIN {ENTRIES} e \
             ON e.account = {concat} AND e.currency = b.currency \
             GROUP BY b.distributor_id, b.currency, b.balance_e6, b.earned_e6, b.reversed_e6, \
             b.entries \
             ORDER BY b.distributor_id, b.currency",
            concat = "'payable:' || b.distributor_id"
        ))
        .fetch_all(pool)
        .await?;
        for row in mismatched {
            let balance: i64 = row.try_get("balance_e6")?;
            let sum: i64 = row.try_get("sum_e6")?;
            let earned: i64 = row.try_get("earned_e6")?;
            let credits: i64 = row.try_get("credits_e6")?;
            let reversed: i64 = row.try_get("reversed_e6")?;
            let debits: i64 = row.try_get("debits_e6")?;
            let entries: i64 = row.try_get("entries")?;
            let lines: i64 = row.try_get("lines")?;
            if balance != sum || earned != credits || reversed != debits || entries != lines {
                problems.push(format!(
                    "balance of {} in {}: row says {balance} (earned {earned}, reversed \
                     {reversed}, {entries} entries), its entries say {sum} (credits {credits}, \
                     debits {debits}, {lines} lines)",
                    row.try_get::<String, _>("distributor_id")?,
                    row.try_get::<String, _>("currency")?,
                ));
            }
        }
        let orphans = sqlx::query(&format!(
            "SELECT DISTINCT e.distributor_id, e.currency FROM {ENTRIES} e \
             LEFT JOIN {BALANCES} b ON b.distributor_id = e.distributor_id \
             AND b.currency = e.currency WHERE b.distributor_id IS NULL"
        ))
        .fetch_all(pool)
        .await?;
        for row in orphans {
            problems.push(format!(
                "entries of {} in {} have no balance row",
                row.try_get::<String, _>("distributor_id")?,
                row.try_get::<String, _>("currency")?,
            ));
        }
        Ok(problems)
    }
}

fn page_limit(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

fn parse_token(token: Option<&str>) -> Result<i64, ProjectionError> {
    match token.filter(|t| !t.is_empty()) {
        None => Ok(0),
        Some(token) => token
            .strip_prefix("e")
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| ProjectionError::InvalidPageToken(token.to_string())),
    }
}

fn page_of(rows: Vec<AnyRow>, limit: u32) -> Result<LedgerPage, ProjectionError> {
    let mut lines = rows.iter().map(line_of).collect::<Result<Vec<_>, _>>()?;
    let next_page_token = if lines.len() > limit as usize {
        lines.truncate(limit as usize);
        lines.last().map(|l| format!("e{}", l.entry_id))
    } else {
        None
    };
    Ok(LedgerPage {
        lines,
        next_page_token,
    })
}

/// The minor unit of a currency code, for display (6 when unknown: every digit stored).
fn minor_unit(code: &str) -> u32 {
    Currency::from_code(code)
        .map(|c| c.minor_unit())
        .unwrap_or(6)
}

fn balance_of(row: &AnyRow) -> Result<Balance, ProjectionError> {
    let currency: String = row.try_get("currency")?;
    let scale = minor_unit(&currency);
    let updated_at: String = row.try_get("updated_at")?;
    Ok(Balance {
        distributor_id: row.try_get("distributor_id")?,
        earned: from_e6_scaled(row.try_get("earned_e6")?, scale),
        reversed: from_e6_scaled(row.try_get("reversed_e6")?, scale),
        paid: from_e6_scaled(row.try_get("paid_e6")?, scale),
        balance: from_e6_scaled(row.try_get("balance_e6")?, scale),
        entries: position_from_sql(row.try_get("entries")?)?,
        last_position: position_from_sql(row.try_get("last_position")?)?,
        updated_at: time_from_sql(&updated_at)?,
        currency,
    })
}

fn line_of(row: &AnyRow) -> Result<LedgerLine, ProjectionError> {
    let currency: String = row.try_get("currency")?;
    let scale = minor_unit(&currency);
    let recorded_at: String = row.try_get("recorded_at")?;
    let line: i64 = row.try_get("line")?;
    let level: Option<i64> = row.try_get("level")?;
    Ok(LedgerLine {
        entry_id: position_from_sql(row.try_get("entry_id")?)?,
        line: u32::try_from(line).map_err(|_| ProjectionError::Corrupt(format!("line {line}")))?,
        account: row.try_get("account")?,
        distributor_id: row.try_get("distributor_id")?,
        debit: from_e6_scaled(row.try_get("debit_e6")?, scale),
        credit: from_e6_scaled(row.try_get("credit_e6")?, scale),
        kind: row.try_get("kind")?,
        position: position_from_sql(row.try_get("position")?)?,
        event_id: row.try_get("event_id")?,
        order_stream: row.try_get("order_stream")?,
        order_revision: position_from_sql(row.try_get("order_revision")?)?,
        level: level
            .map(|l| u32::try_from(l).map_err(|_| ProjectionError::Corrupt(format!("level {l}"))))
            .transpose()?,
        plan_version: row.try_get("plan_version")?,
        recorded_at: time_from_sql(&recorded_at)?,
        currency,
    })
}
