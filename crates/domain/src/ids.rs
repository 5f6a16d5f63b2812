//! Identifiers in the business's words. Each is validated once, at the edge, so that the rest of
//! the domain can trust it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The longest identifier we accept. Platform ids are at most 20 digits; a bound keeps a hostile
/// payload from making stream names or keys of unbounded size.
pub const MAX_ID_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} {value:?} is longer than {MAX_ID_LEN} characters")]
    TooLong { kind: &'static str, value: String },
    #[error("{kind} {value:?} may only hold letters, digits, '-', '_' and '.'")]
    BadCharacter { kind: &'static str, value: String },
}

fn validate(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            value: value.chars().take(MAX_ID_LEN).collect(),
        });
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(IdError::BadCharacter {
            kind,
            value: value.to_string(),
        });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $normalise:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl AsRef<str>) -> Result<Self, IdError> {
                let normalise: fn(&str) -> String = $normalise;
                let value = normalise(value.as_ref().trim());
                validate($kind, &value)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

string_id!(
    /// A distributor's id in the MLM back office (e.g. "11043").
    DistributorId, "distributor id", |s| s.to_string()
);
string_id!(
    /// A referral code a distributor hands out ("ABC123"); case-insensitive, stored upper-case.
    ReferralCode, "referral code", |s| s.to_ascii_uppercase()
);
string_id!(
    /// A rank on the plan's ladder ("silver"); case-insensitive, stored lower-case.
    RankName, "rank", |s| s.to_ascii_lowercase()
);
string_id!(
    /// A commission class ("retail", "kit"); case-insensitive, stored lower-case.
    CommissionClass, "commission class", |s| s.to_ascii_lowercase()
);
string_id!(
    /// Our own SKU id, which platform SKUs map to ("SUPP001").
    SkuId, "sku id", |s| s.to_string()
);
string_id!(
    /// A shop on a platform ("acme.myshopify.com" is kept as "acme.myshopify.com").
    ShopId, "shop id", |s| s.to_ascii_lowercase()
);
string_id!(
    /// A platform's order id, kept as text so that ids above 2^53 stay exact.
    PlatformOrderId, "order id", |s| s.to_string()
);
string_id!(
    /// A platform's line id, or our own line key.
    LineId, "line id", |s| s.to_string()
);
string_id!(
    /// A refund's id on its platform.
    RefundId, "refund id", |s| s.to_string()
);

/// The store platform an order came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Shopify,
    Woocommerce,
    Magento,
    /// Orders sent already normalised (the seed's `/api/mlm/orders`, gRPC SubmitOrder).
    Direct,
}

impl Platform {
    pub fn as_str(&self) -> &'static str {
        match self {
            Platform::Shopify => "shopify",
            Platform::Woocommerce => "woocommerce",
            Platform::Magento => "magento",
            Platform::Direct => "direct",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "shopify" => Ok(Platform::Shopify),
            "woocommerce" | "woo" => Ok(Platform::Woocommerce),
            "magento" | "adobe-commerce" => Ok(Platform::Magento),
            "direct" => Ok(Platform::Direct),
            other => Err(format!(
                "unknown platform {other:?} (shopify, woocommerce, magento, direct)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_trimmed_validated_and_normalised() {
        assert_eq!(ReferralCode::new(" abc123 ").unwrap().as_str(), "ABC123");
        assert_eq!(RankName::new("Silver").unwrap().as_str(), "silver");
        assert_eq!(
            DistributorId::new(""),
            Err(IdError::Empty {
                kind: "distributor id"
            })
        );
        assert!(matches!(
            DistributorId::new("a b"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            DistributorId::new("x".repeat(65)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn ids_deserialise_through_validation() {
        assert!(serde_json::from_str::<DistributorId>("\"11043\"").is_ok());
        assert!(serde_json::from_str::<DistributorId>("\"no/slash\"").is_err());
    }
}
