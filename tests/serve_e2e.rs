//! `upline serve` as a separate process: a delivery accepted and then the process killed is
//! processed after the restart, once. And `upline demo` runs to the end.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use upline_store::{Direction, EventStore, SqliteEventStore, StreamStart};

const SECRET: &str = "e2e-shopify-secret";
/// The order below is dated August 2026, a fixed body: a replay window that takes it as fresh.
const WINDOW_HOURS: u32 = 24 * 366 * 10;

fn upline() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_upline"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn run_ok(args: &[&str]) -> String {
    let out = upline().args(args).output().expect("upline runs");
    assert!(
        out.status.success(),
        "upline {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `upline serve` and returns the child and the address it listens on.
fn serve(config: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = upline()
        .args(["serve", "--config", config.to_str().unwrap()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("upline serve starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("serve prints its address");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(!addr.is_empty(), "no address in {line:?}");
    (child, addr)
}

fn signed_post(addr: &str, topic: &str, event_id: &str, body: &str) -> (u16, String) {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("http://{addr}/webhooks/shopify"))
            .header("x-shopify-topic", topic)
            .header("x-shopify-shop-domain", "demo-store.myshopify.com")
            .header("x-shopify-hmac-sha256", signature)
            .header("x-shopify-event-id", event_id)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("the server answers");
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    })
}

/// Reads a stream from the store file while the server may be running (WAL lets readers in).
fn read_stream(dir: &Path, stream: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteEventStore::open(&dir.join("events.sqlite"))
            .await
            .unwrap();
        let events = store
            .read_stream(stream, Direction::Forwards, StreamStart::Start, 1_000)
            .await
            .unwrap();
        store.close().await.unwrap();
        events.into_iter().map(|e| e.event_type).collect()
    })
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate(child: &mut Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = child.wait().expect("serve exits");
    assert!(status.success(), "serve did not stop cleanly: {status}");
}

#[test]
fn a_delivery_accepted_before_a_kill_is_processed_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    run_ok(&[
        "plan",
        "publish",
        "examples/plan.toml",
        "--data-dir",
        data_arg,
    ]);
    run_ok(&[
        "network",
        "import",
        "examples/network.json",
        "--data-dir",
        data_arg,
    ]);
    let config = dir.path().join("upline.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\n[gateway]\nreplay_window_hours = {WINDOW_HOURS}\n[[gateway.shops]]\nplatform = \"shopify\"\nshop = \"demo-store.myshopify.com\"\nsecrets = [\"{SECRET}\"]\n"
        ),
    )
    .unwrap();
    let order = r#"{"id": 820982911946154508, "created_at": "2026-08-28T08:11:04Z", "updated_at": "2026-08-28T08:12:00Z",
        "currency": "USD", "financial_status": "paid", "total_price": "39.60", "total_tax": "0.00",
        "line_items": [{"id": 866550311766439020, "sku": "SUPP001", "quantity": 2, "price": "19.80"}],
        "note_attributes": [{"name": "distributor_ref", "value": "ABC123"}]}"#;
    let stream = "order-shopify-demo-store.myshopify.com-820982911946154508";

    // Deliveries are held (stored, not processed): the kill comes after the 200, before any work.
    let (mut first, addr) = serve(&config, &["--hold-deliveries"]);
    let (status, answer) = signed_post(&addr, "orders/paid", "evt-kill-1", order);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("accepted"), "{answer}");
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        read_stream(&data, stream).is_empty(),
        "nothing was processed before the kill"
    );

    let (mut second, addr) = serve(&config, &[]);
    wait_for("the order to be processed", Duration::from_secs(20), || {
        read_stream(&data, stream).len() >= 3
    });
    wait_for("the postings", Duration::from_secs(20), || {
        read_stream(&data, "commissions-11043")
            .iter()
            .any(|t| t == "CommissionEarned")
    });
    // The platform retries the same event after our restart: a duplicate, nothing new.
    let (status, answer) = signed_post(&addr, "orders/paid", "evt-kill-1", order);
    assert_eq!(status, 200);
    assert!(answer.contains("duplicate"), "{answer}");
    terminate(&mut second);

    assert_eq!(
        read_stream(&data, stream),
        ["OrderPlaced", "OrderPaid", "CommissionCalculated"]
    );
    let earned: Vec<_> = read_stream(&data, "commissions-11043")
        .into_iter()
        .filter(|t| t == "CommissionEarned")
        .collect();
    assert_eq!(earned.len(), 1, "one posting for the seller");
}

#[test]
fn the_demo_runs_to_the_end_with_no_double_commission() {
    let out = run_ok(&["demo"]);
    assert!(out.contains("Double commissions: 0"), "{out}");
    assert!(
        out.contains("Ledger against order holdings: 0 difference(s)"),
        "{out}"
    );
    assert!(out.contains("Still parked: 0"), "{out}");
    assert!(
        out.contains("delta 0.00 (0%)"),
        "reconciliation through gRPC: {out}"
    );
    assert!(out.contains("Top ledger balances"), "{out}");
    assert!(out.contains("duplicate"), "{out}");
}
