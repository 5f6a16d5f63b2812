//! Hierarchy snapshot at scale: a network of 1,000,000 distributors, 30 levels deep, with
//! inactive members and later sponsor, status and rank changes, built through the same
//! decide/apply path as live commands. Then `snapshot_at` for random deepest-level distributors
//! at random times. Deterministic (fixed-seed xorshift), plain `main` printing a table, so the
//! numbers are reproducible and the run stays well under a minute.
//!
//! Run: `cargo bench --bench hierarchy_snapshot`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, TimeZone, Utc};
use upline_domain::ids::{DistributorId, RankName, ReferralCode};
use upline_domain::network::{DistributorCommand, Network};
use upline_domain::snapshot::{DistributorStatus, HierarchySnapshot, SnapshotRequest};

const DISTRIBUTORS: usize = 1_000_000;
/// Levels below the top; the deepest distributors have 30 sponsors above them.
const LEVELS: usize = 30;
const SAMPLES: usize = 20_000;
const SEED: u64 = 0x5eed_1234_abcd_ef01;

/// Counts the bytes the program has asked for and not yet freed, to estimate the network's
/// memory (requested sizes: the allocator's own overhead is not included).
struct CountingAllocator;
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        System.dealloc(p, layout);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = System.realloc(p, layout, new_size);
        if !q.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// xorshift64*: tiny, deterministic, good enough to spread picks.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}
/// Level `k` joins during days `[10k, 10k + 10)`, so every sponsor joined before their recruits.
fn join_time(rng: &mut Rng, level: usize) -> DateTime<Utc> {
    base() + Duration::days(10 * level as i64) + Duration::seconds(rng.below(10 * 86_400) as i64)
}
/// After everyone joined: two years in which the later changes and the orders happen.
fn later_time(rng: &mut Rng) -> DateTime<Utc> {
    base()
        + Duration::days(10 * (LEVELS as i64 + 1))
        + Duration::seconds(rng.below(730 * 86_400) as i64)
}

fn did(i: usize) -> DistributorId {
    DistributorId::new(format!("D{i:07}")).expect("valid id")
}

const RANKS: [&str; 4] = ["member", "bronze", "silver", "gold"];

struct Built {
    network: Network,
    /// Index range of each level (level 0 is the top).
    levels: Vec<std::ops::Range<usize>>,
    joined: Vec<DateTime<Utc>>,
    changes: [usize; 4],
    refused: usize,
}

fn build(rng: &mut Rng) -> Built {
    let ranks: Vec<RankName> = RANKS
        .iter()
        .map(|r| RankName::new(r).expect("valid rank"))
        .collect();
    let mut network = Network::new();
    let mut refused = 0;
    let mut run = |network: &mut Network, command: DistributorCommand| {
        if network.execute(&command).is_err() {
            refused += 1;
        }
    };
    let per_level = (DISTRIBUTORS - 1) / LEVELS;
    let mut levels: Vec<std::ops::Range<usize>> = std::iter::once(0..1).collect();
    let mut joined = vec![base()];
    run(
        &mut network,
        DistributorCommand::RegisterDistributor {
            distributor_id: did(0),
            sponsor: None,
            referral_codes: vec![],
            country: "US".into(),
            status: DistributorStatus::Active,
            rank: ranks[3].clone(),
            joined_at: base(),
        },
    );
    for level in 1..=LEVELS {
        let start = joined.len();
        let end = if level == LEVELS {
            DISTRIBUTORS
        } else {
            start + per_level
        };
        let above = levels[level - 1].clone();
        for i in start..end {
            let sponsor = above.start + rng.below(above.len() as u64) as usize;
            let at = join_time(rng, level);
            joined.push(at);
            let status = if rng.chance(10) {
                DistributorStatus::Inactive
            } else {
                DistributorStatus::Active
            };
            run(
                &mut network,
                DistributorCommand::RegisterDistributor {
                    distributor_id: did(i),
                    sponsor: Some(did(sponsor)),
                    referral_codes: vec![ReferralCode::new(format!("R{i:07}")).expect("valid")],
                    country: "US".into(),
                    status,
                    rank: ranks[0].clone(),
                    joined_at: at,
                },
            );
        }
        levels.push(start..end);
    }

    // Later changes: 3% move to another sponsor one level up (so no cycle can form), 8% change
    // status, 10% change rank, all at random times in the two years after everyone joined.
    let mut changes = [0; 4];
    for level in 2..=LEVELS {
        let above = levels[level - 1].clone();
        for i in levels[level].clone() {
            if rng.chance(3) {
                let sponsor = above.start + rng.below(above.len() as u64) as usize;
                let effective_at = later_time(rng);
                changes[0] += 1;
                run(
                    &mut network,
                    DistributorCommand::ChangeSponsor {
                        distributor_id: did(i),
                        sponsor: did(sponsor),
                        effective_at,
                    },
                );
            }
        }
    }
    for i in 1..DISTRIBUTORS {
        if rng.chance(8) {
            let status = match rng.below(10) {
                0..=4 => DistributorStatus::Inactive,
                5..=7 => DistributorStatus::Active,
                8 => DistributorStatus::Suspended,
                _ => DistributorStatus::Terminated,
            };
            changes[1] += 1;
            let effective_at = later_time(rng);
            run(
                &mut network,
                DistributorCommand::ChangeStatus {
                    distributor_id: did(i),
                    status,
                    effective_at,
                },
            );
        }
        if rng.chance(10) {
            changes[2] += 1;
            let rank = ranks[1 + rng.below(3) as usize].clone();
            let effective_at = later_time(rng);
            run(
                &mut network,
                DistributorCommand::ChangeRank {
                    distributor_id: did(i),
                    rank,
                    effective_at,
                },
            );
        }
    }
    changes[3] = changes[0] + changes[1] + changes[2];
    Built {
        network,
        levels,
        joined,
        changes,
        refused,
    }
}

struct Row {
    name: String,
    micros: Vec<f64>,
    members: usize,
    reached_top: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

fn measure(
    built: &Built,
    rng: &mut Rng,
    name: &str,
    request: &SnapshotRequest,
    hash_only: bool,
) -> Row {
    let deepest = built.levels[LEVELS].clone();
    let mut row = Row {
        name: name.into(),
        micros: Vec::with_capacity(SAMPLES),
        members: 0,
        reached_top: 0,
    };
    for _ in 0..SAMPLES {
        let i = deepest.start + rng.below(deepest.len() as u64) as usize;
        let at = later_time(rng).max(built.joined[i]);
        let who = did(i);
        if hash_only {
            // The content hash alone (canonical JSON + SHA-256), to show the walk's share.
            let snapshot = built
                .network
                .snapshot_at(&who, at, request)
                .expect("snapshot");
            let start = Instant::now();
            let again = HierarchySnapshot::new(
                snapshot.at,
                snapshot.distributor_id.clone(),
                snapshot.members.clone(),
                snapshot.reached_top,
            );
            row.micros.push(micros(start.elapsed()));
            row.members += again.members.len();
            row.reached_top += usize::from(again.reached_top);
        } else {
            let start = Instant::now();
            let snapshot = built
                .network
                .snapshot_at(&who, at, request)
                .expect("snapshot");
            row.micros.push(micros(start.elapsed()));
            row.members += snapshot.members.len();
            row.reached_top += usize::from(snapshot.reached_top);
        }
    }
    row.micros.sort_by(f64::total_cmp);
    row
}

fn micros(d: StdDuration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let mut rng = Rng(SEED);
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let started = Instant::now();
    let built = build(&mut rng);
    let build_time = started.elapsed();
    // `joined` and `levels` are the bench's own bookkeeping; subtract them.
    let bookkeeping = built.joined.capacity() * std::mem::size_of::<DateTime<Utc>>();
    let network_bytes = LIVE_BYTES
        .load(Ordering::Relaxed)
        .saturating_sub(before + bookkeeping);

    println!(
        "hierarchy_snapshot: network of {} distributors, {LEVELS} levels below the top",
        built.network.len()
    );
    println!(
        "  built via decide/apply in {:.2} s ({:.2} µs per command); {} sponsor, {} status, {} rank changes ({} commands refused)",
        build_time.as_secs_f64(),
        micros(build_time) / (DISTRIBUTORS + built.changes[3]) as f64,
        built.changes[0],
        built.changes[1],
        built.changes[2],
        built.refused,
    );
    println!(
        "  heap held by the network: {:.1} MiB ({:.0} bytes per distributor, allocator overhead excluded)",
        network_bytes as f64 / (1024.0 * 1024.0),
        network_bytes as f64 / DISTRIBUTORS as f64,
    );
    println!();

    let active = vec![DistributorStatus::Active];
    let scenarios = [
        (
            "30 levels, compression",
            SnapshotRequest {
                levels: 30,
                qualifying_statuses: active.clone(),
                compression: true,
            },
            false,
        ),
        (
            "30 levels, no compression",
            SnapshotRequest {
                levels: 30,
                qualifying_statuses: active.clone(),
                compression: false,
            },
            false,
        ),
        (
            "10 levels, compression",
            SnapshotRequest {
                levels: 10,
                qualifying_statuses: active.clone(),
                compression: true,
            },
            false,
        ),
        (
            "  of which hashing (30, compr.)",
            SnapshotRequest {
                levels: 30,
                qualifying_statuses: active,
                compression: true,
            },
            true,
        ),
    ];
    println!(
        "{:<32} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "snapshot_at (deepest level)",
        "samples",
        "p50 µs",
        "p99 µs",
        "max µs",
        "mean µs",
        "members",
        "top %"
    );
    for (name, request, hash_only) in &scenarios {
        let row = measure(&built, &mut rng, name, request, *hash_only);
        let n = row.micros.len() as f64;
        println!(
            "{:<32} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8.1} {:>8.1}",
            row.name,
            row.micros.len(),
            percentile(&row.micros, 0.50),
            percentile(&row.micros, 0.99),
            row.micros.last().copied().unwrap_or(f64::NAN),
            row.micros.iter().sum::<f64>() / n,
            row.members as f64 / n,
            100.0 * row.reached_top as f64 / n,
        );
    }
}
