//! A real gateway on 127.0.0.1:0 with a SqliteInbox in a temporary directory, and signed
//! requests against it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use upline_app::inbox::sqlite::{ListedItem, SqliteInbox};
use upline_app::inbox::{Inbox, InboxStats};
use upline_gateway::{ApiKeyConfig, Gateway, GatewayConfig, ShopConfig};

pub const SHOPIFY_SHOP: &str = "demo-store.myshopify.com";
pub const SHOPIFY_SECRET: &str = "shopify-current-secret";
pub const SHOPIFY_OLD_SECRET: &str = "shopify-previous-secret";
/// The shop that uses the Shopify SDK's own test vector secret.
pub const SDK_SHOP: &str = "sdk-vector.myshopify.com";
pub const SDK_SECRET: &str = "test_secret_key";

pub const WOO_SHOP: &str = "shop.example.com";
/// As typed in the WooCommerce admin: WooCommerce stores it HTML-escaped and signs with the
/// decoded form.
pub const WOO_SECRET_RAW: &str = "wc-s3cr&amp;t-value";
pub const WOO_SECRET_DECODED: &str = "wc-s3cr&t-value";

pub const MAGENTO_SHOP: &str = "magento.example.com";

pub const API_SHOP: &str = "erp.example.com";
pub const API_BEARER: &str = "erp-bearer-token-0123456789abcdef";
pub const API_HMAC: &str = "erp-hmac-secret-0123456789abcdef";

/// A replay window (hours) that takes the documentation samples (2008 onwards) as fresh.
pub const FIXTURE_WINDOW_HOURS: u32 = 24 * 366 * 30;

/// Small enough that a test can go over it cheaply, large enough for every fixture.
pub const TEST_MAX_BODY: usize = 64 * 1024;

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

pub fn config() -> GatewayConfig {
    let shop = |s: &str| s.parse().unwrap();
    GatewayConfig {
        shops: vec![
            ShopConfig {
                platform: upline_domain::ids::Platform::Shopify,
                shop: shop(SHOPIFY_SHOP),
                secrets: vec![SHOPIFY_SECRET.into(), SHOPIFY_OLD_SECRET.into()],
                public_keys_pem: vec![],
                test_orders: Default::default(),
            },
            ShopConfig {
                platform: upline_domain::ids::Platform::Shopify,
                shop: shop(SDK_SHOP),
                secrets: vec![SDK_SECRET.into()],
                public_keys_pem: vec![],
                test_orders: Default::default(),
            },
            ShopConfig {
                platform: upline_domain::ids::Platform::Woocommerce,
                shop: shop(WOO_SHOP),
                secrets: vec![WOO_SECRET_RAW.into()],
                public_keys_pem: vec![],
                test_orders: Default::default(),
            },
            ShopConfig {
                platform: upline_domain::ids::Platform::Magento,
                shop: shop(MAGENTO_SHOP),
                secrets: vec![],
                public_keys_pem: vec![fixture_text("magento_test_public_key.pem")],
                test_orders: Default::default(),
            },
        ],
        api_keys: vec![ApiKeyConfig {
            name: "erp".into(),
            shop: shop(API_SHOP),
            bearer_token: Some(API_BEARER.into()),
            hmac_secret: Some(API_HMAC.into()),
        }],
        max_body_bytes: TEST_MAX_BODY,
        // The fixtures are the platforms' documentation samples, dated years ago: wide enough
        // for them; the replay tests narrow it.
        replay_window_hours: FIXTURE_WINDOW_HOURS,
    }
}

pub struct Server {
    pub base: String,
    pub gateway: Gateway,
    pub sqlite: Option<Arc<SqliteInbox>>,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// The default test configuration over a fresh SqliteInbox.
    pub async fn start() -> Server {
        Server::start_with(config()).await
    }

    pub async fn start_with(config: GatewayConfig) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(
            SqliteInbox::open(&dir.path().join("inbox.sqlite"))
                .await
                .unwrap(),
        );
        let mut server = Server::serve(config, sqlite.clone(), dir).await;
        server.sqlite = Some(sqlite);
        server
    }

    /// Any inbox (tests wrap the SqliteInbox to make it slow or failing).
    pub async fn serve(
        config: GatewayConfig,
        inbox: Arc<dyn Inbox>,
        dir: tempfile::TempDir,
    ) -> Server {
        install_log_capture();
        let gateway = Gateway::new(config, inbox).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(upline_gateway::run(listener, gateway.clone(), async {
            let _ = rx.await;
        }));
        Server {
            base: format!("http://{addr}"),
            gateway,
            sqlite: None,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn inbox(&self) -> &SqliteInbox {
        self.sqlite.as_deref().expect("a SqliteInbox")
    }

    pub async fn stats(&self) -> InboxStats {
        self.inbox().stats().await.unwrap()
    }

    /// Every row of the inbox, oldest first.
    pub async fn items(&self) -> Vec<ListedItem> {
        self.inbox().list(None, 1_000).await.unwrap()
    }

    pub async fn post(&self, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
        let mut request = self.client.post(self.url(path)).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("answer {status} is not JSON ({e}): {text}"));
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Triggers the graceful shutdown and waits for `run` to return.
    pub async fn stop(&mut self) -> std::io::Result<()> {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }

    pub fn trigger_shutdown(&mut self) {
        let _ = self.shutdown.take().unwrap().send(());
    }

    pub async fn stopped(&mut self) -> std::io::Result<()> {
        self.task.take().unwrap().await.unwrap()
    }
}

pub fn hmac_b64(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    B64.encode(mac.finalize().into_bytes())
}

/// As Adobe Commerce signs: RSA-SHA256 (PKCS#1 v1.5) over the base64 of the body.
pub fn magento_signature(body: &[u8]) -> String {
    let key = RsaPrivateKey::from_pkcs8_pem(&fixture_text("magento_test_private_key.pem")).unwrap();
    let signing = SigningKey::<Sha256>::new(key);
    let signature = signing.sign(B64.encode(body).as_bytes());
    B64.encode(signature.to_bytes())
}

pub fn shopify_headers(
    shop: &str,
    topic: &str,
    webhook_id: &str,
    signature: Option<String>,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("x-shopify-shop-domain", shop.to_string()),
        ("x-shopify-topic", topic.to_string()),
        ("x-shopify-webhook-id", webhook_id.to_string()),
        ("x-shopify-event-id", format!("event-{webhook_id}")),
        ("x-shopify-api-version", "2026-04".to_string()),
        (
            "x-shopify-triggered-at",
            "2026-04-01T10:00:00.000Z".to_string(),
        ),
    ];
    if let Some(signature) = signature {
        headers.push(("x-shopify-hmac-sha256", signature));
    }
    headers
}

pub fn woo_headers(
    source: &str,
    topic: &str,
    delivery_id: &str,
    signature: Option<String>,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("x-wc-webhook-source", source.to_string()),
        ("x-wc-webhook-topic", topic.to_string()),
        ("x-wc-webhook-resource", "order".to_string()),
        ("x-wc-webhook-event", "created".to_string()),
        ("x-wc-webhook-id", "12".to_string()),
        ("x-wc-webhook-delivery-id", delivery_id.to_string()),
    ];
    if let Some(signature) = signature {
        headers.push(("x-wc-webhook-signature", signature));
    }
    headers
}

/// An Adobe I/O Events envelope around the Commerce order example.
pub fn magento_order_envelope(event_id: &str) -> Vec<u8> {
    let order: Value = serde_json::from_slice(&fixture("magento_order_rest_example.json")).unwrap();
    let mut envelope: Value =
        serde_json::from_slice(&fixture("magento_io_events_envelope_sample.json")).unwrap();
    envelope["id"] = Value::String(event_id.to_string());
    envelope["event_id"] = Value::String(event_id.to_string());
    envelope["eventid"] = Value::String(event_id.to_string());
    envelope["type"] = Value::String("com.adobe.commerce.observer.sales_order_save_after".into());
    envelope["data"]["value"] = order;
    serde_json::to_vec_pretty(&envelope).unwrap()
}

/// Counts what the inbox holds, whatever the status.
pub async fn inbox_is_empty(server: &Server) -> bool {
    server.items().await.is_empty()
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Arc<std::sync::Mutex<Vec<u8>>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Writes a log line to the current thread's capture buffer, if it has one.
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(buf) = c.borrow().as_ref() {
                buf.lock().unwrap().extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One global subscriber for the test process, installed before any gateway runs (so that no
/// callsite's interest is decided without it). Each `#[tokio::test]` runs its runtime, and so
/// its server, on its own thread: a test captures its own server's logs with [`capture_logs`].
fn install_log_capture() {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,upline_gateway=trace",
            ))
            .with_ansi(false)
            .with_writer(|| ThreadCapture)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Starts capturing the log lines written on this thread; read them with [`captured_logs`].
pub fn capture_logs() {
    install_log_capture();
    CAPTURE.with(|c| *c.borrow_mut() = Some(Arc::default()));
}

pub fn captured_logs() -> String {
    CAPTURE.with(|c| {
        let buf = c.borrow();
        let bytes = buf
            .as_ref()
            .expect("capture_logs first")
            .lock()
            .unwrap()
            .clone();
        String::from_utf8(bytes).unwrap()
    })
}
