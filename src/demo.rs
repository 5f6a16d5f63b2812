//! `upline demo`: a newcomer's tour. Seeds a sample company (1,000+ distributors over more than
//! eight levels, from a fixed seed; the seed article's SKUs; the example plan), serves it on a
//! free port over the embedded store, sends it signed webhooks from all three platforms over real
//! HTTP (with duplicates, a refund that arrives before its order, a cancellation, and an order
//! parked then retried), and prints what happened. Exits non-zero if any check fails.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::Sha256;
use upline_app::records::PostingEvent;
use upline_app::{streams, Provenance};
use upline_domain::catalog::SkuMapping;
use upline_domain::ids::*;
use upline_domain::network::DistributorCommand;
use upline_domain::order::OrderEvent;
use upline_domain::plan::CommissionPlan;
use upline_domain::snapshot::DistributorStatus;
use upline_gateway::{ApiKeyConfig, GatewayConfig, ShopConfig};
use upline_store::{AllStart, StreamFilter};

use crate::config::ServeConfig;
use crate::server::{self, RunningServer, Services};

const PLAN: &str = include_str!("../examples/plan.toml");
const SHOPIFY_SHOP: &str = "demo-store.myshopify.com";
const SHOPIFY_SECRET: &str = "shpss_demo_new_secret";
const SHOPIFY_OLD_SECRET: &str = "shpss_demo_old_secret";
const WOO_SHOP: &str = "woo.example.com";
/// As typed in the WooCommerce admin; WooCommerce signs with it HTML-entity-decoded.
const WOO_SECRET_AS_TYPED: &str = "woo&amp;demo-secret";
const WOO_SECRET_DECODED: &str = "woo&demo-secret";
const MAGENTO_SHOP: &str = "magento-demo";
const API_SHOP: &str = "erp.demo.example";
const API_TOKEN: &str = "demo-bearer-token-0123456789abcdef";
/// A read-only gRPC token: the demo reads the ledger, reconciliation and BI as a dashboard would.
const DASHBOARD_TOKEN: &str = "demo-dashboard-token-0123456789";
/// Distributors in the sample network.
const NETWORK_SIZE: u32 = 1_000;

pub async fn run(data_dir: Option<PathBuf>) -> Result<String> {
    let started = Instant::now();
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let data_dir = data_dir.unwrap_or_else(|| temp.path().to_path_buf());
    let magento_key = {
        // A fresh key pair each run: the demo plays Adobe Commerce and must sign like it.
        let mut rng = rand::thread_rng();
        RsaPrivateKey::new(&mut rng, 2048).context("cannot generate the demo's RSA key")?
    };
    let config = ServeConfig {
        data_dir: data_dir.clone(),
        listen: "127.0.0.1:0".parse()?,
        gateway: gateway_config(&magento_key)?,
        grpc: Some(upline_api::ApiConfig {
            listen: "127.0.0.1:0".parse()?,
            tokens: vec![upline_api::TokenConfig {
                name: "demo-dashboard".into(),
                token: DASHBOARD_TOKEN.into(),
                role: upline_api::Role::Dashboard,
            }],
        }),
        ..ServeConfig::default()
    };

    let mut out = String::new();
    let seeded = seed(&config).await?;
    let _ = writeln!(out, "upline demo: data in {}", data_dir.display());
    let _ = writeln!(
        out,
        "Seeded {} distributors over {} levels, {} SKU mappings, plan {}.",
        seeded.distributors, seeded.depth, seeded.mappings, seeded.plan_version
    );

    let server = server::start(config).await?;
    let mut client = Client::new(server.addr, magento_key);
    let result = tour(&server, &mut client, &mut out).await;
    let stopped = server.stop().await;
    result?;
    stopped?;
    let _ = writeln!(out, "\nDone in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(out)
}

struct Seeded {
    distributors: usize,
    depth: u32,
    mappings: usize,
    plan_version: String,
}

/// A tiny deterministic generator (xorshift64*): the same network every run, no dependency.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn at(month: u32, day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0)
        .single()
        .unwrap_or_default()
}

async fn seed(config: &ServeConfig) -> Result<Seeded> {
    let services = Services::open(config).await?;
    let result = seed_company(&services).await;
    services.close().await?;
    result
}

async fn seed_company(services: &Services) -> Result<Seeded> {
    let who = Provenance::command("demo:seed");
    let company = services.app.company();
    let plan =
        CommissionPlan::from_toml(PLAN).map_err(|e| anyhow::anyhow!("examples/plan.toml: {e}"))?;
    let plan_version = plan.version.clone();
    company.publish_plan(plan, &who).await?;

    // Ids 10001.. in registration order. The first twelve form a chain (so the network is deep
    // from the start); each later one is sponsored by one of the 40 most recent, which keeps
    // chains growing. 11043 carries the seed article's referral code ABC123.
    let mut rng = Xorshift(0x5eed_2026_u64);
    let ranks = ["member", "member", "bronze", "bronze", "silver", "gold"];
    let mut depth_of: Vec<u32> = Vec::new();
    for i in 0..NETWORK_SIZE + 50 {
        let id = 10_001 + i;
        let sponsor_index = match i {
            0 => None,
            1..=11 => Some(i - 1),
            _ => Some(i - 1 - rng.below(40.min(u64::from(i))) as u32),
        };
        let mut codes = vec![ReferralCode::new(format!("D{id}"))?];
        if id == 11_043 {
            codes.push(ReferralCode::new("ABC123")?);
        }
        let rank = if i < 12 {
            "gold"
        } else {
            ranks[rng.below(ranks.len() as u64) as usize]
        };
        let status = if i >= 12 && rng.below(10) == 0 {
            DistributorStatus::Inactive
        } else {
            DistributorStatus::Active
        };
        let command = DistributorCommand::RegisterDistributor {
            distributor_id: DistributorId::new(id.to_string())?,
            sponsor: sponsor_index
                .map(|s| DistributorId::new((10_001 + s).to_string()))
                .transpose()?,
            referral_codes: codes,
            country: if i % 3 == 0 { "CA" } else { "US" }.into(),
            status,
            rank: RankName::new(rank)?,
            joined_at: at(1, 1, 0) + chrono::Duration::minutes(i64::from(i)),
        };
        company
            .execute_network(&command, &who)
            .await
            .with_context(|| format!("registering {id}"))?;
        depth_of.push(sponsor_index.map_or(0, |s| depth_of[s as usize] + 1));
    }
    // The seed article's example referrer, 9012, sponsored near the top.
    let seed_referrer = DistributorCommand::RegisterDistributor {
        distributor_id: DistributorId::new("9012")?,
        sponsor: Some(DistributorId::new("10003")?),
        referral_codes: vec![],
        country: "US".into(),
        status: DistributorStatus::Active,
        rank: RankName::new("silver")?,
        joined_at: at(1, 2, 0),
    };
    company.execute_network(&seed_referrer, &who).await?;

    let mut mappings = 0;
    for platform in [
        Platform::Shopify,
        Platform::Woocommerce,
        Platform::Magento,
        Platform::Direct,
    ] {
        for (sku, name, category, class, cv) in [
            (
                "KIT-STARTER-001",
                "Starter kit",
                "kits",
                "starter_kit",
                Some(Decimal::new(5000, 2)),
            ),
            ("SUPP001", "Daily supplement", "supplements", "retail", None),
            ("BEAUTY02", "Night cream", "beauty", "retail", None),
            (
                "A1123",
                "Monthly autoship box",
                "subscriptions",
                "subscription",
                None,
            ),
        ] {
            let mapping = SkuMapping {
                platform,
                platform_sku: sku.into(),
                effective_from: at(1, 1, 0),
                sku_id: SkuId::new(sku)?,
                name: name.into(),
                category: category.into(),
                commission_class: CommissionClass::new(class)?,
                pv_per_unit: Some(Decimal::from(20)),
                cv_per_unit: cv,
            };
            mappings += company.map_sku(mapping, &who).await?.len();
        }
    }
    Ok(Seeded {
        distributors: company.read().await.company.network.len(),
        depth: depth_of.iter().copied().max().unwrap_or(0) + 1,
        mappings,
        plan_version,
    })
}

/// The demo's replay window, in hours (see `gateway_config`).
const DEMO_REPLAY_WINDOW_HOURS: u32 = 24 * 366 * 10;

fn gateway_config(magento_key: &RsaPrivateKey) -> Result<GatewayConfig> {
    let public_pem = magento_key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)?;
    Ok(GatewayConfig {
        shops: vec![
            ShopConfig {
                platform: Platform::Shopify,
                shop: ShopId::new(SHOPIFY_SHOP)?,
                secrets: vec![SHOPIFY_SECRET.into(), SHOPIFY_OLD_SECRET.into()],
                public_keys_pem: vec![],
                test_orders: Default::default(),
            },
            ShopConfig {
                platform: Platform::Woocommerce,
                shop: ShopId::new(WOO_SHOP)?,
                secrets: vec![WOO_SECRET_AS_TYPED.into()],
                public_keys_pem: vec![],
                test_orders: Default::default(),
            },
            ShopConfig {
                platform: Platform::Magento,
                shop: ShopId::new(MAGENTO_SHOP)?,
                secrets: vec![],
                public_keys_pem: vec![public_pem],
                test_orders: Default::default(),
            },
        ],
        api_keys: vec![ApiKeyConfig {
            name: "erp".into(),
            shop: ShopId::new(API_SHOP)?,
            bearer_token: Some(API_TOKEN.into()),
            hmac_secret: None,
        }],
        // The tour's orders are dated in March 2026, a fixed story: a window of ten years takes
        // them as fresh (a real shop keeps the default 72 hours).
        replay_window_hours: DEMO_REPLAY_WINDOW_HOURS,
        ..GatewayConfig::default()
    })
}

/// Sends signed webhooks like each platform does.
struct Client {
    http: reqwest::Client,
    base: String,
    magento: SigningKey<Sha256>,
    answers: BTreeMap<String, u32>,
}

fn hmac_base64(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any size");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl Client {
    fn new(addr: std::net::SocketAddr, magento_key: RsaPrivateKey) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
            magento: SigningKey::<Sha256>::new(magento_key),
            answers: BTreeMap::new(),
        }
    }

    async fn post(
        &mut self,
        path: &str,
        headers: Vec<(&str, String)>,
        body: Vec<u8>,
    ) -> Result<Value> {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path} answered {status}: {answer}");
        }
        let kind = answer["status"].as_str().unwrap_or("?").to_string();
        *self.answers.entry(kind).or_default() += 1;
        Ok(answer)
    }

    async fn shopify(
        &mut self,
        topic: &str,
        event_id: &str,
        body: &Value,
        secret: &str,
    ) -> Result<Value> {
        let body = serde_json::to_vec(body)?;
        let headers = vec![
            ("content-type", "application/json".to_string()),
            ("x-shopify-topic", topic.to_string()),
            ("x-shopify-shop-domain", SHOPIFY_SHOP.to_string()),
            ("x-shopify-hmac-sha256", hmac_base64(secret, &body)),
            ("x-shopify-event-id", event_id.to_string()),
            ("x-shopify-webhook-id", uuid::Uuid::new_v4().to_string()),
            ("x-shopify-api-version", "2026-04".to_string()),
        ];
        self.post("/webhooks/shopify", headers, body).await
    }

    async fn woocommerce(&mut self, topic: &str, body: &Value) -> Result<Value> {
        let body = serde_json::to_vec(body)?;
        let headers = vec![
            ("content-type", "application/json".to_string()),
            ("x-wc-webhook-topic", topic.to_string()),
            ("x-wc-webhook-source", format!("https://{WOO_SHOP}/")),
            (
                "x-wc-webhook-signature",
                hmac_base64(WOO_SECRET_DECODED, &body),
            ),
            ("x-wc-webhook-delivery-id", uuid::Uuid::new_v4().to_string()),
        ];
        self.post("/webhooks/woocommerce", headers, body).await
    }

    async fn magento(&mut self, body: &Value) -> Result<Value> {
        let body = serde_json::to_vec(body)?;
        // Adobe Commerce signs the base64 of the body.
        let signed = base64::engine::general_purpose::STANDARD.encode(&body);
        let signature = base64::engine::general_purpose::STANDARD
            .encode(self.magento.sign(signed.as_bytes()).to_bytes());
        let headers = vec![
            ("content-type", "application/json".to_string()),
            ("x-adobe-commerce-webhook-signature", signature),
        ];
        self.post(
            &format!("/webhooks/magento?shop={MAGENTO_SHOP}"),
            headers,
            body,
        )
        .await
    }

    async fn seed_endpoint(&mut self, body: &Value) -> Result<Value> {
        let body = serde_json::to_vec(body)?;
        let headers = vec![
            ("content-type", "application/json".to_string()),
            ("authorization", format!("Bearer {API_TOKEN}")),
        ];
        self.post("/api/mlm/orders", headers, body).await
    }
}

fn shopify_order(
    id: u64,
    created: DateTime<Utc>,
    lines: &[(u64, &str, u32, &str)],
    extra: Value,
) -> Value {
    let subtotal: Decimal = lines
        .iter()
        .map(|(_, _, q, p)| Decimal::from(*q) * p.parse::<Decimal>().unwrap_or_default())
        .sum();
    let mut order = json!({
        "id": id,
        "name": format!("#{id}"),
        "created_at": created.to_rfc3339(),
        "updated_at": created.to_rfc3339(),
        "processed_at": created.to_rfc3339(),
        "currency": "USD",
        "taxes_included": false,
        "financial_status": "pending",
        "total_tax": "0.00",
        "total_price": subtotal.to_string(),
        "line_items": lines.iter().map(|(line_id, sku, quantity, price)| json!({
            "id": line_id, "sku": sku, "variant_id": line_id + 1_000, "quantity": quantity,
            "price": price, "title": sku, "discount_allocations": [], "tax_lines": []
        })).collect::<Vec<_>>(),
        "customer": { "id": id + 500 },
    });
    if let (Value::Object(o), Value::Object(e)) = (&mut order, extra) {
        o.extend(e);
    }
    order
}

fn with(mut value: Value, changes: Value) -> Value {
    if let (Value::Object(o), Value::Object(c)) = (&mut value, changes) {
        o.extend(c);
    }
    value
}

async fn tour(server: &RunningServer, client: &mut Client, out: &mut String) -> Result<()> {
    let _ = writeln!(
        out,
        "Serving on http://{}; sending webhooks...",
        server.addr
    );
    let day = |d: u32| at(3, d, 9);

    // Shopify #301: the seed's SUPP001 order, credited through a note attribute. orders/create,
    // then orders/paid delivered twice (Shopify retries with the same event id), the second
    // time signed with the old secret during a rotation.
    let o301 = shopify_order(
        301,
        day(2),
        &[(3011, "SUPP001", 1, "19.80")],
        json!({"note_attributes": [{"name": "distributor_ref", "value": "11043"}]}),
    );
    client
        .shopify("orders/create", "evt-301-create", &o301, SHOPIFY_SECRET)
        .await?;
    let paid301 = with(o301.clone(), json!({"financial_status": "paid"}));
    client
        .shopify("orders/paid", "evt-301-paid", &paid301, SHOPIFY_SECRET)
        .await?;
    client
        .shopify("orders/paid", "evt-301-paid", &paid301, SHOPIFY_OLD_SECRET)
        .await?;

    // Shopify #303: a starter kit and two supplements bought with the distributor's code
    // ABC123; its refund of one supplement arrives *before* the order itself.
    let o303 = shopify_order(
        303,
        day(3),
        &[
            (3031, "KIT-STARTER-001", 1, "99.00"),
            (3032, "SUPP001", 2, "19.80"),
        ],
        json!({"discount_codes": [{"code": "ABC123", "amount": "0.00", "type": "fixed_amount"}],
               "financial_status": "paid"}),
    );
    let refund303 = json!({
        "id": 90303, "order_id": 303, "created_at": day(5).to_rfc3339(),
        "refund_line_items": [{"id": 1, "line_item_id": 3032, "quantity": 1, "subtotal": 19.8, "total_tax": 0.0}],
        "transactions": []
    });
    client
        .shopify(
            "refunds/create",
            "evt-303-refund",
            &refund303,
            SHOPIFY_SECRET,
        )
        .await?;
    client
        .shopify("orders/paid", "evt-303-paid", &o303, SHOPIFY_SECRET)
        .await?;

    // Shopify #305: a landing-site referral, then cancelled after payment.
    let o305 = shopify_order(
        305,
        day(4),
        &[(3051, "BEAUTY02", 2, "9.75")],
        json!({"landing_site": "/products/night-cream?ref=D10090", "financial_status": "paid"}),
    );
    client
        .shopify("orders/paid", "evt-305-paid", &o305, SHOPIFY_SECRET)
        .await?;
    let cancelled305 = with(
        o305.clone(),
        json!({"cancelled_at": day(6).to_rfc3339(), "updated_at": day(6).to_rfc3339()}),
    );
    client
        .shopify(
            "orders/cancelled",
            "evt-305-cancel",
            &cancelled305,
            SHOPIFY_SECRET,
        )
        .await?;

    // Shopify #307: a SKU nobody mapped yet: parked, retried below once it is mapped.
    let o307 = shopify_order(
        307,
        day(5),
        &[(3071, "SUPP002-NEW", 3, "24.00")],
        json!({"note_attributes": [{"name": "ref", "value": "D10020"}], "financial_status": "paid"}),
    );
    client
        .shopify("orders/paid", "evt-307-paid", &o307, SHOPIFY_SECRET)
        .await?;

    // WooCommerce #5001: created (pending), then updated to processing (paid), delivered
    // twice (WooCommerce has no event id: the same state is the same delivery).
    let woo = woo_order(5001, "pending", None, day(7));
    client.woocommerce("order.created", &woo).await?;
    let woo_paid = woo_order(
        5001,
        "processing",
        Some(day(7)),
        day(7) + chrono::Duration::minutes(5),
    );
    client.woocommerce("order.updated", &woo_paid).await?;
    client.woocommerce("order.updated", &woo_paid).await?;

    // Magento #7001: an order saved as processing, with a configurable product (parent row
    // counts, child row skipped), then its invoice.
    client.magento(&magento_order_event(7001, day(8))).await?;
    client.magento(&magento_invoice_event(7001, day(8))).await?;

    // The seed article's own endpoint: its example body, and its normalised order.
    client
        .seed_endpoint(
            &json!({"shopify_order_id": "1234", "sku": "A1123", "customer_id": "5678",
                               "referrer_id": "9012", "amount": 99.00, "currency": "USD",
                               "order_ts": day(9).to_rfc3339()}),
        )
        .await?;
    client
        .seed_endpoint(&json!({"platform": "shopify", "platform_order_id": "587364120",
            "order_ts": day(9).to_rfc3339(), "status": "paid", "currency": "USD", "distributor_ref": "ABC123",
            "items": [{"platform_sku": "KIT-STARTER-001", "qty": 1, "unit_price": 99.00}], "total": 96.92}))
        .await?;

    server.wait_idle(Duration::from_secs(15)).await?;

    // The fix for #307: map its SKU, then retry what was parked.
    let parked = server.services.app.list_parked().await?;
    let _ = writeln!(out, "\nParked after the first pass: {}", parked.len());
    for p in &parked {
        let _ = writeln!(out, "  {}: {}", p.order_stream, p.reason);
    }
    let who = Provenance::command("demo:fix");
    let mapping = SkuMapping {
        platform: Platform::Shopify,
        platform_sku: "SUPP002-NEW".into(),
        effective_from: at(1, 1, 0),
        sku_id: SkuId::new("SUPP002")?,
        name: "Evening supplement".into(),
        category: "supplements".into(),
        commission_class: CommissionClass::new("retail")?,
        pv_per_unit: Some(Decimal::from(25)),
        cv_per_unit: None,
    };
    server.services.app.company().map_sku(mapping, &who).await?;
    let _ = writeln!(
        out,
        "Mapped SUPP002-NEW (effective 2026-01-01) and retried:"
    );
    for p in &parked {
        let outcome = server
            .services
            .app
            .retry_parked(&p.order_stream, &who)
            .await?;
        let _ = writeln!(out, "  {}: {:?}", p.order_stream, outcome);
    }
    server.wait_idle(Duration::from_secs(15)).await?;
    report(server, client, out).await
}

fn woo_order(id: u64, status: &str, paid: Option<DateTime<Utc>>, modified: DateTime<Utc>) -> Value {
    let naive = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S").to_string();
    json!({
        "id": id, "status": status, "currency": "USD", "prices_include_tax": false,
        "date_created_gmt": naive(at(3, 7, 9)), "date_modified_gmt": naive(modified),
        "date_paid_gmt": paid.map(naive),
        "discount_total": "0.00", "shipping_total": "4.00", "total_tax": "1.95", "total": "25.45",
        "customer_id": 0,
        "line_items": [{"id": 501, "name": "Night cream", "product_id": 93, "variation_id": 0, "sku": "BEAUTY02",
            "quantity": 2, "price": 9.75, "subtotal": "19.50", "subtotal_tax": "1.95", "total": "19.50", "total_tax": "1.95"}],
        "coupon_lines": [{"id": 1, "code": "d10090", "discount": "0.00"}],
        "meta_data": [], "refunds": []
    })
}

fn magento_order_event(id: u64, at: DateTime<Utc>) -> Value {
    let ts = at.format("%Y-%m-%d %H:%M:%S").to_string();
    json!({
        "specversion": "1.0", "id": format!("evt-mag-{id}-order"), "source": "urn:uuid:demo",
        "type": "com.adobe.commerce.observer.sales_order_save_after", "datacontenttype": "application/json",
        "time": at.to_rfc3339(),
        "data": {"value": {
            "entity_id": id, "increment_id": format!("000000{id}"), "state": "processing", "status": "processing",
            "created_at": ts, "updated_at": ts, "order_currency_code": "USD", "base_currency_code": "USD",
            "grand_total": 104.0, "subtotal": 99.0, "tax_amount": 0.0, "shipping_amount": 5.0, "discount_amount": 0.0,
            "customer_id": 88, "customer_email": "buyer@example.com",
            "extension_attributes": {"distributor_ref": "D10012"},
            "items": [
                {"item_id": 1, "sku": "A1123", "product_type": "configurable", "qty_ordered": 1, "price": 99.0,
                 "discount_amount": 0.0, "tax_amount": 0.0, "row_total": 99.0},
                {"item_id": 2, "parent_item_id": 1, "sku": "A1123-M", "product_type": "simple", "qty_ordered": 1,
                 "price": 0.0, "discount_amount": 0.0, "tax_amount": 0.0, "row_total": 0.0}
            ]
        }}
    })
}

fn magento_invoice_event(order_id: u64, at: DateTime<Utc>) -> Value {
    let ts = at.format("%Y-%m-%d %H:%M:%S").to_string();
    json!({
        "specversion": "1.0", "id": format!("evt-mag-{order_id}-invoice"), "source": "urn:uuid:demo",
        "type": "com.adobe.commerce.observer.sales_order_invoice_save_after", "time": at.to_rfc3339(),
        "data": {"value": {"entity_id": order_id + 90_000, "order_id": order_id, "state": 2,
            "created_at": ts, "updated_at": ts, "grand_total": 104.0}}
    })
}

/// What a newcomer wants to see, computed from the store rather than assumed.
async fn report(server: &RunningServer, client: &Client, out: &mut String) -> Result<()> {
    let store = &server.services.store;
    let app = &server.services.app;

    let _ = writeln!(
        out,
        "\nDeliveries answered: {}",
        describe_counts(&client.answers)
    );
    let _ = writeln!(
        out,
        "Duplicates recognised by the inbox: {}",
        server.services.inbox.duplicates_total().await?
    );

    // Every order stream with its final holdings.
    let orders = store
        .read_all(
            AllStart::Start,
            &StreamFilter {
                stream_prefixes: vec![streams::ORDER_PREFIX.into()],
            },
            10_000,
        )
        .await?;
    let order_streams: std::collections::BTreeSet<String> =
        orders.iter().map(|r| r.stream_id.clone()).collect();

    // Every posting, by (distributor, order stream).
    let postings = store
        .read_all(
            AllStart::Start,
            &StreamFilter {
                stream_prefixes: vec![streams::COMMISSIONS_PREFIX.into()],
            },
            10_000,
        )
        .await?;
    let mut posted: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    let mut sources: BTreeMap<(String, String, u64), u32> = BTreeMap::new();
    for r in &postings {
        if r.event_type != PostingEvent::EARNED && r.event_type != PostingEvent::REVERSED {
            continue;
        }
        let event: PostingEvent = upline_domain::events::decode(&r.event_type, &r.data)?;
        let (source, signed) = match &event {
            PostingEvent::CommissionEarned { source, amount, .. } => (source, *amount),
            PostingEvent::CommissionReversed { source, amount, .. } => (source, -*amount),
        };
        *posted
            .entry((r.stream_id.clone(), source.order_stream.clone()))
            .or_default() += signed;
        *sources
            .entry((
                r.stream_id.clone(),
                source.order_stream.clone(),
                source.order_revision,
            ))
            .or_default() += 1;
    }
    let double_commissions = sources.values().filter(|n| **n > 1).count();

    let _ = writeln!(
        out,
        "\nOrders and their commissions (what each beneficiary holds now):"
    );
    let mut mismatches = 0;
    for stream in &order_streams {
        let (state, _) = app.load_order(stream).await?;
        let status = match (
            &state.details,
            state.paid_at,
            state.cancelled_at,
            state.refunds.len(),
        ) {
            (_, _, Some(_), _) => "cancelled".to_string(),
            (_, Some(_), None, 0) => "paid".to_string(),
            (_, Some(_), None, n) => format!("paid, {n} refund(s)"),
            (_, None, None, _) => "not paid".to_string(),
        };
        let who = state
            .details
            .as_ref()
            .and_then(|d| d.distributor.clone())
            .map_or("unattributed".into(), |d| d.to_string());
        let total: Decimal = state.holdings.values().sum();
        let _ = writeln!(
            out,
            "  {stream}  [{status}; credited to {who}]  total {total}"
        );
        if let Some(outcome) = last_outcome(store, stream).await? {
            for p in &outcome.payouts {
                let _ = writeln!(
                    out,
                    "      level {:>2}  {:<6}  {}",
                    p.level, p.beneficiary, p.amount
                );
            }
        }
        // The ledger (distributor postings) must equal what the order says each one holds.
        let mut expected: BTreeMap<String, Decimal> = state
            .holdings
            .iter()
            .map(|(k, v)| (streams::commissions(k), *v))
            .collect();
        for ((distributor, order), amount) in &posted {
            if order == stream {
                let e = expected.entry(distributor.clone()).or_default();
                *e -= amount;
            }
        }
        mismatches += expected.values().filter(|v| !v.is_zero()).count();
    }
    let _ = writeln!(out, "\nDouble commissions: {double_commissions}");
    let _ = writeln!(
        out,
        "Ledger against order holdings: {mismatches} difference(s)"
    );
    let still_parked = app.list_parked().await?;
    let _ = writeln!(out, "Still parked: {}", still_parked.len());
    let beneficiaries: std::collections::BTreeSet<String> = posted
        .keys()
        .map(|(d, _)| {
            d.trim_start_matches(streams::COMMISSIONS_PREFIX)
                .to_string()
        })
        .collect();
    let delta_zero = read_side(server, &beneficiaries, out).await?;
    if double_commissions > 0 || mismatches > 0 || !still_parked.is_empty() || !delta_zero {
        bail!("the demo's checks failed:\n{out}");
    }
    Ok(())
}

// tonic's interceptor signature returns `Result<_, Status>`; its size is tonic's to choose.
#[allow(clippy::result_large_err)]
/// The read side, through the gRPC query API as a dashboard reads it: top ledger balances, the
/// reconciliation summary and one BI table. Returns whether every commission delta is zero.
async fn read_side(
    server: &RunningServer,
    beneficiaries: &std::collections::BTreeSet<String>,
    out: &mut String,
) -> Result<bool> {
    use upline_api::pb::query_service_client::QueryServiceClient;
    use upline_api::pb::{GetBalanceRequest, GetReconciliationRequest, ListSalesByDayRequest};
    let addr = server.grpc_addr.context("the demo starts the gRPC API")?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {DASHBOARD_TOKEN}").parse()?;
    let mut client =
        QueryServiceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
            Ok(request)
        });
    let amount = |m: &Option<upline_api::pb::Money>| {
        m.as_ref().map_or("0".to_string(), |m| m.amount.clone())
    };

    let mut balances = Vec::new();
    for d in beneficiaries {
        let answer = client
            .get_balance(GetBalanceRequest {
                distributor_id: d.clone(),
                currency: String::new(),
            })
            .await?
            .into_inner();
        for b in answer.balances {
            let value: Decimal = amount(&b.balance).parse().unwrap_or_default();
            balances.push((
                value,
                d.clone(),
                amount(&b.earned),
                amount(&b.reversed),
                b.currency,
            ));
        }
    }
    balances.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let _ = writeln!(out, "\nTop ledger balances (gRPC QueryService.GetBalance):");
    let _ = writeln!(out, "  distributor  earned   reversed  balance");
    for (balance, d, earned, reversed, currency) in balances.iter().take(5) {
        let _ = writeln!(
            out,
            "  {d:<11}  {earned:<7}  {reversed:<8}  {balance} {currency}"
        );
    }

    let reconciliation = client
        .get_reconciliation(GetReconciliationRequest {
            from_day: "2026-01-01".into(),
            to_day: "2026-12-31".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let _ = writeln!(
        out,
        "\nReconciliation 2026 (gRPC QueryService.GetReconciliation):"
    );
    let mut delta_zero = true;
    for t in &reconciliation.totals {
        let delta = amount(&t.commission_delta);
        delta_zero &= delta
            .parse::<Decimal>()
            .map(|d| d.is_zero())
            .unwrap_or(false);
        let _ = writeln!(
            out,
            "  {} orders ({} paid, {} refunded, {} cancelled, {} unattributed); net {} {}; expected {}, posted {}, delta {} ({}%)",
            t.orders,
            t.orders_paid,
            t.orders_refunded,
            t.orders_cancelled,
            t.orders_unattributed,
            amount(&t.net),
            t.currency,
            amount(&t.commission_expected),
            amount(&t.commission_posted),
            delta,
            if t.commission_delta_percent.is_empty() { "0" } else { &t.commission_delta_percent },
        );
    }

    let sales = client
        .list_sales_by_day(ListSalesByDayRequest {
            from_day: "2026-01-01".into(),
            to_day: "2026-12-31".into(),
            page_size: 20,
            ..Default::default()
        })
        .await?
        .into_inner();
    let _ = writeln!(
        out,
        "\nSales by day, SKU and class (gRPC QueryService.ListSalesByDay):"
    );
    let _ = writeln!(
        out,
        "  day         sku              class         qty  net     PV"
    );
    for r in &sales.rows {
        let _ = writeln!(
            out,
            "  {}  {:<15}  {:<12}  {:<3}  {:<6}  {}",
            r.day,
            r.sku_id,
            r.commission_class,
            r.quantity,
            amount(&r.net),
            r.pv
        );
    }
    Ok(delta_zero)
}

async fn last_outcome(
    store: &std::sync::Arc<dyn upline_store::EventStore>,
    stream: &str,
) -> Result<Option<upline_domain::engine::CommissionSummary>> {
    let events = store
        .read_stream(
            stream,
            upline_store::Direction::Forwards,
            upline_store::StreamStart::Start,
            1_000,
        )
        .await?;
    let mut outcome = None;
    for r in events {
        match upline_domain::events::decode::<OrderEvent>(&r.event_type, &r.data)? {
            OrderEvent::CommissionCalculated { outcome: o, .. } => outcome = Some(o),
            OrderEvent::CommissionRecalculated { outcome: o, .. } => outcome = o,
            _ => {}
        }
    }
    Ok(outcome)
}

fn describe_counts(counts: &BTreeMap<String, u32>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
