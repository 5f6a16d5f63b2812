//! What the application tests share: a real embedded store, the example company (plan, a chain
//! of distributors, mapped SKUs), order updates of one shop, the postings as a ledger, and an
//! event store that fails on demand.
#![allow(dead_code)] // each test file uses a part

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use futures::stream::BoxStream;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use upline_app::records::PostingEvent;
use upline_app::{streams, App, AppConfig, Provenance};
use upline_domain::catalog::SkuMapping;
use upline_domain::ids::*;
use upline_domain::money::Currency;
use upline_domain::net::OrderLine;
use upline_domain::network::DistributorCommand;
use upline_domain::order::{OrderKey, Refund, RefundLine, RefundScope};
use upline_domain::plan::CommissionPlan;
use upline_domain::snapshot::DistributorStatus;
use upline_platforms::model::{AttributionHints, NormalizedOrder, OrderFact, OrderUpdate};
use upline_store::{
    AllStart, Append, AppendResult, Direction, EventData, EventStore, ExpectedRevision,
    RecordedEvent, SqliteEventStore, StoreError, StreamFilter, StreamStart,
};

pub fn t(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 12, 0, 0)
        .single()
        .unwrap()
}

pub fn cmd() -> Provenance {
    Provenance::command("test")
}

pub async fn open_store(dir: &Path) -> Arc<dyn EventStore> {
    Arc::new(
        SqliteEventStore::open(&dir.join("events.sqlite"))
            .await
            .unwrap(),
    )
}

/// The example plan, a chain top <- d1 <- d2 <- d3 (all gold, active) and two mapped SKUs.
pub async fn seed_company(app: &App) {
    let plan = CommissionPlan::from_toml(include_str!("../../../../examples/plan.toml")).unwrap();
    app.company().publish_plan(plan, &cmd()).await.unwrap();
    let mut sponsor: Option<DistributorId> = None;
    for (i, name) in ["top", "d1", "d2", "d3"].iter().enumerate() {
        let id = DistributorId::new(name).unwrap();
        let command = DistributorCommand::RegisterDistributor {
            distributor_id: id.clone(),
            sponsor: sponsor.clone(),
            referral_codes: vec![ReferralCode::new(format!("CODE{i}")).unwrap()],
            country: "US".into(),
            status: DistributorStatus::Active,
            rank: RankName::new("gold").unwrap(),
            joined_at: t(1, 1),
        };
        app.company()
            .execute_network(&command, &cmd())
            .await
            .unwrap();
        sponsor = Some(id);
    }
    for (sku, class) in [("SUPP001", "retail"), ("KIT-STARTER-001", "starter_kit")] {
        map_sku(app, sku, class).await;
    }
}

pub async fn map_sku(app: &App, sku: &str, class: &str) {
    let mapping = SkuMapping {
        platform: Platform::Shopify,
        platform_sku: sku.into(),
        effective_from: t(1, 1),
        sku_id: SkuId::new(sku).unwrap(),
        name: sku.into(),
        category: class.into(),
        commission_class: CommissionClass::new(class).unwrap(),
        pv_per_unit: None,
        cv_per_unit: None,
    };
    app.company().map_sku(mapping, &cmd()).await.unwrap();
}

pub fn key(order_id: &str) -> OrderKey {
    OrderKey {
        platform: Platform::Shopify,
        shop: ShopId::new("acme.myshopify.com").unwrap(),
        order_id: PlatformOrderId::new(order_id).unwrap(),
    }
}

pub fn order(reference: Option<&str>, sku: &str) -> NormalizedOrder {
    NormalizedOrder {
        placed_at: t(3, 10),
        updated_at: t(3, 10),
        currency: Currency::USD,
        prices_include_tax: false,
        lines: vec![OrderLine {
            line_id: LineId::new("1").unwrap(),
            platform_sku: sku.into(),
            quantity: dec!(2),
            unit_price: dec!(50.00),
            discount: Decimal::ZERO,
            tax: Decimal::ZERO,
        }],
        order_discount: Decimal::ZERO,
        shipping: dec!(5.00),
        tax: dec!(8.00),
        declared_total: dec!(113.00),
        attribution: AttributionHints {
            explicit_ref: reference.map(str::to_string),
            customer_id: Some("cust-1".into()),
            ..AttributionHints::default()
        },
        test: false,
    }
}

pub fn placed(order_id: &str) -> OrderUpdate {
    OrderUpdate {
        key: key(order_id),
        order: Some(order(Some("CODE3"), "SUPP001")),
        facts: vec![],
    }
}

pub fn fact(order_id: &str, fact: OrderFact) -> OrderUpdate {
    OrderUpdate {
        key: key(order_id),
        order: None,
        facts: vec![fact],
    }
}

pub fn refund(id: &str, quantity: Decimal) -> OrderFact {
    OrderFact::Refunded(Refund {
        refund_id: RefundId::new(id).unwrap(),
        refunded_at: t(3, 20),
        scope: RefundScope::Lines(vec![RefundLine {
            line_id: LineId::new("1").unwrap(),
            quantity,
            stated_net: None,
        }]),
    })
}

/// Every posting on distributor streams: (distributor, earned - reversed), and the count of
/// posting events per distributor.
pub async fn ledger(
    store: &Arc<dyn EventStore>,
) -> (BTreeMap<String, Decimal>, BTreeMap<String, usize>) {
    let filter = StreamFilter {
        stream_prefixes: vec![streams::COMMISSIONS_PREFIX.into()],
    };
    let events = store
        .read_all(AllStart::Start, &filter, 10_000)
        .await
        .unwrap();
    let mut balance = BTreeMap::new();
    let mut count = BTreeMap::new();
    for r in events {
        let signed = match r.event_type.as_str() {
            PostingEvent::EARNED | PostingEvent::REVERSED => {
                match upline_domain::events::decode::<PostingEvent>(&r.event_type, &r.data).unwrap()
                {
                    PostingEvent::CommissionEarned { amount, .. } => amount,
                    PostingEvent::CommissionReversed { amount, .. } => -amount,
                }
            }
            _ => continue,
        };
        *balance.entry(r.stream_id.clone()).or_insert(Decimal::ZERO) += signed;
        *count.entry(r.stream_id).or_insert(0) += 1;
    }
    (balance, count)
}

pub async fn app_in(dir: &Path) -> (Arc<dyn EventStore>, App) {
    let store = open_store(dir).await;
    let app = App::open(store.clone(), AppConfig::default())
        .await
        .unwrap();
    (store, app)
}

/// An event store over a real one that fails the next appends to streams starting with
/// `prefix`, with `failure`: a store outage (transient) or a refusal (permanent).
pub struct FailingStore {
    pub inner: Arc<dyn EventStore>,
    prefix: std::sync::Mutex<String>,
    failure: std::sync::Mutex<StoreError>,
    /// Appends still to fail.
    remaining: AtomicU32,
    /// Appends failed so far.
    pub failed: AtomicU32,
    /// The streams of each `append_in_order` call, in order.
    ordered_calls: std::sync::Mutex<Vec<Vec<String>>>,
}

impl FailingStore {
    pub fn over(inner: Arc<dyn EventStore>) -> Arc<FailingStore> {
        Arc::new(FailingStore {
            inner,
            prefix: std::sync::Mutex::new(String::new()),
            failure: std::sync::Mutex::new(StoreError::Closed),
            remaining: AtomicU32::new(0),
            failed: AtomicU32::new(0),
            ordered_calls: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The next `times` appends to streams starting with `prefix` fail with `failure`.
    pub fn fail_appends(&self, prefix: &str, times: u32, failure: StoreError) {
        *self.prefix.lock().unwrap() = prefix.to_string();
        *self.failure.lock().unwrap() = failure;
        self.remaining.store(times, Ordering::SeqCst);
    }

    /// Appends go through again.
    pub fn heal(&self) {
        self.remaining.store(0, Ordering::SeqCst);
    }

    pub fn failed(&self) -> u32 {
        self.failed.load(Ordering::SeqCst)
    }

    /// The streams of each `append_in_order` call so far.
    pub fn ordered_calls(&self) -> Vec<Vec<String>> {
        self.ordered_calls.lock().unwrap().clone()
    }
}

/// A store outage as the SQLite adapter reports one.
pub fn outage() -> StoreError {
    StoreError::database("disk I/O error")
}

#[async_trait]
impl EventStore for FailingStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        let matches = stream.starts_with(self.prefix.lock().unwrap().as_str());
        if matches
            && self
                .remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(self.failure.lock().unwrap().clone());
        }
        self.inner.append(stream, expected, events).await
    }
    /// Recorded, then made one append at a time, so that the failures above apply to each.
    async fn append_in_order(
        &self,
        appends: Vec<Append>,
    ) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
        let streams = appends.iter().map(|a| a.stream.clone()).collect();
        self.ordered_calls.lock().unwrap().push(streams);
        upline_store::append_one_at_a_time(self, appends).await
    }
    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: StreamStart,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner
            .read_stream(stream, direction, from, max_count)
            .await
    }
    async fn read_all(
        &self,
        from: AllStart,
        filter: &StreamFilter,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(from, filter, max_count).await
    }
    fn subscribe_all(
        &self,
        from: AllStart,
        filter: StreamFilter,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        self.inner.subscribe_all(from, filter)
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}
