//! The embedded inbox adapter, `SqliteInbox`, against a real file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::ConnectOptions;
use tempfile::TempDir;
use upline_app::inbox::sqlite::{
    DeliveryStatus, SqliteInbox, MAX_CLAIM, MAX_DELIVERY_BYTES, MAX_DELIVERY_META_BYTES,
    MAX_SETTLEMENTS,
};
use upline_app::inbox::{Acceptance, Delivery, Inbox, InboxError, InboxItem, Outcome, Settlement};
use upline_domain::ids::{Platform, ShopId};

const LONG: Duration = Duration::from_secs(60);

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A delivery whose body is not valid UTF-8 and holds a NUL: a BLOB must
/// keep it byte for byte.
fn delivery(shop: &str, key: &str) -> Delivery {
    let mut body = format!(r#"{{"id":"{key}","note":"caf\u00e9 é"}}"#).into_bytes();
    body.extend_from_slice(&[0, 0xff, 0xfe, b'\n']);
    Delivery {
        platform: Platform::Shopify,
        shop: ShopId::new(shop).unwrap(),
        topic: "orders/paid".to_owned(),
        dedupe_key: key.to_owned(),
        delivery_id: format!("webhook-{key}"),
        received_at: at("2024-05-01T12:00:00.123456Z"),
        headers: BTreeMap::from([
            ("x-shopify-api-version".to_owned(), "2024-04".to_owned()),
            ("x-shopify-topic".to_owned(), "orders/paid".to_owned()),
            ("x-note".to_owned(), "quote \" and é".to_owned()),
        ]),
        body,
    }
}

fn inbox_path(dir: &TempDir) -> PathBuf {
    // A parent directory that does not exist yet: `open` creates it.
    dir.path().join("data").join("inbox.sqlite")
}

async fn open(path: &Path) -> SqliteInbox {
    SqliteInbox::open(path).await.unwrap()
}

async fn new_id(inbox: &SqliteInbox, delivery: Delivery) -> i64 {
    match inbox.accept(delivery).await.unwrap() {
        Acceptance::New { id } => id,
        other => panic!("expected New, got {other:?}"),
    }
}

fn ids(items: &[InboxItem]) -> Vec<i64> {
    items.iter().map(|item| item.id).collect()
}

#[tokio::test]
async fn accept_then_claim_returns_the_exact_delivery() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let sent = delivery("acme.myshopify.com", "evt-1");
    let id = new_id(&inbox, sent.clone()).await;

    let items = inbox.claim(10, LONG).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id, id);
    assert_eq!(items[0].delivery, sent);
    assert_eq!(items[0].attempts, 0);
}

#[tokio::test]
async fn a_duplicate_is_refused_with_the_first_id_and_counted() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let first = delivery("acme.myshopify.com", "evt-1");
    let id = new_id(&inbox, first.clone()).await;

    // Same event, delivered again (a new webhook id, the same body).
    let mut again = first.clone();
    again.delivery_id = "webhook-retry".to_owned();
    assert_eq!(
        inbox.accept(again.clone()).await.unwrap(),
        Acceptance::Duplicate { id }
    );
    // The same key with another body is a conflict: nothing stored, not counted as a repeat.
    let mut changed = first.clone();
    changed.body = b"{}".to_vec();
    assert_eq!(
        inbox.accept(changed).await.unwrap(),
        Acceptance::Conflict { id }
    );

    let items = inbox.claim(10, LONG).await.unwrap();
    assert_eq!(ids(&items), vec![id]);
    assert_eq!(items[0].delivery, first, "the first copy is kept");
    assert!(inbox.claim(10, LONG).await.unwrap().is_empty());

    // Still a duplicate once the first copy is completed.
    inbox.complete(id, &Outcome::Processed).await.unwrap();
    assert_eq!(
        inbox.accept(again).await.unwrap(),
        Acceptance::Duplicate { id }
    );
    assert!(inbox.claim(10, LONG).await.unwrap().is_empty());

    assert_eq!(inbox.duplicates_total().await.unwrap(), 2);
    let listed = inbox.list(None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].duplicates, 2);
    let stats = inbox.writer_stats();
    assert_eq!((stats.accepted, stats.duplicates), (1, 2));
}

#[tokio::test]
async fn the_same_key_on_another_shop_or_platform_is_new() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let a = new_id(&inbox, delivery("acme.myshopify.com", "evt-1")).await;
    let b = new_id(&inbox, delivery("other.myshopify.com", "evt-1")).await;
    let mut woo = delivery("acme.myshopify.com", "evt-1");
    woo.platform = Platform::Woocommerce;
    let c = new_id(&inbox, woo).await;
    assert!(a < b && b < c);
    assert_eq!(ids(&inbox.claim(10, LONG).await.unwrap()), vec![a, b, c]);
    assert_eq!(inbox.duplicates_total().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_copies_store_exactly_one() {
    let dir = TempDir::new().unwrap();
    let inbox = Arc::new(open(&inbox_path(&dir)).await);
    let tasks: Vec<_> = (0..100)
        .map(|copy| {
            let inbox = Arc::clone(&inbox);
            let mut copy_of = delivery("acme.myshopify.com", "evt-race");
            copy_of.delivery_id = format!("webhook-{copy}");
            tokio::spawn(async move { inbox.accept(copy_of).await })
        })
        .collect();
    let mut new = Vec::new();
    let mut duplicates = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Acceptance::New { id } => new.push(id),
            Acceptance::Duplicate { id } => duplicates.push(id),
            Acceptance::Conflict { id } => panic!("the same body conflicted with {id}"),
        }
    }
    assert_eq!(new.len(), 1, "exactly one copy is new");
    assert_eq!(duplicates.len(), 99);
    assert!(duplicates.iter().all(|id| *id == new[0]));
    assert_eq!(inbox.list(None, 1_000).await.unwrap().len(), 1);
    assert_eq!(inbox.duplicates_total().await.unwrap(), 99);
    assert_eq!(ids(&inbox.claim(MAX_CLAIM, LONG).await.unwrap()), new);
}

/// Runs `requests` so that they share one writer batch: the writer is paused while the future
/// is polled (on a current-thread runtime every request is queued by then), then let go.
async fn in_one_batch<F: std::future::Future>(inbox: &SqliteInbox, requests: F) -> F::Output {
    // `unconstrained`: Tokio's cooperative budget would otherwise stop the sends part-way (the
    // task does not yield to the runtime while paused).
    let mut requests = std::pin::pin!(tokio::task::unconstrained(requests));
    {
        let _paused = inbox.pause_writer();
        let waker = futures::task::noop_waker();
        let mut context = std::task::Context::from_waker(&waker);
        // `join_all` of many futures polls at most 32 of them per poll (FuturesUnordered's
        // budget): poll again until every one has had its turn (16 polls cover 512).
        for _ in 0..16 {
            assert!(
                std::future::Future::poll(requests.as_mut(), &mut context).is_pending(),
                "answered while the writer was paused"
            );
        }
    }
    requests.await
}

/// The hundred accepts are all queued before the writer gathers its batch, so group commit
/// must turn them into a single transaction.
#[tokio::test]
async fn concurrent_accepts_are_committed_together() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let before = inbox.writer_stats().commits;
    let answers = in_one_batch(
        &inbox,
        futures::future::join_all(
            (0..100).map(|n| inbox.accept(delivery("acme.myshopify.com", &format!("evt-{n}")))),
        ),
    )
    .await;
    let mut ids: Vec<i64> = answers
        .into_iter()
        .map(|answer| match answer.unwrap() {
            Acceptance::New { id } => id,
            other => panic!("expected New, got {other:?}"),
        })
        .collect();
    assert_eq!(
        inbox.writer_stats().commits - before,
        1,
        "one fsync for all"
    );
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 100);
    assert_eq!(inbox.stats().await.unwrap().pending, 100);
}

#[tokio::test]
async fn a_claim_leases_and_an_expired_lease_hands_the_item_out_again() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let id = new_id(&inbox, delivery("acme.myshopify.com", "evt-1")).await;
    let lease = Duration::from_millis(700);

    let first = inbox.claim(10, lease).await.unwrap();
    assert_eq!(ids(&first), vec![id]);
    assert_eq!(first[0].attempts, 0);
    assert!(
        inbox.claim(10, lease).await.unwrap().is_empty(),
        "leased to the first worker"
    );

    // The worker died: once the lease is over the item goes out again.
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let again = inbox.claim(10, LONG).await.unwrap();
    assert_eq!(ids(&again), vec![id]);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].delivery, first[0].delivery);
    assert_eq!(inbox.list(None, 10).await.unwrap()[0].attempts, 2);
}

#[tokio::test]
async fn completed_items_are_never_handed_out_again_and_are_counted() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let shop = "acme.myshopify.com";
    let processed = new_id(&inbox, delivery(shop, "evt-1")).await;
    let ignored = new_id(&inbox, delivery(shop, "evt-2")).await;
    let parked = new_id(&inbox, delivery(shop, "evt-3")).await;
    let pending = new_id(&inbox, delivery(shop, "evt-4")).await;
    // A zero lease: whatever is not completed is claimable again at once.
    assert_eq!(inbox.claim(10, Duration::ZERO).await.unwrap().len(), 4);

    inbox
        .complete(processed, &Outcome::Processed)
        .await
        .unwrap();
    let not_an_order = Outcome::Ignored {
        reason: "not an order topic".to_owned(),
    };
    inbox.complete(ignored, &not_an_order).await.unwrap();
    let unmapped = Outcome::Parked {
        reason: "unknown SKU X-1".to_owned(),
    };
    inbox.complete(parked, &unmapped).await.unwrap();

    assert_eq!(
        ids(&inbox.claim(10, Duration::ZERO).await.unwrap()),
        vec![pending]
    );
    let stats = inbox.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.processed, stats.ignored, stats.parked),
        (1, 1, 1, 1)
    );

    // Completing again is harmless: the first outcome stands.
    inbox.complete(processed, &unmapped).await.unwrap();
    // A stale worker releasing a completed item does not revive it.
    inbox
        .release(processed, "late failure", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        ids(&inbox.claim(10, Duration::ZERO).await.unwrap()),
        vec![pending]
    );
    assert_eq!(inbox.stats().await.unwrap(), stats);

    let listed = inbox.list(Some("parked"), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, parked);
    assert_eq!(listed[0].status, DeliveryStatus::Parked);
    assert_eq!(listed[0].outcome_reason.as_deref(), Some("unknown SKU X-1"));
    assert!(listed[0].completed_at.is_some());
    let listed = inbox.list(Some("processed"), 10).await.unwrap();
    assert_eq!(listed[0].id, processed);
    assert_eq!(listed[0].outcome_reason, None);
    assert_eq!(listed[0].last_error, None);
    assert_eq!(
        inbox.list(Some("pending"), 10).await.unwrap()[0].id,
        pending
    );
    assert!(inbox.list(Some("parkd"), 10).await.is_err());
}

#[tokio::test]
async fn unknown_items_are_refused() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    assert_eq!(
        inbox.complete(42, &Outcome::Processed).await,
        Err(InboxError::UnknownItem(42))
    );
    assert_eq!(
        inbox.release(42, "boom", Duration::ZERO).await,
        Err(InboxError::UnknownItem(42))
    );
    // A refused request does not spoil the writer for the next ones.
    new_id(&inbox, delivery("acme.myshopify.com", "evt-1")).await;
}

/// A batch runs without savepoints until the database refuses one of its requests; then it is
/// redone with a savepoint around each, so the refused request fails alone and the others of
/// the same transaction are stored.
#[tokio::test]
async fn a_refused_request_fails_alone_in_its_batch() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let before = inbox.writer_stats().commits;
    let (first, refused, second) = in_one_batch(&inbox, async {
        tokio::join!(
            inbox.accept(delivery("acme.myshopify.com", "evt-1")),
            inbox.complete(42, &Outcome::Processed),
            inbox.accept(delivery("acme.myshopify.com", "evt-2")),
        )
    })
    .await;
    assert!(matches!(first, Ok(Acceptance::New { .. })), "{first:?}");
    assert_eq!(refused, Err(InboxError::UnknownItem(42)));
    assert!(matches!(second, Ok(Acceptance::New { .. })), "{second:?}");
    assert_eq!(inbox.writer_stats().commits - before, 1, "one transaction");
    assert_eq!(inbox.stats().await.unwrap().pending, 2);
}

/// Given two claimed deliveries and a third pending, when a worker settles the two and claims
/// again, then one transaction records both settlements and leases only the third.
#[tokio::test]
async fn settlements_and_the_next_claim_are_one_transaction() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let done = new_id(&inbox, delivery("acme.myshopify.com", "evt-1")).await;
    let failed = new_id(&inbox, delivery("acme.myshopify.com", "evt-2")).await;
    assert_eq!(
        ids(&inbox.claim(2, LONG).await.unwrap()),
        vec![done, failed]
    );
    let next = new_id(&inbox, delivery("acme.myshopify.com", "evt-3")).await;
    let before = inbox.writer_stats().commits;

    let settled = vec![
        Settlement::Completed {
            id: done,
            outcome: Outcome::Processed,
        },
        Settlement::Released {
            id: failed,
            error: "store unavailable".to_string(),
            retry_after: Duration::from_secs(3600),
        },
    ];
    let claimed = inbox.settle_and_claim(settled, 10, LONG).await.unwrap();

    assert_eq!(ids(&claimed), vec![next]);
    assert_eq!(inbox.writer_stats().commits - before, 1, "one transaction");
    let done = inbox.item(done).await.unwrap().unwrap();
    assert_eq!(done.status, DeliveryStatus::Processed);
    let failed = inbox.item(failed).await.unwrap().unwrap();
    assert_eq!(failed.status, DeliveryStatus::Pending);
    assert_eq!(failed.last_error.as_deref(), Some("store unavailable"));
    assert!(failed.available_at > Utc::now() + chrono::Duration::minutes(59));
}

/// More settlements than one request holds are recorded in order, in as many requests, and
/// the last one also claims.
#[tokio::test]
async fn settlements_beyond_one_request_are_all_recorded() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let count = MAX_SETTLEMENTS + 10;
    let mut claimed = Vec::new();
    for n in 0..count {
        new_id(&inbox, delivery("acme.myshopify.com", &format!("evt-{n}"))).await;
    }
    while claimed.len() < count {
        claimed.extend(inbox.claim(MAX_CLAIM, LONG).await.unwrap());
    }
    let next = new_id(&inbox, delivery("acme.myshopify.com", "evt-next")).await;
    let before = inbox.writer_stats().commits;

    let settled = claimed
        .iter()
        .map(|item| Settlement::Completed {
            id: item.id,
            outcome: Outcome::Processed,
        })
        .collect();
    let again = inbox.settle_and_claim(settled, 10, LONG).await.unwrap();

    assert_eq!(ids(&again), vec![next]);
    assert_eq!(inbox.writer_stats().commits - before, 2, "two requests");
    assert_eq!(inbox.stats().await.unwrap().processed, count as u64);
}

/// A settlement the inbox refuses (an item it never had) fails its whole request: the other
/// settlement is not recorded and nothing is claimed, so the worker's items come back when
/// their leases run out instead of being half recorded.
#[tokio::test]
async fn a_refused_settlement_records_nothing_of_its_request() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let claimed = new_id(&inbox, delivery("acme.myshopify.com", "evt-1")).await;
    assert_eq!(ids(&inbox.claim(1, LONG).await.unwrap()), vec![claimed]);
    let waiting = new_id(&inbox, delivery("acme.myshopify.com", "evt-2")).await;

    let settled = vec![
        Settlement::Completed {
            id: claimed,
            outcome: Outcome::Processed,
        },
        Settlement::Completed {
            id: 4242,
            outcome: Outcome::Processed,
        },
    ];
    let answer = inbox.settle_and_claim(settled, 10, LONG).await;

    assert_eq!(answer, Err(InboxError::UnknownItem(4242)));
    let claimed = inbox.item(claimed).await.unwrap().unwrap();
    assert_eq!(claimed.status, DeliveryStatus::Pending);
    let waiting = inbox.item(waiting).await.unwrap().unwrap();
    assert_eq!(waiting.attempts, 0, "not claimed");
}

#[tokio::test]
async fn release_records_the_error_and_delays_the_item() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let id = new_id(&inbox, delivery("acme.myshopify.com", "evt-1")).await;
    assert_eq!(inbox.claim(10, LONG).await.unwrap().len(), 1);

    let released_at = Utc::now();
    inbox
        .release(id, "event store unavailable", LONG)
        .await
        .unwrap();
    assert!(
        inbox.claim(10, LONG).await.unwrap().is_empty(),
        "backing off"
    );
    let listed = inbox.list(None, 10).await.unwrap();
    assert_eq!(listed[0].status, DeliveryStatus::Pending);
    assert_eq!(
        listed[0].last_error.as_deref(),
        Some("event store unavailable")
    );
    assert!(listed[0].available_at >= released_at + chrono::Duration::seconds(59));

    // A short back-off: not yet, then again.
    let back_off = Duration::from_millis(500);
    inbox.release(id, "still down", back_off).await.unwrap();
    assert!(inbox.claim(10, LONG).await.unwrap().is_empty());
    tokio::time::sleep(back_off + Duration::from_millis(100)).await;
    let items = inbox.claim(10, LONG).await.unwrap();
    assert_eq!(ids(&items), vec![id]);
    assert_eq!(items[0].attempts, 1);
    assert_eq!(
        inbox.list(None, 10).await.unwrap()[0].last_error.as_deref(),
        Some("still down")
    );
}

#[tokio::test]
async fn an_accepted_delivery_survives_dropping_the_inbox() {
    let dir = TempDir::new().unwrap();
    let path = inbox_path(&dir);
    let sent = delivery("acme.myshopify.com", "evt-1");
    let id = {
        let inbox = open(&path).await;
        new_id(&inbox, sent.clone()).await
        // Dropped here without `close`.
    };

    let inbox = open(&path).await;
    let stats = inbox.stats().await.unwrap();
    assert_eq!(stats.pending, 1);
    let items = inbox.claim(10, LONG).await.unwrap();
    assert_eq!(ids(&items), vec![id]);
    assert_eq!(items[0].delivery, sent);

    // The file is in WAL mode (persistent, visible from any connection).
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn completed_items_and_leases_stay_after_a_restart() {
    let dir = TempDir::new().unwrap();
    let path = inbox_path(&dir);
    let shop = "acme.myshopify.com";
    let (done, leased) = {
        let inbox = open(&path).await;
        let done = new_id(&inbox, delivery(shop, "evt-1")).await;
        let leased = new_id(&inbox, delivery(shop, "evt-2")).await;
        assert_eq!(inbox.claim(10, LONG).await.unwrap().len(), 2);
        inbox.complete(done, &Outcome::Processed).await.unwrap();
        (done, leased)
    };

    let inbox = open(&path).await;
    let stats = inbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.processed), (1, 1));
    assert!(
        inbox.claim(10, LONG).await.unwrap().is_empty(),
        "the completed item is done, the other still leased"
    );
    // Deduplication survives the restart too.
    assert_eq!(
        inbox.accept(delivery(shop, "evt-1")).await.unwrap(),
        Acceptance::Duplicate { id: done }
    );
    inbox
        .release(leased, "restarted", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(ids(&inbox.claim(10, LONG).await.unwrap()), vec![leased]);
    inbox.close().await.unwrap();
}

const CHILD_DIR: &str = "UPLINE_INBOX_KILL_TEST_DIR";

/// Not a test of its own: the body of the process that
/// `a_delivery_accepted_then_the_process_killed_is_processed_after_restart`
/// starts and kills. Does nothing when run normally.
#[tokio::test]
async fn child_process_for_the_kill_test() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let inbox = open(&Path::new(&dir).join("inbox.sqlite")).await;
    new_id(&inbox, delivery("acme.myshopify.com", "evt-killed")).await;
    // The platform would get its 200 now; then the process is killed with
    // no chance to close, drop or flush anything.
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status();
    std::thread::sleep(Duration::from_secs(2));
    std::process::exit(3);
}

#[tokio::test]
async fn a_delivery_accepted_then_the_process_killed_is_processed_after_restart() {
    let dir = TempDir::new().unwrap();
    let status = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_for_the_kill_test",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(!status.success(), "the child must have died: {status:?}");

    let inbox = open(&dir.path().join("inbox.sqlite")).await;
    let items = inbox.claim(10, LONG).await.unwrap();
    assert_eq!(items.len(), 1, "the accepted delivery is still there");
    assert_eq!(
        items[0].delivery,
        delivery("acme.myshopify.com", "evt-killed")
    );
    inbox
        .complete(items[0].id, &Outcome::Processed)
        .await
        .unwrap();
    assert_eq!(inbox.stats().await.unwrap().processed, 1);
}

#[tokio::test]
async fn too_large_deliveries_are_refused_and_nothing_is_stored() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let mut big = delivery("acme.myshopify.com", "evt-big");
    big.body = vec![b'x'; MAX_DELIVERY_BYTES + 1];
    assert_eq!(
        inbox.accept(big.clone()).await,
        Err(InboxError::TooLarge {
            size: MAX_DELIVERY_BYTES + 1,
            max: MAX_DELIVERY_BYTES
        })
    );
    let mut headers = delivery("acme.myshopify.com", "evt-headers");
    headers
        .headers
        .insert("x-huge".to_owned(), "h".repeat(MAX_DELIVERY_META_BYTES));
    assert!(matches!(
        inbox.accept(headers).await,
        Err(InboxError::TooLarge { max, .. }) if max == MAX_DELIVERY_META_BYTES
    ));
    assert_eq!(inbox.stats().await.unwrap().pending, 0);

    // Exactly at the bound is fine.
    big.body.pop();
    let id = new_id(&inbox, big).await;
    let items = inbox.claim(1, LONG).await.unwrap();
    assert_eq!(ids(&items), vec![id]);
    assert_eq!(items[0].delivery.body.len(), MAX_DELIVERY_BYTES);
}

#[tokio::test]
async fn claims_go_oldest_first_and_respect_max() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let mut accepted = Vec::new();
    for n in 0..5 {
        let mut next = delivery("acme.myshopify.com", &format!("evt-{n}"));
        // Received times out of order: acceptance order (id) decides.
        next.received_at = at("2024-05-01T12:00:00Z") - chrono::Duration::seconds(n);
        accepted.push(new_id(&inbox, next).await);
    }
    assert_eq!(ids(&inbox.claim(2, LONG).await.unwrap()), accepted[..2]);
    assert_eq!(ids(&inbox.claim(0, LONG).await.unwrap()), Vec::<i64>::new());
    assert_eq!(
        ids(&inbox.claim(usize::MAX, LONG).await.unwrap()),
        accepted[2..]
    );
}

#[tokio::test]
async fn stats_report_pending_and_the_oldest_pending() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let stats = inbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.oldest_pending), (0, None));

    let mut newer = delivery("acme.myshopify.com", "evt-newer");
    newer.received_at = at("2024-05-01T12:00:05.000001Z");
    let mut older = delivery("acme.myshopify.com", "evt-older");
    older.received_at = at("2024-05-01T11:59:59.5Z");
    new_id(&inbox, newer.clone()).await;
    let older_id = new_id(&inbox, older.clone()).await;

    let stats = inbox.stats().await.unwrap();
    assert_eq!(stats.pending, 2);
    assert_eq!(stats.oldest_pending, Some(older.received_at));

    // Leased items are still pending.
    assert_eq!(inbox.claim(10, LONG).await.unwrap().len(), 2);
    assert_eq!(inbox.stats().await.unwrap().pending, 2);

    inbox.complete(older_id, &Outcome::Processed).await.unwrap();
    let stats = inbox.stats().await.unwrap();
    assert_eq!(stats.pending, 1);
    assert_eq!(stats.oldest_pending, Some(newer.received_at));
    assert_eq!(stats.processed, 1);
}

#[tokio::test]
async fn new_deliveries_wake_a_worker_even_one_not_yet_waiting() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let notify = inbox.new_work();
    new_id(&inbox, delivery("acme.myshopify.com", "evt-1")).await;
    // Nobody waited during the accept: the wake-up was kept.
    tokio::time::timeout(Duration::from_secs(1), notify.notified())
        .await
        .expect("woken for the new delivery");

    // A duplicate is no new work.
    inbox
        .accept(delivery("acme.myshopify.com", "evt-1"))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), notify.notified())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_closed_inbox_refuses_work() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    new_id(&inbox, delivery("acme.myshopify.com", "evt-1")).await;
    inbox.close().await.unwrap();
    assert_eq!(
        inbox.accept(delivery("acme.myshopify.com", "evt-2")).await,
        Err(InboxError::Closed)
    );
    assert_eq!(
        inbox.claim(1, LONG).await.map(|items| items.len()),
        Err(InboxError::Closed)
    );
    assert_eq!(inbox.stats().await, Err(InboxError::Closed));
}

/// Accepts, claims and parks a delivery; returns its id.
async fn parked_id(inbox: &SqliteInbox, delivery: Delivery, reason: &str) -> i64 {
    let id = new_id(inbox, delivery).await;
    let items = inbox.claim(10, LONG).await.unwrap();
    assert_eq!(ids(&items), vec![id]);
    inbox
        .complete(
            id,
            &Outcome::Parked {
                reason: reason.to_owned(),
            },
        )
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn a_requeued_parked_item_is_claimable_again_with_its_exact_body() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let sent = delivery("acme.myshopify.com", "evt-1");
    let id = parked_id(&inbox, sent.clone(), "payload: unsupported currency XTS").await;
    assert!(inbox.claim(10, LONG).await.unwrap().is_empty());
    let notify = inbox.new_work();
    // Drop the permit the accept stored: only the requeue may wake us below.
    let _ = tokio::time::timeout(Duration::from_millis(50), notify.notified()).await;

    let before = Utc::now();
    assert_eq!(inbox.requeue(id).await, Ok(true));
    tokio::time::timeout(Duration::from_secs(1), notify.notified())
        .await
        .expect("a requeue wakes the worker");

    let listed = inbox.item(id).await.unwrap().expect("the item is there");
    assert_eq!(listed.status, DeliveryStatus::Pending);
    assert_eq!(listed.completed_at, None);
    assert_eq!(listed.outcome_reason, None);
    assert_eq!(
        listed.last_error.as_deref(),
        Some("requeued after: payload: unsupported currency XTS")
    );
    assert_eq!(
        listed.attempts, 0,
        "a requeue after a fix gets every retry again"
    );
    assert!(listed.available_at >= before - chrono::Duration::seconds(1));
    assert!(listed.available_at <= Utc::now());
    let stats = inbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.parked), (1, 0));

    let items = inbox.claim(10, LONG).await.unwrap();
    assert_eq!(ids(&items), vec![id]);
    assert_eq!(items[0].delivery, sent, "byte for byte");
    // The count started again at the requeue, so a fixed delivery gets every retry.
    assert_eq!(
        items[0].attempts, 0,
        "attempts before this claim, since the requeue"
    );

    // Parked again, and requeued again: the latest reason is the one kept.
    inbox
        .complete(
            id,
            &Outcome::Parked {
                reason: "still unreadable".to_owned(),
            },
        )
        .await
        .unwrap();
    assert_eq!(inbox.requeue(id).await, Ok(true));
    assert_eq!(
        inbox.item(id).await.unwrap().unwrap().last_error.as_deref(),
        Some("requeued after: still unreadable")
    );
    assert_eq!(ids(&inbox.claim(10, LONG).await.unwrap()), vec![id]);
    inbox.complete(id, &Outcome::Processed).await.unwrap();
    assert_eq!(inbox.stats().await.unwrap().processed, 1);
}

#[tokio::test]
async fn requeue_leaves_items_that_are_not_parked_alone() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    let shop = "acme.myshopify.com";
    let processed = new_id(&inbox, delivery(shop, "evt-1")).await;
    let ignored = new_id(&inbox, delivery(shop, "evt-2")).await;
    let leased = new_id(&inbox, delivery(shop, "evt-3")).await;
    let waiting = new_id(&inbox, delivery(shop, "evt-4")).await;
    assert_eq!(inbox.claim(3, LONG).await.unwrap().len(), 3);
    inbox
        .complete(processed, &Outcome::Processed)
        .await
        .unwrap();
    inbox
        .complete(
            ignored,
            &Outcome::Ignored {
                reason: "not an order topic".to_owned(),
            },
        )
        .await
        .unwrap();
    let before = inbox.list(None, 10).await.unwrap();
    let stats = inbox.stats().await.unwrap();

    for id in [processed, ignored, leased, waiting] {
        assert_eq!(inbox.requeue(id).await, Ok(false), "item {id}");
    }
    assert_eq!(
        inbox.list(None, 10).await.unwrap(),
        before,
        "nothing changed"
    );
    assert_eq!(inbox.stats().await.unwrap(), stats);
    // The leased item stays leased; only the one never claimed goes out.
    assert_eq!(ids(&inbox.claim(10, LONG).await.unwrap()), vec![waiting]);
}

#[tokio::test]
async fn requeue_of_an_unknown_item_is_refused() {
    let dir = TempDir::new().unwrap();
    let inbox = open(&inbox_path(&dir)).await;
    assert_eq!(inbox.requeue(42).await, Err(InboxError::UnknownItem(42)));
    assert_eq!(inbox.item(42).await, Ok(None));
    // The refusal does not spoil the writer for the next requests.
    let id = new_id(&inbox, delivery("acme.myshopify.com", "evt-1")).await;
    assert_eq!(
        inbox.requeue(id + 1).await,
        Err(InboxError::UnknownItem(id + 1))
    );
    assert_eq!(inbox.requeue(id).await, Ok(false));
    inbox.close().await.unwrap();
    assert_eq!(inbox.requeue(id).await, Err(InboxError::Closed));
}

#[tokio::test]
async fn a_requeue_survives_a_restart() {
    let dir = TempDir::new().unwrap();
    let path = inbox_path(&dir);
    let sent = delivery("acme.myshopify.com", "evt-1");
    let id = {
        let inbox = open(&path).await;
        let id = parked_id(&inbox, sent.clone(), "unknown field").await;
        assert_eq!(inbox.requeue(id).await, Ok(true));
        id
        // Dropped here without `close`: the requeue was committed before it returned.
    };

    let inbox = open(&path).await;
    let stats = inbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.parked), (1, 0));
    let listed = inbox.item(id).await.unwrap().unwrap();
    assert_eq!(listed.status, DeliveryStatus::Pending);
    assert_eq!(
        listed.last_error.as_deref(),
        Some("requeued after: unknown field")
    );
    let items = inbox.claim(10, LONG).await.unwrap();
    assert_eq!(ids(&items), vec![id]);
    assert_eq!(items[0].delivery, sent);
    inbox.close().await.unwrap();
}
