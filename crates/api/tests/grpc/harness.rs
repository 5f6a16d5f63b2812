//! The real server in-process on 127.0.0.1:0 over a SQLite event store in a tempdir, and
//! generated tonic clients that send a bearer token.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};
use upline_api::pb;
use upline_api::pb::command_service_client::CommandServiceClient;
use upline_api::pb::query_service_client::QueryServiceClient;
use upline_api::{run, Api, ApiConfig, Role, TokenConfig};
use upline_app::{App, AppConfig, CommissionPostings};
use upline_store::{
    AllStart, AppendResult, BoxStream, Direction, EventData, EventStore, ExpectedRevision,
    RecordedEvent, SqliteEventStore, StoreError, StreamFilter, StreamStart,
};

pub const OPERATOR: &str = "operator-token-0123456789abcdef";
pub const DASHBOARD: &str = "dashboard-token-0123456789abcdef";
pub const AUDITOR: &str = "auditor-token-0123456789abcdef";

pub fn config() -> ApiConfig {
    let token = |name: &str, token: &str, role| TokenConfig {
        name: name.into(),
        token: token.into(),
        role,
    };
    ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens: vec![
            token("ops", OPERATOR, Role::Operator),
            token("grafana", DASHBOARD, Role::Dashboard),
            token("finance", AUDITOR, Role::Auditor),
        ],
    }
}

/// An event store that can be told to refuse every append to order streams with a concurrency
/// conflict, as if another writer always got there first.
pub struct ContendedStore {
    pub inner: Arc<dyn EventStore>,
    pub contend: AtomicBool,
}

#[async_trait]
impl EventStore for ContendedStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        if self.contend.load(Ordering::SeqCst) && stream.starts_with("order-") {
            let actual = self.inner.stream_revision(stream).await?;
            return Err(StoreError::WrongExpectedRevision {
                stream: stream.to_string(),
                expected,
                actual: Some(actual.map_or(0, |r| r + 1)),
            });
        }
        self.inner.append(stream, expected, events).await
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

pub struct Server {
    pub addr: SocketAddr,
    /// The projections, caught up on demand by [`Server::project`] (not running on their own,
    /// so a test knows when they are current).
    pub projections: Option<Arc<upline_projections::ProjectionRunner>>,
    pub store: Arc<dyn EventStore>,
    pub contended: Arc<ContendedStore>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    postings_stop: watch::Sender<bool>,
    postings: Option<JoinHandle<()>>,
    pub dir: Arc<tempfile::TempDir>,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_in(Arc::new(tempfile::tempdir().unwrap())).await
    }

    /// Starts on the store in `dir` (reopened: a restart).
    pub async fn start_in(dir: Arc<tempfile::TempDir>) -> Server {
        Server::start_with(dir, true).await
    }

    /// Starts with or without the projections' read store.
    pub async fn start_with(dir: Arc<tempfile::TempDir>, read_side: bool) -> Server {
        let sqlite: Arc<dyn EventStore> = Arc::new(open(dir.path()).await);
        let contended = Arc::new(ContendedStore {
            inner: sqlite,
            contend: AtomicBool::new(false),
        });
        let store: Arc<dyn EventStore> = contended.clone();
        let app = Arc::new(
            App::open(store.clone(), AppConfig::default())
                .await
                .unwrap(),
        );
        let (postings_stop, postings_rx) = watch::channel(false);
        let postings = CommissionPostings::open(store.clone()).await.unwrap();
        let postings = tokio::spawn(async move {
            postings.run(postings_rx).await.unwrap();
        });
        let projections = if read_side {
            Some(Arc::new(
                upline_projections::open_default(store.clone(), dir.path(), None)
                    .await
                    .unwrap(),
            ))
        } else {
            None
        };
        let read_store = projections.as_ref().map(|p| p.read_store().clone());
        let api = Api::new(config(), app, store.clone(), read_store).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, api, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            projections,
            store,
            contended,
            stop: Some(stop),
            task: Some(task),
            postings_stop,
            postings: Some(postings),
            dir,
        }
    }

    /// Stops the server (waiting at most 5 s: shutdown must not hang on open streams) and the
    /// postings, and closes the store.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("the server stops within 5 s")
                .unwrap()
                .unwrap();
        }
        let _ = self.postings_stop.send(true);
        if let Some(postings) = self.postings.take() {
            postings.await.unwrap();
        }
        if let Some(projections) = self.projections.take() {
            projections.read_store().close().await;
        }
        self.store.close().await.unwrap();
    }

    /// Waits for `postings` commission postings, then brings the projections up to date.
    pub async fn project(&self, postings: usize) {
        self.wait_for_postings(postings).await;
        self.projections
            .as_ref()
            .expect("a read store")
            .catch_up()
            .await
            .unwrap();
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn commands(&self, token: Option<&str>) -> CommandClient {
        CommandServiceClient::with_interceptor(self.channel().await, Bearer::new(token))
    }

    pub async fn queries(&self, token: Option<&str>) -> QueryClient {
        QueryServiceClient::with_interceptor(self.channel().await, Bearer::new(token))
    }

    pub async fn operator(&self) -> CommandClient {
        self.commands(Some(OPERATOR)).await
    }

    pub async fn reader(&self) -> QueryClient {
        self.queries(Some(AUDITOR)).await
    }

    /// Every event the commands recorded: all but the commission postings and the checkpoints,
    /// which the postings process manager writes on its own schedule.
    pub async fn event_count(&self) -> usize {
        self.events()
            .await
            .iter()
            .filter(|e| !e.stream_id.starts_with("checkpoint-") && !is_posting(e))
            .count()
    }

    /// Waits until the postings process manager has posted `n` commission postings in all.
    pub async fn wait_for_postings(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let posted = self.events().await.iter().filter(|e| is_posting(e)).count();
            if posted >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{posted} of {n} postings after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn events(&self) -> Vec<RecordedEvent> {
        let mut events = Vec::new();
        let mut from = AllStart::Start;
        loop {
            let page = self
                .store
                .read_all(from, &StreamFilter::all(), 5_000)
                .await
                .unwrap();
            let Some(last) = page.last() else {
                return events;
            };
            from = AllStart::After(last.position);
            events.extend(page);
        }
    }
}

fn is_posting(e: &RecordedEvent) -> bool {
    matches!(
        e.event_type.as_str(),
        "CommissionEarned" | "CommissionReversed"
    )
}

async fn open(dir: &Path) -> SqliteEventStore {
    SqliteEventStore::open(&dir.join("events.sqlite"))
        .await
        .unwrap()
}

#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    fn new(token: Option<&str>) -> Bearer {
        Bearer(token.map(|t| format!("Bearer {t}").parse().unwrap()))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type CommandClient = CommandServiceClient<InterceptedService<Channel, Bearer>>;
pub type QueryClient = QueryServiceClient<InterceptedService<Channel, Bearer>>;

pub const PLAN: &str = include_str!("../../../../examples/plan.toml");
const NETWORK: &str = include_str!("../../../../examples/network.json");
pub const SHOP: &str = "demo-store.myshopify.com";

pub fn status_of(name: &str) -> i32 {
    match name {
        "active" => pb::DistributorStatus::Active as i32,
        "inactive" => pb::DistributorStatus::Inactive as i32,
        "suspended" => pb::DistributorStatus::Suspended as i32,
        "terminated" => pb::DistributorStatus::Terminated as i32,
        other => panic!("status {other}"),
    }
}

/// The example company through the API: plan, network (with its dated changes), SKU mappings.
pub async fn seed(commands: &mut CommandClient) {
    let published = commands
        .publish_plan(pb::PublishPlanRequest {
            command_id: String::new(),
            plan_toml: PLAN.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(published.stream, "plan-2026.1");
    let network: serde_json::Value = serde_json::from_str(NETWORK).unwrap();
    for d in network["distributors"].as_array().unwrap() {
        let text = |k: &str| d[k].as_str().unwrap_or_default().to_string();
        let response = commands
            .register_distributor(pb::RegisterDistributorRequest {
                command_id: String::new(),
                distributor_id: text("id"),
                sponsor_id: text("sponsor"),
                referral_codes: d["referral_codes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().to_string())
                    .collect(),
                country: text("country"),
                status: status_of(&text("status")),
                rank: text("rank"),
                joined_at: text("joined_at"),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.outcome, pb::CommandOutcome::Recorded as i32);
        assert_eq!(response.events_recorded, 1);
    }
    for c in network["changes"].as_array().unwrap() {
        let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        let (distributor_id, effective_at) = (text("distributor"), text("effective_at"));
        if !text("sponsor").is_empty() {
            commands
                .change_sponsor(pb::ChangeSponsorRequest {
                    command_id: String::new(),
                    distributor_id,
                    sponsor_id: text("sponsor"),
                    effective_at,
                })
                .await
                .unwrap();
        } else if !text("status").is_empty() {
            commands
                .change_status(pb::ChangeStatusRequest {
                    command_id: String::new(),
                    distributor_id,
                    status: status_of(&text("status")),
                    effective_at,
                })
                .await
                .unwrap();
        } else {
            commands
                .change_rank(pb::ChangeRankRequest {
                    command_id: String::new(),
                    distributor_id,
                    rank: text("rank"),
                    effective_at,
                })
                .await
                .unwrap();
        }
    }
    for m in network["sku_mappings"].as_array().unwrap() {
        let text = |k: &str| m[k].as_str().unwrap_or_default().to_string();
        commands
            .map_sku(pb::MapSkuRequest {
                command_id: String::new(),
                mapping: Some(pb::SkuMapping {
                    platform: pb::Platform::Shopify as i32,
                    platform_sku: text("platform_sku"),
                    effective_from: text("effective_from"),
                    sku_id: text("sku_id"),
                    name: text("name"),
                    category: text("category"),
                    commission_class: text("commission_class"),
                    pv_per_unit: text("pv_per_unit"),
                    cv_per_unit: text("cv_per_unit"),
                }),
            })
            .await
            .unwrap();
    }
}

pub fn key(order_id: &str) -> pb::OrderKey {
    pb::OrderKey {
        platform: pb::Platform::Shopify as i32,
        shop: SHOP.into(),
        order_id: order_id.into(),
    }
}

pub fn stream(order_id: &str) -> String {
    format!("order-shopify-{SHOP}-{order_id}")
}

/// A paid Shopify order for distributor 11043 (code ABC123) on 2026-03-10: `qty` x SUPP001 at
/// 19.80 (retail), optionally one more line.
pub fn order(order_id: &str, qty: &str, extra_sku: Option<&str>) -> pb::SubmitOrderRequest {
    let mut lines = vec![pb::OrderLine {
        line_id: "1".into(),
        platform_sku: "SUPP001".into(),
        quantity: qty.into(),
        unit_price: "19.80".into(),
        ..Default::default()
    }];
    if let Some(sku) = extra_sku {
        lines.push(pb::OrderLine {
            line_id: "2".into(),
            platform_sku: sku.into(),
            quantity: "1".into(),
            unit_price: "10.00".into(),
            ..Default::default()
        });
    }
    pb::SubmitOrderRequest {
        command_id: String::new(),
        order: Some(pb::Order {
            key: Some(key(order_id)),
            placed_at: "2026-03-10T10:00:00Z".into(),
            updated_at: String::new(),
            currency: "USD".into(),
            prices_include_tax: false,
            lines,
            attribution: Some(pb::Attribution {
                distributor_ref: "ABC123".into(),
                customer_id: format!("cust-{order_id}"),
                ..Default::default()
            }),
            ..Default::default()
        }),
        paid_at: "2026-03-10T10:05:00Z".into(),
    }
}

pub fn amount(m: &Option<pb::Money>) -> String {
    let m = m.as_ref().expect("an amount");
    format!("{} {}", m.amount, m.currency)
}
