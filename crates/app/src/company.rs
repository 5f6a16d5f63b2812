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
use upline_store::limits::MAX_APPENDS_IN_ORDER;
use upline_store::{
    AllStart, Append, AppendResult, EventStore, ExpectedRevision, StoreError, StreamFilter,
};

use crate::error::AppError;
use crate::eventio::{decode_recorded, event_data, Provenance};
use crate::records::{CustomerEvent, PlanEvent};
use crate::streams;

/// Events read per page while loading the company (the store's read limit is 10,000).
const LOAD_PAGE: usize = 5_000;

/// What a network import recorded: events appended, and commands whose fact was already known.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetworkImport {
    pub recorded: usize,
    pub known: usize,
}

/// Why an import stopped at `commands[index]`. Everything before it is recorded (`done`), nothing
/// from it on; importing the file again records the rest (known facts are skipped).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct NetworkImportError {
    pub index: usize,
    pub done: NetworkImport,
    pub error: AppError,
}

/// A chunk whose appends are being made.
struct InFlight {
    append: tokio::task::JoinHandle<Result<Vec<Result<AppendResult, StoreError>>, StoreError>>,
    /// The chunk's first command.
    first: usize,
    commands: Vec<usize>,
    known: usize,
    refused: Option<(usize, AppError)>,
}

/// The network commands of one ordered group of appends, decided against the model.
struct ImportChunk {
    appends: Vec<Append>,
    /// For each append, the index of the command it records.
    commands: Vec<usize>,
    /// Commands taken (decided, whatever they recorded).
    taken: usize,
    known: usize,
    /// The command the chunk stopped at, and why. The import then ends with that error once
    /// the chunk is appended, and the model is read back from the store (it may hold part of
    /// the refused command, should applying it have failed halfway).
    refused: Option<(usize, AppError)>,
}

#[derive(Debug, Default)]
pub struct CompanyState {
    pub company: Company,
    /// Customer stream name -> the distributor they are enrolled with.
    pub customers: HashMap<String, DistributorId>,
}

/// A customer's first enrolment, ready to append: with `NoStream`, because a customer is
/// enrolled once, with the first distributor who refers them (of two racing first enrolments,
/// one is recorded and the other refused as a wrong expected revision).
#[derive(Debug, Clone)]
pub struct NewEnrolment {
    pub stream: String,
    pub distributor: DistributorId,
    pub append: Append,
}

impl NewEnrolment {
    fn of(
        stream: String,
        distributor: &DistributorId,
        at: DateTime<Utc>,
        provenance: &Provenance,
    ) -> Result<NewEnrolment, AppError> {
        let event = CustomerEvent::CustomerEnrolled {
            distributor_id: distributor.clone(),
            enrolled_at: at,
        };
        let data = event_data(&stream, "enrolment", &event, provenance)?;
        Ok(NewEnrolment {
            append: Append {
                stream: stream.clone(),
                expected: ExpectedRevision::NoStream,
                events: vec![data],
            },
            stream,
            distributor: distributor.clone(),
        })
    }
}

impl CompanyState {
    /// The enrolment of `customer_id` with `distributor`, unless the customer is enrolled
    /// already, with anyone (the first enrolment stands).
    pub fn first_enrolment(
        &self,
        platform: Platform,
        shop: &ShopId,
        customer_id: &str,
        distributor: &DistributorId,
        at: DateTime<Utc>,
        provenance: &Provenance,
    ) -> Result<Option<NewEnrolment>, AppError> {
        let stream = streams::customer(platform, shop, customer_id);
        if self.customers.contains_key(&stream) {
            return Ok(None);
        }
        NewEnrolment::of(stream, distributor, at, provenance).map(Some)
    }

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
        // Pages are read and decoded before the state is locked: deciders wait only while a
        // page is applied, never on the store.
        while let Some(page) = Page::after(self.store.as_ref(), *position).await? {
            {
                let mut state = self.state.write().await;
                for fact in page.facts {
                    fact.apply(&mut state)?;
                }
            }
            *position = page.last;
            if !page.full {
                break;
            }
        }
        Ok(())
    }

    /// The position of the first company event after `position`, if any: one indexed read.
    async fn first_company_event_after(&self, position: u64) -> Result<Option<u64>, AppError> {
        let page = self
            .store
            .read_all(AllStart::After(position), &Self::filter(), 1)
            .await?;
        Ok(page.first().map(|r| r.position))
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

    /// Imports network commands in order, as [`CompanyModel::execute_network`] would one by one,
    /// but with one lock, one refresh and one ordered group of appends
    /// ([`EventStore::append_in_order`]) per chunk of [`MAX_APPENDS_IN_ORDER`] events, so the
    /// store commits them in groups instead of once per command. The next chunk is decided
    /// while the previous one is appended. Stops at the first command refused (everything
    /// before it is recorded) or at the first append the store refuses (the model is then read
    /// back from the store, so it never keeps what is not stored).
    ///
    /// The company is held for the whole import (decisions elsewhere wait): the model runs a
    /// chunk ahead of the store, and nobody may read a fact before it is durable. It is meant
    /// for `upline network import`, its own process.
    pub async fn import_network(
        &self,
        commands: &[DistributorCommand],
        provenance: &Provenance,
    ) -> Result<NetworkImport, NetworkImportError> {
        let _writer = self.writer.lock().await;
        let mut done = NetworkImport::default();
        self.refresh().await.map_err(|error| NetworkImportError {
            index: 0,
            done,
            error,
        })?;
        // In refresh's order: position, then state.
        let mut position = self.position.lock().await;
        let mut state = self.state.write().await;
        let mut in_flight: Option<InFlight> = None;
        let mut next = 0;
        let mut go_on = true;
        loop {
            let chunk = (go_on && next < commands.len())
                .then(|| decide_chunk(&mut state, commands, next, provenance));
            if let Some(previous) = in_flight.take() {
                let settled = self.settle(previous, &mut done, &mut position).await;
                if let Err(error) = settled {
                    self.read_back(&mut state, &mut position).await;
                    return Err(error);
                }
            }
            let Some(chunk) = chunk else {
                return Ok(done);
            };
            let first = next;
            next += chunk.taken;
            go_on = chunk.refused.is_none();
            let store = Arc::clone(&self.store);
            let appends = chunk.appends;
            in_flight = Some(InFlight {
                append: tokio::spawn(async move { store.append_in_order(appends).await }),
                first,
                commands: chunk.commands,
                known: chunk.known,
                refused: chunk.refused,
            });
        }
    }

    /// Waits for a chunk's appends and counts them; the error names the first command not
    /// recorded (the caller then reads the model back from the store).
    async fn settle(
        &self,
        chunk: InFlight,
        done: &mut NetworkImport,
        position: &mut u64,
    ) -> Result<(), NetworkImportError> {
        let failed = |index, done, error| NetworkImportError { index, done, error };
        let results = match chunk.append.await {
            Ok(Ok(results)) => results,
            Ok(Err(e)) => return Err(failed(chunk.first, *done, e.into())),
            Err(e) => {
                let e = StoreError::database(format!("the append task failed: {e}"));
                return Err(failed(chunk.first, *done, e.into()));
            }
        };
        let mut appended = Vec::with_capacity(results.len());
        for (result, &index) in results.into_iter().zip(&chunk.commands) {
            // The appends before a failed one are stored, none after it (`append_in_order`
            // stops at the first failure).
            let result = result.map_err(|e| failed(index, *done, e.into()))?;
            appended.push(result.position);
            done.recorded += 1;
        }
        done.known += chunk.known;
        if let Some((index, error)) = chunk.refused {
            return Err(failed(index, *done, error));
        }
        self.skip_own_appends(position, &appended).await;
        Ok(())
    }

    /// Moves the model's position past the events an import chunk just appended (and applied),
    /// so the next refresh does not read a million of them back, but only when nothing else
    /// can hide among them: their positions follow each other, and the first company event
    /// after the model's position is the first of them.
    async fn skip_own_appends(&self, position: &mut u64, appended: &[u64]) {
        let (Some(&first), Some(&last)) = (appended.first(), appended.last()) else {
            return;
        };
        if last - first + 1 != appended.len() as u64 {
            return;
        }
        match self.first_company_event_after(*position).await {
            Ok(found) if found == Some(first) => *position = last,
            // Something else came first, or the read failed: refresh reads them all again,
            // which changes nothing already known.
            _ => {}
        }
    }

    /// After a failed import append: the model is read again from the store, so that it holds
    /// exactly what is stored. Should that read fail too, the model is emptied and its position
    /// set back to the start, so the next refresh (before the next decision) reads the whole
    /// company from the store again; it never keeps a fact the store does not hold.
    async fn read_back(&self, state: &mut CompanyState, position: &mut u64) {
        let mut fresh = CompanyState::default();
        let mut fresh_position = 0;
        if let Err(error) = catch_up(self.store.as_ref(), &mut fresh, &mut fresh_position).await {
            tracing::error!(%error, "the company could not be read back after a failed import; it is read again before the next decision");
            fresh = CompanyState::default();
            fresh_position = 0;
        }
        *state = fresh;
        *position = fresh_position;
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
        let enrolment = NewEnrolment::of(stream, distributor, at, provenance)?;
        let Append {
            stream,
            expected,
            events,
        } = enrolment.append.clone();
        match self.store.append(&stream, expected, events).await {
            Ok(_) => {}
            Err(e) if e.is_wrong_expected_revision() => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.enrolled(enrolment).await;
        Ok(true)
    }

    /// Takes into the model an enrolment this process appended, so that the next decision
    /// knows it without waiting for a refresh (which reads it again and changes nothing).
    pub async fn enrolled(&self, enrolment: NewEnrolment) {
        self.state
            .write()
            .await
            .customers
            .entry(enrolment.stream)
            .or_insert(enrolment.distributor);
    }
}

/// Decides `commands[first..]` against the model, applying each command's events as it goes
/// (a sponsor registered earlier in the file is known to the distributors below), until the
/// chunk holds [`MAX_APPENDS_IN_ORDER`] events or a command is refused.
fn decide_chunk(
    state: &mut CompanyState,
    commands: &[DistributorCommand],
    first: usize,
    provenance: &Provenance,
) -> ImportChunk {
    let mut chunk = ImportChunk {
        appends: Vec::new(),
        commands: Vec::new(),
        taken: 0,
        known: 0,
        refused: None,
    };
    for (index, command) in commands.iter().enumerate().skip(first) {
        let network = &mut state.company.network;
        let events = match network.decide(command) {
            Ok(events) => events,
            Err(e) => {
                chunk.refused = Some((index, e.into()));
                return chunk;
            }
        };
        if !chunk.appends.is_empty() && chunk.appends.len() + events.len() > MAX_APPENDS_IN_ORDER {
            // Decided again, unchanged, at the start of the next chunk.
            return chunk;
        }
        if events.is_empty() {
            chunk.known += 1;
        }
        let mut appends = Vec::with_capacity(events.len());
        for event in &events {
            let stream = streams::distributor(distributor_of(event));
            match event_data(&stream, "network", event, provenance) {
                Ok(data) => appends.push(Append {
                    stream,
                    expected: ExpectedRevision::Any,
                    events: vec![data],
                }),
                Err(e) => {
                    chunk.refused = Some((index, e));
                    return chunk;
                }
            }
        }
        for event in &events {
            if let Err(e) = network.apply(event) {
                // Decided a moment ago, so this is a bug; stop before recording it.
                chunk.refused = Some((index, e.into()));
                return chunk;
            }
        }
        chunk
            .commands
            .extend(std::iter::repeat_n(index, appends.len()));
        chunk.appends.extend(appends);
        chunk.taken += 1;
    }
    chunk
}

/// Applies the company events after `position` to `state`.
async fn catch_up(
    store: &dyn EventStore,
    state: &mut CompanyState,
    position: &mut u64,
) -> Result<(), AppError> {
    while let Some(page) = Page::after(store, *position).await? {
        for fact in page.facts {
            fact.apply(state)?;
        }
        *position = page.last;
        if !page.full {
            break;
        }
    }
    Ok(())
}

/// Up to [`LOAD_PAGE`] company events after a position, decoded.
struct Page {
    facts: Vec<CompanyFact>,
    /// The position of the page's last event.
    last: u64,
    /// A whole page: more may follow.
    full: bool,
}

impl Page {
    /// `None` when nothing was recorded after `position`.
    async fn after(store: &dyn EventStore, position: u64) -> Result<Option<Page>, AppError> {
        let recorded = store
            .read_all(
                AllStart::After(position),
                &CompanyModel::filter(),
                LOAD_PAGE,
            )
            .await?;
        let Some(last) = recorded.last().map(|r| r.position) else {
            return Ok(None);
        };
        Ok(Some(Page {
            facts: recorded
                .iter()
                .map(CompanyFact::decode)
                .collect::<Result<_, _>>()?,
            last,
            full: recorded.len() == LOAD_PAGE,
        }))
    }
}

/// One company event, decoded, to be applied to the model.
enum CompanyFact {
    Network(DistributorEvent),
    Catalog(CatalogEvent),
    Plan(CommissionPlan),
    Enrolment {
        stream: String,
        distributor: DistributorId,
    },
    /// A stream the model does not keep.
    Other,
}

impl CompanyFact {
    fn decode(recorded: &upline_store::RecordedEvent) -> Result<CompanyFact, AppError> {
        let stream = recorded.stream_id.as_str();
        Ok(if stream.starts_with(streams::DISTRIBUTOR_PREFIX) {
            CompanyFact::Network(decode_recorded(recorded)?)
        } else if stream.starts_with(streams::SKU_PREFIX) {
            CompanyFact::Catalog(decode_recorded(recorded)?)
        } else if stream.starts_with(streams::PLAN_PREFIX) {
            let PlanEvent::PlanPublished { plan, .. } = decode_recorded(recorded)?;
            CompanyFact::Plan(plan)
        } else if stream.starts_with(streams::CUSTOMER_PREFIX) {
            let CustomerEvent::CustomerEnrolled { distributor_id, .. } = decode_recorded(recorded)?;
            CompanyFact::Enrolment {
                stream: stream.to_string(),
                distributor: distributor_id,
            }
        } else {
            CompanyFact::Other
        })
    }

    fn apply(self, state: &mut CompanyState) -> Result<(), AppError> {
        match self {
            CompanyFact::Network(event) => state.company.network.apply(&event)?,
            CompanyFact::Catalog(event) => state.company.catalog.apply(&event)?,
            CompanyFact::Plan(plan) => state.company.plans.publish(plan)?,
            CompanyFact::Enrolment {
                stream,
                distributor,
            } => {
                // The first enrolment stands; this process may have taken it in already.
                state.customers.entry(stream).or_insert(distributor);
            }
            CompanyFact::Other => {}
        }
        Ok(())
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
