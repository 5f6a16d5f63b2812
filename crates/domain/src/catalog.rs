//! The catalog: platform SKUs mapped to our SKUs and commission classes, effective-dated.
//!
//! A mapping is keyed by platform and the platform's SKU or variant id, never by product name
//! (names are edited by merchants and collide across variants). Platform SKUs are matched
//! exactly, case included, after trimming surrounding whitespace: platforms' own SKU fields are
//! case-sensitive, and stray whitespace is the one difference an export routinely adds.
//!
//! Each key has a history of versions, each in force from its `effective_from` until the next.
//! A new version never alters an order already calculated: a calculation records the mapping it
//! used, and [`Catalog::resolve`] at the order's time still finds the version then in force.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::events::DomainEvent;
use crate::ids::{CommissionClass, Platform, SkuId};
use crate::money::MAX_AMOUNT_SCALE;

/// The longest platform SKU or variant id accepted (characters). Platforms allow at most 64 to
/// 255; a bound keeps a hostile payload from making keys of unbounded size.
pub const MAX_PLATFORM_SKU_LEN: usize = 128;
/// The longest product name accepted (characters).
pub const MAX_NAME_LEN: usize = 256;
/// The longest category accepted (characters).
pub const MAX_CATEGORY_LEN: usize = 128;

/// What one platform SKU (or variant id) means to the commission plan, from `effective_from` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuMapping {
    pub platform: Platform,
    /// The platform's SKU or variant id, exactly as the platform sends it (never a product name).
    pub platform_sku: String,
    pub effective_from: DateTime<Utc>,
    pub sku_id: SkuId,
    pub name: String,
    pub category: String,
    pub commission_class: CommissionClass,
    /// Personal volume per unit, when the SKU carries any.
    #[serde(with = "crate::money::opt_decimal", default)]
    pub pv_per_unit: Option<Decimal>,
    /// Commissionable value per unit; when present, the line's base is CV x quantity instead of
    /// its net amount.
    #[serde(with = "crate::money::opt_decimal", default)]
    pub cv_per_unit: Option<Decimal>,
}

/// What a caller asks of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogCommand {
    /// Maps a platform SKU from `effective_from` on. Text fields are trimmed before they are
    /// checked and recorded.
    MapSku(SkuMapping),
}

/// What the catalog recorded: the mapping as normalised (text fields trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogEvent {
    SkuMapped(SkuMapping),
}

impl DomainEvent for CatalogEvent {
    fn schema_version(&self) -> u16 {
        1
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("{field} of the {platform} mapping {platform_sku:?} is empty")]
    EmptyField {
        field: &'static str,
        platform: Platform,
        platform_sku: String,
    },
    #[error(
        "{field} of the {platform} mapping {platform_sku:?} has {len} characters; at most {max} \
         are allowed"
    )]
    FieldTooLong {
        field: &'static str,
        platform: Platform,
        /// Cut to [`MAX_PLATFORM_SKU_LEN`] characters, so the error stays bounded too.
        platform_sku: String,
        len: usize,
        max: usize,
    },
    #[error("{field} of the {platform} mapping {platform_sku:?} is negative ({value})")]
    NegativeVolume {
        field: &'static str,
        platform: Platform,
        platform_sku: String,
        value: Decimal,
    },
    #[error(
        "{field} of the {platform} mapping {platform_sku:?} has more than {MAX_AMOUNT_SCALE} \
         fractional digits ({value})"
    )]
    TooPrecise {
        field: &'static str,
        platform: Platform,
        platform_sku: String,
        value: Decimal,
    },
    #[error(
        "the {platform} mapping {platform_sku:?} already has a different version from \
         {effective_from}; two versions at one time would make the catalog ambiguous"
    )]
    ConflictingMapping {
        platform: Platform,
        platform_sku: String,
        effective_from: DateTime<Utc>,
    },
}

/// The in-memory catalog, built by applying every catalog event in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Platform, then trimmed platform SKU, then versions sorted by `effective_from` (strictly
    /// increasing). Ordered maps, so that any listing is deterministic.
    mappings: BTreeMap<Platform, BTreeMap<String, Vec<SkuMapping>>>,
}

impl Catalog {
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Builds a catalog by applying `events` in order.
    pub fn replay<'a>(
        events: impl IntoIterator<Item = &'a CatalogEvent>,
    ) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog::new();
        for event in events {
            catalog.apply(event)?;
        }
        Ok(catalog)
    }

    /// Decides and applies a command in one step; returns the events recorded.
    pub fn execute(&mut self, command: &CatalogCommand) -> Result<Vec<CatalogEvent>, CatalogError> {
        let events = self.decide(command)?;
        for event in &events {
            self.apply(event)?;
        }
        Ok(events)
    }

    /// The events a command causes, or why it is refused. An empty list means the same mapping
    /// is already recorded from the same time (a retried command is harmless).
    pub fn decide(&self, command: &CatalogCommand) -> Result<Vec<CatalogEvent>, CatalogError> {
        match command {
            CatalogCommand::MapSku(mapping) => Ok(self
                .check(mapping)?
                .map(CatalogEvent::SkuMapped)
                .into_iter()
                .collect()),
        }
    }

    /// Records an event. It is checked as its command was, so replaying a corrupted history
    /// fails with a typed error instead of leaving two versions at one time; an event already
    /// recorded changes nothing.
    pub fn apply(&mut self, event: &CatalogEvent) -> Result<(), CatalogError> {
        match event {
            CatalogEvent::SkuMapped(mapping) => {
                if let Some(mapping) = self.check(mapping)? {
                    let versions = self
                        .mappings
                        .entry(mapping.platform)
                        .or_default()
                        .entry(mapping.platform_sku.clone())
                        .or_default();
                    let i = versions.partition_point(|m| m.effective_from < mapping.effective_from);
                    versions.insert(i, mapping);
                }
                Ok(())
            }
        }
    }

    /// The mapping of a platform SKU in force at `at`: the version with the latest
    /// `effective_from` not after `at`. The SKU is trimmed, then matched exactly.
    pub fn resolve(
        &self,
        platform: Platform,
        platform_sku: &str,
        at: DateTime<Utc>,
    ) -> Option<&SkuMapping> {
        let versions = self.history(platform, platform_sku);
        let n = versions.partition_point(|m| m.effective_from <= at);
        n.checked_sub(1).and_then(|i| versions.get(i))
    }

    /// Every version of a platform SKU's mapping, oldest first (for audits).
    pub fn history(&self, platform: Platform, platform_sku: &str) -> &[SkuMapping] {
        self.mappings
            .get(&platform)
            .and_then(|skus| skus.get(platform_sku.trim()))
            .map_or(&[], Vec::as_slice)
    }

    /// The number of mapped platform SKUs (keys, not versions).
    pub fn len(&self) -> usize {
        self.mappings.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty()
    }

    /// The normalised mapping if it is a new version, `None` if already recorded.
    fn check(&self, mapping: &SkuMapping) -> Result<Option<SkuMapping>, CatalogError> {
        let normalised = normalise(mapping)?;
        let existing = self
            .history(normalised.platform, &normalised.platform_sku)
            .iter()
            .find(|m| m.effective_from == normalised.effective_from);
        match existing {
            None => Ok(Some(normalised)),
            Some(m) if *m == normalised => Ok(None),
            Some(_) => Err(CatalogError::ConflictingMapping {
                platform: normalised.platform,
                platform_sku: normalised.platform_sku,
                effective_from: normalised.effective_from,
            }),
        }
    }
}

/// Trims the text fields and checks every field.
fn normalise(mapping: &SkuMapping) -> Result<SkuMapping, CatalogError> {
    let platform = mapping.platform;
    let platform_sku = mapping.platform_sku.trim();
    let shown_sku = || {
        platform_sku
            .chars()
            .take(MAX_PLATFORM_SKU_LEN)
            .collect::<String>()
    };
    let text = |field: &'static str, value: &str, max: usize| -> Result<String, CatalogError> {
        let value = value.trim();
        let len = value.chars().count();
        if len == 0 {
            return Err(CatalogError::EmptyField {
                field,
                platform,
                platform_sku: shown_sku(),
            });
        }
        if len > max {
            return Err(CatalogError::FieldTooLong {
                field,
                platform,
                platform_sku: shown_sku(),
                len,
                max,
            });
        }
        Ok(value.to_string())
    };
    let volume = |field: &'static str, value: Option<Decimal>| -> Result<(), CatalogError> {
        let Some(value) = value else { return Ok(()) };
        if value.is_sign_negative() && !value.is_zero() {
            return Err(CatalogError::NegativeVolume {
                field,
                platform,
                platform_sku: shown_sku(),
                value,
            });
        }
        if value.scale() > MAX_AMOUNT_SCALE {
            return Err(CatalogError::TooPrecise {
                field,
                platform,
                platform_sku: shown_sku(),
                value,
            });
        }
        Ok(())
    };
    let platform_sku = text("platform_sku", platform_sku, MAX_PLATFORM_SKU_LEN)?;
    let name = text("name", &mapping.name, MAX_NAME_LEN)?;
    let category = text("category", &mapping.category, MAX_CATEGORY_LEN)?;
    volume("pv_per_unit", mapping.pv_per_unit)?;
    volume("cv_per_unit", mapping.cv_per_unit)?;
    Ok(SkuMapping {
        platform,
        platform_sku,
        effective_from: mapping.effective_from,
        sku_id: mapping.sku_id.clone(),
        name,
        category,
        commission_class: mapping.commission_class.clone(),
        pv_per_unit: mapping.pv_per_unit,
        cv_per_unit: mapping.cv_per_unit,
    })
}
