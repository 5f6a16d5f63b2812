//! The file formats of `upline plan explain`: an order, and the company's network and catalog.
//! Both are JSON; amounts may be strings or numbers (never read through a float). The formats are
//! documented in the README.

use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use upline_domain::catalog::{Catalog, CatalogCommand, SkuMapping};
use upline_domain::ids::{
    DistributorId, Platform, PlatformOrderId, RankName, ReferralCode, ShopId,
};
use upline_domain::money::Currency;
use upline_domain::net::OrderLine;
use upline_domain::network::{DistributorCommand, Network};
use upline_domain::order::{OrderDetails, OrderKey, Refund};
use upline_domain::snapshot::DistributorStatus;

/// Reads a JSON file into `T`, naming the file and the JSON path of any error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        anyhow::anyhow!(
            "{}: at {}: {}",
            path.display(),
            if at.is_empty() { "." } else { &at },
            e.inner()
        )
    })
}

/// One order, normalised (the seed's "Shopify Order Transform", with lines priced in full).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderFile {
    pub platform: Platform,
    pub shop: ShopId,
    pub order_id: PlatformOrderId,
    pub placed_at: DateTime<Utc>,
    /// When it was paid; defaults to `placed_at`.
    pub paid_at: Option<DateTime<Utc>>,
    pub currency: Currency,
    /// Attribution: a distributor id, or a referral code, or neither (unattributed).
    pub distributor: Option<DistributorId>,
    pub referral_code: Option<ReferralCode>,
    #[serde(default)]
    pub prices_include_tax: bool,
    pub lines: Vec<OrderLine>,
    #[serde(default, with = "upline_domain::money::decimal")]
    pub order_discount: Decimal,
    #[serde(default, with = "upline_domain::money::decimal")]
    pub shipping: Decimal,
    #[serde(default, with = "upline_domain::money::decimal")]
    pub tax: Decimal,
    #[serde(default, with = "upline_domain::money::decimal")]
    pub declared_total: Decimal,
    /// Refunds to apply after payment, to see what they reverse.
    #[serde(default)]
    pub refunds: Vec<Refund>,
    /// Set to see a cancellation after payment.
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl OrderFile {
    pub fn key(&self) -> OrderKey {
        OrderKey {
            platform: self.platform,
            shop: self.shop.clone(),
            order_id: self.order_id.clone(),
        }
    }

    /// The order's details, with attribution resolved against the network.
    pub fn details(&self, network: &Network) -> Result<OrderDetails> {
        let distributor = match (&self.distributor, &self.referral_code) {
            (Some(_), Some(_)) => {
                bail!("order: give either `distributor` or `referral_code`, not both")
            }
            (Some(d), None) => Some(d.clone()),
            (None, Some(code)) => {
                Some(network.by_referral_code(code).cloned().with_context(|| {
                    format!("order: referral_code {code} belongs to no distributor")
                })?)
            }
            (None, None) => None,
        };
        Ok(OrderDetails {
            key: self.key(),
            placed_at: self.placed_at,
            updated_at: self.placed_at,
            currency: self.currency,
            distributor,
            prices_include_tax: self.prices_include_tax,
            lines: self.lines.clone(),
            order_discount: self.order_discount,
            shipping: self.shipping,
            tax: self.tax,
            declared_total: self.declared_total,
            test: false,
        })
    }
}

/// The company as the order met it: distributors, their later changes, and the SKU catalog.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    pub distributors: Vec<DistributorEntry>,
    #[serde(default)]
    pub changes: Vec<ChangeEntry>,
    #[serde(default)]
    pub sku_mappings: Vec<SkuMapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistributorEntry {
    pub id: DistributorId,
    pub sponsor: Option<DistributorId>,
    #[serde(default)]
    pub referral_codes: Vec<ReferralCode>,
    pub country: String,
    /// The distributor's status now (or at `status_since`).
    pub status: DistributorStatus,
    pub rank: RankName,
    pub joined_at: DateTime<Utc>,
    /// When `status` took effect, if later than `joined_at`: the distributor was active from
    /// joining until then. This is how an exported genealogy says "terminated in 2024 after
    /// enrolling others in 2023": the import registers them active and records the status
    /// change at its date, so the earlier enrolments stand.
    #[serde(default)]
    pub status_since: Option<DateTime<Utc>>,
}

/// A dated change: exactly one of `sponsor`, `status`, `rank`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeEntry {
    pub distributor: DistributorId,
    pub effective_at: DateTime<Utc>,
    pub sponsor: Option<DistributorId>,
    pub status: Option<DistributorStatus>,
    pub rank: Option<RankName>,
}

impl NetworkFile {
    /// The file as a history: registrations (at `joined_at`), dated statuses (`status_since`) and
    /// changes (at `effective_at`) in time order, so that a sponsor terminated after enrolling
    /// others is registered, sponsors them, and only then is terminated. At the same instant,
    /// registrations come first, then the file's order. Each command carries where it stands in
    /// the file.
    pub fn commands(&self, path: &Path) -> Result<Vec<(String, DistributorCommand)>> {
        // (when, registrations before changes, position in the file, place, command)
        let mut dated: Vec<(DateTime<Utc>, u8, usize, String, DistributorCommand)> =
            Vec::with_capacity(self.distributors.len() + self.changes.len());
        for (i, d) in self.distributors.iter().enumerate() {
            let place = format!("{}: distributors[{i}] ({})", path.display(), d.id);
            let later_status = d
                .status_since
                .filter(|since| *since > d.joined_at && d.status != DistributorStatus::Active);
            dated.push((
                d.joined_at,
                0,
                i,
                place.clone(),
                DistributorCommand::RegisterDistributor {
                    distributor_id: d.id.clone(),
                    sponsor: d.sponsor.clone(),
                    referral_codes: d.referral_codes.clone(),
                    country: d.country.clone(),
                    status: if later_status.is_some() {
                        DistributorStatus::Active
                    } else {
                        d.status
                    },
                    rank: d.rank.clone(),
                    joined_at: d.joined_at,
                },
            ));
            if let Some(since) = later_status {
                dated.push((
                    since,
                    1,
                    i,
                    format!("{place}: status_since"),
                    DistributorCommand::ChangeStatus {
                        distributor_id: d.id.clone(),
                        status: d.status,
                        effective_at: since,
                    },
                ));
            }
        }
        let offset = self.distributors.len();
        for (i, c) in self.changes.iter().enumerate() {
            let command = match (&c.sponsor, c.status, &c.rank) {
                (Some(s), None, None) => DistributorCommand::ChangeSponsor {
                    distributor_id: c.distributor.clone(),
                    sponsor: s.clone(),
                    effective_at: c.effective_at,
                },
                (None, Some(s), None) => DistributorCommand::ChangeStatus {
                    distributor_id: c.distributor.clone(),
                    status: s,
                    effective_at: c.effective_at,
                },
                (None, None, Some(r)) => DistributorCommand::ChangeRank {
                    distributor_id: c.distributor.clone(),
                    rank: r.clone(),
                    effective_at: c.effective_at,
                },
                _ => bail!(
                    "{}: changes[{i}]: give exactly one of sponsor, status, rank",
                    path.display()
                ),
            };
            dated.push((
                c.effective_at,
                1,
                offset + i,
                format!("{}: changes[{i}] ({})", path.display(), c.distributor),
                command,
            ));
        }
        dated.sort_by_key(|a| (a.0, a.1, a.2));
        Ok(dated
            .into_iter()
            .map(|(_, _, _, place, command)| (place, command))
            .collect())
    }

    /// Builds the network and catalog in memory through the same decide/apply path as live
    /// commands, so every business rule (unknown sponsor, cycles, taken codes) applies to the file.
    pub fn build(&self, path: &Path) -> Result<(Network, Catalog)> {
        let mut network = Network::default();
        for (place, command) in self.commands(path)? {
            apply_command(&mut network, &command).context(place)?;
        }
        let mut catalog = Catalog::default();
        for (i, m) in self.sku_mappings.iter().enumerate() {
            let place = || format!("{}: sku_mappings[{i}] ({})", path.display(), m.platform_sku);
            for e in catalog
                .decide(&CatalogCommand::MapSku(m.clone()))
                .with_context(place)?
            {
                catalog.apply(&e).with_context(place)?;
            }
        }
        Ok((network, catalog))
    }
}

fn apply_command(network: &mut Network, command: &DistributorCommand) -> Result<()> {
    for event in network.decide(command)? {
        network.apply(&event)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(json: &str) -> NetworkFile {
        serde_json::from_str(json).expect("a network file")
    }

    #[test]
    fn a_sponsor_terminated_after_enrolling_others_imports_as_a_history() {
        // Given an exported genealogy whose sponsor is terminated now, since 2024, and who
        // enrolled a distributor in 2023,
        let file = network(
            r#"{"distributors": [
              {"id": "top", "sponsor": null, "country": "US", "status": "terminated",
               "rank": "gold", "joined_at": "2022-01-01T00:00:00Z",
               "status_since": "2024-01-01T00:00:00Z"},
              {"id": "down", "sponsor": "top", "country": "US", "status": "active",
               "rank": "member", "joined_at": "2023-01-01T00:00:00Z"}
            ]}"#,
        );
        // when it is imported,
        let (network, _) = file
            .build(Path::new("genealogy.json"))
            .expect("registration comes before the dated termination");
        // then the sponsor was active when enrolling and is terminated from 2024 on.
        let top = DistributorId::new("top").unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let status = |t: &str| network.status_at(&top, at(t)).ok();
        assert_eq!(
            status("2023-06-01T00:00:00Z"),
            Some(DistributorStatus::Active)
        );
        assert_eq!(
            status("2024-06-01T00:00:00Z"),
            Some(DistributorStatus::Terminated)
        );
    }

    #[test]
    fn an_enrolment_after_the_termination_is_refused_naming_the_place() {
        let file = network(
            r#"{"distributors": [
              {"id": "top", "sponsor": null, "country": "US", "status": "terminated",
               "rank": "gold", "joined_at": "2022-01-01T00:00:00Z",
               "status_since": "2024-01-01T00:00:00Z"},
              {"id": "late", "sponsor": "top", "country": "US", "status": "active",
               "rank": "member", "joined_at": "2025-01-01T00:00:00Z"}
            ]}"#,
        );
        let err = file.build(Path::new("genealogy.json")).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("distributors[1] (late)"), "{text}");
        assert!(text.contains("terminated"), "{text}");
    }
}
