//! The commission plan: a versioned document, loaded from TOML and validated.
//!
//! A plan says how much of an order's commissionable base each level of the upline earns, per
//! commission class, which ranks are paid how many levels, which statuses earn, whether
//! compression applies, and the cap on the total paid out per order. Plans change over time, so
//! each carries an `effective_from`; a [`PlanBook`] picks the plan in force at an order's time.
//!
//! Loading never stops at the first mistake: a plan designer gets every problem at once, each
//! named by its field (`classes.retail.rates[2]`, `ranks[1].paid_levels`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{CommissionClass, RankName};
use crate::money::{parse_decimal, Amount};
use crate::snapshot::{DistributorStatus, SnapshotRequest};

/// The deepest level a class may pay. Real plans pay 5 to 12 levels; the bound keeps a typo (or
/// a hostile document) from asking the snapshot for a thousand-member upline walk per order.
pub const MAX_LEVELS: u32 = 64;

/// The longest version string. The version is recorded in every commission event, so it is kept
/// short; "2026.1" or "2026-spring-v2" is the intended style.
pub const MAX_VERSION_LEN: usize = 64;

/// Bumped if the canonical form hashed by [`CommissionPlan::content_hash`] ever changes, so that
/// a hash recorded under one form is never compared with one computed under another.
const HASH_FORM: u16 = 1;

/// One rung of the rank ladder: a paid-as rank and how many levels it unlocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankRung {
    pub name: RankName,
    pub paid_levels: u32,
}

/// Rates of one commission class; `rates[0]` is level 1 (the order's own distributor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassRates {
    #[serde(default)]
    pub description: String,
    pub rates: Vec<crate::money::Amount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionPlan {
    pub version: String,
    pub effective_from: DateTime<Utc>,
    #[serde(default)]
    pub description: String,
    /// Total commission on an order never exceeds this share of its commissionable base.
    #[serde(with = "crate::money::decimal")]
    pub max_payout_ratio: Decimal,
    /// Statuses that earn. Under compression, members without one are skipped for free.
    pub qualifying_statuses: Vec<DistributorStatus>,
    pub compression: bool,
    /// Lowest rank first.
    pub ranks: Vec<RankRung>,
    pub classes: BTreeMap<CommissionClass, ClassRates>,
}

/// One problem in a plan document, named by the field it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// The field's path, e.g. `classes.retail.rates[2]` or `ranks[1].paid_levels`; `toml` for a
    /// syntax error.
    pub field: String,
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a plan document (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanErrors {
    pub errors: Vec<PlanError>,
}

impl PlanErrors {
    /// True when some problem is reported on exactly this field.
    pub fn has_field(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }

    /// The fields with problems, in the order they were found.
    pub fn fields(&self) -> Vec<&str> {
        self.errors.iter().map(|e| e.field.as_str()).collect()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanErrors {}

/// Collects problems while the whole document is checked.
#[derive(Default)]
struct Problems(Vec<PlanError>);

impl Problems {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(PlanError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn into_result(self) -> Result<(), PlanErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(PlanErrors { errors: self.0 })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Semantic checks, shared by `from_toml` (on whatever parsed) and `validate` (on a built plan).
// ---------------------------------------------------------------------------------------------

fn check_version(version: &str, p: &mut Problems) {
    if version.trim().is_empty() {
        p.push("version", "must not be empty (e.g. \"2026.1\")");
    } else if version.chars().count() > MAX_VERSION_LEN {
        p.push(
            "version",
            format!("must be at most {MAX_VERSION_LEN} characters"),
        );
    } else if version.trim() != version || version.chars().any(char::is_control) {
        p.push(
            "version",
            "must not start or end with spaces or hold control characters",
        );
    }
}

fn check_payout_ratio(ratio: Decimal, p: &mut Problems) {
    if ratio <= Decimal::ZERO || ratio > Decimal::ONE {
        p.push(
            "max_payout_ratio",
            format!(
                "must be above 0 and at most 1 (\"0.40\" caps commissions at 40% of the \
                 commissionable base); found {ratio}"
            ),
        );
    }
}

fn check_rate(field: &str, rate: Decimal, p: &mut Problems) {
    if rate < Decimal::ZERO || rate > Decimal::ONE {
        p.push(
            field,
            format!("must be between 0 and 1 (\"0.10\" pays 10%); found {rate}"),
        );
    }
}

fn check_rate_count(class_field: &str, count: usize, p: &mut Problems) {
    let field = format!("{class_field}.rates");
    // `rates = []` is a class that pays nothing (gift cards, samples): valid.
    if count > MAX_LEVELS as usize {
        p.push(
            field,
            format!("has {count} levels; a class may pay at most {MAX_LEVELS}"),
        );
    }
}

fn check_statuses(count: usize, parsed: &[(usize, DistributorStatus)], p: &mut Problems) {
    if count == 0 {
        p.push(
            "qualifying_statuses",
            "must list at least one status (usually [\"active\"]); otherwise nobody earns",
        );
    }
    let mut seen: BTreeMap<DistributorStatus, usize> = BTreeMap::new();
    for &(i, status) in parsed {
        if let Some(first) = seen.get(&status) {
            p.push(
                format!("qualifying_statuses[{i}]"),
                format!(
                    "{} is already listed at qualifying_statuses[{first}]",
                    status.as_str()
                ),
            );
        } else {
            seen.insert(status, i);
        }
    }
}

fn check_classes_present(count: usize, p: &mut Problems) {
    if count == 0 {
        p.push(
            "classes",
            "must define at least one commission class (e.g. [classes.retail])",
        );
    }
}

/// `deepest` is the longest rates list of any class, when at least one class has a list.
fn check_ranks(count: usize, parsed: &[(usize, RankRung)], deepest: Option<u32>, p: &mut Problems) {
    if count == 0 {
        p.push(
            "ranks",
            "must define at least one rank (e.g. [[ranks]] name = \"member\" paid_levels = 1)",
        );
    }
    let mut seen: BTreeMap<&RankName, usize> = BTreeMap::new();
    let mut below: Option<&RankRung> = None;
    for (i, rung) in parsed {
        if let Some(first) = seen.get(&rung.name) {
            p.push(
                format!("ranks[{i}].name"),
                format!(
                    "rank {:?} is already on the ladder at ranks[{first}] (names ignore case)",
                    rung.name.as_str()
                ),
            );
        } else {
            seen.insert(&rung.name, *i);
        }
        if let Some(lower) = below {
            if rung.paid_levels < lower.paid_levels {
                p.push(
                    format!("ranks[{i}].paid_levels"),
                    format!(
                        "{} is paid {}, fewer than {} below it ({}); list ranks lowest first, \
                         each paid at least as many levels as the one before",
                        rung.name,
                        levels(rung.paid_levels),
                        lower.name,
                        lower.paid_levels
                    ),
                );
            }
        }
        if rung.paid_levels > MAX_LEVELS {
            p.push(
                format!("ranks[{i}].paid_levels"),
                format!("must be at most {MAX_LEVELS}; found {}", rung.paid_levels),
            );
        } else if let Some(deepest) = deepest.filter(|d| *d > 0) {
            // A ladder deeper than every class is a designer's mistake worth naming (the extra
            // levels would pay nothing); a plan whose classes all pay nothing is not.
            if rung.paid_levels > deepest {
                p.push(
                    format!("ranks[{i}].paid_levels"),
                    format!(
                        "{} is deeper than the plan pays: the longest class has rates for {}",
                        levels(rung.paid_levels),
                        levels(deepest)
                    ),
                );
            }
        }
        below = Some(rung);
    }
}

impl CommissionPlan {
    /// Loads a plan from its TOML document and validates it, reporting every problem found.
    pub fn from_toml(text: &str) -> Result<CommissionPlan, PlanErrors> {
        let root: toml::Table = text.parse().map_err(|e| PlanErrors {
            errors: vec![syntax_error(text, &e)],
        })?;
        raw::plan(&root)
    }

    /// Checks a plan built in code or read back from JSON against the same rules as
    /// [`CommissionPlan::from_toml`].
    pub fn validate(&self) -> Result<(), PlanErrors> {
        let mut p = Problems::default();
        check_version(&self.version, &mut p);
        check_payout_ratio(self.max_payout_ratio, &mut p);
        let statuses: Vec<_> = self
            .qualifying_statuses
            .iter()
            .copied()
            .enumerate()
            .collect();
        check_statuses(statuses.len(), &statuses, &mut p);
        check_classes_present(self.classes.len(), &mut p);
        for (class, rates) in &self.classes {
            let class_field = format!("classes.{class}");
            check_rate_count(&class_field, rates.rates.len(), &mut p);
            for (i, rate) in rates.rates.iter().enumerate() {
                check_rate(&format!("{class_field}.rates[{i}]"), rate.0, &mut p);
            }
        }
        let deepest = (!self.classes.is_empty()).then(|| self.max_levels());
        let ranks: Vec<_> = self.ranks.iter().cloned().enumerate().collect();
        check_ranks(ranks.len(), &ranks, deepest, &mut p);
        p.into_result()
    }

    /// The longest rates list of any class: the deepest level any order can pay.
    pub fn max_levels(&self) -> u32 {
        let longest = self.classes.values().map(|c| c.rates.len()).max();
        // A validated plan holds at most MAX_LEVELS rates per class; saturate for one that isn't.
        longest.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The rate a class pays at a 1-based level: `None` when the class is not in the plan, zero
    /// beyond the class's list (and for level 0, which does not exist).
    pub fn rate(&self, class: &CommissionClass, level: u32) -> Option<Decimal> {
        let rates = &self.classes.get(class)?.rates;
        let index = usize::try_from(level).ok().and_then(|l| l.checked_sub(1));
        Some(
            index
                .and_then(|i| rates.get(i))
                .map_or(Decimal::ZERO, |a| a.0),
        )
    }

    /// How many levels a paid-as rank unlocks; `None` when the rank is not on the ladder.
    pub fn paid_levels(&self, rank: &RankName) -> Option<u32> {
        self.ranks
            .iter()
            .find(|r| &r.name == rank)
            .map(|r| r.paid_levels)
    }

    /// True when members with this status earn.
    pub fn qualifies(&self, status: DistributorStatus) -> bool {
        self.qualifying_statuses.contains(&status)
    }

    /// The deepest level this plan can pay anyone: a level must have a rate in some class *and*
    /// be unlocked by some rank. The engine walks this many levels and the snapshot is taken
    /// this deep (one definition for both, so a ladder shorter than the classes can never make
    /// a snapshot look too shallow).
    pub fn paid_depth(&self) -> u32 {
        let deepest_rank = self.ranks.iter().map(|r| r.paid_levels).max().unwrap_or(0);
        deepest_rank.min(self.max_levels())
    }

    /// What the hierarchy snapshot must hold for this plan: [`CommissionPlan::paid_depth`]
    /// levels (a level no rank unlocks is never paid, so walking to it is wasted work).
    pub fn snapshot_request(&self) -> SnapshotRequest {
        SnapshotRequest {
            levels: self.paid_depth(),
            qualifying_statuses: self.qualifying_statuses.clone(),
            compression: self.compression,
        }
    }

    /// Hex SHA-256 of the plan's canonical JSON, recorded in commission events so that an
    /// auditor can tell exactly which plan document the amounts came from.
    ///
    /// The canonical form is about meaning, not layout: decimals are normalised ("0.10" and
    /// "0.1" hash alike), statuses are sorted (they are a set), classes are sorted by name.
    /// Rank order is kept: it is the ladder. An auditor can recompute it by hand: the SHA-256 of
    /// compact JSON with keys in this order, e.g.
    /// `{"hash_form":1,"version":"pin.1","effective_from":"2026-01-01T00:00:00Z",
    /// "description":"","max_payout_ratio":"0.4","qualifying_statuses":["active"],
    /// "compression":true,"ranks":[{"name":"member","paid_levels":2}],
    /// "classes":{"retail":{"description":"","rates":["0.1","0.05"]}}}` (one line).
    pub fn content_hash(&self) -> String {
        #[derive(Serialize)]
        struct Rung<'a> {
            name: &'a str,
            paid_levels: u32,
        }
        #[derive(Serialize)]
        struct Class<'a> {
            description: &'a str,
            rates: Vec<String>,
        }
        #[derive(Serialize)]
        struct Canonical<'a> {
            hash_form: u16,
            version: &'a str,
            effective_from: String,
            description: &'a str,
            max_payout_ratio: String,
            qualifying_statuses: Vec<&'static str>,
            compression: bool,
            ranks: Vec<Rung<'a>>,
            classes: BTreeMap<&'a str, Class<'a>>,
        }
        let statuses: BTreeSet<DistributorStatus> =
            self.qualifying_statuses.iter().copied().collect();
        let canonical = Canonical {
            hash_form: HASH_FORM,
            version: &self.version,
            effective_from: self
                .effective_from
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            description: &self.description,
            max_payout_ratio: canonical_decimal(self.max_payout_ratio),
            qualifying_statuses: statuses.iter().map(|s| s.as_str()).collect(),
            compression: self.compression,
            ranks: self
                .ranks
                .iter()
                .map(|r| Rung {
                    name: r.name.as_str(),
                    paid_levels: r.paid_levels,
                })
                .collect(),
            classes: self
                .classes
                .iter()
                .map(|(name, c)| {
                    let class = Class {
                        description: &c.description,
                        rates: c.rates.iter().map(|r| canonical_decimal(r.0)).collect(),
                    };
                    (name.as_str(), class)
                })
                .collect(),
        };
        // Serialising plain structs of strings and integers cannot fail.
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    /// A human-readable summary, for `upline plan validate`.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            s,
            "Plan {} (effective from {})",
            self.version,
            self.effective_from
                .to_rfc3339_opts(SecondsFormat::AutoSi, true)
        );
        if !self.description.trim().is_empty() {
            let _ = writeln!(s, "  {}", self.description.trim());
        }
        let _ = writeln!(
            s,
            "Payout cap: {} ({}) of an order's commissionable base",
            self.max_payout_ratio,
            percent(self.max_payout_ratio)
        );
        let statuses: Vec<&str> = self
            .qualifying_statuses
            .iter()
            .map(|s| s.as_str())
            .collect();
        let _ = writeln!(s, "Qualifying statuses: {}", statuses.join(", "));
        let _ = writeln!(
            s,
            "Compression: {}",
            if self.compression {
                "on (members who do not qualify are skipped and use up no level)"
            } else {
                "off (members who do not qualify use up their level; its commission is not paid)"
            }
        );
        let _ = writeln!(s, "Ranks (lowest first):");
        let width = self
            .ranks
            .iter()
            .map(|r| r.name.as_str().len())
            .max()
            .unwrap_or(0);
        for r in &self.ranks {
            let _ = writeln!(
                s,
                "  {:<width$}  paid {}",
                r.name.as_str(),
                levels(r.paid_levels)
            );
        }
        let _ = writeln!(
            s,
            "Classes (rate by level; level 1 is the order's distributor):"
        );
        for (name, class) in &self.classes {
            let total: Decimal = class.rates.iter().map(|r| r.0).sum();
            let _ = write!(s, "  {name}");
            if !class.description.trim().is_empty() {
                let _ = write!(s, " - {}", class.description.trim());
            }
            let _ = writeln!(s);
            let levels: Vec<String> = class
                .rates
                .iter()
                .enumerate()
                .map(|(i, r)| format!("L{}: {}", i + 1, r.0))
                .collect();
            let _ = writeln!(
                s,
                "    {}  (total {}, {})",
                levels.join("  "),
                total,
                percent(total)
            );
        }
        s
    }
}

/// "1 level", "3 levels".
fn levels(n: u32) -> String {
    if n == 1 {
        "1 level".to_string()
    } else {
        format!("{n} levels")
    }
}

fn canonical_decimal(d: Decimal) -> String {
    d.normalize().to_string()
}

fn percent(ratio: Decimal) -> String {
    format!("{}%", (ratio * Decimal::ONE_HUNDRED).normalize())
}

/// A TOML syntax error as a plan problem, with its line and column when toml knows the place.
fn syntax_error(text: &str, e: &toml::de::Error) -> PlanError {
    let place = e.span().and_then(|span| {
        let before = text.get(..span.start)?;
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Some(format!("line {line}, column {column}: "))
    });
    PlanError {
        field: "toml".to_string(),
        // toml's messages may span lines; one problem stays on one line of the report.
        message: format!(
            "{}{}",
            place.unwrap_or_default(),
            e.message().trim_end().replace('\n', "; ")
        ),
    }
}

/// Reading the TOML document field by field, so that every problem is collected (serde's derive
/// stops at the first) and numbers never pass through a float.
mod raw {
    use super::*;
    use toml::Value;

    const ROOT_KEYS: &[&str] = &[
        "version",
        "effective_from",
        "description",
        "max_payout_ratio",
        "qualifying_statuses",
        "compression",
        "ranks",
        "classes",
    ];
    const RANK_KEYS: &[&str] = &["name", "paid_levels"];
    const CLASS_KEYS: &[&str] = &["description", "rates"];

    fn join(prefix: &str, key: &str) -> String {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    }

    fn unknown_keys(table: &toml::Table, prefix: &str, known: &[&str], p: &mut Problems) {
        for key in table.keys().filter(|k| !known.contains(&k.as_str())) {
            p.push(
                join(prefix, key),
                format!("unknown key {key:?}; expected one of: {}", known.join(", ")),
            );
        }
    }

    fn wrong_type(field: String, expected: &str, found: &Value, p: &mut Problems) {
        p.push(
            field,
            format!("must be {expected}; found {}", found.type_str()),
        );
    }

    fn required<'a>(
        table: &'a toml::Table,
        prefix: &str,
        key: &str,
        p: &mut Problems,
    ) -> Option<&'a Value> {
        let value = table.get(key);
        if value.is_none() {
            p.push(join(prefix, key), "is missing");
        }
        value
    }

    fn string(field: String, value: &Value, p: &mut Problems) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            other => {
                wrong_type(field, "a string", other, p);
                None
            }
        }
    }

    /// A decimal written as a TOML string. `what` names the kind ("rates", "ratios") for the hint
    /// given when a float (or integer) was written instead.
    fn decimal(
        field: String,
        value: &Value,
        what: &str,
        example: &str,
        p: &mut Problems,
    ) -> Option<Decimal> {
        let hint = |found: String| {
            format!(
                "write {what} as strings such as \"{example}\" so they stay exact decimals \
                 (found {found})"
            )
        };
        match value {
            Value::String(s) => match parse_decimal(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    p.push(field, format!("{e}"));
                    None
                }
            },
            Value::Float(f) => {
                p.push(field, hint(format!("the float {f}")));
                None
            }
            Value::Integer(i) => {
                p.push(field, hint(format!("the integer {i}")));
                None
            }
            other => {
                p.push(field, hint(format!("a {}", other.type_str())));
                None
            }
        }
    }

    fn effective_from(value: &Value, p: &mut Problems) -> Option<DateTime<Utc>> {
        const FIELD: &str = "effective_from";
        const EXAMPLE: &str = "\"2026-01-01T00:00:00Z\"";
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Datetime(d) if d.date.is_some() && d.time.is_some() && d.offset.is_some() => {
                d.to_string()
            }
            Value::Datetime(_) => {
                p.push(
                    FIELD,
                    format!("needs a date, a time and a UTC offset, such as {EXAMPLE}"),
                );
                return None;
            }
            other => {
                wrong_type(
                    FIELD.into(),
                    &format!("an RFC 3339 date-time such as {EXAMPLE}"),
                    other,
                    p,
                );
                return None;
            }
        };
        match DateTime::parse_from_rfc3339(text.trim()) {
            Ok(t) if t.offset().local_minus_utc() == 0 => Some(t.with_timezone(&Utc)),
            Ok(t) => {
                p.push(
                    FIELD,
                    format!(
                        "must be in UTC (end it with Z or +00:00) so that every reader agrees \
                         on the instant; found offset {}",
                        t.offset()
                    ),
                );
                None
            }
            Err(e) => {
                p.push(
                    FIELD,
                    format!("{text:?} is not an RFC 3339 date-time such as {EXAMPLE} ({e})"),
                );
                None
            }
        }
    }

    fn statuses(value: &Value, p: &mut Problems) -> Option<Vec<DistributorStatus>> {
        const FIELD: &str = "qualifying_statuses";
        let Value::Array(items) = value else {
            wrong_type(
                FIELD.into(),
                "an array of statuses such as [\"active\"]",
                value,
                p,
            );
            return None;
        };
        let mut parsed = Vec::new();
        let mut complete = true;
        for (i, item) in items.iter().enumerate() {
            let field = format!("{FIELD}[{i}]");
            let Some(text) = string(field.clone(), item, p) else {
                complete = false;
                continue;
            };
            match text.parse::<DistributorStatus>() {
                Ok(s) => parsed.push((i, s)),
                Err(e) => {
                    p.push(field, e);
                    complete = false;
                }
            }
        }
        check_statuses(items.len(), &parsed, p);
        complete.then(|| parsed.into_iter().map(|(_, s)| s).collect())
    }

    /// The classes, and the longest rates list seen (even in a class with other problems, so
    /// that rank depths are checked against what the designer wrote).
    fn classes(
        value: &Value,
        p: &mut Problems,
    ) -> (Option<BTreeMap<CommissionClass, ClassRates>>, Option<u32>) {
        let Value::Table(table) = value else {
            wrong_type(
                "classes".into(),
                "a table of classes such as [classes.retail]",
                value,
                p,
            );
            return (None, None);
        };
        check_classes_present(table.len(), p);
        let mut classes = BTreeMap::new();
        let mut first_key: BTreeMap<CommissionClass, &str> = BTreeMap::new();
        let mut complete = true;
        let mut deepest: Option<u32> = None;
        for (key, body) in table {
            let class_field = format!("classes.{key}");
            let name = match CommissionClass::new(key) {
                Ok(name) => Some(name),
                Err(e) => {
                    p.push(class_field.clone(), e.to_string());
                    complete = false;
                    None
                }
            };
            if let Some(name) = &name {
                if let Some(first) = first_key.get(name) {
                    p.push(
                        class_field.clone(),
                        format!("same class as classes.{first} (class names ignore case)"),
                    );
                    complete = false;
                } else {
                    first_key.insert(name.clone(), key);
                }
            }
            let Value::Table(body) = body else {
                wrong_type(class_field, "a table with rates", body, p);
                complete = false;
                continue;
            };
            unknown_keys(body, &class_field, CLASS_KEYS, p);
            let description = match body.get("description") {
                Some(v) => string(join(&class_field, "description"), v, p),
                None => Some(String::new()),
            };
            let rates = required(body, &class_field, "rates", p).and_then(|v| {
                let Value::Array(items) = v else {
                    wrong_type(
                        join(&class_field, "rates"),
                        "an array of rates such as [\"0.10\", \"0.05\"]",
                        v,
                        p,
                    );
                    return None;
                };
                let len = u32::try_from(items.len()).unwrap_or(u32::MAX);
                deepest = Some(deepest.map_or(len, |d| d.max(len)));
                check_rate_count(&class_field, items.len(), p);
                let mut rates = Vec::with_capacity(items.len());
                let mut all = true;
                for (i, item) in items.iter().enumerate() {
                    let field = format!("{class_field}.rates[{i}]");
                    match decimal(field.clone(), item, "rates", "0.10", p) {
                        Some(rate) => {
                            check_rate(&field, rate, p);
                            rates.push(Amount(rate));
                        }
                        None => all = false,
                    }
                }
                all.then_some(rates)
            });
            match (name, description, rates) {
                (Some(name), Some(description), Some(rates)) if complete => {
                    classes.insert(name, ClassRates { description, rates });
                }
                _ => complete = false,
            }
        }
        (complete.then_some(classes), deepest)
    }

    fn ranks(value: &Value, deepest: Option<u32>, p: &mut Problems) -> Option<Vec<RankRung>> {
        let Value::Array(items) = value else {
            wrong_type("ranks".into(), "an array of [[ranks]] tables", value, p);
            return None;
        };
        let mut parsed = Vec::new();
        let mut complete = true;
        for (i, item) in items.iter().enumerate() {
            let field = format!("ranks[{i}]");
            let Value::Table(rank) = item else {
                wrong_type(field, "a table with name and paid_levels", item, p);
                complete = false;
                continue;
            };
            unknown_keys(rank, &field, RANK_KEYS, p);
            let name = required(rank, &field, "name", p).and_then(|v| {
                let name_field = join(&field, "name");
                let text = string(name_field.clone(), v, p)?;
                RankName::new(&text)
                    .map_err(|e| p.push(name_field, e.to_string()))
                    .ok()
            });
            let paid_levels = required(rank, &field, "paid_levels", p).and_then(|v| {
                let levels_field = join(&field, "paid_levels");
                match v {
                    Value::Integer(n) => match u32::try_from(*n) {
                        Ok(n) => Some(n),
                        Err(_) => {
                            p.push(
                                levels_field,
                                format!("must be between 0 and {MAX_LEVELS}; found {n}"),
                            );
                            None
                        }
                    },
                    other => {
                        wrong_type(levels_field, "a whole number of levels", other, p);
                        None
                    }
                }
            });
            match (name, paid_levels) {
                (Some(name), Some(paid_levels)) => parsed.push((i, RankRung { name, paid_levels })),
                _ => complete = false,
            }
        }
        check_ranks(items.len(), &parsed, deepest, p);
        complete.then(|| parsed.into_iter().map(|(_, r)| r).collect())
    }

    pub(super) fn plan(root: &toml::Table) -> Result<CommissionPlan, PlanErrors> {
        let mut p = Problems::default();
        unknown_keys(root, "", ROOT_KEYS, &mut p);

        let version =
            required(root, "", "version", &mut p).and_then(|v| string("version".into(), v, &mut p));
        if let Some(v) = &version {
            check_version(v, &mut p);
        }
        let effective_from =
            required(root, "", "effective_from", &mut p).and_then(|v| effective_from(v, &mut p));
        let description = match root.get("description") {
            Some(v) => string("description".into(), v, &mut p),
            None => Some(String::new()),
        };
        let max_payout_ratio = required(root, "", "max_payout_ratio", &mut p)
            .and_then(|v| decimal("max_payout_ratio".into(), v, "ratios", "0.40", &mut p));
        if let Some(r) = max_payout_ratio {
            check_payout_ratio(r, &mut p);
        }
        let qualifying_statuses =
            required(root, "", "qualifying_statuses", &mut p).and_then(|v| statuses(v, &mut p));
        let compression = required(root, "", "compression", &mut p).and_then(|v| match v {
            Value::Boolean(b) => Some(*b),
            other => {
                wrong_type("compression".into(), "true or false", other, &mut p);
                None
            }
        });
        let (classes, deepest) = match required(root, "", "classes", &mut p) {
            Some(v) => classes(v, &mut p),
            None => (None, None),
        };
        let ranks = required(root, "", "ranks", &mut p).and_then(|v| ranks(v, deepest, &mut p));

        let plan = match (
            version,
            effective_from,
            description,
            max_payout_ratio,
            qualifying_statuses,
            compression,
            ranks,
            classes,
        ) {
            (
                Some(version),
                Some(effective_from),
                Some(description),
                Some(max_payout_ratio),
                Some(qualifying_statuses),
                Some(compression),
                Some(ranks),
                Some(classes),
            ) if p.0.is_empty() => CommissionPlan {
                version,
                effective_from,
                description,
                max_payout_ratio,
                qualifying_statuses,
                compression,
                ranks,
                classes,
            },
            _ => {
                if p.0.is_empty() {
                    // Every missing part pushes a problem; this is a guard, not a path.
                    p.push("plan", "could not be read");
                }
                return Err(PlanErrors { errors: p.0 });
            }
        };
        // The document-level checks above and `validate` share their rules; running it again on
        // the built plan keeps the two from drifting apart.
        plan.validate()?;
        Ok(plan)
    }
}

/// Why a plan could not be published into a [`PlanBook`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanBookError {
    #[error("plan {version} is invalid:\n{errors}")]
    Invalid { version: String, errors: PlanErrors },
    #[error(
        "plan version {version} is already published with different content \
         (published {existing_hash}, new {new_hash}); publish changes under a new version"
    )]
    VersionConflict {
        version: String,
        existing_hash: String,
        new_hash: String,
    },
    #[error(
        "plan {version} takes effect at {effective_from}, when plan {existing_version} already \
         takes effect; two plans in force from the same instant would be ambiguous"
    )]
    EffectiveFromTaken {
        version: String,
        existing_version: String,
        effective_from: DateTime<Utc>,
    },
}

/// The plan versions over time. Which plan applies to an order is a function of the order's time
/// only, never of the clock, so a replay picks the same plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanBook {
    /// Keyed by `effective_from`; published plans are few, so version look-ups scan.
    by_effective_from: BTreeMap<DateTime<Utc>, CommissionPlan>,
}

impl PlanBook {
    /// Adds a plan version. Publishing the same version with the same content again is a no-op
    /// (so a retried publish is harmless); different content under a published version, or a
    /// second plan from the same instant, is refused. The plan must validate.
    pub fn publish(&mut self, plan: CommissionPlan) -> Result<(), PlanBookError> {
        plan.validate().map_err(|errors| PlanBookError::Invalid {
            version: plan.version.clone(),
            errors,
        })?;
        if let Some(existing) = self.get(&plan.version) {
            let (existing_hash, new_hash) = (existing.content_hash(), plan.content_hash());
            return if existing_hash == new_hash {
                Ok(())
            } else {
                Err(PlanBookError::VersionConflict {
                    version: plan.version,
                    existing_hash,
                    new_hash,
                })
            };
        }
        if let Some(existing) = self.by_effective_from.get(&plan.effective_from) {
            return Err(PlanBookError::EffectiveFromTaken {
                version: plan.version,
                existing_version: existing.version.clone(),
                effective_from: plan.effective_from,
            });
        }
        self.by_effective_from.insert(plan.effective_from, plan);
        Ok(())
    }

    /// The plan in force at `at`: the one with the latest `effective_from` at or before it.
    pub fn in_force_at(&self, at: DateTime<Utc>) -> Option<&CommissionPlan> {
        self.by_effective_from
            .range(..=at)
            .next_back()
            .map(|(_, p)| p)
    }

    /// A published plan by its version.
    pub fn get(&self, version: &str) -> Option<&CommissionPlan> {
        self.by_effective_from
            .values()
            .find(|p| p.version == version)
    }

    /// Published plans, earliest `effective_from` first.
    pub fn iter(&self) -> impl Iterator<Item = &CommissionPlan> {
        self.by_effective_from.values()
    }

    pub fn len(&self) -> usize {
        self.by_effective_from.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_effective_from.is_empty()
    }
}
