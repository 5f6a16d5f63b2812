//! `upline.v1.QueryService`.
//!
//! GetDistributor reads the in-memory company model (refreshed from the store first) and the
//! API's own directory; GetOrder and ListParked read the event store; WatchLedger follows the
//! commission postings on the `commissions-` streams (live, without waiting for the ledger
//! projection). The ledger, reconciliation and BI methods read the projections' read store
//! (`read_side`).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use upline_app::eventio::{decode_recorded, now};
use upline_app::records::PostingEvent;
use upline_app::streams;
use upline_domain::ids::DistributorId;
use upline_domain::network::MAX_UPLINE_WALK;
use upline_domain::snapshot::SnapshotRequest;
use upline_store::{AllStart, EventStore, RecordedEvent, StoreError, StreamFilter};

use crate::convert::{
    fmt_time, id, money, next_token, opt_id, opt_time, order_key, order_stream, page_offset,
    page_size, pb_status,
};
use crate::directory::MAX_DOWNLINE_DEPTH;
use crate::error::{app_error, invalid, not_found, store_error};
use crate::order_view::order_view;
use crate::pb;
use crate::pb::query_service_server::QueryService;
use crate::Inner;

pub(crate) struct Queries {
    pub(crate) inner: Arc<Inner>,
}

type LedgerStream = Pin<Box<dyn Stream<Item = Result<pb::LedgerEntry, Status>> + Send>>;

#[tonic::async_trait]
impl QueryService for Queries {
    async fn get_distributor(
        &self,
        request: Request<pb::GetDistributorRequest>,
    ) -> Result<Response<pb::Distributor>, Status> {
        let r = request.into_inner();
        let distributor: DistributorId = id("distributor_id", &r.distributor_id)?;
        let at = opt_time("at", &r.at)?.unwrap_or_else(now);
        let depth = match r.downline_depth {
            0 => 1,
            d if d > MAX_DOWNLINE_DEPTH => {
                return Err(invalid(
                    "downline_depth",
                    format!("at most {MAX_DOWNLINE_DEPTH}"),
                ))
            }
            d => d,
        };
        if r.upline_levels > MAX_UPLINE_WALK {
            return Err(invalid(
                "upline_levels",
                format!("at most {MAX_UPLINE_WALK} (0: all)"),
            ));
        }
        let limit = page_size(r.page_size);
        let offset = page_offset("page_token", &r.page_token)?;

        let inner = &self.inner;
        inner.app.company().refresh().await.map_err(app_error)?;
        inner.directory.refresh(inner.store.as_ref()).await?;
        let company = inner.app.company().read().await;
        let network = &company.company.network;
        let Some(joined_at) = network.joined_at(&distributor) else {
            return Err(not_found(
                "distributor_id",
                format!("distributor {distributor} is not registered"),
            ));
        };
        if joined_at > at {
            return Err(not_found(
                "distributor_id",
                format!(
                    "distributor {distributor} had not joined at {} (joined {})",
                    fmt_time(at),
                    fmt_time(joined_at)
                ),
            ));
        }
        let status = network
            .status_at(&distributor, at)
            .map_err(crate::error::network_error)?;
        let rank = network
            .rank_at(&distributor, at)
            .map_err(crate::error::network_error)?
            .to_string();
        let sponsor = network
            .sponsor_at(&distributor, at)
            .map_err(crate::error::network_error)?
            .map(|s| s.to_string())
            .unwrap_or_default();
        // Without compression every member uses a level: `levels` members, the distributor
        // (depth 0) included.
        let levels = match r.upline_levels {
            0 => MAX_UPLINE_WALK + 1,
            n => n + 1,
        };
        let snapshot = network
            .snapshot_at(
                &distributor,
                at,
                &SnapshotRequest {
                    levels,
                    qualifying_statuses: Vec::new(),
                    compression: false,
                },
            )
            .map_err(crate::error::network_error)?;
        let (downline, more) = inner
            .directory
            .downline(network, &distributor, at, depth, offset, limit)
            .await;
        let taken = downline.len();
        Ok(Response::new(pb::Distributor {
            distributor_id: distributor.to_string(),
            at: fmt_time(at),
            joined_at: fmt_time(joined_at),
            country: network
                .country(&distributor)
                .unwrap_or_default()
                .to_string(),
            status: pb_status(status) as i32,
            rank,
            sponsor_id: sponsor,
            referral_codes: inner.directory.referral_codes(&distributor).await,
            upline: snapshot
                .members
                .iter()
                .filter(|m| m.depth > 0)
                .map(|m| pb::UplineMember {
                    distributor_id: m.distributor_id.to_string(),
                    depth: m.depth,
                    status: pb_status(m.status) as i32,
                    rank: m.rank.to_string(),
                })
                .collect(),
            upline_reached_top: snapshot.reached_top,
            downline,
            next_page_token: next_token(offset, taken, more),
        }))
    }

    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::OrderView>, Status> {
        let r = request.into_inner();
        let (stream, key) = match (r.order_stream.trim().is_empty(), &r.order) {
            (false, None) => (order_stream("order_stream", &r.order_stream)?, None),
            (true, Some(key)) => {
                let key = order_key("order", Some(key))?;
                (streams::order(&key), Some(key))
            }
            _ => {
                return Err(invalid(
                    "order",
                    "give exactly one of order and order_stream",
                ))
            }
        };
        // The calculation's plan is looked up by version among those published.
        let company = self.inner.app.company();
        company.refresh().await.map_err(app_error)?;
        let plans = company.read().await.company.plans.clone();
        Ok(Response::new(
            order_view(self.inner.store.as_ref(), &plans, &stream, key).await?,
        ))
    }

    async fn list_parked(
        &self,
        request: Request<pb::ListParkedRequest>,
    ) -> Result<Response<pb::ListParkedResponse>, Status> {
        let r = request.into_inner();
        let limit = page_size(r.page_size);
        let offset = page_offset("page_token", &r.page_token)?;
        let all = self.inner.app.list_parked().await.map_err(app_error)?;
        let parked: Vec<pb::ParkedOrder> = all
            .iter()
            .skip(offset)
            .take(limit)
            .map(|p| pb::ParkedOrder {
                order_stream: p.order_stream.clone(),
                updates: p.updates as u32,
                reason: p.reason.clone(),
                parked_at: fmt_time(p.parked_at),
                retries: p.retries as u32,
            })
            .collect();
        let more = all.len() > offset + parked.len();
        let taken = parked.len();
        Ok(Response::new(pb::ListParkedResponse {
            parked,
            next_page_token: next_token(offset, taken, more),
        }))
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        Ok(Response::new(
            self.inner.get_balance(request.into_inner()).await?,
        ))
    }

    async fn list_ledger_entries(
        &self,
        request: Request<pb::ListLedgerEntriesRequest>,
    ) -> Result<Response<pb::ListLedgerEntriesResponse>, Status> {
        Ok(Response::new(
            self.inner.list_ledger_entries(request.into_inner()).await?,
        ))
    }

    async fn list_commissions(
        &self,
        request: Request<pb::ListCommissionsRequest>,
    ) -> Result<Response<pb::ListCommissionsResponse>, Status> {
        Ok(Response::new(
            self.inner.list_commissions(request.into_inner()).await?,
        ))
    }

    async fn get_reconciliation(
        &self,
        request: Request<pb::GetReconciliationRequest>,
    ) -> Result<Response<pb::GetReconciliationResponse>, Status> {
        Ok(Response::new(
            self.inner.get_reconciliation(request.into_inner()).await?,
        ))
    }

    async fn list_sales_by_day(
        &self,
        request: Request<pb::ListSalesByDayRequest>,
    ) -> Result<Response<pb::ListSalesByDayResponse>, Status> {
        Ok(Response::new(
            self.inner.list_sales_by_day(request.into_inner()).await?,
        ))
    }

    async fn list_distributor_months(
        &self,
        request: Request<pb::ListDistributorMonthsRequest>,
    ) -> Result<Response<pb::ListDistributorMonthsResponse>, Status> {
        Ok(Response::new(
            self.inner
                .list_distributor_months(request.into_inner())
                .await?,
        ))
    }

    async fn list_commissions_by_month(
        &self,
        request: Request<pb::ListCommissionsByMonthRequest>,
    ) -> Result<Response<pb::ListCommissionsByMonthResponse>, Status> {
        Ok(Response::new(
            self.inner
                .list_commissions_by_month(request.into_inner())
                .await?,
        ))
    }

    async fn list_order_summaries(
        &self,
        request: Request<pb::ListOrderSummariesRequest>,
    ) -> Result<Response<pb::ListOrderSummariesResponse>, Status> {
        Ok(Response::new(
            self.inner
                .list_order_summaries(request.into_inner())
                .await?,
        ))
    }

    type WatchLedgerStream = LedgerStream;

    async fn watch_ledger(
        &self,
        request: Request<pb::WatchLedgerRequest>,
    ) -> Result<Response<LedgerStream>, Status> {
        let r = request.into_inner();
        let only: Option<DistributorId> = opt_id("distributor_id", &r.distributor_id)?;
        let store = self.inner.store.clone();
        let after = match r.after_position {
            Some(position) => position,
            None => head(store.as_ref()).await.map_err(store_error)?,
        };
        let filter = StreamFilter::prefix(match &only {
            Some(d) => streams::commissions(d),
            None => streams::COMMISSIONS_PREFIX.to_string(),
        });
        let mut stopping = self.inner.stopping.subscribe();
        let stopped = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        let entries = store
            .subscribe_all(AllStart::After(after), filter)
            .take_until(stopped)
            .filter_map(move |item| {
                let only = only.clone();
                async move {
                    match item {
                        Ok(recorded) => ledger_entry(&recorded, only.as_ref()).transpose(),
                        Err(e) => Some(Err(store_error(e))),
                    }
                }
            });
        Ok(Response::new(Box::pin(entries)))
    }
}

/// A commission posting as a ledger entry; `None` for any other event of a commissions stream
/// (and, with a prefix filter, for another distributor whose id starts with the same text).
fn ledger_entry(
    recorded: &RecordedEvent,
    only: Option<&DistributorId>,
) -> Result<Option<pb::LedgerEntry>, Status> {
    if recorded.event_type != PostingEvent::EARNED && recorded.event_type != PostingEvent::REVERSED
    {
        return Ok(None);
    }
    let distributor = recorded
        .stream_id
        .strip_prefix(streams::COMMISSIONS_PREFIX)
        .unwrap_or_default()
        .to_string();
    if only.is_some_and(|d| d.as_str() != distributor) {
        return Ok(None);
    }
    let payable = upline_projections::ledger::payable_account(&distributor);
    let expense = upline_projections::ledger::EXPENSE_ACCOUNT.to_string();
    let entry = match decode_recorded::<PostingEvent>(recorded).map_err(app_error)? {
        PostingEvent::CommissionEarned {
            source,
            currency,
            amount,
            level,
            plan_version,
        } => pb::LedgerEntry {
            kind: pb::LedgerEntryKind::Earned as i32,
            amount: Some(money(amount, currency)),
            order_stream: source.order_stream,
            order_revision: source.order_revision,
            level: level.unwrap_or_default(),
            plan_version,
            debit_account: expense,
            credit_account: payable,
            ..Default::default()
        },
        PostingEvent::CommissionReversed {
            source,
            currency,
            amount,
            plan_version,
        } => pb::LedgerEntry {
            kind: pb::LedgerEntryKind::Reversed as i32,
            amount: Some(money(amount, currency)),
            order_stream: source.order_stream,
            order_revision: source.order_revision,
            plan_version,
            debit_account: payable,
            credit_account: expense,
            ..Default::default()
        },
    };
    Ok(Some(pb::LedgerEntry {
        position: recorded.position,
        distributor_id: distributor,
        recorded_at: fmt_time(recorded.recorded_at),
        event_id: recorded.id.to_string(),
        ..entry
    }))
}

/// The global position of the last event in the store (0 when empty). The port has no "end"
/// position, so it is found by galloping then bisecting on "is there an event after p", a
/// few dozen indexed one-row reads even for billions of events.
async fn head(store: &dyn EventStore) -> Result<u64, StoreError> {
    let all = StreamFilter::all();
    let next = |p: u64| {
        let all = &all;
        async move {
            Ok::<_, StoreError>(
                store
                    .read_all(AllStart::After(p), all, 1)
                    .await?
                    .first()
                    .map(|r| r.position),
            )
        }
    };
    // Invariant: `lo` is 0 or the position of an event; no event lies after `hi`.
    let mut lo = 0u64;
    let mut hi = 1u64;
    while let Some(position) = next(hi).await? {
        lo = position;
        hi = position.saturating_mul(2);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match next(mid).await? {
            Some(position) => lo = position,
            None => hi = mid,
        }
    }
    Ok(next(lo).await?.unwrap_or(lo))
}
