use crate::helpers::{spawn_app, Auth, CliRunner};

#[test]
fn client_commands_create_list_show_disable_enable_and_revoke() {
    let cli = CliRunner::with_new_store();
    let created = cli.json(&[
        "client", "create", "--name", "ingest", "--role", "uploader", "--json",
    ]);
    let id = created["client_id"].as_str().unwrap().to_string();
    assert!(created["client_secret"]
        .as_str()
        .unwrap()
        .starts_with("kws_"));
    assert_eq!(created["scopes"], serde_json::json!(["upload"]));
    let token = cli.json(&[
        "client",
        "create",
        "--name",
        "cli tool",
        "--role",
        "reader",
        "--kind",
        "api_token",
        "--json",
    ]);
    assert!(token["token"].as_str().unwrap().starts_with("kwt_"));
    assert!(token["token_expires_at"].is_string());

    let list = cli.json(&["client", "list", "--json"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&id.as_str()));
    assert_eq!(ids.len(), 3, "bootstrap admin and the two new ones");
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c.get("client_secret").is_none()));

    let shown = cli.json(&["client", "show", &id, "--json"]);
    assert_eq!(shown["name"], "ingest");
    assert!(shown.get("client_secret").is_none());
    assert_eq!(
        cli.json(&["client", "disable", &id, "--json"])["status"],
        "disabled"
    );
    assert_eq!(
        cli.json(&["client", "enable", &id, "--json"])["status"],
        "active"
    );
    assert_eq!(
        cli.json(&["client", "revoke", &id, "--json"])["status"],
        "revoked"
    );
    let again = cli.run(&["client", "enable", &id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("revoked"));
}

#[test]
fn cli_errors_go_to_stderr_with_a_non_zero_status() {
    let cli = CliRunner::with_new_store();
    let missing = cli.run(&["client", "create", "--role", "reader"]);
    assert_eq!(missing.status.code(), Some(2), "usage error");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--name"));
    let unknown = cli.run(&["client", "show", "kwc_nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found"));
    let bad_role = cli.run(&["client", "create", "--name", "x", "--role", "wizard"]);
    assert_eq!(bad_role.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("wizard"));
    let bad_scope = cli.run(&[
        "client", "create", "--name", "x", "--role", "reader", "--scopes", "upload",
    ]);
    assert_eq!(bad_scope.status.code(), Some(1));
    let bad_url = CliRunner::new(
        Some("postgress://typo@127.0.0.1/x".into()),
        &cli.data_dir(),
        &cli.keys_dir(),
    )
    .run(&["client", "list"]);
    assert_eq!(bad_url.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_url.stderr).contains("unsupported database URL scheme"));
}

#[test]
fn tenant_commands_build_the_tree() {
    let cli = CliRunner::with_new_store();
    let vendor = cli.json(&["tenant", "create", "--name", "vendor", "--json"]);
    let sub = cli.json(&[
        "tenant",
        "create",
        "--name",
        "sub",
        "--parent",
        vendor["id"].as_str().unwrap(),
        "--json",
    ]);
    assert_eq!(sub["parent_id"], vendor["id"]);
    let list = cli.json(&["tenant", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    let client = cli.json(&[
        "client",
        "create",
        "--name",
        "n",
        "--role",
        "reader",
        "--tenant",
        sub["id"].as_str().unwrap(),
        "--json",
    ]);
    assert_eq!(client["tenant_id"], sub["id"]);
    let orphan = cli.run(&["tenant", "create", "--name", "x", "--parent", "tn_missing"]);
    assert_eq!(orphan.status.code(), Some(1));
}

#[test]
fn keys_commands_generate_rotate_and_list_signing_key_first() {
    let cli = CliRunner::with_new_store();
    let first = cli.json(&["keys", "generate", "--json"]);
    assert_eq!(first["created"], true);
    let again = cli.json(&["keys", "generate", "--json"]);
    assert_eq!(again["created"], false);
    assert_eq!(again["kid"], first["kid"]);
    let rotated = cli.json(&["keys", "rotate", "--json"]);
    assert_ne!(rotated["signing_kid"], first["kid"]);
    let listed = cli.run(&["keys", "list"]);
    let lines: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], rotated["signing_kid"].as_str().unwrap());
    assert_eq!(lines[1], first["kid"].as_str().unwrap());
}

#[test]
fn cli_changes_reach_a_running_server_at_once_and_are_audited_as_cli() {
    let app = spawn_app();
    let (client, secret) = app.new_client("reader", |_| {});
    let token = app.token_for(&client.client_id, &secret, &[]);
    let output = CliRunner::for_app(&app).run(&["client", "disable", &client.client_id]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // On PostgreSQL the change arrives by NOTIFY, within milliseconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while app.introspect(&token)["active"] == true {
        assert!(
            std::time::Instant::now() < deadline,
            "the CLI's change did not reach the server"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    app.post_form(
        "/oauth/token",
        &[("grant_type", "client_credentials")],
        Auth::Basic(&client.client_id, &secret),
    )
    .assert_error(401, "invalid_client");
    use diesel::prelude::*;
    use keyward::store::schema::audit_events;
    let mut conn = app.conn();
    let actors: Vec<String> = audit_events::table
        .filter(audit_events::action.eq("client.disable"))
        .select(audit_events::actor)
        .load(&mut conn)
        .unwrap();
    assert_eq!(actors, ["cli"]);
}

#[test]
fn every_seed_workflow_works_from_the_cli_too() {
    let cli = CliRunner::with_new_store();
    // Ardexa: an API token with owner, email, expiry, renewal and a device group.
    let group = cli.json(&["device-group", "create", "--name", "site A", "--json"]);
    let token = cli.json(&[
        "client",
        "create",
        "--name",
        "site-a reader",
        "--role",
        "reader",
        "--kind",
        "api_token",
        "--device-group",
        group["id"].as_str().unwrap(),
        "--owner",
        "Acme field team",
        "--owner-email",
        "field@acme.example",
        "--expires-in",
        "3m",
        "--can-renew",
        "true",
        "--token-lifetime",
        "14d",
        "--metadata",
        "type=embedded",
        "--json",
    ]);
    let id = token["client_id"].as_str().unwrap().to_string();
    assert_eq!(token["device_group_id"], group["id"]);
    assert_eq!(token["token_lifetime"], 14 * 86_400);
    assert_eq!(token["metadata"]["type"], "embedded");
    // Edit what may change; permissions may not.
    let updated = cli.json(&[
        "client",
        "update",
        &id,
        "--owner",
        "Acme ops",
        "--can-renew",
        "false",
        "--json",
    ]);
    assert_eq!(updated["owner"], "Acme ops");
    assert_eq!(updated["can_renew"], false);
    // Reissue, list the strings without values.
    let reissued = cli.json(&["client", "reissue", &id, "--json"]);
    assert!(reissued["token"].as_str().unwrap().starts_with("kwt_"));
    let tokens = cli.json(&["client", "tokens", &id, "--json"]);
    assert_eq!(tokens.as_array().unwrap().len(), 2);
    assert!(!tokens
        .to_string()
        .contains(reissued["token"].as_str().unwrap()));
    // Revoke; "show revoked" lists it.
    cli.json(&["client", "revoke", &id, "--json"]);
    let default_list = cli.json(&["client", "list", "--json"]);
    assert!(!default_list.to_string().contains(&id));
    let all = cli.json(&["client", "list", "--status", "all", "--json"]);
    assert!(all.to_string().contains(&id));
    assert!(!cli.run(&["client", "reissue", &id]).status.success());

    // AirVantage: regenerate a secret.
    let cc = cli.json(&[
        "client", "create", "--name", "personal", "--role", "reader", "--json",
    ]);
    let cc_id = cc["client_id"].as_str().unwrap().to_string();
    let rotated = cli.json(&["client", "secret", &cc_id, "--json"]);
    assert_ne!(rotated["client_secret"], cc["client_secret"]);
    // Qualytics: revoke (disable), restore (enable), delete only when not active.
    assert!(!cli.run(&["client", "delete", &cc_id]).status.success());
    cli.json(&["client", "disable", &cc_id, "--json"]);
    cli.json(&["client", "enable", &cc_id, "--json"]);
    cli.json(&["client", "disable", &cc_id, "--json"]);
    assert!(cli.run(&["client", "delete", &cc_id]).status.success());
    // Roles and the audit log.
    let role = cli.json(&[
        "role",
        "create",
        "--name",
        "auditor",
        "--scopes",
        "audit:read",
        "--json",
    ]);
    assert_eq!(role["scopes"], serde_json::json!(["audit:read"]));
    let audit = cli.json(&["audit", "--target", &cc_id, "--json"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "client.delete",
            "client.disable",
            "client.enable",
            "client.disable",
            "client.secret.rotate",
            "client.create"
        ]
    );
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "cli"));
}

#[test]
fn a_command_run_where_there_is_no_store_says_where_it_looked_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = CliRunner::new(None, &data, &dir.path().join("keys")).run(&["client", "list"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no keyward store at"), "{stderr}");
    assert!(stderr.contains("keyward.db"), "{stderr}");
    assert!(!data.join("keyward.db").exists());
    assert!(!data.join("bootstrap-admin.json").exists());
}
