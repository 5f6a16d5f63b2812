//! The ledger, reconciliation and BI methods: answered from the projections' read store
//! (`upline_projections`), which trails the event log by the projections' lag.

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use tonic::Status;
use upline_domain::ids::{DistributorId, Platform};
use upline_domain::money::Currency;
use upline_projections::bi::{BiQuery, OrderFilter, OrderRow};
use upline_projections::ledger::{payable_account, EXPENSE_ACCOUNT};
use upline_projections::reconciliation::{Difference, ReconciliationQuery, ReconciliationRow};
use upline_projections::{LedgerLine, LedgerQuery, ProjectionError, ReadStore};

use crate::convert::{
    fmt_opt_time, fmt_time, id, next_token, order_stream, page_offset, page_size, pb_key,
    pb_platform, platform,
};
use crate::error::{app_error, invalid, not_found, store_error};
use crate::pb;
use crate::Inner;

/// The longest reconciliation range one request reads (it is not paged).
pub const MAX_RECONCILIATION_DAYS: i64 = 366;
/// The most ledger lines ListCommissions reads for one distributor.
pub const MAX_COMMISSION_SCAN: usize = 100_000;

pub(crate) struct ReadSide {
    ledger: LedgerQuery,
    bi: BiQuery,
    reconciliation: ReconciliationQuery,
}

impl ReadSide {
    pub(crate) fn new(read: ReadStore) -> ReadSide {
        ReadSide {
            ledger: LedgerQuery::new(read.clone()),
            bi: BiQuery::new(read.clone()),
            reconciliation: ReconciliationQuery::new(read),
        }
    }
}

pub(crate) fn projection_error(e: ProjectionError) -> Status {
    match e {
        ProjectionError::InvalidPageToken(_) => invalid("page_token", e),
        ProjectionError::Store(e) => store_error(e),
        e @ ProjectionError::Database(_) => Status::unavailable(e.to_string()),
        e => Status::internal(e.to_string()),
    }
}

/// An amount read back from the read store, shown with at least its currency's minor unit.
fn money(amount: Decimal, currency: &str) -> Option<pb::Money> {
    let mut amount = amount.normalize();
    if let Ok(c) = Currency::from_code(currency) {
        if amount.scale() < c.minor_unit() {
            amount.rescale(c.minor_unit());
        }
    }
    Some(pb::Money {
        amount: amount.to_string(),
        currency: currency.to_string(),
    })
}

fn quantity(value: Decimal) -> String {
    value.normalize().to_string()
}

fn pb_platform_text(platform: &str) -> i32 {
    platform
        .parse::<Platform>()
        .map(|p| pb_platform(p) as i32)
        .unwrap_or_default()
}

fn platform_filter(field: &str, value: i32) -> Result<Option<&'static str>, Status> {
    if value == pb::Platform::Unspecified as i32 {
        return Ok(None);
    }
    Ok(Some(platform(field, value)?.as_str()))
}

fn day(field: &str, value: &str) -> Result<Option<NaiveDate>, Status> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(Some)
        .map_err(|e| invalid(field, format!("{value:?} is not a day (YYYY-MM-DD): {e}")))
}

/// A month as its first day.
fn month(field: &str, value: &str) -> Result<Option<NaiveDate>, Status> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(&format!("{value}-01"), "%Y-%m-%d")
        .map(Some)
        .map_err(|_| invalid(field, format!("{value:?} is not a month (YYYY-MM)")))
}

/// An unbounded range's ends.
fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

fn last_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or_default()
}

fn range(
    (from_field, from): (&str, Option<NaiveDate>),
    to: Option<NaiveDate>,
) -> Result<(NaiveDate, NaiveDate), Status> {
    let (from, to) = (from.unwrap_or_else(first_day), to.unwrap_or_else(last_day));
    if from > to {
        return Err(invalid(from_field, "is after the end of the range"));
    }
    Ok((from, to))
}

fn token(value: &str) -> Option<&str> {
    Some(value.trim()).filter(|t| !t.is_empty())
}

fn ledger_entry(line: &LedgerLine) -> pb::LedgerEntry {
    let payable = payable_account(&line.distributor_id);
    let (kind, debit, credit) = if line.kind == "reversed" {
        (
            pb::LedgerEntryKind::Reversed,
            payable,
            EXPENSE_ACCOUNT.to_string(),
        )
    } else {
        (
            pb::LedgerEntryKind::Earned,
            EXPENSE_ACCOUNT.to_string(),
            payable,
        )
    };
    pb::LedgerEntry {
        position: line.position,
        distributor_id: line.distributor_id.clone(),
        kind: kind as i32,
        amount: money(line.debit + line.credit, &line.currency),
        order_stream: line.order_stream.clone(),
        order_revision: line.order_revision,
        level: line.level.unwrap_or_default(),
        plan_version: line.plan_version.clone(),
        recorded_at: fmt_time(line.recorded_at),
        debit_account: debit,
        credit_account: credit,
        event_id: line.event_id.clone(),
    }
}

fn reconciliation_row(r: &ReconciliationRow) -> pb::ReconciliationRow {
    let m = |amount: Decimal| money(amount, &r.currency);
    pb::ReconciliationRow {
        day: r.day.format("%Y-%m-%d").to_string(),
        platform: pb_platform_text(&r.platform),
        shop: r.shop.clone(),
        currency: r.currency.clone(),
        orders: r.orders,
        orders_received: r.orders_received,
        orders_paid: r.orders_paid,
        orders_refunded: r.orders_refunded,
        orders_cancelled: r.orders_cancelled,
        orders_parked: r.orders_parked,
        orders_unattributed: r.orders_unattributed,
        gross: m(r.gross),
        discounts: m(r.discounts),
        net: m(r.net),
        tax: m(r.tax),
        shipping: m(r.shipping),
        declared_total: m(r.declared_total),
        lines_total: m(r.lines_total),
        declared_delta: m(r.declared_delta),
        commissionable_base: m(r.commissionable_base),
        commission_earned: m(r.commission_earned),
        commission_reversed: m(r.commission_reversed),
        commission_posted: m(r.commission_posted),
        commission_recorded: m(r.commission_recorded),
        commission_expected: m(r.commission_expected),
        commission_delta: m(r.commission_delta),
        commission_delta_percent: r
            .commission_delta_pct
            .map(|p| p.normalize().to_string())
            .unwrap_or_default(),
        orders_commission_differing: r.orders_commission_differing,
        orders_total_differing: r.orders_total_differing,
    }
}

fn difference(d: &Difference) -> pb::ReconciliationDifference {
    pb::ReconciliationDifference {
        order_stream: d.order_stream.clone(),
        kind: d.kind.clone(),
        subject: d.subject.clone(),
        day: d.day.format("%Y-%m-%d").to_string(),
        platform: pb_platform_text(&d.platform),
        shop: d.shop.clone(),
        expected: money(d.expected, &d.currency),
        actual: money(d.actual, &d.currency),
        delta: money(d.delta, &d.currency),
        note: d.note.clone(),
    }
}

/// The BI tables' order statuses.
fn bi_status(status: &str) -> pb::OrderStatus {
    match status {
        "placed" => pb::OrderStatus::Placed,
        "paid" => pb::OrderStatus::Paid,
        "partially_refunded" => pb::OrderStatus::PartiallyRefunded,
        "refunded" => pb::OrderStatus::Refunded,
        "cancelled" => pb::OrderStatus::Cancelled,
        "parked" => pb::OrderStatus::Parked,
        "pending" => pb::OrderStatus::AwaitingDetails,
        _ => pb::OrderStatus::Unspecified,
    }
}

fn bi_status_filter(value: i32) -> Result<Option<String>, Status> {
    let status = pb::OrderStatus::try_from(value)
        .map_err(|_| invalid("status", format!("{value} is not an order status")))?;
    Ok(match status {
        pb::OrderStatus::Unspecified => None,
        pb::OrderStatus::Placed => Some("placed"),
        pb::OrderStatus::Paid => Some("paid"),
        pb::OrderStatus::PartiallyRefunded => Some("partially_refunded"),
        pb::OrderStatus::Refunded => Some("refunded"),
        pb::OrderStatus::Cancelled => Some("cancelled"),
        pb::OrderStatus::Parked => Some("parked"),
        pb::OrderStatus::AwaitingDetails => Some("pending"),
    }
    .map(str::to_string))
}

fn order_summary(o: &OrderRow) -> pb::OrderSummaryRow {
    let m = |amount: Decimal| money(amount, &o.currency);
    pb::OrderSummaryRow {
        order_stream: o.order_stream.clone(),
        key: o
            .platform
            .parse::<Platform>()
            .ok()
            .zip(o.shop.parse().ok())
            .zip(o.order_id.parse().ok())
            .map(|((platform, shop), order_id)| {
                pb_key(&upline_domain::order::OrderKey {
                    platform,
                    shop,
                    order_id,
                })
            }),
        day: o.day.format("%Y-%m-%d").to_string(),
        placed_at: fmt_opt_time(o.placed_at),
        currency: o.currency.clone(),
        distributor_id: o.distributor_id.clone().unwrap_or_default(),
        status: bi_status(&o.status) as i32,
        parked: o.parked,
        paid_at: fmt_opt_time(o.paid_at),
        cancelled_at: fmt_opt_time(o.cancelled_at),
        refunds: o.refunds,
        gross: m(o.gross),
        discounts: m(o.discounts),
        net: m(o.net),
        tax: m(o.tax),
        shipping: m(o.shipping),
        declared_total: m(o.declared_total),
        net_kept: m(o.net_kept),
        pv: quantity(o.pv),
        commissionable_base: m(o.commissionable_base),
        commissions: m(o.commissions),
    }
}

impl Inner {
    fn read_side(&self, method: &str) -> Result<&ReadSide, Status> {
        self.read.as_ref().ok_or_else(|| {
            Status::unimplemented(format!(
                "{method}: this server runs without a read store (the ledger, reconciliation and \
                 BI projections); start it with one"
            ))
        })
    }

    /// A distributor id that the network knows (NOT_FOUND otherwise).
    async fn known_distributor(&self, value: &str) -> Result<DistributorId, Status> {
        let distributor: DistributorId = id("distributor_id", value)?;
        self.app.company().refresh().await.map_err(app_error)?;
        if !self
            .app
            .company()
            .read()
            .await
            .company
            .network
            .contains(&distributor)
        {
            return Err(not_found(
                "distributor_id",
                format!("distributor {distributor} is not registered"),
            ));
        }
        Ok(distributor)
    }

    pub(crate) async fn get_balance(
        &self,
        r: pb::GetBalanceRequest,
    ) -> Result<pb::GetBalanceResponse, Status> {
        let read = self.read_side("GetBalance")?;
        let currency = match r.currency.trim() {
            "" => None,
            code => Some(
                Currency::from_code(code)
                    .map_err(|e| invalid("currency", e))?
                    .code()
                    .to_string(),
            ),
        };
        let distributor = self.known_distributor(&r.distributor_id).await?;
        let balances = read
            .ledger
            .balance(distributor.as_str(), currency.as_deref())
            .await
            .map_err(projection_error)?;
        Ok(pb::GetBalanceResponse {
            distributor_id: distributor.to_string(),
            balances: balances
                .iter()
                .map(|b| pb::Balance {
                    currency: b.currency.clone(),
                    earned: money(b.earned, &b.currency),
                    reversed: money(b.reversed, &b.currency),
                    paid: money(b.paid, &b.currency),
                    balance: money(b.balance, &b.currency),
                    entries: b.entries,
                    last_position: b.last_position,
                    updated_at: fmt_time(b.updated_at),
                })
                .collect(),
        })
    }

    pub(crate) async fn list_ledger_entries(
        &self,
        r: pb::ListLedgerEntriesRequest,
    ) -> Result<pb::ListLedgerEntriesResponse, Status> {
        let read = self.read_side("ListLedgerEntries")?;
        let distributor = self.known_distributor(&r.distributor_id).await?;
        let page = read
            .ledger
            .entries(distributor.as_str(), token(&r.page_token), r.page_size)
            .await
            .map_err(projection_error)?;
        Ok(pb::ListLedgerEntriesResponse {
            entries: page.lines.iter().map(ledger_entry).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    pub(crate) async fn list_commissions(
        &self,
        r: pb::ListCommissionsRequest,
    ) -> Result<pb::ListCommissionsResponse, Status> {
        let read = self.read_side("ListCommissions")?;
        let only = match r.order_stream.trim() {
            "" => None,
            s => Some(order_stream("order_stream", s)?),
        };
        let limit = page_size(r.page_size);
        let offset = page_offset("page_token", &r.page_token)?;
        let distributor = self.known_distributor(&r.distributor_id).await?;

        // Every posting of the distributor, grouped by order and currency in the order of
        // their first posting.
        let mut rows: Vec<(String, pb::Commission, Decimal, Decimal)> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut page_token: Option<String> = None;
        let mut read_lines = 0usize;
        loop {
            let page = read
                .ledger
                .entries(distributor.as_str(), page_token.as_deref(), 1_000)
                .await
                .map_err(projection_error)?;
            read_lines += page.lines.len();
            if read_lines > MAX_COMMISSION_SCAN {
                return Err(Status::resource_exhausted(format!(
                    "distributor_id: {distributor} has more than {MAX_COMMISSION_SCAN} ledger \
                     entries; page through ListLedgerEntries instead"
                )));
            }
            for line in &page.lines {
                if only.as_ref().is_some_and(|o| o != &line.order_stream) {
                    continue;
                }
                let key = (line.order_stream.clone(), line.currency.clone());
                let i = *index.entry(key).or_insert_with(|| {
                    rows.push((
                        line.currency.clone(),
                        pb::Commission {
                            order_stream: line.order_stream.clone(),
                            plan_version: line.plan_version.clone(),
                            first_posted_at: fmt_time(line.recorded_at),
                            ..Default::default()
                        },
                        Decimal::ZERO,
                        Decimal::ZERO,
                    ));
                    rows.len() - 1
                });
                let (_, row, earned, reversed) = &mut rows[i];
                if line.kind == "reversed" {
                    *reversed += line.debit;
                } else {
                    *earned += line.credit;
                    if row.level == 0 {
                        row.level = line.level.unwrap_or_default();
                    }
                }
                row.postings += 1;
                row.last_posted_at = fmt_time(line.recorded_at);
            }
            match page.next_page_token {
                Some(next) => page_token = Some(next),
                None => break,
            }
        }
        let total = rows.len();
        let commissions: Vec<pb::Commission> = rows
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(currency, row, earned, reversed)| pb::Commission {
                earned: money(earned, &currency),
                reversed: money(reversed, &currency),
                net: money(earned - reversed, &currency),
                ..row
            })
            .collect();
        let taken = commissions.len();
        Ok(pb::ListCommissionsResponse {
            commissions,
            next_page_token: next_token(offset, taken, total > offset + taken),
        })
    }

    pub(crate) async fn get_reconciliation(
        &self,
        r: pb::GetReconciliationRequest,
    ) -> Result<pb::GetReconciliationResponse, Status> {
        let read = self.read_side("GetReconciliation")?;
        let Some(from) = day("from_day", &r.from_day)? else {
            return Err(invalid("from_day", "is required (YYYY-MM-DD)"));
        };
        let to = day("to_day", &r.to_day)?.unwrap_or(from);
        if to < from {
            return Err(invalid("to_day", "is before from_day"));
        }
        if (to - from).num_days() >= MAX_RECONCILIATION_DAYS {
            return Err(invalid(
                "to_day",
                format!("a range covers at most {MAX_RECONCILIATION_DAYS} days"),
            ));
        }
        let platform = platform_filter("platform", r.platform)?;
        let shop = match r.shop.trim() {
            "" => None,
            s => Some(id::<upline_domain::ids::ShopId>("shop", s)?.to_string()),
        };
        let q = &read.reconciliation;
        let days = q
            .reconciliation(from, to, platform, shop.as_deref())
            .await
            .map_err(projection_error)?;
        let totals = q
            .summary(from, to, platform, shop.as_deref())
            .await
            .map_err(projection_error)?;
        let differences = q
            .differing_orders(
                from,
                to,
                platform,
                shop.as_deref(),
                token(&r.page_token),
                r.page_size,
            )
            .await
            .map_err(projection_error)?;
        Ok(pb::GetReconciliationResponse {
            days: days.iter().map(reconciliation_row).collect(),
            totals: totals.iter().map(reconciliation_row).collect(),
            differences: differences.differences.iter().map(difference).collect(),
            next_page_token: differences.next_page_token.unwrap_or_default(),
        })
    }

    pub(crate) async fn list_sales_by_day(
        &self,
        r: pb::ListSalesByDayRequest,
    ) -> Result<pb::ListSalesByDayResponse, Status> {
        let read = self.read_side("ListSalesByDay")?;
        let (from, to) = range(
            ("from_day", day("from_day", &r.from_day)?),
            day("to_day", &r.to_day)?,
        )?;
        let platform = platform_filter("platform", r.platform)?;
        let page = read
            .bi
            .sales(from, to, platform, token(&r.page_token), r.page_size)
            .await
            .map_err(projection_error)?;
        Ok(pb::ListSalesByDayResponse {
            rows: page
                .rows
                .iter()
                .map(|s| pb::SalesRow {
                    day: s.day.format("%Y-%m-%d").to_string(),
                    platform: pb_platform_text(&s.platform),
                    currency: s.currency.clone(),
                    sku_id: s.sku_id.clone(),
                    category: s.category.clone(),
                    commission_class: s.commission_class.clone(),
                    orders: s.orders,
                    lines: s.lines,
                    quantity: quantity(s.quantity),
                    net: money(s.net, &s.currency),
                    pv: quantity(s.pv),
                })
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    pub(crate) async fn list_distributor_months(
        &self,
        r: pb::ListDistributorMonthsRequest,
    ) -> Result<pb::ListDistributorMonthsResponse, Status> {
        let read = self.read_side("ListDistributorMonths")?;
        let (from, to) = range(
            ("from_month", month("from_month", &r.from_month)?),
            month("to_month", &r.to_month)?,
        )?;
        let distributor = match r.distributor_id.trim() {
            "" => None,
            d => Some(id::<DistributorId>("distributor_id", d)?.to_string()),
        };
        let page = read
            .bi
            .distributor_months(
                from,
                to,
                distributor.as_deref(),
                token(&r.page_token),
                r.page_size,
            )
            .await
            .map_err(projection_error)?;
        Ok(pb::ListDistributorMonthsResponse {
            rows: page
                .rows
                .iter()
                .map(|d| pb::DistributorMonthRow {
                    month: d.month.clone(),
                    distributor_id: d.distributor_id.clone(),
                    currency: d.currency.clone(),
                    orders: d.orders,
                    orders_paid: d.orders_paid,
                    personal_volume: quantity(d.personal_volume),
                    group_volume: quantity(d.group_volume),
                    group_orders: d.group_orders,
                    commissions: money(d.commissions, &d.currency),
                })
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    pub(crate) async fn list_commissions_by_month(
        &self,
        r: pb::ListCommissionsByMonthRequest,
    ) -> Result<pb::ListCommissionsByMonthResponse, Status> {
        let read = self.read_side("ListCommissionsByMonth")?;
        let (from, to) = range(
            ("from_month", month("from_month", &r.from_month)?),
            month("to_month", &r.to_month)?,
        )?;
        let page = read
            .bi
            .commissions_by_level(from, to, token(&r.page_token), r.page_size)
            .await
            .map_err(projection_error)?;
        Ok(pb::ListCommissionsByMonthResponse {
            rows: page
                .rows
                .iter()
                .map(|c| pb::CommissionMonthRow {
                    month: c.month.clone(),
                    currency: c.currency.clone(),
                    level: c.level,
                    commission_class: c.commission_class.clone(),
                    lines: c.lines,
                    beneficiaries: c.beneficiaries,
                    base: money(c.base, &c.currency),
                    amount: money(c.amount, &c.currency),
                })
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    pub(crate) async fn list_order_summaries(
        &self,
        r: pb::ListOrderSummariesRequest,
    ) -> Result<pb::ListOrderSummariesResponse, Status> {
        let read = self.read_side("ListOrderSummaries")?;
        let (from, to) = range(
            ("from_day", day("from_day", &r.from_day)?),
            day("to_day", &r.to_day)?,
        )?;
        let filter = OrderFilter {
            platform: platform_filter("platform", r.platform)?.map(str::to_string),
            distributor_id: match r.distributor_id.trim() {
                "" => None,
                d => Some(id::<DistributorId>("distributor_id", d)?.to_string()),
            },
            status: bi_status_filter(r.status)?,
        };
        let page = read
            .bi
            .orders(from, to, &filter, token(&r.page_token), r.page_size)
            .await
            .map_err(projection_error)?;
        Ok(pb::ListOrderSummariesResponse {
            rows: page.rows.iter().map(order_summary).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }
}
