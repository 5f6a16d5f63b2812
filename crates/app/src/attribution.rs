//! Who gets the credit for an order: the first source, in the configured order of precedence,
//! that names a distributor.

use serde::{Deserialize, Serialize};
use upline_domain::ids::{DistributorId, Platform, ReferralCode, ShopId};
use upline_platforms::model::AttributionHints;

use crate::company::CompanyState;

/// A place an order can name its distributor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributionSource {
    /// `distributor_ref` / `ref` in note attributes, meta data or custom attributes.
    ExplicitRef,
    /// A coupon or discount code registered to a distributor (their referral codes).
    DiscountCode,
    /// A `ref` parameter in the landing-site URL.
    LandingRef,
    /// The distributor the customer is enrolled with.
    Customer,
}

/// The default precedence: what the order says explicitly, then what the shopper typed, then
/// where they came from, then who they already belong to.
pub const DEFAULT_PRECEDENCE: [AttributionSource; 4] = [
    AttributionSource::ExplicitRef,
    AttributionSource::DiscountCode,
    AttributionSource::LandingRef,
    AttributionSource::Customer,
];

/// The result of attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    Distributor {
        distributor: DistributorId,
        source: AttributionSource,
    },
    /// No source named anyone: recorded as unattributed, earns nothing.
    Unattributed,
}

/// A reference that names no one: the order is parked until the code is registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{via:?} {reference:?} is neither a referral code nor a distributor id")]
pub struct UnknownReference {
    pub via: AttributionSource,
    pub reference: String,
}

pub fn attribute(
    hints: &AttributionHints,
    precedence: &[AttributionSource],
    company: &CompanyState,
    platform: Platform,
    shop: &ShopId,
) -> Result<Attribution, UnknownReference> {
    for source in precedence {
        // A reference given on purpose must name someone: a typo must not pay no one silently.
        let named = |reference: &Option<String>| match reference {
            Some(r) => resolve(r, company)
                .map(Some)
                .ok_or_else(|| UnknownReference {
                    via: *source,
                    reference: r.clone(),
                }),
            None => Ok(None),
        };
        let found = match source {
            AttributionSource::ExplicitRef => named(&hints.explicit_ref)?,
            AttributionSource::LandingRef => named(&hints.landing_ref)?,
            // Most discount codes are ordinary coupons: one that is no referral code is no error.
            AttributionSource::DiscountCode => hints.discount_codes.iter().find_map(|code| {
                let code = ReferralCode::new(code).ok()?;
                company.company.network.by_referral_code(&code).cloned()
            }),
            AttributionSource::Customer => hints
                .customer_id
                .as_deref()
                .and_then(|c| company.enrolled_with(platform, shop, c))
                .cloned(),
        };
        if let Some(distributor) = found {
            return Ok(Attribution::Distributor {
                distributor,
                source: *source,
            });
        }
    }
    Ok(Attribution::Unattributed)
}

/// A reference is a referral code first, a distributor id second.
fn resolve(reference: &str, company: &CompanyState) -> Option<DistributorId> {
    let network = &company.company.network;
    if let Ok(code) = ReferralCode::new(reference) {
        if let Some(d) = network.by_referral_code(&code) {
            return Some(d.clone());
        }
    }
    DistributorId::new(reference)
        .ok()
        .filter(|d| network.contains(d))
}
