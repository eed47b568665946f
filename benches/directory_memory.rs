//! Memory per cached client: `cargo bench --bench directory_memory [-- N...]`
//! (default N = 100,000 and 1,000,000). Fills the directory's cache with N
//! clients the way `Directory::client` does after a miss (the row as read,
//! made into an entry, stored under its id) and prints the bytes that stay
//! allocated per client, map slots and keys included. A figure, not a test:
//! it asserts nothing.
//!
//! Two counts. `requested` sums the sizes asked of the allocator. `malloc`
//! adds what glibc's malloc spends on each block (8 bytes of header, sizes
//! rounded up to 16, 32 at least): the figure closer to the server's RSS.
//!
//! Each client is what `keyward client create --role reader` makes: one
//! current secret, the reader role's scopes, the root tenant shared by all,
//! no device group. The `listed` shape adds one allowed network and one
//! audience, the same for every client.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use keyward::directory::cache::Cache;
use keyward::directory::entry::Shared;
use keyward::directory::ClientEntry;
use keyward::domain::Client;
use keyward::service::credentials::ClientRecord;
use keyward::service::scopes::ScopeSet;
use keyward::store::models::{self, ClientSecret};
use keyward::tokens::opaque::{self, random_id};

struct Counting;

static REQUESTED: AtomicUsize = AtomicUsize::new(0);
static MALLOC: AtomicUsize = AtomicUsize::new(0);

/// What glibc's malloc takes for a block of `size` bytes on 64-bit Linux.
fn malloc_chunk(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

fn count(size: usize, sign: isize) {
    if sign > 0 {
        REQUESTED.fetch_add(size, Ordering::Relaxed);
        MALLOC.fetch_add(malloc_chunk(size), Ordering::Relaxed);
    } else {
        REQUESTED.fetch_sub(size, Ordering::Relaxed);
        MALLOC.fetch_sub(malloc_chunk(size), Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        System.dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1);
        count(new_size, 1);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> (usize, usize) {
    (
        REQUESTED.load(Ordering::Relaxed),
        MALLOC.load(Ordering::Relaxed),
    )
}

/// The `i`th client's id: as long as the ids `random_id` makes, and found
/// again after the fill without a list of them (which would count).
fn client_id(i: usize) -> String {
    format!("{}{:020x}", opaque::CLIENT_ID_PREFIX, i)
}

/// A client row and its secret as `clients::register` writes them.
fn row(i: usize, tenant_id: &str, listed: bool) -> (models::Client, ClientSecret) {
    let client_id = client_id(i);
    let (allowed_ips, audience) = if listed {
        (r#"["10.0.0.0/8"]"#, r#"["https://api.example.com"]"#)
    } else {
        ("[]", "[]")
    };
    let secret = opaque::generate(opaque::CLIENT_SECRET_PREFIX);
    let secret = ClientSecret {
        id: random_id("sec_"),
        client_id: client_id.clone(),
        secret_hash: secret.hash(),
        created_at: 1_800_000_000,
        expires_at: None,
    };
    let client = models::Client {
        client_id,
        kind: "client_credentials".into(),
        name: format!("bench-1800000000-{i}"),
        description: None,
        tenant_id: tenant_id.into(),
        role: "reader".into(),
        scopes: "read".into(),
        device_group_id: None,
        owner: None,
        owner_email: None,
        status: "active".into(),
        expires_at: None,
        can_renew: true,
        allowed_ips: allowed_ips.into(),
        access_token_ttl: 3600,
        token_lifetime: 2_592_000,
        audience: audience.into(),
        metadata: "{}".into(),
        created_at: 1_800_000_000,
        updated_at: 1_800_000_000,
        revoked_at: None,
        last_used_at: None,
        version: 1,
        user_id: None,
        token_endpoint_auth_method: "client_secret_basic".into(),
        jwks: None,
        jwks_uri: None,
        federated_subjects: "[]".into(),
    };
    (client, secret)
}

/// Bytes (requested, malloc) per cached client that stay allocated once `n`
/// clients were filled.
fn per_client(n: usize, listed: bool) -> (f64, f64) {
    let tenant_id = random_id("tn_");
    let tenant_path = format!("/{tenant_id}/");
    let scopes = Arc::new(ScopeSet::parse("read").unwrap_or_default());
    let shared = Shared::new();
    let cache = Cache::new(keyward::clock::system());
    cache.go_live(Vec::new());
    cache.beat();
    let before = live();
    for i in 0..n {
        // The cache counts as trusted for 3 s after a heartbeat.
        if i % 10_000 == 0 {
            cache.beat();
        }
        let (row, secret) = row(i, &tenant_id, listed);
        let id = row.client_id.clone();
        let record = ClientRecord {
            client: Client::try_from(row).expect("a well-formed row"),
            tenant_path: tenant_path.clone(),
        };
        let entry = Arc::new(ClientEntry::new(
            record,
            vec![secret],
            scopes.clone(),
            &shared,
        ));
        cache.fill_client(cache.generation(), &id, entry);
    }
    let after = live();
    cache.beat();
    let held = (0..n)
        .filter(|&i| cache.client(&client_id(i)).is_some())
        .count();
    if held < n {
        println!("  (the cache holds {held} of the {n}: CLIENT_CAPACITY)");
    }
    let per = |a: usize, b: usize| a.saturating_sub(b) as f64 / held.max(1) as f64;
    let figures = (per(after.0, before.0), per(after.1, before.1));
    drop(cache);
    figures
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .filter_map(|a| a.replace(['_', ','], "").parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        sizes
    };
    for n in sizes {
        for listed in [false, true] {
            let (requested, malloc) = per_client(n, listed);
            println!(
                "{n:>9} clients, {:<6}  {requested:>6.0} bytes per client requested, {malloc:>6.0} with malloc's overhead",
                if listed { "listed" } else { "plain" }
            );
        }
    }
}
