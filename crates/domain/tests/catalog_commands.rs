//! The catalog: given these events, when this command, then these events or this error; and
//! effective-dated resolution.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use upline_domain::catalog::*;
use upline_domain::events::{decode, encode};
use upline_domain::ids::{CommissionClass, Platform, SkuId};

fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::days(n)
}

/// The Shopify variant "VAR-1" as SUPP001, retail, 10 PV, from `from`.
fn mapping(sku: &str, from: i64) -> SkuMapping {
    SkuMapping {
        platform: Platform::Shopify,
        platform_sku: sku.into(),
        effective_from: day(from),
        sku_id: SkuId::new("SUPP001").unwrap(),
        name: "Vitamin C 500".into(),
        category: "supplements".into(),
        commission_class: CommissionClass::new("retail").unwrap(),
        pv_per_unit: Some(dec!(10)),
        cv_per_unit: None,
    }
}
fn with(sku: &str, from: i64, edit: impl FnOnce(&mut SkuMapping)) -> SkuMapping {
    let mut m = mapping(sku, from);
    edit(&mut m);
    m
}
fn mapped(m: SkuMapping) -> CatalogEvent {
    CatalogEvent::SkuMapped(m)
}
fn map(m: SkuMapping) -> CatalogCommand {
    CatalogCommand::MapSku(m)
}

fn given(events: &[CatalogEvent]) -> Catalog {
    Catalog::replay(events).unwrap()
}
fn when(catalog: &Catalog, command: CatalogCommand) -> Result<Vec<CatalogEvent>, CatalogError> {
    catalog.decide(&command)
}

// ---- MapSku ----

#[test]
fn mapping_a_new_sku_records_it() {
    assert_eq!(
        when(&given(&[]), map(mapping("VAR-1", 0))),
        Ok(vec![mapped(mapping("VAR-1", 0))])
    );
}

#[test]
fn text_fields_are_recorded_trimmed() {
    let sloppy = with("  VAR-1\t", 0, |m| {
        m.name = " Vitamin C 500 ".into();
        m.category = "supplements\n".into();
    });
    assert_eq!(
        when(&given(&[]), map(sloppy)),
        Ok(vec![mapped(mapping("VAR-1", 0))])
    );
}

#[test]
fn the_same_mapping_again_records_nothing() {
    let catalog = given(&[mapped(mapping("VAR-1", 0))]);
    assert_eq!(when(&catalog, map(mapping("VAR-1", 0))), Ok(vec![]));
    assert_eq!(when(&catalog, map(mapping(" VAR-1 ", 0))), Ok(vec![]));
    // 10 and 10.00 are the same volume.
    assert_eq!(
        when(
            &catalog,
            map(with("VAR-1", 0, |m| m.pv_per_unit = Some(dec!(10.00))))
        ),
        Ok(vec![])
    );
}

#[test]
fn a_different_mapping_for_the_same_key_and_time_is_refused() {
    let catalog = given(&[mapped(mapping("VAR-1", 0))]);
    let conflict = CatalogError::ConflictingMapping {
        platform: Platform::Shopify,
        platform_sku: "VAR-1".into(),
        effective_from: day(0),
    };
    for changed in [
        with("VAR-1", 0, |m| m.pv_per_unit = Some(dec!(12))),
        with("VAR-1", 0, |m| m.cv_per_unit = Some(dec!(8))),
        with("VAR-1", 0, |m| m.name = "Vitamin C 1000".into()),
        with("VAR-1", 0, |m| {
            m.commission_class = CommissionClass::new("kit").unwrap()
        }),
        with("VAR-1", 0, |m| m.sku_id = SkuId::new("SUPP002").unwrap()),
    ] {
        assert_eq!(when(&catalog, map(changed)), Err(conflict.clone()));
    }
}

#[test]
fn a_new_version_from_a_later_time_is_recorded() {
    let catalog = given(&[mapped(mapping("VAR-1", 0))]);
    let v2 = with("VAR-1", 30, |m| m.pv_per_unit = Some(dec!(12)));
    assert_eq!(when(&catalog, map(v2.clone())), Ok(vec![mapped(v2)]));
}

#[test]
fn the_same_sku_on_another_platform_is_another_key() {
    let catalog = given(&[mapped(mapping("VAR-1", 0))]);
    let woo = with("VAR-1", 0, |m| {
        m.platform = Platform::Woocommerce;
        m.pv_per_unit = Some(dec!(3));
    });
    assert_eq!(when(&catalog, map(woo.clone())), Ok(vec![mapped(woo)]));
}

#[test]
fn an_empty_platform_sku_name_or_category_is_refused() {
    let empty = |field, sku: &str| CatalogError::EmptyField {
        field,
        platform: Platform::Shopify,
        platform_sku: sku.into(),
    };
    let catalog = given(&[]);
    assert_eq!(
        when(&catalog, map(mapping("   ", 0))),
        Err(empty("platform_sku", ""))
    );
    assert_eq!(
        when(&catalog, map(with("VAR-1", 0, |m| m.name = " ".into()))),
        Err(empty("name", "VAR-1"))
    );
    assert_eq!(
        when(
            &catalog,
            map(with("VAR-1", 0, |m| m.category = String::new()))
        ),
        Err(empty("category", "VAR-1"))
    );
}

#[test]
fn an_over_long_platform_sku_name_or_category_is_refused() {
    let catalog = given(&[]);
    let long_sku = "S".repeat(MAX_PLATFORM_SKU_LEN + 1);
    assert_eq!(
        when(&catalog, map(mapping(&long_sku, 0))),
        Err(CatalogError::FieldTooLong {
            field: "platform_sku",
            platform: Platform::Shopify,
            platform_sku: "S".repeat(MAX_PLATFORM_SKU_LEN),
            len: MAX_PLATFORM_SKU_LEN + 1,
            max: MAX_PLATFORM_SKU_LEN,
        })
    );
    // Exactly at the bound is fine (lengths count characters, not bytes).
    let at_bound = "é".repeat(MAX_PLATFORM_SKU_LEN);
    assert!(when(&catalog, map(mapping(&at_bound, 0))).is_ok());
    assert_eq!(
        when(
            &catalog,
            map(with("VAR-1", 0, |m| m.name = "n".repeat(MAX_NAME_LEN + 1)))
        ),
        Err(CatalogError::FieldTooLong {
            field: "name",
            platform: Platform::Shopify,
            platform_sku: "VAR-1".into(),
            len: MAX_NAME_LEN + 1,
            max: MAX_NAME_LEN,
        })
    );
    assert_eq!(
        when(
            &catalog,
            map(with("VAR-1", 0, |m| m.category =
                "c".repeat(MAX_CATEGORY_LEN + 1)))
        ),
        Err(CatalogError::FieldTooLong {
            field: "category",
            platform: Platform::Shopify,
            platform_sku: "VAR-1".into(),
            len: MAX_CATEGORY_LEN + 1,
            max: MAX_CATEGORY_LEN,
        })
    );
}

#[test]
fn a_negative_pv_or_cv_is_refused() {
    let catalog = given(&[]);
    let negative = |field, value| CatalogError::NegativeVolume {
        field,
        platform: Platform::Shopify,
        platform_sku: "VAR-1".into(),
        value,
    };
    assert_eq!(
        when(
            &catalog,
            map(with("VAR-1", 0, |m| m.pv_per_unit = Some(dec!(-1))))
        ),
        Err(negative("pv_per_unit", dec!(-1)))
    );
    assert_eq!(
        when(
            &catalog,
            map(with("VAR-1", 0, |m| m.cv_per_unit = Some(dec!(-0.01))))
        ),
        Err(negative("cv_per_unit", dec!(-0.01)))
    );
    // Zero volume is allowed (a free sample earns nothing).
    assert!(when(
        &catalog,
        map(with("VAR-1", 0, |m| m.pv_per_unit = Some(Decimal::ZERO)))
    )
    .is_ok());
}

#[test]
fn a_volume_with_too_many_fractional_digits_is_refused() {
    let value = Decimal::new(1, 13);
    assert_eq!(
        when(
            &given(&[]),
            map(with("VAR-1", 0, |m| m.cv_per_unit = Some(value)))
        ),
        Err(CatalogError::TooPrecise {
            field: "cv_per_unit",
            platform: Platform::Shopify,
            platform_sku: "VAR-1".into(),
            value,
        })
    );
}

#[test]
fn errors_name_the_field_and_the_sku() {
    let text = CatalogError::EmptyField {
        field: "category",
        platform: Platform::Magento,
        platform_sku: "M-9".into(),
    }
    .to_string();
    assert!(
        text.contains("category") && text.contains("M-9") && text.contains("magento"),
        "{text}"
    );
}

// ---- resolve ----

#[test]
fn resolve_finds_the_version_in_force_at_the_time() {
    let v2 = with("VAR-1", 30, |m| m.pv_per_unit = Some(dec!(12)));
    let catalog = given(&[mapped(mapping("VAR-1", 0)), mapped(v2.clone())]);
    let pv = |at| {
        catalog
            .resolve(Platform::Shopify, "VAR-1", at)
            .and_then(|m| m.pv_per_unit)
    };
    assert_eq!(catalog.resolve(Platform::Shopify, "VAR-1", day(-1)), None);
    assert_eq!(pv(day(0)), Some(dec!(10)));
    assert_eq!(pv(day(30) - Duration::nanoseconds(1)), Some(dec!(10)));
    assert_eq!(pv(day(30)), Some(dec!(12)));
    assert_eq!(pv(day(999)), Some(dec!(12)));
    assert_eq!(catalog.history(Platform::Shopify, "VAR-1").len(), 2);
    assert_eq!(catalog.len(), 1);
}

#[test]
fn a_later_version_does_not_change_what_an_earlier_order_resolves() {
    let mut catalog = given(&[mapped(mapping("VAR-1", 0))]);
    let order_time = day(10);
    let before = catalog
        .resolve(Platform::Shopify, "VAR-1", order_time)
        .cloned();
    catalog
        .execute(&map(with("VAR-1", 20, |m| m.pv_per_unit = Some(dec!(99)))))
        .unwrap();
    assert_eq!(
        catalog
            .resolve(Platform::Shopify, "VAR-1", order_time)
            .cloned(),
        before
    );
}

#[test]
fn a_back_dated_version_is_placed_in_time_order() {
    let v3 = with("VAR-1", 30, |m| m.pv_per_unit = Some(dec!(30)));
    let v2 = with("VAR-1", 15, |m| m.pv_per_unit = Some(dec!(15)));
    let catalog = given(&[mapped(mapping("VAR-1", 0)), mapped(v3), mapped(v2)]);
    let pv = |d| {
        catalog
            .resolve(Platform::Shopify, "VAR-1", day(d))
            .and_then(|m| m.pv_per_unit)
    };
    assert_eq!(
        [pv(5), pv(15), pv(29), pv(30)],
        [
            Some(dec!(10)),
            Some(dec!(15)),
            Some(dec!(15)),
            Some(dec!(30))
        ]
    );
}

#[test]
fn resolve_trims_but_otherwise_matches_exactly() {
    let catalog = given(&[mapped(mapping("VAR-1", 0))]);
    assert!(catalog
        .resolve(Platform::Shopify, " VAR-1\n", day(1))
        .is_some());
    assert!(catalog
        .resolve(Platform::Shopify, "var-1", day(1))
        .is_none());
    assert!(catalog
        .resolve(Platform::Shopify, "VAR-1x", day(1))
        .is_none());
    assert!(catalog
        .resolve(Platform::Woocommerce, "VAR-1", day(1))
        .is_none());
}

// ---- apply and replay ----

#[test]
fn events_round_trip_through_the_codec_with_exact_volumes() {
    let mut catalog = Catalog::new();
    let mut recorded = Vec::new();
    for m in [
        with("VAR-1", 0, |m| m.cv_per_unit = Some(dec!(7.125))),
        with("VAR-1", 10, |m| m.pv_per_unit = None),
        mapping("VAR-2", 0),
    ] {
        recorded.extend(catalog.execute(&map(m)).unwrap());
    }
    let encoded = encode(&recorded[0]).unwrap();
    assert_eq!(encoded.event_type, "SkuMapped");
    assert_eq!(encoded.schema_version, 1);
    let body: serde_json::Value = serde_json::from_slice(&encoded.data).unwrap();
    assert_eq!(body["cv_per_unit"], serde_json::json!("7.125"));
    let decoded: Vec<CatalogEvent> = recorded
        .iter()
        .map(|e| {
            let enc = encode(e).unwrap();
            decode(&enc.event_type, &enc.data).unwrap()
        })
        .collect();
    assert_eq!(decoded, recorded);
    assert_eq!(Catalog::replay(&decoded).unwrap(), catalog);
}

#[test]
fn a_mapping_with_json_number_volumes_parses_exactly() {
    let json = r#"{"platform":"shopify","platform_sku":"VAR-1","effective_from":"2024-01-01T00:00:00Z",
        "sku_id":"SUPP001","name":"Vitamin C 500","category":"supplements",
        "commission_class":"retail","pv_per_unit":10.10,"cv_per_unit":0.1}"#;
    let m: SkuMapping = serde_json::from_str(json).unwrap();
    assert_eq!(m.pv_per_unit, Some(dec!(10.10)));
    assert_eq!(m.cv_per_unit, Some(dec!(0.1)));
}

#[test]
fn applying_a_corrupted_history_fails_with_a_typed_error() {
    let mut catalog = given(&[mapped(mapping("VAR-1", 0))]);
    let conflicting = mapped(with("VAR-1", 0, |m| m.pv_per_unit = Some(dec!(1))));
    assert!(matches!(
        catalog.apply(&conflicting),
        Err(CatalogError::ConflictingMapping { .. })
    ));
    assert!(matches!(
        catalog.apply(&mapped(mapping("", 0))),
        Err(CatalogError::EmptyField { .. })
    ));
    // A duplicated event changes nothing.
    catalog.apply(&mapped(mapping("VAR-1", 0))).unwrap();
    assert_eq!(catalog, given(&[mapped(mapping("VAR-1", 0))]));
}
