//! Request fields into domain values (each failure an INVALID_ARGUMENT naming the field), and
//! domain values into messages.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use tonic::Status;
use upline_domain::ids::{IdError, Platform, ShopId, MAX_ID_LEN};
use upline_domain::money::{parse_decimal, Currency};
use upline_domain::order::OrderKey;
use upline_domain::snapshot::DistributorStatus;

use crate::error::invalid;
use crate::pb;

/// Page sizes: the default and the most one page holds (larger requests are cut to it).
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

pub(crate) fn id<T: FromStr<Err = IdError>>(field: &str, value: &str) -> Result<T, Status> {
    value.parse().map_err(|e: IdError| invalid(field, e))
}

/// An id, or `None` when the field is empty.
pub(crate) fn opt_id<T: FromStr<Err = IdError>>(
    field: &str,
    value: &str,
) -> Result<Option<T>, Status> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        id(field, value).map(Some)
    }
}

/// A platform's own id (a customer id): 1 to 64 visible characters.
pub(crate) fn external_id(field: &str, value: &str) -> Result<String, Status> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(field, "is empty"));
    }
    if value.chars().count() > MAX_ID_LEN || value.chars().any(|c| c.is_control()) {
        return Err(invalid(
            field,
            format!("must be at most {MAX_ID_LEN} characters, none a control"),
        ));
    }
    Ok(value.to_string())
}

pub(crate) fn time(field: &str, value: &str) -> Result<DateTime<Utc>, Status> {
    if value.trim().is_empty() {
        return Err(invalid(
            field,
            "is required (RFC 3339, e.g. 2026-08-28T08:11:04Z)",
        ));
    }
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| invalid(field, format!("{value:?} is not an RFC 3339 time: {e}")))
}

pub(crate) fn opt_time(field: &str, value: &str) -> Result<Option<DateTime<Utc>>, Status> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        time(field, value).map(Some)
    }
}

pub(crate) fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub(crate) fn fmt_opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(fmt_time).unwrap_or_default()
}

pub(crate) fn decimal(field: &str, value: &str) -> Result<Decimal, Status> {
    if value.trim().is_empty() {
        return Err(invalid(
            field,
            "is required (a decimal string such as \"12.50\")",
        ));
    }
    parse_decimal(value).map_err(|e| invalid(field, e))
}

pub(crate) fn opt_decimal(field: &str, value: &str) -> Result<Option<Decimal>, Status> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        decimal(field, value).map(Some)
    }
}

pub(crate) fn decimal_or_zero(field: &str, value: &str) -> Result<Decimal, Status> {
    Ok(opt_decimal(field, value)?.unwrap_or(Decimal::ZERO))
}

pub(crate) fn currency(field: &str, value: &str) -> Result<Currency, Status> {
    if value.trim().is_empty() {
        return Err(invalid(
            field,
            "is required (an ISO 4217 code such as \"USD\")",
        ));
    }
    Currency::from_code(value).map_err(|e| invalid(field, e))
}

pub(crate) fn platform(field: &str, value: i32) -> Result<Platform, Status> {
    match pb::Platform::try_from(value) {
        Ok(pb::Platform::Shopify) => Ok(Platform::Shopify),
        Ok(pb::Platform::Woocommerce) => Ok(Platform::Woocommerce),
        Ok(pb::Platform::Magento) => Ok(Platform::Magento),
        Ok(pb::Platform::Direct) => Ok(Platform::Direct),
        Ok(pb::Platform::Unspecified) => Err(invalid(
            field,
            "is required (PLATFORM_SHOPIFY, PLATFORM_WOOCOMMERCE, PLATFORM_MAGENTO, PLATFORM_DIRECT)",
        )),
        Err(_) => Err(invalid(field, format!("{value} is not a platform"))),
    }
}

pub(crate) fn status(field: &str, value: i32) -> Result<DistributorStatus, Status> {
    match pb::DistributorStatus::try_from(value) {
        Ok(pb::DistributorStatus::Active) => Ok(DistributorStatus::Active),
        Ok(pb::DistributorStatus::Inactive) => Ok(DistributorStatus::Inactive),
        Ok(pb::DistributorStatus::Suspended) => Ok(DistributorStatus::Suspended),
        Ok(pb::DistributorStatus::Terminated) => Ok(DistributorStatus::Terminated),
        Ok(pb::DistributorStatus::Unspecified) => Err(invalid(
            field,
            "is required (DISTRIBUTOR_STATUS_ACTIVE, _INACTIVE, _SUSPENDED, _TERMINATED)",
        )),
        Err(_) => Err(invalid(field, format!("{value} is not a status"))),
    }
}

pub(crate) fn order_key(field: &str, key: Option<&pb::OrderKey>) -> Result<OrderKey, Status> {
    let Some(key) = key else {
        return Err(invalid(field, "is required (platform, shop, order_id)"));
    };
    Ok(OrderKey {
        platform: platform(&format!("{field}.platform"), key.platform)?,
        shop: id::<ShopId>(&format!("{field}.shop"), &key.shop)?,
        order_id: id(&format!("{field}.order_id"), &key.order_id)?,
    })
}

/// An order stream name as ListParked shows it.
pub(crate) fn order_stream(field: &str, value: &str) -> Result<String, Status> {
    let value = value.trim();
    if !value.starts_with(upline_app::streams::ORDER_PREFIX) {
        return Err(invalid(
            field,
            format!("{value:?} is not an order stream (order-{{platform}}-{{shop}}-{{order id}})"),
        ));
    }
    if value.len() > 255 || value.chars().any(|c| c.is_control()) {
        return Err(invalid(
            field,
            "must be at most 255 bytes, no control characters",
        ));
    }
    Ok(value.to_string())
}

/// A page size: the default when 0, cut to the maximum when larger.
pub(crate) fn page_size(value: u32) -> usize {
    match value {
        0 => DEFAULT_PAGE_SIZE as usize,
        n => n.min(MAX_PAGE_SIZE) as usize,
    }
}

/// Page tokens are offsets written as text; clients treat them as opaque.
pub(crate) fn page_offset(field: &str, token: &str) -> Result<usize, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .parse()
        .map_err(|_| invalid(field, "is not a token this server handed out"))
}

pub(crate) fn next_token(offset: usize, taken: usize, more: bool) -> String {
    if more {
        (offset + taken).to_string()
    } else {
        String::new()
    }
}

pub(crate) fn money(amount: Decimal, currency: Currency) -> pb::Money {
    pb::Money {
        amount: amount.normalize_keep_scale(),
        currency: currency.code().to_string(),
    }
}

trait KeepScale {
    fn normalize_keep_scale(self) -> String;
}

impl KeepScale for Decimal {
    /// The amount as stored (its own scale: "12.50" stays "12.50"); zero is never "-0".
    fn normalize_keep_scale(self) -> String {
        if self.is_zero() {
            Decimal::new(0, self.scale()).to_string()
        } else {
            self.to_string()
        }
    }
}

pub(crate) fn pb_platform(platform: Platform) -> pb::Platform {
    match platform {
        Platform::Shopify => pb::Platform::Shopify,
        Platform::Woocommerce => pb::Platform::Woocommerce,
        Platform::Magento => pb::Platform::Magento,
        Platform::Direct => pb::Platform::Direct,
    }
}

pub(crate) fn pb_status(status: DistributorStatus) -> pb::DistributorStatus {
    match status {
        DistributorStatus::Active => pb::DistributorStatus::Active,
        DistributorStatus::Inactive => pb::DistributorStatus::Inactive,
        DistributorStatus::Suspended => pb::DistributorStatus::Suspended,
        DistributorStatus::Terminated => pb::DistributorStatus::Terminated,
    }
}

pub(crate) fn pb_key(key: &OrderKey) -> pb::OrderKey {
    pb::OrderKey {
        platform: pb_platform(key.platform) as i32,
        shop: key.shop.to_string(),
        order_id: key.order_id.to_string(),
    }
}

pub(crate) fn pb_sku_mapping(m: &upline_domain::catalog::SkuMapping) -> pb::SkuMapping {
    pb::SkuMapping {
        platform: pb_platform(m.platform) as i32,
        platform_sku: m.platform_sku.clone(),
        effective_from: fmt_time(m.effective_from),
        sku_id: m.sku_id.to_string(),
        name: m.name.clone(),
        category: m.category.clone(),
        commission_class: m.commission_class.to_string(),
        pv_per_unit: m.pv_per_unit.map(|d| d.to_string()).unwrap_or_default(),
        cv_per_unit: m.cv_per_unit.map(|d| d.to_string()).unwrap_or_default(),
    }
}
