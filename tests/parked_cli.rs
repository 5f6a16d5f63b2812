//! `upline parked list` and `upline parked retry delivery-N | --all` on parked inbox deliveries
//! (a payload that could not be read): the listing names them `delivery-N`; a retry requeues the
//! delivery and processes it at once, in the command's own process. One whose payload still
//! cannot be read is parked again with its reason; one that now reads reaches its order stream.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use upline::admin::{import_network, list_parked, publish_plan, retry_parked};
use upline::config::ServeConfig;
use upline::server::Services;
use upline_app::inbox::{Acceptance, Delivery, Inbox, Outcome};
use upline_domain::ids::{Platform, ShopId};
use upline_store::{Direction, StreamStart};

const SHOP: &str = "demo-store.myshopify.com";

/// A Shopify `orders/paid` body for the example network: SKU SUPP001 is mapped, ABC123 is
/// distributor 11043's referral code.
fn order_body(order_id: u64, currency: &str) -> Vec<u8> {
    order_body_with_sku(order_id, currency, "SUPP001")
}

fn order_body_with_sku(order_id: u64, currency: &str, sku: &str) -> Vec<u8> {
    serde_json::json!({
        "id": order_id,
        "created_at": "2026-08-28T08:11:04Z",
        "updated_at": "2026-08-28T08:12:00Z",
        "currency": currency,
        "financial_status": "paid",
        "total_price": "39.60",
        "total_tax": "0.00",
        "line_items": [{"id": 866550311766439020_u64, "sku": sku, "quantity": 2, "price": "19.80"}],
        "note_attributes": [{"name": "distributor_ref", "value": "ABC123"}]
    })
    .to_string()
    .into_bytes()
}

fn order_stream(order_id: u64) -> String {
    format!("order-shopify-{SHOP}-{order_id}")
}

fn delivery(event_id: &str, body: Vec<u8>) -> Delivery {
    Delivery {
        platform: Platform::Shopify,
        shop: ShopId::new(SHOP).unwrap(),
        topic: "orders/paid".into(),
        dedupe_key: event_id.into(),
        delivery_id: format!("webhook-{event_id}"),
        received_at: DateTime::parse_from_rfc3339("2026-08-28T08:12:01Z")
            .unwrap()
            .with_timezone(&Utc),
        headers: BTreeMap::from([("x-shopify-topic".into(), "orders/paid".into())]),
        body,
    }
}

/// A fresh data directory with the example plan and network.
async fn seeded() -> (tempfile::TempDir, ServeConfig) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig {
        data_dir: dir.path().join("data"),
        ..ServeConfig::default()
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    publish_plan(&config, &root.join("examples/plan.toml"))
        .await
        .unwrap();
    import_network(&config, &root.join("examples/network.json"))
        .await
        .unwrap();
    (dir, config)
}

/// Accepts each delivery and completes it as parked with its reason, as the worker does with a
/// payload it cannot read; returns the inbox ids.
async fn park(config: &ServeConfig, deliveries: Vec<(Delivery, &str)>) -> Vec<i64> {
    let services = Services::open(config).await.unwrap();
    let mut ids = Vec::new();
    for (delivery, reason) in deliveries {
        let Acceptance::New { id } = services.inbox.accept(delivery).await.unwrap() else {
            panic!("a new delivery");
        };
        let claimed = services
            .inbox
            .claim(1, std::time::Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].id, id);
        services
            .inbox
            .complete(
                id,
                &Outcome::Parked {
                    reason: reason.into(),
                },
            )
            .await
            .unwrap();
        ids.push(id);
    }
    services.close().await.unwrap();
    ids
}

/// The event types of a stream, read from the data directory.
async fn stream_events(config: &ServeConfig, stream: &str) -> Vec<String> {
    let services = Services::open(config).await.unwrap();
    let events = services
        .store
        .read_stream(stream, Direction::Forwards, StreamStart::Start, 1_000)
        .await
        .unwrap();
    services.close().await.unwrap();
    events.into_iter().map(|e| e.event_type).collect()
}

/// The listing's line for `key`, if any.
fn line<'a>(listing: &'a str, key: &str) -> Option<&'a str> {
    listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
}

#[tokio::test]
async fn a_parked_delivery_is_listed_and_retried_by_its_delivery_key() {
    let (_dir, config) = seeded().await;
    let (unreadable, fixable) = (820982911946154501_u64, 820982911946154502_u64);
    let ids = park(
        &config,
        vec![
            (
                delivery("evt-xts", order_body(unreadable, "XTS")),
                "payload: unsupported currency XTS",
            ),
            // Reads fine now: as if parked by an older release, before the operator's fix.
            (
                delivery("evt-fixable", order_body(fixable, "USD")),
                "payload: missing field `currency`",
            ),
        ],
    )
    .await;
    let (xts_key, fixable_key) = (
        format!("delivery-{}", ids[0]),
        format!("delivery-{}", ids[1]),
    );

    let before = list_parked(&config).await.unwrap();
    let xts_line = line(&before, &xts_key).unwrap_or_else(|| panic!("{xts_key} in {before}"));
    assert!(
        xts_line.contains("shopify") && xts_line.contains(SHOP) && xts_line.contains("orders/paid"),
        "{xts_line}"
    );
    assert!(
        xts_line.ends_with(": payload: unsupported currency XTS"),
        "{xts_line}"
    );
    assert!(
        line(&before, &fixable_key).is_some_and(|l| l.contains("missing field `currency`")),
        "{before}"
    );
    assert!(
        before.contains("`upline parked retry delivery-N`"),
        "{before}"
    );
    assert!(!before.contains("delivery #"), "{before}");

    // The currency is still unsupported: parked again, with the reason the worker gives now.
    let out = retry_parked(&config, Some(xts_key.as_str()), false)
        .await
        .unwrap();
    assert!(
        out.starts_with(&format!("{xts_key}: still parked: payload:")) && out.contains("XTS"),
        "{out}"
    );
    assert!(stream_events(&config, &order_stream(unreadable))
        .await
        .is_empty());

    // The other one reads: processed right away, its order recorded and calculated.
    assert!(stream_events(&config, &order_stream(fixable))
        .await
        .is_empty());
    let out = retry_parked(&config, Some(fixable_key.as_str()), false)
        .await
        .unwrap();
    assert_eq!(out, format!("{fixable_key}: processed\n"));
    assert_eq!(
        stream_events(&config, &order_stream(fixable)).await,
        ["OrderPlaced", "OrderPaid", "CommissionCalculated"]
    );

    let after = list_parked(&config).await.unwrap();
    assert!(line(&after, &fixable_key).is_none(), "{after}");
    let xts_line = line(&after, &xts_key).unwrap_or_else(|| panic!("{xts_key} in {after}"));
    assert!(xts_line.contains("XTS"), "{xts_line}");

    // Processed is final: retrying it again is refused and changes nothing.
    let refused = retry_parked(&config, Some(fixable_key.as_str()), false)
        .await
        .unwrap_err();
    assert!(
        format!("{refused:#}").contains("is not parked: it is processed"),
        "{refused:#}"
    );
    assert_eq!(
        stream_events(&config, &order_stream(fixable)).await.len(),
        3
    );

    let services = Services::open(&config).await.unwrap();
    let stats = services.inbox.stats().await.unwrap();
    let xts = services.inbox.item(ids[0]).await.unwrap().unwrap();
    services.close().await.unwrap();
    assert_eq!(
        (stats.pending, stats.processed, stats.parked),
        (0, 1, 1),
        "each processed once"
    );
    assert_eq!(
        xts.last_error.as_deref(),
        Some("requeued after: payload: unsupported currency XTS")
    );
}

#[tokio::test]
async fn retry_all_requeues_every_parked_delivery() {
    let (_dir, config) = seeded().await;
    let (unreadable, fixable) = (820982911946154511_u64, 820982911946154512_u64);
    let ids = park(
        &config,
        vec![
            (
                delivery("evt-all-xts", order_body(unreadable, "XTS")),
                "payload: unsupported currency XTS",
            ),
            (
                delivery("evt-all-fixable", order_body(fixable, "USD")),
                "payload: missing field `currency`",
            ),
        ],
    )
    .await;

    let out = retry_parked(&config, None, true).await.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!("delivery-{}: still parked: payload:", ids[0])),
        "{out}"
    );
    assert_eq!(lines[1], format!("delivery-{}: processed", ids[1]));
    assert_eq!(
        stream_events(&config, &order_stream(fixable)).await,
        ["OrderPlaced", "OrderPaid", "CommissionCalculated"]
    );

    let listing = list_parked(&config).await.unwrap();
    assert!(
        line(&listing, &format!("delivery-{}", ids[0])).is_some(),
        "{listing}"
    );
    assert!(
        line(&listing, &format!("delivery-{}", ids[1])).is_none(),
        "{listing}"
    );

    // Again: only what is still parked is retried.
    let out = retry_parked(&config, None, true).await.unwrap();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("still parked"), "{out}");
}

#[tokio::test]
async fn delivery_keys_that_name_nothing_parked_are_refused() {
    let (_dir, config) = seeded().await;
    for (key, expected) in [
        ("delivery-999", "there is no delivery-999 in the inbox"),
        ("delivery-x", "is not a delivery: expected delivery-N"),
        ("delivery-0", "is not a delivery: expected delivery-N"),
    ] {
        let error = retry_parked(&config, Some(key), false).await.unwrap_err();
        assert!(format!("{error:#}").contains(expected), "{key}: {error:#}");
    }
    assert_eq!(
        retry_parked(&config, None, true).await.unwrap(),
        "nothing is parked\n"
    );
    assert_eq!(list_parked(&config).await.unwrap(), "nothing is parked\n");
}

#[tokio::test]
async fn a_delivery_that_now_reads_but_whose_order_is_refused_moves_to_the_parked_orders() {
    let (_dir, config) = seeded().await;
    let order_id = 820982911946154521_u64;
    let ids = park(
        &config,
        vec![(
            delivery(
                "evt-unmapped",
                order_body_with_sku(order_id, "USD", "NOT-MAPPED-1"),
            ),
            "payload: missing field `line_items`",
        )],
    )
    .await;
    let key = format!("delivery-{}", ids[0]);
    let stream = order_stream(order_id);

    let out = retry_parked(&config, Some(key.as_str()), false)
        .await
        .unwrap();
    assert!(
        out.starts_with(&format!("{key}: processed; its order {stream} is parked: ")),
        "{out}"
    );
    // The delivery is done with; the order update waits in the event store, under its stream.
    let listing = list_parked(&config).await.unwrap();
    assert!(line(&listing, &key).is_none(), "{listing}");
    assert!(line(&listing, &stream).is_some(), "{listing}");
    assert!(
        listing.contains("`upline parked retry ORDER-STREAM`"),
        "{listing}"
    );
}

/// Parks an order update in the event store (its SKU is not mapped), as the worker does.
async fn park_order(config: &ServeConfig, order_id: u64) {
    let services = Services::open(config).await.unwrap();
    let body = order_body_with_sku(order_id, "USD", "NOT-MAPPED");
    let shop = ShopId::new(SHOP).unwrap();
    let Ok(upline_platforms::model::Interpretation::Order(update)) =
        upline_platforms::interpret(Platform::Shopify, &shop, "orders/paid", &body)
    else {
        panic!("the body reads as an order");
    };
    let who = upline_app::Provenance::command("test");
    let outcome = services
        .app
        .handle_update(&update, &who, "test")
        .await
        .unwrap();
    assert!(
        matches!(outcome, upline_app::UpdateOutcome::Parked { .. }),
        "{outcome:?}"
    );
    services.close().await.unwrap();
}

#[tokio::test]
async fn parked_list_pages_and_says_where_to_continue() {
    // Given one parked order and five parked deliveries
    let (_dir, config) = seeded().await;
    park_order(&config, 7001).await;
    let deliveries = (1..=5)
        .map(|i| (delivery(&format!("e-{i}"), b"{".to_vec()), "payload: EOF"))
        .collect();
    let ids = park(&config, deliveries).await;
    let key = |i: usize| format!("delivery-{}", ids[i]);

    // When the first page of three is listed
    let listing = upline::admin::ParkedListing {
        limit: 3,
        after: None,
        format: upline::admin::Format::Text,
    };
    let first = upline::admin::list_parked_page(&config, &listing)
        .await
        .unwrap();
    // Then the order comes first, then the oldest deliveries, and it says how to go on
    assert!(line(&first, &order_stream(7001)).is_some(), "{first}");
    assert!(
        line(&first, &key(0)).is_some() && line(&first, &key(1)).is_some(),
        "{first}"
    );
    assert!(line(&first, &key(2)).is_none(), "{first}");
    let hint = format!("continue with `upline parked list --after {}`", key(1));
    assert!(first.contains(&hint), "{first}");

    // When the next page is asked for as JSON
    let listing = upline::admin::ParkedListing {
        limit: 2,
        after: Some(key(1)),
        format: upline::admin::Format::Json,
    };
    let page: serde_json::Value = serde_json::from_str(
        &upline::admin::list_parked_page(&config, &listing)
            .await
            .unwrap(),
    )
    .unwrap();
    // Then it holds the next two and the cursor after them
    let keys: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [key(2), key(3)]);
    assert_eq!(page["items"][0]["kind"], "delivery");
    assert_eq!(page["items"][0]["reason"], "payload: EOF");
    assert_eq!(page["next_after"], serde_json::json!(key(3)));

    // And the last page says nothing more is to come
    let listing = upline::admin::ParkedListing {
        limit: 2,
        after: Some(key(3)),
        format: upline::admin::Format::Json,
    };
    let last: serde_json::Value = serde_json::from_str(
        &upline::admin::list_parked_page(&config, &listing)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert!(last["next_after"].is_null());
}

/// `upline quarantine list/retry` and `/readyz`, `/metrics` with a held event: an order whose
/// `CommissionCalculated` cannot be read (raw bytes appended past the application) next to a
/// good order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_order_event_is_quarantined_shown_and_retried_while_others_go_on() {
    use upline::admin::{list_quarantine, retry_quarantine, Format};
    let (_dir, mut config) = seeded().await;
    config.listen = "127.0.0.1:0".parse().unwrap();
    // Given the raw bad event, then a good order delivered normally
    let services = Services::open(&config).await.unwrap();
    let junk = upline_store::EventData::json(
        "CommissionCalculated",
        &serde_json::json!({"outcome": "garbage"}),
    )
    .unwrap();
    let bad = services
        .store
        .append(
            &order_stream(6666),
            upline_store::ExpectedRevision::Any,
            vec![junk],
        )
        .await
        .unwrap()
        .position;
    services
        .inbox
        .accept(delivery("good-1", order_body(7002, "USD")))
        .await
        .unwrap();
    services.close().await.unwrap();

    // When the server runs until idle
    let server = upline::server::start(config.clone()).await.unwrap();
    server
        .wait_idle(std::time::Duration::from_secs(20))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let ready = client
        .get(format!("http://{}/readyz", server.addr))
        .send()
        .await
        .unwrap();
    let status = ready.status().as_u16();
    let ready: serde_json::Value = ready.json().await.unwrap();
    let metrics = client
        .get(format!("http://{}/metrics", server.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let posted = stream_events_of(&server, "commissions-11043").await;
    server.stop().await.unwrap();

    // Then the good order is posted, and /readyz and /metrics name the held event
    assert!(
        posted.contains(&"CommissionEarned".to_string()),
        "{posted:?}"
    );
    assert_eq!(status, 200, "degraded, still taking deliveries: {ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    let reasons = ready["reasons"].to_string();
    assert!(
        reasons.contains("commission-postings holds 1 event"),
        "{reasons}"
    );
    assert!(
        metrics.contains("upline_quarantined_events{consumer=\"commission-postings\"} 1"),
        "{metrics}"
    );

    // When an operator lists what is held
    let listed: serde_json::Value =
        serde_json::from_str(&list_quarantine(&config, Format::Json).await.unwrap()).unwrap();
    let id = format!("commission-postings@{bad}");
    let item = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == serde_json::json!(id))
        .cloned()
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(item["consumer"], "commission-postings");
    assert_eq!(item["stream"], serde_json::json!(order_stream(6666)));
    assert_eq!(item["event_type"], "CommissionCalculated");
    assert!(item["reason"]
        .as_str()
        .unwrap()
        .contains("could not be decoded"));
    assert!(item["since"].is_string());
    let text = list_quarantine(&config, Format::Text).await.unwrap();
    assert!(line(&text, &id).is_some(), "{text}");

    // When it is retried without a fix, it stays held with its reason
    let retried = retry_quarantine(&config, Some(&id), false).await.unwrap();
    assert!(
        retried.contains("0 released; still held at position"),
        "{retried}"
    );
    let again = list_quarantine(&config, Format::Text).await.unwrap();
    assert!(line(&again, &id).unwrap().contains("1 retry"), "{again}");
}

async fn stream_events_of(server: &upline::server::RunningServer, stream: &str) -> Vec<String> {
    server
        .services
        .store
        .read_stream(stream, Direction::Forwards, StreamStart::Start, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}
