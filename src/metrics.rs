//! Prometheus metrics, served at /metrics.

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<T: prometheus::core::Collector + Clone + 'static>(metric: T) -> T {
    if let Err(e) = REGISTRY.register(Box::new(metric.clone())) {
        log::warn!("metric registration failed: {e}");
    }
    metric
}

#[allow(clippy::expect_used)] // fixed, valid metric definitions
pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "keyward_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )
        .expect("valid metric"),
    )
});

#[allow(clippy::expect_used)]
pub static DB_OPERATIONS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "keyward_db_operations_total",
            "Units of database work (pooled connection checkouts; each may run several statements)",
        )
        .expect("valid metric"),
    )
});

#[allow(clippy::expect_used)]
pub static DB_QUERIES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "keyward_db_queries_total",
            "SQL statements sent to the database (each a round trip)",
        )
        .expect("valid metric"),
    )
});

#[allow(clippy::expect_used)]
pub static TOKENS_ISSUED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new("keyward_tokens_issued_total", "Tokens issued by kind"),
            &["kind"],
        )
        .expect("valid metric"),
    )
});

/// Forces registration so that every metric shows from the first scrape.
pub fn init() {
    LazyLock::force(&HTTP_REQUESTS);
    LazyLock::force(&DB_OPERATIONS);
    LazyLock::force(&DB_QUERIES);
    LazyLock::force(&TOKENS_ISSUED);
    LazyLock::force(&AUTH_FAILURES);
    LazyLock::force(&NOTICES);
    LazyLock::force(&NOTICES_PENDING);
}

pub fn render() -> String {
    let encoder = prometheus::TextEncoder::new();
    encoder
        .encode_to_string(&REGISTRY.gather())
        .unwrap_or_else(|e| format!("# metrics encoding failed: {e}\n"))
}

#[allow(clippy::expect_used)]
pub static AUTH_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "keyward_auth_failures_total",
                "Failed authentications at keyward's own endpoints, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric"),
    )
});

#[allow(clippy::expect_used)]
pub static CHANGE_CHANNEL_UP: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    register(
        prometheus::IntGauge::new(
            "keyward_change_channel_up",
            "1 while this node's change channel is proven to deliver (its cache is live)",
        )
        .expect("valid metric"),
    )
});

#[allow(clippy::expect_used)]
pub static STORE_REACHABLE: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    register(
        prometheus::IntGauge::new(
            "keyward_store_reachable",
            "1 when the last readiness check reached the store",
        )
        .expect("valid metric"),
    )
});

#[allow(clippy::expect_used)]
pub static NOTICES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "keyward_notices_total",
                "Expiry notice deliveries by this node, by outcome: sent, or failed (an attempt that will be retried or was the last)",
            ),
            &["outcome"],
        )
        .expect("valid metric"),
    )
});

#[allow(clippy::expect_used)]
pub static NOTICES_PENDING: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    register(
        prometheus::IntGauge::new(
            "keyward_notices_pending",
            "Expiry notices recorded and not yet sent, as of this node's last look",
        )
        .expect("valid metric"),
    )
});
