//! Order updates become commands on the order's stream.
//!
//! Each update is decided against the stream as it was read and appended at that revision; the
//! expected revision is the idempotency guard. On a concurrency conflict the stream is read again
//! and the update decided again, a bounded number of times. What cannot be processed now (an
//! unmapped SKU, an unknown referral code, no plan in force, an unknown distributor, ...) is
//! parked whole, with its reason, to be retried after the fix.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use upline_domain::catalog::SkuMapping;
use upline_domain::company::Company;
use upline_domain::ids::{DistributorId, Platform, ShopId};
use upline_domain::order::{
    self, CalculationContext, OrderCommand, OrderDetails, OrderEvent, OrderKey, OrderState,
    PlanSource, Refund, RefundScope,
};
use upline_domain::plan::CommissionPlan;
use upline_domain::snapshot::{HierarchySnapshot, SnapshotRequest};
use upline_platforms::model::{OrderFact, OrderUpdate};
use upline_store::{
    AllStart, Append, Direction, EventStore, ExpectedRevision, StoreError, StreamFilter,
    StreamStart,
};

use crate::attribution::{attribute, Attribution, AttributionSource, DEFAULT_PRECEDENCE};
use crate::company::{CompanyModel, CompanyState};
use crate::error::AppError;
use crate::eventio::{decode_recorded, event_data, now, Provenance};
use crate::records::ParkingEvent;
use crate::streams;

/// How many times an update is decided again after a concurrency conflict before giving up
/// (the worker then retries the whole delivery later).
pub const MAX_CONFLICT_RETRIES: u32 = 8;
/// An order stream longer than this is refused: real orders have tens of events.
pub const MAX_ORDER_EVENTS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppConfig {
    /// Where the distributor of an order is looked for, first match wins.
    pub attribution: Vec<AttributionSource>,
    /// The shops whose test orders earn commissions (`test_orders = "earn"` in the gateway's
    /// shop configuration); every other shop's test orders are recorded and earn nothing.
    #[serde(default)]
    pub test_orders_earn: BTreeSet<(Platform, ShopId)>,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            attribution: DEFAULT_PRECEDENCE.to_vec(),
            test_orders_earn: BTreeSet::new(),
        }
    }
}

/// The company as the order aggregate sees it, with the shops' test-order policy: every lookup
/// is the company's, and `test_orders_earn` answers from the configuration.
struct ShopPolicy<'a> {
    company: &'a Company,
    test_orders_earn: &'a BTreeSet<(Platform, ShopId)>,
}

impl PlanSource for ShopPolicy<'_> {
    fn plan(&self, version: &str) -> Option<&CommissionPlan> {
        self.company.plan(version)
    }
}

impl CalculationContext for ShopPolicy<'_> {
    fn plan_in_force(&self, at: DateTime<Utc>) -> Option<&CommissionPlan> {
        self.company.plan_in_force(at)
    }

    fn sku_mapping(
        &self,
        platform: Platform,
        platform_sku: &str,
        at: DateTime<Utc>,
    ) -> Option<&SkuMapping> {
        self.company.sku_mapping(platform, platform_sku, at)
    }

    fn snapshot(
        &self,
        distributor: &DistributorId,
        at: DateTime<Utc>,
        request: &SnapshotRequest,
    ) -> Result<HierarchySnapshot, String> {
        self.company.snapshot(distributor, at, request)
    }

    fn test_orders_earn(&self, key: &OrderKey) -> bool {
        self.test_orders_earn
            .contains(&(key.platform, key.shop.clone()))
    }
}

/// The refund to record for `refund`: the one already known when the two differ only in the
/// refunded nets they state. A platform may state them in one copy of a refund and not in
/// another (Shopify's `refunds/create` body cannot tell whether its amounts include tax; the
/// order's own copy can), and both copies are the same refund: the first heard stands, rather
/// than the second being refused as a conflicting refund.
fn as_known<'a>(state: &'a OrderState, refund: &'a Refund) -> &'a Refund {
    let Some(known) = state.refunds.get(&refund.refund_id) else {
        return refund;
    };
    let same_units = match (&known.scope, &refund.scope) {
        (RefundScope::Lines(a), RefundScope::Lines(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x.line_id == y.line_id && x.quantity == y.quantity)
        }
        _ => false,
    };
    if same_units && known.refunded_at == refund.refunded_at {
        known
    } else {
        refund
    }
}

/// What became of an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Events were appended to the order's stream.
    Recorded { stream: String, events: usize },
    /// Everything it said was already known.
    Unchanged { stream: String },
    /// It could not be processed now; see `upline parked list`.
    Parked { stream: String, reason: String },
}

/// One order with updates waiting in `parked-{order stream}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedOrder {
    pub order_stream: String,
    pub updates: usize,
    pub reason: String,
    pub parked_at: DateTime<Utc>,
    pub retries: usize,
}

/// A customer to enrol with the distributor who referred their first order, as of that order.
type Enrolment = (String, DistributorId, DateTime<Utc>);

/// What is parked for one order since it was last resolved.
struct Unresolved<'a> {
    updates: Vec<&'a OrderUpdate>,
    /// The latest reason and when it was given.
    latest: Option<(String, DateTime<Utc>)>,
    retries: usize,
}

/// Why an update was not applied: a business refusal parks it, an application error does not.
enum Refusal {
    Park(String),
    Fail(AppError),
}

impl From<AppError> for Refusal {
    fn from(e: AppError) -> Self {
        Refusal::Fail(e)
    }
}

impl From<upline_store::StoreError> for Refusal {
    fn from(e: upline_store::StoreError) -> Self {
        Refusal::Fail(e.into())
    }
}

pub struct App {
    store: Arc<dyn EventStore>,
    company: CompanyModel,
    config: AppConfig,
    parked_orders: AtomicI64,
}

impl App {
    /// Loads the company from the store and counts what is parked.
    pub async fn open(store: Arc<dyn EventStore>, config: AppConfig) -> Result<App, AppError> {
        let company = CompanyModel::load(store.clone()).await?;
        let app = App {
            store,
            company,
            config,
            parked_orders: AtomicI64::new(0),
        };
        let parked = app.list_parked().await?.len() as i64;
        app.parked_orders.store(parked, Ordering::Relaxed);
        metrics::gauge!("upline_parked_orders").set(parked as f64);
        Ok(app)
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn company(&self) -> &CompanyModel {
        &self.company
    }

    /// Applies one platform update to its order, parking it when it cannot be processed now.
    pub async fn handle_update(
        &self,
        update: &OrderUpdate,
        provenance: &Provenance,
        source: &str,
    ) -> Result<UpdateOutcome, AppError> {
        let stream = streams::order(&update.key);
        match self.apply_update(update, provenance).await {
            Ok(0) => Ok(UpdateOutcome::Unchanged { stream }),
            Ok(events) => Ok(UpdateOutcome::Recorded { stream, events }),
            Err(Refusal::Park(reason)) => {
                self.park(&stream, update, &reason, source, provenance)
                    .await?;
                Ok(UpdateOutcome::Parked { stream, reason })
            }
            Err(Refusal::Fail(e)) => Err(e),
        }
    }

    /// The order's state and revision as stored.
    pub async fn load_order(&self, stream: &str) -> Result<(OrderState, Option<u64>), AppError> {
        let recorded = self
            .store
            .read_stream(
                stream,
                Direction::Forwards,
                StreamStart::Start,
                MAX_ORDER_EVENTS,
            )
            .await?;
        if recorded.len() == MAX_ORDER_EVENTS {
            return Err(AppError::StreamTooLong {
                stream: stream.to_string(),
                max: MAX_ORDER_EVENTS,
            });
        }
        let mut state = OrderState::default();
        for r in &recorded {
            order::evolve(&mut state, &decode_recorded::<OrderEvent>(r)?);
        }
        Ok((state, recorded.last().map(|r| r.revision)))
    }

    async fn apply_update(
        &self,
        update: &OrderUpdate,
        provenance: &Provenance,
    ) -> Result<usize, Refusal> {
        let stream = streams::order(&update.key);
        self.company.refresh().await?;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (state, revision) = self.load_order(&stream).await?;
            let (events, enrolment) = {
                let company = self.company.read().await;
                let (commands, enrolment) = self.commands_for(update, &state, &company)?;
                let mut scratch = state;
                let mut events = Vec::new();
                for command in &commands {
                    let context = ShopPolicy {
                        company: &company.company,
                        test_orders_earn: &self.config.test_orders_earn,
                    };
                    let decided = order::decide(&scratch, &update.key, command, &context)
                        .map_err(|e| Refusal::Park(e.to_string()))?;
                    for event in decided {
                        order::evolve(&mut scratch, &event);
                        events.push(event);
                    }
                }
                let enrolment = match enrolment {
                    Some((customer, distributor, at)) => company.first_enrolment(
                        update.key.platform,
                        &update.key.shop,
                        &customer,
                        &distributor,
                        at,
                        provenance,
                    )?,
                    None => None,
                };
                (events, enrolment)
            };
            if events.is_empty() {
                return Ok(0);
            }
            let first = revision.map_or(0, |r| r + 1);
            let data = events
                .iter()
                .enumerate()
                .map(|(i, e)| event_data(&stream, &(first + i as u64).to_string(), e, provenance))
                .collect::<Result<Vec<_>, _>>()?;
            let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
            // The customer's first enrolment goes with the order that made it, in one call, so
            // the store commits both together: after the order's events, and only if they were
            // appended (a conflict stops it too, and the order is decided again).
            let mut appends = vec![Append {
                stream: stream.clone(),
                expected,
                events: data,
            }];
            appends.extend(enrolment.as_ref().map(|e| e.append.clone()));
            let mut results = self.store.append_in_order(appends).await?.into_iter();
            match results.next() {
                Some(Ok(_)) => {}
                Some(Err(e)) if e.is_wrong_expected_revision() => {
                    metrics::counter!("upline_command_conflicts_total").increment(1);
                    tracing::debug!(stream = %stream, "concurrency conflict; deciding again");
                    continue;
                }
                Some(Err(e)) => return Err(e.into()),
                None => {
                    let missing =
                        StoreError::database("the store left an ordered append unanswered");
                    return Err(AppError::from(missing).into());
                }
            }
            if let (Some(enrolment), Some(result)) = (enrolment, results.next()) {
                match result {
                    Ok(_) => self.company.enrolled(enrolment).await,
                    // Enrolled first by another order at the same moment: that enrolment stands,
                    // and the model reads it at its next refresh.
                    Err(e) if e.is_wrong_expected_revision() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(events.len());
        }
        Err(Refusal::Fail(AppError::TooManyConflicts {
            stream,
            attempts: MAX_CONFLICT_RETRIES,
        }))
    }

    /// The commands an update stands for, and the customer to enrol if the order was attributed
    /// by something other than an existing enrolment.
    fn commands_for(
        &self,
        update: &OrderUpdate,
        state: &OrderState,
        company: &CompanyState,
    ) -> Result<(Vec<OrderCommand>, Option<Enrolment>), Refusal> {
        let mut commands = Vec::with_capacity(update.facts.len() + 1);
        let mut enrolment = None;
        if let Some(order) = &update.order {
            // Attribution is decided once, when the order is first recorded: a later copy must
            // not move the credit because an enrolment or a code changed in between.
            let distributor = match &state.details {
                Some(known) => known.distributor.clone(),
                None => {
                    let attribution = attribute(
                        &order.attribution,
                        &self.config.attribution,
                        company,
                        update.key.platform,
                        &update.key.shop,
                    )
                    .map_err(|e| Refusal::Park(e.to_string()))?;
                    match attribution {
                        Attribution::Distributor {
                            distributor,
                            source,
                        } => {
                            if source != AttributionSource::Customer {
                                if let Some(customer) = &order.attribution.customer_id {
                                    enrolment = Some((
                                        customer.clone(),
                                        distributor.clone(),
                                        order.placed_at,
                                    ));
                                }
                            }
                            Some(distributor)
                        }
                        Attribution::Unattributed => None,
                    }
                }
            };
            commands.push(OrderCommand::RecordOrder(OrderDetails {
                key: update.key.clone(),
                placed_at: order.placed_at,
                updated_at: order.updated_at,
                currency: order.currency,
                distributor,
                prices_include_tax: order.prices_include_tax,
                lines: order.lines.clone(),
                order_discount: order.order_discount,
                shipping: order.shipping,
                tax: order.tax,
                declared_total: order.declared_total,
                test: order.test,
            }));
        }
        for fact in &update.facts {
            commands.push(match fact {
                OrderFact::Paid { at } => OrderCommand::RecordPayment { paid_at: *at },
                OrderFact::Cancelled { at } => {
                    OrderCommand::RecordCancellation { cancelled_at: *at }
                }
                OrderFact::Refunded(refund) => {
                    OrderCommand::RecordRefund(as_known(state, refund).clone())
                }
            });
        }
        Ok((commands, enrolment))
    }

    async fn parked_events(&self, parked_stream: &str) -> Result<Vec<ParkingEvent>, AppError> {
        let recorded = self
            .store
            .read_stream(
                parked_stream,
                Direction::Forwards,
                StreamStart::Start,
                MAX_ORDER_EVENTS,
            )
            .await?;
        recorded
            .iter()
            .map(decode_recorded::<ParkingEvent>)
            .collect()
    }

    /// The updates parked since the order was last resolved, with the latest reason.
    fn unresolved(events: &[ParkingEvent]) -> Unresolved<'_> {
        let mut updates = Vec::new();
        let mut latest = None;
        let mut retries = 0;
        for e in events {
            match e {
                ParkingEvent::OrderParked {
                    update,
                    reason,
                    parked_at,
                    ..
                } => {
                    updates.push(update.as_ref());
                    latest = Some((reason.clone(), *parked_at));
                }
                ParkingEvent::ParkedRetryFailed { reason, retried_at } => {
                    latest = Some((reason.clone(), *retried_at));
                    retries += 1;
                }
                ParkingEvent::ParkedOrderResolved { .. } => {
                    updates.clear();
                    latest = None;
                    retries = 0;
                }
            }
        }
        Unresolved {
            updates,
            latest,
            retries,
        }
    }

    async fn park(
        &self,
        order_stream: &str,
        update: &OrderUpdate,
        reason: &str,
        source: &str,
        provenance: &Provenance,
    ) -> Result<(), AppError> {
        let parked_stream = streams::parked(order_stream);
        let events = self.parked_events(&parked_stream).await?;
        let waiting = Self::unresolved(&events).updates;
        if waiting.contains(&update) {
            // The same update delivered again while parked: already kept.
            return Ok(());
        }
        let was_clear = waiting.is_empty();
        let event = ParkingEvent::OrderParked {
            update: Box::new(update.clone()),
            reason: reason.to_string(),
            parked_at: now(),
            source: source.to_string(),
        };
        self.record_parking(&parked_stream, events.len(), &event, provenance)
            .await?;
        tracing::warn!(stream = %order_stream, reason, "order update parked");
        if was_clear {
            let n = self.parked_orders.fetch_add(1, Ordering::Relaxed) + 1;
            metrics::gauge!("upline_parked_orders").set(n as f64);
        }
        Ok(())
    }

    /// Appends to `parked-{order stream}`. `seen` is how many events the stream had when read:
    /// with the content it makes the id, so a repeat of the same step is written once.
    async fn record_parking(
        &self,
        parked_stream: &str,
        seen: usize,
        event: &ParkingEvent,
        provenance: &Provenance,
    ) -> Result<(), AppError> {
        let data = event_data(parked_stream, &seen.to_string(), event, provenance)?;
        self.store
            .append(parked_stream, ExpectedRevision::Any, vec![data])
            .await?;
        Ok(())
    }

    /// Every order with updates waiting, oldest stream first.
    pub async fn list_parked(&self) -> Result<Vec<ParkedOrder>, AppError> {
        let filter = StreamFilter {
            stream_prefixes: vec![streams::PARKED_PREFIX.into()],
        };
        let mut by_stream: std::collections::BTreeMap<String, Vec<ParkingEvent>> =
            Default::default();
        let mut from = AllStart::Start;
        loop {
            let page = self.store.read_all(from, &filter, 5_000).await?;
            let Some(last) = page.last() else { break };
            from = AllStart::After(last.position);
            for r in &page {
                by_stream
                    .entry(r.stream_id.clone())
                    .or_default()
                    .push(decode_recorded(r)?);
            }
        }
        let mut parked = Vec::new();
        for (stream, events) in by_stream {
            let waiting = Self::unresolved(&events);
            if let (false, Some((reason, parked_at))) = (waiting.updates.is_empty(), waiting.latest)
            {
                let order_stream = stream
                    .trim_start_matches(streams::PARKED_PREFIX)
                    .to_string();
                let (updates, retries) = (waiting.updates.len(), waiting.retries);
                parked.push(ParkedOrder {
                    order_stream,
                    updates,
                    reason,
                    parked_at,
                    retries,
                });
            }
        }
        Ok(parked)
    }

    /// Applies an order's parked updates again, in the order they came. Each is calculated with
    /// the hierarchy, plan and SKUs as of its own order time, not today's.
    pub async fn retry_parked(
        &self,
        order_stream: &str,
        provenance: &Provenance,
    ) -> Result<UpdateOutcome, AppError> {
        let parked_stream = streams::parked(order_stream);
        let events = self.parked_events(&parked_stream).await?;
        let updates = Self::unresolved(&events).updates;
        if updates.is_empty() {
            return Err(AppError::NothingParked(order_stream.to_string()));
        }
        let mut recorded = 0;
        for update in updates {
            match self.apply_update(update, provenance).await {
                Ok(n) => recorded += n,
                Err(Refusal::Park(reason)) => {
                    let event = ParkingEvent::ParkedRetryFailed {
                        reason: reason.clone(),
                        retried_at: now(),
                    };
                    self.record_parking(&parked_stream, events.len(), &event, provenance)
                        .await?;
                    return Ok(UpdateOutcome::Parked {
                        stream: order_stream.to_string(),
                        reason,
                    });
                }
                Err(Refusal::Fail(e)) => return Err(e),
            }
        }
        let event = ParkingEvent::ParkedOrderResolved { resolved_at: now() };
        self.record_parking(&parked_stream, events.len(), &event, provenance)
            .await?;
        let n = self.parked_orders.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("upline_parked_orders").set(n as f64);
        Ok(UpdateOutcome::Recorded {
            stream: order_stream.to_string(),
            events: recorded,
        })
    }
}
