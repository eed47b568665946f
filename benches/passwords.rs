//! Time per Argon2id password hash (OWASP parameters, as keyward stores
//! them): `cargo bench --bench passwords` (release profile). Prints each of
//! five hashes and their median; speed is measured here, never in tests.

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .filter(|a| a != "--bench")
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let mut times: Vec<f64> = (0..rounds.max(1))
        .map(|_| {
            let start = std::time::Instant::now();
            keyward::service::passwords::hash("correct horse battery staple")
                .expect("a password hash");
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "argon2id m=19456 KiB t=2 p=1: {times:.1?} ms, median {:.1} ms",
        times[times.len() / 2]
    );
}
