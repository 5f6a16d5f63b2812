//! The hierarchy read model: each distributor's current sponsor, status, rank and country, and
//! the network as a closure table, so that a distributor's upline and a page of their downline
//! are index lookups.
//!
//! It reads the network's events on `distributor-{id}` streams (`DistributorRegistered`,
//! `SponsorChanged`, `StatusChanged`, `RankChanged`) and skips any other event there. A run of
//! registrations of new members under known sponsors, nearly all of a network's history, is
//! written in bulk (`HierarchyProjection::apply_all`); everything else one event at a time.
//!
//! **Current** means the value with the latest effective time the network has recorded: a
//! change dated before the value already shown (a back-dated correction of history) does not
//! replace it, and a change dated in the future shows as soon as it is recorded (a projection
//! never reads the clock, so that a rebuild gives the same rows). Commission calculations never
//! use this model: they use the hierarchy as it stood at each order's time, recorded in the order.
//!
//! ## Tables (query the views)
//!
//! **`hierarchy_distributors`**: one row per distributor.
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `distributor_id` | TEXT | primary key |
//! | `sponsor_id` | TEXT NULL | current sponsor; NULL at the top of the network |
//! | `status` | TEXT | `active`, `inactive`, `suspended` or `terminated` |
//! | `rank` | TEXT | paid-as rank |
//! | `country` | TEXT | ISO 3166-1 alpha-2 |
//! | `joined_at` | TEXT | RFC 3339 UTC |
//! | `referral_codes` | TEXT | the codes, comma-separated |
//! | `sponsor_since`, `status_since`, `rank_since` | TEXT | effective time of the value shown |
//! | `depth` | BIGINT | hops from the top of the network (0 for the top) |
//! | `last_position` | BIGINT | global position of the last event applied to the row |
//!
//! **`hierarchy_paths`**: the closure of the sponsor relation, one row per (ancestor,
//! descendant) pair including each distributor with itself (`hops` 0). Primary key
//! `(ancestor_id, hops, descendant_id)` (a downline page, breadth first, is one index range);
//! index `(descendant_id, hops)` (an upline). Size: the sum of all depths, so a network of
//! `n` distributors `d` levels deep holds about `n x d` rows.
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `ancestor_id` | TEXT | a distributor |
//! | `descendant_id` | TEXT | a distributor in their downline (or themselves) |
//! | `hops` | BIGINT | sponsor links from the descendant up to the ancestor |
//!
//! ```sql
//! -- The first level of d1's downline, with ranks
//! SELECT d.distributor_id, d.rank FROM hierarchy_paths p
//! JOIN hierarchy_distributors d ON d.distributor_id = p.descendant_id
//! WHERE p.ancestor_id = 'd1' AND p.hops = 1 ORDER BY d.distributor_id;
//! ```

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;
use upline_app::streams::DISTRIBUTOR_PREFIX;
use upline_domain::network::DistributorEvent;
use upline_store::RecordedEvent;

use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::shared::{insert_rows, placeholders, values_list, Cell};
use crate::sql::{position_from_sql, position_to_sql, table, time_from_sql, time_to_sql, Tx};
use crate::store::ReadStore;

/// The projection's name (checkpoint key, `upline projections rebuild hierarchy`).
pub const NAME: &str = "hierarchy";
/// The logical tables (views).
pub const DISTRIBUTORS: &str = "hierarchy_distributors";
pub const PATHS: &str = "hierarchy_paths";
/// The most members an upline query returns. Real networks are a few hundred levels deep at
/// most; the bound keeps one answer small whatever the data.
pub const MAX_UPLINE: u32 = 1_000;
/// Most members one downline page returns.
pub const MAX_PAGE: u32 = 1_000;
/// Members per downline page when the caller asks for 0.
pub const DEFAULT_PAGE: u32 = 100;

/// The hierarchy projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct HierarchyProjection;

fn invalid(event: &RecordedEvent, reason: impl Into<String>) -> ProjectionError {
    ProjectionError::InvalidEvent {
        projection: NAME.to_string(),
        position: event.position,
        stream: event.stream_id.clone(),
        event_type: event.event_type.clone(),
        reason: reason.into(),
    }
}

#[async_trait::async_trait]
impl Projection for HierarchyProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stream_prefixes(&self) -> Vec<String> {
        vec![DISTRIBUTOR_PREFIX.to_string()]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[DISTRIBUTORS, PATHS]
    }

    async fn create_tables(&self, tx: &mut Tx<'_>, generation: u32) -> Result<(), ProjectionError> {
        let distributors = table(DISTRIBUTORS, generation);
        let paths = table(PATHS, generation);
        let statements = [
            format!(
                "CREATE TABLE {distributors} (
                    distributor_id TEXT   NOT NULL PRIMARY KEY,
                    sponsor_id     TEXT   NULL,
                    status         TEXT   NOT NULL,
                    rank           TEXT   NOT NULL,
                    country        TEXT   NOT NULL,
                    joined_at      TEXT   NOT NULL,
                    referral_codes TEXT   NOT NULL,
                    sponsor_since  TEXT   NOT NULL,
                    status_since   TEXT   NOT NULL,
                    rank_since     TEXT   NOT NULL,
                    depth          BIGINT NOT NULL,
                    last_position  BIGINT NOT NULL
                )"
            ),
            format!("CREATE INDEX {distributors}_sponsor ON {distributors} (sponsor_id)"),
            format!(
                "CREATE TABLE {paths} (
                    ancestor_id   TEXT   NOT NULL,
                    descendant_id TEXT   NOT NULL,
                    hops          BIGINT NOT NULL,
                    PRIMARY KEY (ancestor_id, hops, descendant_id)
                )"
            ),
            format!("CREATE INDEX {paths}_up ON {paths} (descendant_id, hops)"),
        ];
        crate::sql::execute_all(tx, &statements).await
    }

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        generation: u32,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if !matches!(
            event.event_type.as_str(),
            "DistributorRegistered" | "SponsorChanged" | "StatusChanged" | "RankChanged"
        ) {
            // Not the network's: nothing of this model.
            return Ok(());
        }
        let decoded: DistributorEvent =
            upline_domain::events::decode(&event.event_type, &event.data)
                .map_err(|e| invalid(event, e.to_string()))?;
        let tables = Tables::of(generation);
        let position = position_to_sql(event.position)?;
        let id = match &decoded {
            DistributorEvent::DistributorRegistered { distributor_id, .. }
            | DistributorEvent::SponsorChanged { distributor_id, .. }
            | DistributorEvent::StatusChanged { distributor_id, .. }
            | DistributorEvent::RankChanged { distributor_id, .. } => distributor_id.as_str(),
        };
        let current = tables.current(tx, id).await?;
        if let Some(current) = &current {
            if current.last_position >= position {
                // Applied before.
                return Ok(());
            }
        }
        match &decoded {
            DistributorEvent::DistributorRegistered { sponsor, .. } => {
                if current.is_some() {
                    // The network records a registration once; a repeat changes nothing.
                    return tables.touch(tx, id, position).await;
                }
                let Some(member) = Registration::of(&decoded, position) else {
                    return Ok(());
                };
                tables.insert_members(tx, &[member]).await?;
                tables.insert_paths(tx, &[(id, id, 0)]).await?;
                if let Some(sponsor) = sponsor {
                    tables.attach(tx, event, id, sponsor.as_str()).await?;
                }
                // Members registered under this one before it (out of order): hang them here.
                let sql = format!(
                    "SELECT distributor_id FROM {} WHERE sponsor_id = $1 AND distributor_id <> $1 \
                     ORDER BY distributor_id",
                    tables.distributors
                );
                let waiting: Vec<String> = sqlx::query(&sql)
                    .bind(id)
                    .fetch_all(&mut **tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<String, _>("distributor_id"))
                    .collect::<Result<_, _>>()?;
                for child in waiting {
                    if !tables.is_ancestor(tx, id, &child).await? {
                        tables.detach(tx, &child).await?;
                        tables.attach(tx, event, &child, id).await?;
                    }
                }
                Ok(())
            }
            DistributorEvent::SponsorChanged {
                sponsor,
                effective_at,
                ..
            } => {
                let Some(current) = current else {
                    return Err(invalid(
                        event,
                        format!("distributor {id} is not registered"),
                    ));
                };
                let at = time_to_sql(*effective_at);
                if at < current.sponsor_since {
                    // History before the value shown: it stays.
                    return tables.touch(tx, id, position).await;
                }
                let sql = format!(
                    "UPDATE {} SET sponsor_id = $1, sponsor_since = $2, last_position = $3 \
                     WHERE distributor_id = $4",
                    tables.distributors
                );
                sqlx::query(&sql)
                    .bind(sponsor.as_str())
                    .bind(at.as_str())
                    .bind(position)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                if current.sponsor_id.as_deref() != Some(sponsor.as_str()) {
                    tables.detach(tx, id).await?;
                    tables.attach(tx, event, id, sponsor.as_str()).await?;
                }
                Ok(())
            }
            DistributorEvent::StatusChanged {
                status,
                effective_at,
                ..
            } => {
                let Some(current) = current else {
                    return Err(invalid(
                        event,
                        format!("distributor {id} is not registered"),
                    ));
                };
                let at = time_to_sql(*effective_at);
                if at < current.status_since {
                    return tables.touch(tx, id, position).await;
                }
                tables
                    .set(tx, "status", status.as_str(), &at, id, position)
                    .await
            }
            DistributorEvent::RankChanged {
                rank, effective_at, ..
            } => {
                let Some(current) = current else {
                    return Err(invalid(
                        event,
                        format!("distributor {id} is not registered"),
                    ));
                };
                let at = time_to_sql(*effective_at);
                if at < current.rank_since {
                    return tables.touch(tx, id, position).await;
                }
                tables
                    .set(tx, "rank", rank.as_str(), &at, id, position)
                    .await
            }
        }
    }

    /// A run of registrations of new members under sponsors already known (what an import
    /// or a growing network writes, nearly every event of this model) is written in bulk: each
    /// one's paths are its sponsor's plus itself, so the run costs a few reads and multi-row
    /// inserts instead of seven statements a member. Anything else (a repeat, a member whose
    /// sponsor is not registered yet or who has members waiting under them, a change) goes
    /// through [`Projection::apply`], in order, so the rows are the same either way
    /// (`every_hierarchy_row_is_the_same_whatever_the_batch_size`).
    async fn apply_all(
        &self,
        tx: &mut Tx<'_>,
        generation: u32,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let tables = Tables::of(generation);
        let mut at = 0;
        while at < events.len() {
            let run = events[at..]
                .iter()
                .take_while(|e| e.event_type == REGISTERED)
                .count();
            if run == 0 {
                self.apply(tx, generation, events[at]).await?;
                at += 1;
                continue;
            }
            // Decoded once for the whole run, however often it falls back to `apply`.
            let mut members = events[at..at + run]
                .iter()
                .map(|event| Registration::decode(event))
                .collect::<Result<Vec<_>, _>>()?;
            let mut done = 0;
            while done < run {
                match tables
                    .register_new_members(tx, &mut members[done..])
                    .await?
                {
                    0 => {
                        self.apply(tx, generation, events[at + done]).await?;
                        done += 1;
                    }
                    registered => done += registered,
                }
            }
            at += run;
        }
        Ok(())
    }
}

/// The event type of a registration.
const REGISTERED: &str = "DistributorRegistered";

/// Parameters per `IN (...)` list: well under both engines' limits.
const KEYS_PER_STATEMENT: usize = 500;
/// Path rows (three parameters each) per multi-row insert.
const PATHS_PER_STATEMENT: usize = 256;

/// A distributor's row as a registration writes it.
struct Registration {
    id: String,
    sponsor: Option<String>,
    status: &'static str,
    rank: String,
    country: String,
    joined: String,
    codes: String,
    depth: i64,
    position: i64,
}

impl Registration {
    /// The row of a recorded `DistributorRegistered`.
    fn decode(event: &RecordedEvent) -> Result<Registration, ProjectionError> {
        let decoded: DistributorEvent =
            upline_domain::events::decode(&event.event_type, &event.data)
                .map_err(|e| invalid(event, e.to_string()))?;
        Registration::of(&decoded, position_to_sql(event.position)?)
            .ok_or_else(|| invalid(event, "not a registration"))
    }

    /// The row of a `DistributorRegistered` (at depth 0 until its paths are known); `None` for
    /// another event.
    fn of(event: &DistributorEvent, position: i64) -> Option<Registration> {
        let DistributorEvent::DistributorRegistered {
            distributor_id,
            sponsor,
            referral_codes,
            country,
            status,
            rank,
            joined_at,
        } = event
        else {
            return None;
        };
        Some(Registration {
            id: distributor_id.as_str().to_string(),
            sponsor: sponsor.as_ref().map(|s| s.as_str().to_string()),
            status: status.as_str(),
            rank: rank.as_str().to_string(),
            country: country.clone(),
            joined: time_to_sql(*joined_at),
            codes: referral_codes
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(","),
            depth: 0,
            position,
        })
    }
}

/// What `apply` needs to know of a distributor's row.
struct Current {
    sponsor_id: Option<String>,
    sponsor_since: String,
    status_since: String,
    rank_since: String,
    last_position: i64,
}

/// The physical tables of one generation and the statements over them.
struct Tables {
    distributors: String,
    paths: String,
}

impl Tables {
    fn of(generation: u32) -> Tables {
        Tables {
            distributors: table(DISTRIBUTORS, generation),
            paths: table(PATHS, generation),
        }
    }

    async fn current(&self, tx: &mut Tx<'_>, id: &str) -> Result<Option<Current>, ProjectionError> {
        let sql = format!(
            "SELECT sponsor_id, sponsor_since, status_since, rank_since, last_position FROM {} \
             WHERE distributor_id = $1",
            self.distributors
        );
        let row = sqlx::query(&sql).bind(id).fetch_optional(&mut **tx).await?;
        row.map(|row| {
            Ok(Current {
                sponsor_id: row.try_get("sponsor_id")?,
                sponsor_since: row.try_get("sponsor_since")?,
                status_since: row.try_get("status_since")?,
                rank_since: row.try_get("rank_since")?,
                last_position: row.try_get("last_position")?,
            })
        })
        .transpose()
    }

    async fn touch(&self, tx: &mut Tx<'_>, id: &str, position: i64) -> Result<(), ProjectionError> {
        let sql = format!(
            "UPDATE {} SET last_position = $1 WHERE distributor_id = $2",
            self.distributors
        );
        sqlx::query(&sql)
            .bind(position)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Sets `status` or `rank` (a fixed column name, never input).
    async fn set(
        &self,
        tx: &mut Tx<'_>,
        column: &'static str,
        value: &str,
        since: &str,
        id: &str,
        position: i64,
    ) -> Result<(), ProjectionError> {
        let sql = format!(
            "UPDATE {} SET {column} = $1, {column}_since = $2, last_position = $3 \
             WHERE distributor_id = $4",
            self.distributors
        );
        sqlx::query(&sql)
            .bind(value)
            .bind(since)
            .bind(position)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Whether `ancestor` is `id` or above it.
    async fn is_ancestor(
        &self,
        tx: &mut Tx<'_>,
        ancestor: &str,
        id: &str,
    ) -> Result<bool, ProjectionError> {
        let sql = format!(
            "SELECT hops FROM {} WHERE ancestor_id = $1 AND descendant_id = $2",
            self.paths
        );
        Ok(sqlx::query(&sql)
            .bind(ancestor)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
            .is_some())
    }

    /// Cuts `id`'s subtree from everything above `id`.
    async fn detach(&self, tx: &mut Tx<'_>, id: &str) -> Result<(), ProjectionError> {
        let paths = &self.paths;
        let sql = format!(
            "DELETE FROM {paths} WHERE \
             descendant_id IN (SELECT descendant_id FROM {paths} WHERE ancestor_id = $1) \
             AND ancestor_id IN (SELECT ancestor_id FROM {paths} WHERE descendant_id = $1 \
             AND hops > 0)"
        );
        sqlx::query(&sql).bind(id).execute(&mut **tx).await?;
        self.refresh_depths(tx, id).await
    }

    /// Hangs `id`'s (detached) subtree under `sponsor`. An unknown sponsor leaves it a top of
    /// its own until the sponsor registers.
    async fn attach(
        &self,
        tx: &mut Tx<'_>,
        event: &RecordedEvent,
        id: &str,
        sponsor: &str,
    ) -> Result<(), ProjectionError> {
        if self.is_ancestor(tx, id, sponsor).await? {
            return Err(invalid(
                event,
                format!("sponsor {sponsor} is in the downline of {id}: a cycle"),
            ));
        }
        let paths = &self.paths;
        let sql = format!(
            "INSERT INTO {paths} (ancestor_id, descendant_id, hops) \
             SELECT up.ancestor_id, down.descendant_id, up.hops + down.hops + 1 \
             FROM {paths} up, {paths} down \
             WHERE up.descendant_id = $1 AND down.ancestor_id = $2"
        );
        sqlx::query(&sql)
            .bind(sponsor)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        self.refresh_depths(tx, id).await
    }

    /// Recomputes `depth` for `id`'s subtree from the closure.
    async fn refresh_depths(&self, tx: &mut Tx<'_>, id: &str) -> Result<(), ProjectionError> {
        let (distributors, paths) = (&self.distributors, &self.paths);
        let sql = format!(
            "UPDATE {distributors} SET depth = (SELECT COUNT(*) FROM {paths} p \
             WHERE p.descendant_id = {distributors}.distributor_id) - 1 \
             WHERE distributor_id IN (SELECT descendant_id FROM {paths} WHERE ancestor_id = $1)"
        );
        sqlx::query(&sql).bind(id).execute(&mut **tx).await?;
        Ok(())
    }

    /// Inserts distributors' rows.
    async fn insert_members(
        &self,
        tx: &mut Tx<'_>,
        members: &[Registration],
    ) -> Result<(), ProjectionError> {
        const COLUMNS: &[&str] = &[
            "distributor_id",
            "sponsor_id",
            "status",
            "rank",
            "country",
            "joined_at",
            "referral_codes",
            "sponsor_since",
            "status_since",
            "rank_since",
            "depth",
            "last_position",
        ];
        let rows: Vec<Vec<Cell>> = members
            .iter()
            .map(|m| {
                vec![
                    Cell::from(m.id.as_str()),
                    Cell::from(m.sponsor.clone()),
                    Cell::from(m.status),
                    Cell::from(m.rank.as_str()),
                    Cell::from(m.country.as_str()),
                    Cell::from(m.joined.as_str()),
                    Cell::from(m.codes.as_str()),
                    Cell::from(m.joined.as_str()),
                    Cell::from(m.joined.as_str()),
                    Cell::from(m.joined.as_str()),
                    Cell::from(m.depth),
                    Cell::from(m.position),
                ]
            })
            .collect();
        insert_rows(tx, &self.distributors, COLUMNS, "", &rows).await
    }

    /// Inserts (ancestor, descendant, hops) rows of the closure.
    async fn insert_paths(
        &self,
        tx: &mut Tx<'_>,
        paths: &[(&str, &str, i64)],
    ) -> Result<(), ProjectionError> {
        for chunk in paths.chunks(PATHS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO {} (ancestor_id, descendant_id, hops) VALUES {}",
                self.paths,
                values_list(tx, chunk.len(), 3)
            );
            let mut query = sqlx::query(&sql);
            for (ancestor, descendant, hops) in chunk {
                query = query.bind(*ancestor).bind(*descendant).bind(*hops);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The rows of `select ... WHERE {column} IN (keys)`, a few statements for any number of
    /// keys (`select` ends with `WHERE {column} IN`).
    async fn rows_in(
        &self,
        tx: &mut Tx<'_>,
        select: &str,
        keys: &[&str],
    ) -> Result<Vec<AnyRow>, ProjectionError> {
        let mut rows = Vec::new();
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let sql = format!("{select} {}", placeholders(tx, 1, chunk.len()));
            let query = chunk
                .iter()
                .fold(sqlx::query(&sql), |query, key| query.bind(*key));
            rows.extend(query.fetch_all(&mut **tx).await?);
        }
        Ok(rows)
    }

    /// Which of `keys` stand in `column` (`distributor_id` or `sponsor_id`, never input) of
    /// some distributor's row.
    async fn values_in(
        &self,
        tx: &mut Tx<'_>,
        column: &'static str,
        keys: &[&str],
    ) -> Result<HashSet<String>, ProjectionError> {
        let select = format!(
            "SELECT {column} FROM {} WHERE {column} IN",
            self.distributors
        );
        self.rows_in(tx, &select, keys)
            .await?
            .iter()
            .map(|row| Ok(row.try_get(column)?))
            .collect()
    }

    /// Registers the longest prefix of `members` (registrations, in the order recorded) who
    /// are new, with a sponsor already registered (in the tables or earlier in the prefix) or
    /// none, and nobody registered under them yet: each one's paths are its sponsor's, one hop
    /// longer, and itself, and its depth is its sponsor's plus one, exactly what `apply` would
    /// write. Returns how many it registered; 0 when the first is not such a member.
    async fn register_new_members(
        &self,
        tx: &mut Tx<'_>,
        members: &mut [Registration],
    ) -> Result<usize, ProjectionError> {
        let mut asked: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        asked.extend(members.iter().filter_map(|m| m.sponsor.as_deref()));
        asked.sort_unstable();
        asked.dedup();
        let known = self.values_in(tx, "distributor_id", &asked).await?;
        let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        let awaited = self.values_in(tx, "sponsor_id", &ids).await?;

        // The prefix, and the sponsors whose paths come from the tables.
        let mut new: HashSet<&str> = HashSet::new();
        let mut stored_sponsors: Vec<&str> = Vec::new();
        let mut count = 0;
        for m in members.iter() {
            let id = m.id.as_str();
            let sponsor_known = match m.sponsor.as_deref() {
                None => true,
                Some(s) if s == id => false,
                Some(s) => new.contains(s) || known.contains(s),
            };
            if known.contains(id) || new.contains(id) || awaited.contains(id) || !sponsor_known {
                break;
            }
            if let Some(s) = m.sponsor.as_deref().filter(|s| !new.contains(s)) {
                stored_sponsors.push(s);
            }
            new.insert(id);
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        stored_sponsors.sort_unstable();
        stored_sponsors.dedup();

        // Each member's ancestors with their hops (itself at 0), as the closure holds them.
        let mut lineage: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for row in self
            .rows_in(
                tx,
                &format!(
                    "SELECT descendant_id, ancestor_id, hops FROM {} WHERE descendant_id IN",
                    self.paths
                ),
                &stored_sponsors,
            )
            .await?
        {
            lineage
                .entry(row.try_get("descendant_id")?)
                .or_default()
                .push((row.try_get("ancestor_id")?, row.try_get("hops")?));
        }
        let members = &mut members[..count];
        for m in members.iter_mut() {
            let mut line = vec![(m.id.clone(), 0)];
            if let Some(above) = m.sponsor.as_deref().and_then(|s| lineage.get(s)) {
                line.extend(above.iter().map(|(a, hops)| (a.clone(), hops + 1)));
            }
            m.depth = i64::try_from(line.len() - 1).map_err(|_| ProjectionError::Overflow {
                what: format!("depth of {}", m.id),
            })?;
            lineage.insert(m.id.clone(), line);
        }
        self.insert_members(tx, members).await?;
        let paths: Vec<(&str, &str, i64)> = members
            .iter()
            .flat_map(|m| {
                lineage[&m.id]
                    .iter()
                    .map(|(ancestor, hops)| (ancestor.as_str(), m.id.as_str(), *hops))
            })
            .collect();
        self.insert_paths(tx, &paths).await?;
        Ok(count)
    }
}

/// A distributor as the read model shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub distributor_id: String,
    pub sponsor_id: Option<String>,
    pub status: String,
    pub rank: String,
    pub country: String,
    pub joined_at: DateTime<Utc>,
    pub referral_codes: Vec<String>,
    /// Hops from the top of the network (0 for the top).
    pub depth: u32,
    /// Hops from the distributor the query was about: 1 is their sponsor (upline) or a
    /// personally sponsored member (downline); 0 for the distributor themselves.
    pub hops: u32,
}

/// Where a downline page ends; pass it back as `after` for the next page.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DownlineCursor {
    pub hops: u32,
    pub distributor_id: String,
}

impl DownlineCursor {
    /// The cursor as an opaque page token (`{hops}:{distributor id}`).
    pub fn token(&self) -> String {
        format!("{}:{}", self.hops, self.distributor_id)
    }

    pub fn parse(token: &str) -> Result<DownlineCursor, ProjectionError> {
        let bad = || ProjectionError::InvalidPageToken(token.to_string());
        let (hops, id) = token.split_once(':').ok_or_else(bad)?;
        Ok(DownlineCursor {
            hops: hops.parse().map_err(|_| bad())?,
            distributor_id: Some(id)
                .filter(|id| !id.is_empty())
                .ok_or_else(bad)?
                .to_string(),
        })
    }
}

/// A page of a downline, breadth first: by hops, then by distributor id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownlinePage {
    pub members: Vec<Member>,
    /// `None` on the last page.
    pub next: Option<DownlineCursor>,
}

const MEMBER_COLUMNS: &str = "d.distributor_id, d.sponsor_id, d.status, d.rank, d.country, \
                              d.joined_at, d.referral_codes, d.depth";

fn member_of(row: &AnyRow, hops: i64) -> Result<Member, ProjectionError> {
    let codes: String = row.try_get("referral_codes")?;
    let joined: String = row.try_get("joined_at")?;
    let depth: i64 = row.try_get("depth")?;
    Ok(Member {
        distributor_id: row.try_get("distributor_id")?,
        sponsor_id: row.try_get("sponsor_id")?,
        status: row.try_get("status")?,
        rank: row.try_get("rank")?,
        country: row.try_get("country")?,
        joined_at: time_from_sql(&joined)?,
        referral_codes: codes
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        depth: small(depth)?,
        hops: small(hops)?,
    })
}

fn small(value: i64) -> Result<u32, ProjectionError> {
    u32::try_from(value).map_err(|_| ProjectionError::Corrupt(format!("depth {value}")))
}

/// Queries over the hierarchy's views.
#[derive(Debug, Clone)]
pub struct HierarchyQuery {
    read: ReadStore,
}

impl HierarchyQuery {
    pub fn new(read: ReadStore) -> HierarchyQuery {
        HierarchyQuery { read }
    }

    /// One distributor, `None` when not registered.
    pub async fn distributor(&self, id: &str) -> Result<Option<Member>, ProjectionError> {
        let sql =
            format!("SELECT {MEMBER_COLUMNS} FROM {DISTRIBUTORS} d WHERE d.distributor_id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.read.pool())
            .await?;
        row.map(|r| member_of(&r, 0)).transpose()
    }

    /// The current upline of `id`: sponsor first, up to the top (at most [`MAX_UPLINE`]
    /// members). Empty for the top or an unknown distributor.
    pub async fn upline(&self, id: &str) -> Result<Vec<Member>, ProjectionError> {
        let sql = format!(
            "SELECT {MEMBER_COLUMNS}, p.hops FROM {PATHS} p \
             JOIN {DISTRIBUTORS} d ON d.distributor_id = p.ancestor_id \
             WHERE p.descendant_id = $1 AND p.hops > 0 ORDER BY p.hops LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(id)
            .bind(i64::from(MAX_UPLINE))
            .fetch_all(self.read.pool())
            .await?;
        rows.iter()
            .map(|r| member_of(r, r.try_get("hops")?))
            .collect()
    }

    /// A page of `id`'s downline down to `depth_limit` hops (0: no limit), breadth first (by
    /// hops, then id), `limit` members (0: [`DEFAULT_PAGE`]; at most [`MAX_PAGE`]), after the
    /// cursor of the previous page.
    pub async fn downline(
        &self,
        id: &str,
        depth_limit: u32,
        after: Option<&DownlineCursor>,
        limit: u32,
    ) -> Result<DownlinePage, ProjectionError> {
        let limit = match limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let max_hops = if depth_limit == 0 {
            i64::MAX
        } else {
            i64::from(depth_limit)
        };
        let (after_hops, after_id) = match after {
            Some(c) => (i64::from(c.hops), c.distributor_id.as_str()),
            None => (0, ""),
        };
        let sql = format!(
            "SELECT {MEMBER_COLUMNS}, p.hops FROM {PATHS} p \
             JOIN {DISTRIBUTORS} d ON d.distributor_id = p.descendant_id \
             WHERE p.ancestor_id = $1 AND p.hops > 0 AND p.hops <= $2 \
             AND (p.hops > $3 OR (p.hops = $3 AND p.descendant_id > $4)) \
             ORDER BY p.hops, p.descendant_id LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(id)
            .bind(max_hops)
            .bind(after_hops)
            .bind(after_id)
            .bind(i64::from(limit) + 1)
            .fetch_all(self.read.pool())
            .await?;
        let mut members = rows
            .iter()
            .map(|r| member_of(r, r.try_get("hops")?))
            .collect::<Result<Vec<_>, _>>()?;
        let more = members.len() > limit as usize;
        members.truncate(limit as usize);
        let next = match (more, members.last()) {
            (true, Some(last)) => Some(DownlineCursor {
                hops: last.hops,
                distributor_id: last.distributor_id.clone(),
            }),
            _ => None,
        };
        Ok(DownlinePage { members, next })
    }

    /// How many members `id`'s downline has down to `depth_limit` hops (0: no limit).
    pub async fn downline_count(&self, id: &str, depth_limit: u32) -> Result<u64, ProjectionError> {
        let max_hops = if depth_limit == 0 {
            i64::MAX
        } else {
            i64::from(depth_limit)
        };
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {PATHS} WHERE ancestor_id = $1 AND hops > 0 AND hops <= $2"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(max_hops)
            .fetch_one(self.read.pool())
            .await?;
        position_from_sql(row.try_get("n")?)
    }
}
