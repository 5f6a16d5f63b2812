//! Every status code the API answers, each message naming its field.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tonic::Code;
use upline_api::pb;

use crate::harness::*;

fn expect(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, starts: &str) {
    let status = result.expect_err("an error");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(starts),
        "{:?} should start with {starts:?}",
        status.message()
    );
}

#[tokio::test]
async fn invalid_arguments_name_their_field() {
    let server = Server::start().await;
    let mut commands = server.operator().await;
    let mut queries = server.reader().await;

    let good = pb::RegisterDistributorRequest {
        command_id: String::new(),
        distributor_id: "10001".into(),
        sponsor_id: String::new(),
        referral_codes: vec![],
        country: "US".into(),
        status: pb::DistributorStatus::Active as i32,
        rank: "gold".into(),
        joined_at: "2024-01-01T00:00:00Z".into(),
    };
    let bad = |f: fn(&mut pb::RegisterDistributorRequest)| {
        let mut r = good.clone();
        f(&mut r);
        r
    };
    for (request, field) in [
        (
            bad(|r| r.distributor_id = "no spaces".into()),
            "distributor_id:",
        ),
        (bad(|r| r.joined_at = "yesterday".into()), "joined_at:"),
        (bad(|r| r.joined_at = String::new()), "joined_at:"),
        (bad(|r| r.status = 0), "status:"),
        (bad(|r| r.status = 42), "status:"),
        (bad(|r| r.country = "USA".into()), "country:"),
        (
            bad(|r| r.referral_codes = vec!["ok".into(), "a/b".into()]),
            "referral_codes[1]:",
        ),
        (bad(|r| r.command_id = "no/slashes".into()), "command_id:"),
    ] {
        expect(
            commands.register_distributor(request).await,
            Code::InvalidArgument,
            field,
        );
    }

    // Orders: amounts are exact decimal strings; each line is named.
    let with = |f: fn(&mut pb::Order)| {
        let mut r = order("9001", "1", None);
        f(r.order.as_mut().unwrap());
        r
    };
    for (request, field) in [
        (
            with(|o| o.lines[0].unit_price = "19.8e0".into()),
            "order.lines[0].unit_price:",
        ),
        (
            with(|o| o.lines[0].quantity = "one".into()),
            "order.lines[0].quantity:",
        ),
        (
            with(|o| o.lines[0].quantity = "0".into()),
            "order.lines[0].quantity:",
        ),
        (
            // A line discount may carry a unit price's 4 decimals, no more.
            with(|o| o.lines[0].discount = "0.00001".into()),
            "order.lines[0].discount:",
        ),
        (with(|o| o.currency = "XXX".into()), "order.currency:"),
        (
            with(|o| o.placed_at = "2026-13-01T00:00:00Z".into()),
            "order.placed_at:",
        ),
        (
            with(|o| o.key.as_mut().unwrap().platform = 0),
            "order.key.platform:",
        ),
        (with(|o| o.lines.clear()), "order.lines:"),
        (
            with(|o| o.order_discount = "100".into()),
            "order.order_discount:",
        ),
    ] {
        expect(
            commands.submit_order(request).await,
            Code::InvalidArgument,
            field,
        );
    }
    expect(
        commands
            .refund_order(pb::RefundOrderRequest {
                order: Some(key("9001")),
                refund_id: "r".into(),
                refunded_at: "2026-03-12T09:00:00Z".into(),
                net_amount: "5".into(),
                full: true,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "lines:",
    );

    // A plan document: every problem, each named by its field.
    let broken = PLAN.replace(r#""0.05", "0.04""#, r#""0.05", "-0.04""#);
    let error = commands
        .publish_plan(pb::PublishPlanRequest {
            command_id: String::new(),
            plan_toml: broken,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error
            .message()
            .starts_with("plan_toml: classes.retail.rates[2]"),
        "{}",
        error.message()
    );

    expect(
        queries
            .get_distributor(pb::GetDistributorRequest {
                distributor_id: "10001".into(),
                at: "not a time".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "at:",
    );
    expect(
        queries
            .get_order(pb::GetOrderRequest {
                order_stream: "parked-order-x".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "order_stream:",
    );
    server.stop().await;
}

#[tokio::test]
async fn not_found_failed_precondition_and_already_exists() {
    let server = Server::start().await;
    let mut commands = server.operator().await;
    let mut queries = server.reader().await;
    seed(&mut commands).await;

    // NOT_FOUND: what is addressed does not exist.
    expect(
        queries
            .get_distributor(pb::GetDistributorRequest {
                distributor_id: "404".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "distributor_id:",
    );
    expect(
        queries
            .get_distributor(pb::GetDistributorRequest {
                distributor_id: "11044".into(),
                at: "2025-01-01T00:00:00Z".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "distributor_id:",
    );
    expect(
        queries
            .get_order(pb::GetOrderRequest {
                order: Some(key("404")),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "order:",
    );
    expect(
        commands
            .change_status(pb::ChangeStatusRequest {
                command_id: String::new(),
                distributor_id: "404".into(),
                status: pb::DistributorStatus::Inactive as i32,
                effective_at: "2026-05-01T00:00:00Z".into(),
            })
            .await,
        Code::NotFound,
        "distributor_id:",
    );
    expect(
        commands
            .cancel_order(pb::CancelOrderRequest {
                order: Some(key("404")),
                cancelled_at: "2026-05-01T00:00:00Z".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "order:",
    );
    expect(
        commands
            .retry_parked(pb::RetryParkedRequest {
                order_stream: stream("404"),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "order_stream:",
    );

    // FAILED_PRECONDITION: business rules.
    expect(
        commands
            .change_sponsor(pb::ChangeSponsorRequest {
                command_id: String::new(),
                distributor_id: "10001".into(),
                sponsor_id: "11043".into(),
                effective_at: "2026-05-01T00:00:00Z".into(),
            })
            .await,
        Code::FailedPrecondition,
        "sponsor_id:",
    );
    let mut register = pb::RegisterDistributorRequest {
        command_id: String::new(),
        distributor_id: "13000".into(),
        sponsor_id: "nobody".into(),
        referral_codes: vec![],
        country: "US".into(),
        status: pb::DistributorStatus::Active as i32,
        rank: "member".into(),
        joined_at: "2026-04-01T00:00:00Z".into(),
    };
    expect(
        commands.register_distributor(register.clone()).await,
        Code::FailedPrecondition,
        "sponsor_id:",
    );
    expect(
        commands
            .change_rank(pb::ChangeRankRequest {
                command_id: String::new(),
                distributor_id: "11044".into(),
                rank: "gold".into(),
                effective_at: "2025-01-01T00:00:00Z".into(),
            })
            .await,
        Code::FailedPrecondition,
        "effective_at:",
    );
    // Parked: said so.
    expect(
        commands
            .submit_order(order("9100", "1", Some("NOPE")))
            .await,
        Code::FailedPrecondition,
        "order: parked",
    );
    // A refund of more than was ordered is refused, not parked.
    commands
        .submit_order(order("9101", "1", None))
        .await
        .unwrap();
    expect(
        commands
            .refund_order(pb::RefundOrderRequest {
                order: Some(key("9101")),
                refund_id: "too-much".into(),
                refunded_at: "2026-03-12T09:00:00Z".into(),
                lines: vec![pb::RefundLine {
                    line_id: "1".into(),
                    quantity: "2".into(),
                }],
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "lines:",
    );
    // A paid order's commission-relevant content cannot change.
    let mut changed = order("9101", "3", None);
    changed.order.as_mut().unwrap().updated_at = "2026-03-11T00:00:00Z".into();
    expect(
        commands.submit_order(changed).await,
        Code::FailedPrecondition,
        "order.lines:",
    );

    // ALREADY_EXISTS: a different fact under the same key.
    register.distributor_id = "11043".into();
    register.sponsor_id = "10001".into();
    expect(
        commands.register_distributor(register.clone()).await,
        Code::AlreadyExists,
        "distributor_id:",
    );
    register.distributor_id = "13001".into();
    register.referral_codes = vec!["abc123".into()];
    expect(
        commands.register_distributor(register).await,
        Code::AlreadyExists,
        "referral_codes:",
    );
    expect(
        commands
            .publish_plan(pb::PublishPlanRequest {
                command_id: String::new(),
                plan_toml: PLAN.replace("capped at 40%", "capped at forty percent"),
            })
            .await,
        Code::AlreadyExists,
        "plan_toml:",
    );
    expect(
        commands
            .enroll_customer(pb::EnrollCustomerRequest {
                platform: pb::Platform::Shopify as i32,
                shop: SHOP.into(),
                customer_id: "cust-9101".into(),
                distributor_id: "10001".into(),
                enrolled_at: "2026-03-01T00:00:00Z".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "customer_id:",
    );

    server.stop().await;
}

#[tokio::test]
async fn without_a_read_store_the_read_side_is_unimplemented() {
    let server = Server::start_with(Arc::new(tempfile::tempdir().unwrap()), false).await;
    let mut queries = server.reader().await;
    let error = queries
        .get_balance(pb::GetBalanceRequest {
            distributor_id: "11043".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unimplemented);
    assert!(
        error.message().starts_with("GetBalance: "),
        "{}",
        error.message()
    );
    expect(
        queries
            .list_sales_by_day(pb::ListSalesByDayRequest::default())
            .await,
        Code::Unimplemented,
        "ListSalesByDay:",
    );
    server.stop().await;
}

#[tokio::test]
async fn a_conflict_that_outlasts_the_retries_is_aborted_and_safe_to_retry() {
    let server = Server::start().await;
    let mut commands = server.operator().await;
    seed(&mut commands).await;
    let events = server.event_count().await;

    server.contended.contend.store(true, Ordering::SeqCst);
    let mut request = order("9200", "1", None);
    request.command_id = "order-9200".into();
    expect(
        commands.submit_order(request.clone()).await,
        Code::Aborted,
        "order:",
    );
    assert_eq!(server.event_count().await, events, "nothing recorded");

    // The other writer is gone: the same request, same command id, goes through.
    server.contended.contend.store(false, Ordering::SeqCst);
    let done = commands.submit_order(request).await.unwrap().into_inner();
    assert_eq!(done.outcome, pb::CommandOutcome::Recorded as i32);
    assert!(!done.replayed);
    server.stop().await;
}

#[tokio::test]
async fn tokens_and_roles() {
    let server = Server::start().await;

    let register = pb::RegisterDistributorRequest {
        command_id: String::new(),
        distributor_id: "10001".into(),
        sponsor_id: String::new(),
        referral_codes: vec![],
        country: "US".into(),
        status: pb::DistributorStatus::Active as i32,
        rank: "gold".into(),
        joined_at: "2024-01-01T00:00:00Z".into(),
    };
    let events = server.event_count().await;
    let mut anonymous = server.commands(None).await;
    expect(
        anonymous.register_distributor(register.clone()).await,
        Code::Unauthenticated,
        "authorization:",
    );
    let mut stranger = server.queries(Some("not-a-known-token-at-all")).await;
    expect(
        stranger.list_parked(pb::ListParkedRequest::default()).await,
        Code::Unauthenticated,
        "authorization:",
    );
    for reader in [DASHBOARD, AUDITOR] {
        let mut commands = server.commands(Some(reader)).await;
        expect(
            commands.register_distributor(register.clone()).await,
            Code::PermissionDenied,
            "authorization:",
        );
        let mut queries = server.queries(Some(reader)).await;
        queries
            .list_parked(pb::ListParkedRequest::default())
            .await
            .unwrap();
    }
    assert_eq!(
        server.event_count().await,
        events,
        "a refused command records nothing"
    );
    let mut operator = server.operator().await;
    operator.register_distributor(register).await.unwrap();
    let mut queries = server.queries(Some(OPERATOR)).await;
    queries
        .get_distributor(pb::GetDistributorRequest {
            distributor_id: "10001".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    server.stop().await;
}
