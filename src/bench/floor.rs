//! The floor: a bare HTTP handler that does only what no webhook receiver can skip (read the
//! body, look the shop up, verify Shopify's HMAC-SHA256 over the raw bytes, answer 200), loaded
//! with the same requests at the same rates as upline. What upline costs above it is what the
//! pipeline costs; what the floor costs is the HTTP stack, the client and the machine.
//!
//! It runs on its own thread with its own tokio runtime of as many workers as `upline serve`
//! gets (tokio's default, one per core), so that the client's runtime is the only thing the
//! two share; its threads' CPU time is read from `/proc/self/task/TID/stat`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::oneshot;

/// The floor's shops: domain to secret, as upline's gateway configuration holds them.
type Shops = Arc<HashMap<String, Vec<u8>>>;

/// A running floor server; dropping it stops it and joins its thread.
pub struct Floor {
    pub addr: SocketAddr,
    tids: Arc<Mutex<Vec<String>>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Floor {
    pub fn start(shop: &str, secret: &str) -> Result<Floor> {
        let shops: Shops = Arc::new(HashMap::from([(
            shop.to_string(),
            secret.as_bytes().to_vec(),
        )]));
        let tids: Arc<Mutex<Vec<String>>> = Arc::default();
        let runtime = {
            let tids = tids.clone();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("bench-floor")
                .on_thread_start(move || {
                    // "PID/task/TID": where this thread's CPU time is.
                    if let Ok(link) = std::fs::read_link("/proc/thread-self") {
                        if let Ok(mut tids) = tids.lock() {
                            tids.push(link.to_string_lossy().into_owned());
                        }
                    }
                })
                .build()
                .context("cannot build the floor's runtime")?
        };
        // Bound here (std, no runtime needed) so that the address is known before the thread
        // runs; the thread's runtime takes it over.
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("the floor cannot listen")?;
        listener
            .set_nonblocking(true)
            .context("the floor's socket")?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = Router::new()
            .route("/webhooks/shopify", post(webhook))
            .with_state(shops);
        let thread = std::thread::Builder::new()
            .name("bench-floor-main".into())
            .spawn(move || {
                let served = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await
                });
                if let Err(e) = served {
                    eprintln!("bench: the floor server failed: {e}");
                }
            })
            .context("cannot start the floor's thread")?;
        Ok(Floor {
            addr,
            tids,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// CPU seconds used so far by the floor's runtime threads: the scheduler's nanosecond
    /// count (`schedstat`), since a step of the floor can cost less than `stat`'s 10 ms ticks.
    pub fn cpu_seconds(&self) -> f64 {
        let tids = self.tids.lock().map(|t| t.clone()).unwrap_or_default();
        tids.iter().filter_map(|t| thread_cpu_seconds(t)).sum()
    }
}

/// `/proc/{path}/schedstat`'s first field (nanoseconds on a CPU), else `stat`'s ticks.
fn thread_cpu_seconds(path: &str) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{path}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|ns| ns / 1e9)
        .or_else(|| super::process::cpu_seconds(path))
}

impl Drop for Floor {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Shop lookup, signature over the raw body, 200: nothing else.
async fn webhook(
    State(shops): State<Shops>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(secret) = header("x-shopify-shop-domain").and_then(|s| shops.get(s)) else {
        return (StatusCode::UNAUTHORIZED, r#"{"status":"rejected"}"#);
    };
    let Some(signature) = header("x-shopify-hmac-sha256")
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    else {
        return (StatusCode::UNAUTHORIZED, r#"{"status":"rejected"}"#);
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, r#"{"status":"error"}"#);
    };
    mac.update(&body);
    // verify_slice compares in constant time, as upline's gateway does.
    match mac.verify_slice(&signature) {
        Ok(()) => (StatusCode::OK, r#"{"status":"accepted"}"#),
        Err(_) => (StatusCode::UNAUTHORIZED, r#"{"status":"rejected"}"#),
    }
}
