//! A company built through the API, orders submitted, read back with their breakdown, refunded,
//! cancelled, parked and retried; command ids replayed, also after a restart.

use std::sync::Arc;

use upline_api::pb;

use crate::harness::*;

#[tokio::test]
async fn a_company_and_its_orders_through_the_api() {
    let server = Server::start().await;
    let mut commands = server.operator().await;
    let mut queries = server.reader().await;
    seed(&mut commands).await;

    // The network as of an order's time: 10777 moved under 10500 on 2026-02-01.
    let d = queries
        .get_distributor(pb::GetDistributorRequest {
            distributor_id: "11043".into(),
            at: "2026-03-10T10:00:00Z".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.sponsor_id, "10777");
    assert_eq!(d.rank, "silver");
    assert_eq!(d.referral_codes, vec!["ABC123"]);
    let upline: Vec<&str> = d.upline.iter().map(|m| m.distributor_id.as_str()).collect();
    assert_eq!(
        upline,
        ["10777", "10500", "10090", "10010", "10002", "10001"]
    );
    assert!(d.upline_reached_top);
    let d = queries
        .get_distributor(pb::GetDistributorRequest {
            distributor_id: "10010".into(),
            at: "2026-03-10T10:00:00Z".into(),
            downline_depth: 3,
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // 10010 sponsors 10090 (and sponsored 10777 until February); 10090 -> 10500 -> 10777.
    let page: Vec<(&str, u32)> = d
        .downline
        .iter()
        .map(|m| (m.distributor_id.as_str(), m.depth))
        .collect();
    assert_eq!(page, [("10090", 1), ("10500", 2)]);
    let next = queries
        .get_distributor(pb::GetDistributorRequest {
            distributor_id: "10010".into(),
            at: "2026-03-10T10:00:00Z".into(),
            downline_depth: 3,
            page_size: 2,
            page_token: d.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let page: Vec<(&str, u32, &str)> = next
        .downline
        .iter()
        .map(|m| (m.distributor_id.as_str(), m.depth, m.sponsor_id.as_str()))
        .collect();
    assert_eq!(page, [("10777", 3, "10500")]);
    assert!(next.next_page_token.is_empty());

    // An order: 2 x SUPP001 at 19.80, base 39.60, retail rates 10/5/4/3/2/1 %.
    let response = commands
        .submit_order(order("1001", "2", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.outcome, pb::CommandOutcome::Recorded as i32);
    assert_eq!(response.stream, stream("1001"));
    // OrderPlaced, OrderPaid, CommissionCalculated.
    assert_eq!(response.events_recorded, 3);

    let view = queries
        .get_order(pb::GetOrderRequest {
            order: Some(key("1001")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.status, pb::OrderStatus::Paid as i32);
    let details = view.details.as_ref().unwrap();
    assert_eq!(details.distributor_id, "11043");
    assert_eq!(amount(&details.lines[0].net), "39.60 USD");
    assert_eq!(amount(&details.declared_total), "39.60 USD");
    let calculation = view.calculation.as_ref().unwrap();
    assert_eq!(calculation.plan_version, "2026.1");
    let snapshot = calculation.snapshot.as_ref().unwrap();
    assert_eq!(snapshot.distributor_id, "11043");
    assert_eq!(snapshot.content_hash.len(), 64);
    assert_eq!(snapshot.members[1].distributor_id, "10777");
    assert_eq!(calculation.sku_mappings[0].sku_id, "SUPP001");
    let outcome = view.calculated.as_ref().unwrap();
    assert_eq!(amount(&outcome.commissionable_base), "39.60 USD");
    assert_eq!(amount(&outcome.cap), "15.84 USD");
    let payouts: Vec<(String, u32, String)> = outcome
        .payouts
        .iter()
        .map(|p| (p.beneficiary.clone(), p.level, amount(&p.amount)))
        .collect();
    assert_eq!(
        payouts,
        [
            ("11043".to_string(), 1, "3.96 USD".to_string()),
            ("10090".to_string(), 4, "1.19 USD".to_string()),
            ("10002".to_string(), 6, "0.40 USD".to_string()),
        ]
    );
    assert_eq!(amount(&outcome.total), "5.55 USD");
    // The trace says why 10777 (member) and 10500 (bronze) earned nothing.
    let step = outcome
        .trace
        .iter()
        .find(|s| s.distributor_id == "10777")
        .unwrap();
    assert_eq!(
        (step.decision.as_str(), step.level, step.paid_levels),
        ("rank_too_low", Some(2), 1)
    );
    assert_eq!(view.holdings.len(), 3);
    assert_eq!(view.events.len(), 3);

    // Refund one of the two units: every holding halves (rounded once per beneficiary).
    let response = commands
        .refund_order(pb::RefundOrderRequest {
            order: Some(key("1001")),
            refund_id: "r-1".into(),
            refunded_at: "2026-03-12T09:00:00Z".into(),
            lines: vec![pb::RefundLine {
                line_id: "1".into(),
                quantity: "1".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.events_recorded, 2);
    let view = queries
        .get_order(pb::GetOrderRequest {
            order_stream: stream("1001"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.status, pb::OrderStatus::PartiallyRefunded as i32);
    let holdings: Vec<(String, String)> = view
        .holdings
        .iter()
        .map(|h| (h.beneficiary.clone(), amount(&h.amount)))
        .collect();
    assert_eq!(
        holdings,
        [
            ("10002".to_string(), "0.20 USD".to_string()),
            ("10090".to_string(), "0.59 USD".to_string()),
            ("11043".to_string(), "1.98 USD".to_string()),
        ]
    );
    let change = view.commission_changes.last().unwrap();
    assert_eq!(
        (change.cause.as_str(), change.refund_id.as_str()),
        ("refund", "r-1")
    );
    assert_eq!(amount(&change.adjustments[0].change), "-0.20 USD");

    // The same refund again records nothing.
    let again = commands
        .refund_order(pb::RefundOrderRequest {
            order: Some(key("1001")),
            refund_id: "r-1".into(),
            refunded_at: "2026-03-12T09:00:00Z".into(),
            lines: vec![pb::RefundLine {
                line_id: "1".into(),
                quantity: "1".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.outcome, pb::CommandOutcome::Unchanged as i32);

    // Cancelled: every beneficiary back to zero.
    commands
        .cancel_order(pb::CancelOrderRequest {
            order: Some(key("1001")),
            cancelled_at: "2026-03-13T09:00:00Z".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let view = queries
        .get_order(pb::GetOrderRequest {
            order: Some(key("1001")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.status, pb::OrderStatus::Cancelled as i32);
    assert!(view.holdings.is_empty());
    assert!(view.current.is_none());
    assert_eq!(view.commission_changes.len(), 3);

    // A full refund of another order, and a customer enrolment.
    commands
        .submit_order(order("1002", "1", None))
        .await
        .unwrap();
    commands
        .refund_order(pb::RefundOrderRequest {
            order: Some(key("1002")),
            refund_id: "all".into(),
            refunded_at: "2026-03-12T09:00:00Z".into(),
            full: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let view = queries
        .get_order(pb::GetOrderRequest {
            order: Some(key("1002")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.status, pb::OrderStatus::Refunded as i32);
    assert!(view.holdings.is_empty());
    let enrolled = commands
        .enroll_customer(pb::EnrollCustomerRequest {
            platform: pb::Platform::Shopify as i32,
            shop: SHOP.into(),
            customer_id: "c-77".into(),
            distributor_id: "10500".into(),
            enrolled_at: "2026-03-01T00:00:00Z".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(enrolled.stream, format!("customer-shopify-{SHOP}-c-77"));
    assert_eq!(enrolled.events_recorded, 1);

    server.stop().await;
}

#[tokio::test]
async fn a_parked_order_is_said_so_listed_and_retried_after_the_fix() {
    let server = Server::start().await;
    let mut commands = server.operator().await;
    let mut queries = server.queries(Some(DASHBOARD)).await;
    seed(&mut commands).await;

    let error = commands
        .submit_order(order("2001", "1", Some("NEW-SKU")))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    assert!(error.message().contains("parked"), "{}", error.message());
    assert!(error.message().contains("NEW-SKU"), "{}", error.message());

    let parked = queries
        .list_parked(pb::ListParkedRequest::default())
        .await
        .unwrap()
        .into_inner()
        .parked;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].order_stream, stream("2001"));
    assert!(parked[0].reason.contains("NEW-SKU"));
    let view = queries
        .get_order(pb::GetOrderRequest {
            order: Some(key("2001")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.status, pb::OrderStatus::Parked as i32);
    assert_eq!(view.parked.as_ref().unwrap().updates, 1);

    // Retrying before the fix fails again, and says so.
    let error = commands
        .retry_parked(pb::RetryParkedRequest {
            order_stream: stream("2001"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    assert!(error.message().contains("parked"));

    commands
        .map_sku(pb::MapSkuRequest {
            command_id: String::new(),
            mapping: Some(pb::SkuMapping {
                platform: pb::Platform::Shopify as i32,
                platform_sku: "NEW-SKU".into(),
                effective_from: "2026-01-01T00:00:00Z".into(),
                sku_id: "NEW".into(),
                name: "New product".into(),
                category: "new".into(),
                commission_class: "retail".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let retried = commands
        .retry_parked(pb::RetryParkedRequest {
            order: Some(key("2001")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.outcome, pb::CommandOutcome::Recorded as i32);
    assert_eq!(retried.events_recorded, 3);
    assert!(queries
        .list_parked(pb::ListParkedRequest::default())
        .await
        .unwrap()
        .into_inner()
        .parked
        .is_empty());
    let view = queries
        .get_order(pb::GetOrderRequest {
            order: Some(key("2001")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.status, pb::OrderStatus::Paid as i32);
    assert!(view.parked.is_none());
    // 19.80 of SUPP001 plus 10.00 of the newly mapped SKU.
    assert_eq!(
        amount(&view.calculated.unwrap().commissionable_base),
        "29.80 USD"
    );

    server.stop().await;
}

#[tokio::test]
async fn a_command_id_is_carried_out_once_even_after_a_restart() {
    let server = Server::start().await;
    let mut commands = server.operator().await;
    seed(&mut commands).await;

    let register = |command_id: &str, sponsor: &str| pb::RegisterDistributorRequest {
        command_id: command_id.into(),
        distributor_id: "12000".into(),
        sponsor_id: sponsor.into(),
        referral_codes: vec!["NEWBIE".into()],
        country: "us".into(),
        status: pb::DistributorStatus::Active as i32,
        rank: "member".into(),
        joined_at: "2026-04-01T00:00:00Z".into(),
    };
    let first = commands
        .register_distributor(register("reg-12000", "11043"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.command_id, "reg-12000");
    assert_eq!(first.outcome, pb::CommandOutcome::Recorded as i32);
    assert!(!first.replayed);
    let registered_at = first.handled_at.clone();
    let events = server.event_count().await;

    let second = commands
        .register_distributor(register("reg-12000", "11043"))
        .await
        .unwrap()
        .into_inner();
    assert!(second.replayed);
    assert_eq!(
        pb::CommandResponse {
            replayed: false,
            ..second.clone()
        },
        first
    );
    assert_eq!(server.event_count().await, events, "nothing recorded again");

    // The same id with another body, or on another method: refused.
    let error = commands
        .register_distributor(register("reg-12000", "10001"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::AlreadyExists);
    assert!(
        error.message().starts_with("command_id:"),
        "{}",
        error.message()
    );
    let error = commands
        .change_rank(pb::ChangeRankRequest {
            command_id: "reg-12000".into(),
            distributor_id: "12000".into(),
            rank: "bronze".into(),
            effective_at: "2026-05-01T00:00:00Z".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::AlreadyExists);

    // A parked order's answer is recorded too: the same error again, and one OrderParked.
    let mut parked = order("3001", "1", Some("UNKNOWN"));
    parked.command_id = "order-3001".into();
    let first = commands.submit_order(parked.clone()).await.unwrap_err();
    let events = server.event_count().await;
    let second = commands.submit_order(parked.clone()).await.unwrap_err();
    assert_eq!(
        (first.code(), first.message()),
        (second.code(), second.message())
    );
    assert_eq!(server.event_count().await, events);

    // A refused command records nothing: its id may be used once the cause is fixed.
    let mut change = pb::ChangeStatusRequest {
        command_id: "status-1".into(),
        distributor_id: "99999".into(),
        status: pb::DistributorStatus::Inactive as i32,
        effective_at: "2026-05-01T00:00:00Z".into(),
    };
    let error = commands.change_status(change.clone()).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    change.distributor_id = "12000".into();
    let done = commands
        .change_status(change.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(!done.replayed);

    // After a restart on the same store, the recorded answer still stands.
    let dir = Arc::clone(&server.dir);
    drop(commands);
    server.stop().await;
    let server = Server::start_in(dir).await;
    let mut commands = server.operator().await;
    let events = server.event_count().await;
    let third = commands
        .register_distributor(register("reg-12000", "11043"))
        .await
        .unwrap()
        .into_inner();
    assert!(third.replayed);
    assert_eq!(third.handled_at, registered_at);
    let again = commands.change_status(change).await.unwrap().into_inner();
    assert_eq!((again.replayed, again.events_recorded), (true, 1));
    assert_eq!(server.event_count().await, events);
    server.stop().await;
}
