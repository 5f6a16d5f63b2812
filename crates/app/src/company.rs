//! The company model kept in memory: the network, catalog, plan versions and customer
//! enrolments, loaded from the store at start and kept current by the commands that change them.
//!
//! Network-wide rules (no cycle, a referral code taken once) need decisions to be serialised:
//! commands that change the company take one lock, decide against the model, append, then apply.
//! This holds for one writer process, which is how upline runs. Changes another process made
//! (an operator's `upline network import` while the server runs) are read from the store before
//! every decision (`refresh`); applying an event the model already holds changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, RwLock};
use upline_domain::catalog::{CatalogCommand, CatalogEvent, SkuMapping};
use upline_domain::company::Company;
use upline_domain::ids::{DistributorId, Platform, ShopId};
use upline_domain::network::{DistributorCommand, DistributorEvent};
use upline_domain::plan::CommissionPlan;
use upline_store::{AllStart, EventStore, ExpectedRevision, StreamFilter};

use crate::error::AppError;
use crate::eventio::{decode_recorded, event_data, Provenance};
use crate::records::{CustomerEvent, PlanEvent};
use crate::streams;

/// Events read per page while loading the company (the store's read limit is 10,000).
const LOAD_PAGE: usize = 5_000;

#[derive(Debug, Default)]
pub struct CompanyState {
    pub company: Company,
    /// Customer stream name -> the distributor they are enrolled with.
    pub customers: HashMap<String, DistributorId>,
}

impl CompanyState {
    pub fn enrolled_with(
        &self,
        platform: Platform,
        shop: &ShopId,
        customer_id: &str,
    ) -> Option<&DistributorId> {
        self.customers
            .get(&streams::customer(platform, shop, customer_id))
    }
}

pub struct CompanyModel {
    store: Arc<dyn EventStore>,
    state: RwLock<CompanyState>,
    /// The last `$all` position of a company event read from the store.
    position: Mutex<u64>,
    /// Serialises the commands that change the company.
    writer: Mutex<()>,
}

impl CompanyModel {
    /// Loads every distributor, SKU, plan and customer event from the store.
    pub async fn load(store: Arc<dyn EventStore>) -> Result<CompanyModel, AppError> {
        let model = CompanyModel {
            store,
            state: RwLock::new(CompanyState::default()),
            position: Mutex::new(0),
            writer: Mutex::new(()),
        };
        model.refresh().await?;
        Ok(model)
    }

    fn filter() -> StreamFilter {
        StreamFilter {
            stream_prefixes: vec![
                streams::DISTRIBUTOR_PREFIX.into(),
                streams::SKU_PREFIX.into(),
                streams::PLAN_PREFIX.into(),
                streams::CUSTOMER_PREFIX.into(),
            ],
        }
    }

    /// Applies the company events recorded since the last read, whoever recorded them. Cheap
    /// when there are none: one indexed query.
    pub async fn refresh(&self) -> Result<(), AppError> {
        let mut position = self.position.lock().await;
        loop {
            let page = self
                .store
                .read_all(AllStart::After(*position), &Self::filter(), LOAD_PAGE)
                .await?;
            let Some(last) = page.last().map(|r| r.position) else {
                return Ok(());
            };
            let mut state = self.state.write().await;
            for recorded in &page {
                apply_recorded(&mut state, recorded)?;
            }
            *position = last;
        }
    }

    pub async fn read(&self) -> tokio::sync::RwLockReadGuard<'_, CompanyState> {
        self.state.read().await
    }

    /// Registers a distributor or records a sponsor, status or rank change. Returns the events
    /// recorded (none when the fact was already known).
    pub async fn execute_network(
        &self,
        command: &DistributorCommand,
        provenance: &Provenance,
    ) -> Result<Vec<DistributorEvent>, AppError> {
        let _writer = self.writer.lock().await;
        self.refresh().await?;
        let events = self.state.read().await.company.network.decide(command)?;
        for event in &events {
            let stream = streams::distributor(distributor_of(event));
            // The lock above is the concurrency guard for network rules; `Any` because another
            // process (an operator's import) may append to the same stream.
            let data = event_data(&stream, "network", event, provenance)?;
            self.store
                .append(&stream, ExpectedRevision::Any, vec![data])
                .await?;
            self.state.write().await.company.network.apply(event)?;
        }
        Ok(events)
    }

    /// Maps a platform SKU from its `effective_from` on.
    pub async fn map_sku(
        &self,
        mapping: SkuMapping,
        provenance: &Provenance,
    ) -> Result<Vec<CatalogEvent>, AppError> {
        let _writer = self.writer.lock().await;
        self.refresh().await?;
        let events = self
            .state
            .read()
            .await
            .company
            .catalog
            .decide(&CatalogCommand::MapSku(mapping))?;
        for event in &events {
            let CatalogEvent::SkuMapped(m) = event;
            let stream = streams::sku(m.platform, &m.platform_sku);
            let data = event_data(&stream, "catalog", event, provenance)?;
            self.store
                .append(&stream, ExpectedRevision::Any, vec![data])
                .await?;
            self.state.write().await.company.catalog.apply(event)?;
        }
        Ok(events)
    }

    /// Publishes a plan version. Publishing the same document again records nothing.
    pub async fn publish_plan(
        &self,
        plan: CommissionPlan,
        provenance: &Provenance,
    ) -> Result<bool, AppError> {
        let _writer = self.writer.lock().await;
        self.refresh().await?;
        let mut plans = self.state.read().await.company.plans.clone();
        let known = plans.get(&plan.version).is_some();
        plans.publish(plan.clone())?;
        if known {
            return Ok(false);
        }
        let stream = streams::plan(&plan.version);
        let event = PlanEvent::PlanPublished {
            content_hash: plan.content_hash(),
            plan,
        };
        let data = event_data(&stream, "plan", &event, provenance)?;
        self.store
            .append(&stream, ExpectedRevision::Any, vec![data])
            .await?;
        self.state.write().await.company.plans = plans;
        Ok(true)
    }

    /// Enrols a customer with a distributor, unless they already are (with anyone).
    pub async fn enroll_customer(
        &self,
        platform: Platform,
        shop: &ShopId,
        customer_id: &str,
        distributor: &DistributorId,
        at: DateTime<Utc>,
        provenance: &Provenance,
    ) -> Result<bool, AppError> {
        let _writer = self.writer.lock().await;
        self.refresh().await?;
        let stream = streams::customer(platform, shop, customer_id);
        if let Some(existing) = self.state.read().await.customers.get(&stream) {
            return if existing == distributor {
                Ok(false)
            } else {
                Err(AppError::CustomerEnrolledElsewhere {
                    customer: customer_id.to_string(),
                    existing: existing.to_string(),
                    requested: distributor.to_string(),
                })
            };
        }
        if !self
            .state
            .read()
            .await
            .company
            .network
            .contains(distributor)
        {
            return Err(upline_domain::network::NetworkError::UnknownDistributor {
                distributor_id: distributor.clone(),
            }
            .into());
        }
        let event = CustomerEvent::CustomerEnrolled {
            distributor_id: distributor.clone(),
            enrolled_at: at,
        };
        let data = event_data(&stream, "enrolment", &event, provenance)?;
        // NoStream: a customer is enrolled once, with the first distributor who refers them.
        match self
            .store
            .append(&stream, ExpectedRevision::NoStream, vec![data])
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_wrong_expected_revision() => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.state
            .write()
            .await
            .customers
            .insert(stream, distributor.clone());
        Ok(true)
    }
}

fn distributor_of(event: &DistributorEvent) -> &DistributorId {
    match event {
        DistributorEvent::DistributorRegistered { distributor_id, .. }
        | DistributorEvent::SponsorChanged { distributor_id, .. }
        | DistributorEvent::StatusChanged { distributor_id, .. }
        | DistributorEvent::RankChanged { distributor_id, .. } => distributor_id,
    }
}

fn apply_recorded(
    state: &mut CompanyState,
    recorded: &upline_store::RecordedEvent,
) -> Result<(), AppError> {
    let stream = recorded.stream_id.as_str();
    if stream.starts_with(streams::DISTRIBUTOR_PREFIX) {
        let event: DistributorEvent = decode_recorded(recorded)?;
        state.company.network.apply(&event)?;
    } else if stream.starts_with(streams::SKU_PREFIX) {
        let event: CatalogEvent = decode_recorded(recorded)?;
        state.company.catalog.apply(&event)?;
    } else if stream.starts_with(streams::PLAN_PREFIX) {
        let PlanEvent::PlanPublished { plan, .. } = decode_recorded(recorded)?;
        state.company.plans.publish(plan)?;
    } else if stream.starts_with(streams::CUSTOMER_PREFIX) {
        let CustomerEvent::CustomerEnrolled { distributor_id, .. } = decode_recorded(recorded)?;
        state
            .customers
            .entry(stream.to_string())
            .or_insert(distributor_id);
    }
    Ok(())
}
