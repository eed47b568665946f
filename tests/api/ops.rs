use crate::helpers::{spawn_app, Auth};

#[test]
fn healthz_readyz_and_metrics_answer() {
    let app = spawn_app();
    assert_eq!(app.get("/healthz", Auth::None).status, 200);
    let ready = app.get("/readyz", Auth::None);
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");
    app.admin_token();
    let metrics = app.get("/metrics", Auth::None);
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert!(metrics
        .body
        .contains("keyward_http_requests_total{route=\"/oauth/token\",status=\"200\"}"));
    assert!(metrics.body.contains("keyward_db_operations_total"));
    assert!(metrics.body.contains("keyward_tokens_issued_total"));
}
