use std::process::Output;

use jsonwebtoken::Algorithm;

use crate::helpers::{spawn_app, Auth, CliRunner, Signer, TestIssuer};

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

/// A command run with key fetches from loopback allowed (the key server of
/// these tests is there); development and tests only.
fn run_insecure(cli: &CliRunner, args: &[&str]) -> Output {
    cli.command(args)
        .env("KEYWARD_ALLOW_INSECURE_JWKS", "true")
        .output()
        .expect("run keyward")
}

fn json_of(args: &[&str], output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// The audit actions about `target`, newest first.
fn audited(cli: &CliRunner, target: &str) -> Vec<(String, String)> {
    cli.json(&["audit", "--target", target, "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_private_key_jwt_client_is_created_from_a_jwk_set_file_and_prints_no_secret() {
    let cli = CliRunner::with_new_store();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signer.jwks.json");
    std::fs::write(
        &file,
        Signer::jwks(&[&Signer::new(Algorithm::EdDSA, "k1")]).to_string(),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let args = [
        "client",
        "create",
        "--name",
        "signer",
        "--role",
        "reader",
        "--auth",
        "private_key_jwt",
        "--jwks-file",
        file,
    ];
    let output = cli.run(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("client_secret"), "{stdout}");
    assert!(!stdout.contains("kws_"), "{stdout}");
    assert!(
        !stderr(&output).contains("Store the secret"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("no secret"), "{}", stderr(&output));
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_id"))
        .expect("the client id")
        .trim()
        .to_string();
    let shown = cli.json(&["client", "show", &id, "--json"]);
    assert_eq!(shown["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(shown["jwks"]["keys"][0]["kid"], "k1");
    assert_eq!(shown["jwks_uri"], serde_json::Value::Null);

    // With --json too: the client, and no secret in it.
    let mut with_json = args.to_vec();
    with_json[3] = "signer-2";
    with_json.push("--json");
    let created = cli.json(&with_json);
    assert!(created.get("client_secret").is_none(), "{created}");
    assert_eq!(created["token_endpoint_auth_method"], "private_key_jwt");

    // Its keys may move to a URL (fetched first), and the set go with it.
    let keys = TestIssuer::serving(&[&Signer::new(Algorithm::EdDSA, "k2")]);
    let uri = keys.jwks_uri();
    let refused = cli.run(&["client", "update", &id, "--jwks-uri", &uri]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("loopback") || stderr(&refused).contains("https"),
        "fetched only under the fetch rules: {}",
        stderr(&refused)
    );
    let update = [
        "client",
        "update",
        &id,
        "--jwks-uri",
        &uri,
        "--no-jwks",
        "--json",
    ];
    let moved = json_of(&update, &run_insecure(&cli, &update));
    assert_eq!(moved["jwks_uri"], uri.as_str());
    assert_eq!(moved["jwks"], serde_json::Value::Null);
    // A private_key_jwt client keeps some keys: removing the last is refused.
    let bare = cli.run(&["client", "update", &id, "--no-jwks-uri"]);
    assert_eq!(bare.status.code(), Some(1));
    assert!(
        stderr(&bare).contains("private_key_jwt needs"),
        "{}",
        stderr(&bare)
    );
    assert_eq!(
        audited(&cli, &id),
        [
            ("client.update".to_string(), "cli".to_string()),
            ("client.create".to_string(), "cli".to_string())
        ]
    );
}

#[test]
fn a_bad_jwks_file_or_jwks_uri_is_a_clear_error_and_changes_nothing() {
    let cli = CliRunner::with_new_store();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let not_json = write("not.json", "kty=OKP");
    let mut private = Signer::jwks(&[&Signer::new(Algorithm::EdDSA, "k1")]);
    private["keys"][0]["d"] = serde_json::json!("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
    let private = write("private.json", &private.to_string());
    let no_keys = write("empty.json", r#"{"keys": []}"#);
    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().unwrap();
    let keys = TestIssuer::serving(&[&Signer::new(Algorithm::EdDSA, "k1")]);
    let nowhere = format!("{}/nowhere.json", keys.url);
    let before = cli.json(&["client", "list", "--json"]);
    for (args, says) in [
        (vec!["--jwks-file", not_json.as_str()], "not JSON"),
        (vec!["--jwks-file", private.as_str()], "private"),
        (vec!["--jwks-file", no_keys.as_str()], "no keys"),
        (vec!["--jwks-file", missing], "cannot be read"),
        (vec!["--jwks-uri", nowhere.as_str()], "404"),
    ] {
        let mut command = vec![
            "client",
            "create",
            "--name",
            "broken",
            "--role",
            "reader",
            "--auth",
            "private_key_jwt",
        ];
        command.extend(&args);
        let output = run_insecure(&cli, &command);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(
            stderr(&output).starts_with("error: ") && stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // Keys without private_key_jwt: the service says what to do.
    let good = write(
        "good.json",
        &Signer::jwks(&[&Signer::new(Algorithm::EdDSA, "k1")]).to_string(),
    );
    let output = cli.run(&[
        "client",
        "create",
        "--name",
        "broken",
        "--role",
        "reader",
        "--jwks-file",
        &good,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("token_endpoint_auth_method"),
        "{}",
        stderr(&output)
    );
    let unknown = cli.run(&[
        "client", "create", "--name", "x", "--role", "reader", "--auth", "mtls",
    ]);
    assert_eq!(unknown.status.code(), Some(2), "a usage error");
    assert_eq!(cli.json(&["client", "list", "--json"]), before);
    let created = cli.json(&["audit", "--action", "client.create", "--json"]);
    assert_eq!(
        created.as_array().unwrap().len(),
        1,
        "the bootstrap admin's"
    );
}

#[test]
fn trusted_issuer_commands_add_list_and_remove_with_the_keys_fetched_first() {
    let cli = CliRunner::with_new_store();
    let issuer = TestIssuer::serving(&[&Signer::new(Algorithm::EdDSA, "ci-1")]);
    // Loopback is fetched only where insecure fetches are allowed.
    let refused = cli.run(&["trusted-issuer", "add", "--issuer", &issuer.url]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("keys"), "{}", stderr(&refused));
    // Keys that cannot be had: refused, nothing added.
    let nowhere = format!("{}/nowhere.json", issuer.url);
    let unfetched = run_insecure(
        &cli,
        &[
            "trusted-issuer",
            "add",
            "--issuer",
            "https://ci.example",
            "--jwks-uri",
            &nowhere,
        ],
    );
    assert_eq!(unfetched.status.code(), Some(1));
    assert!(stderr(&unfetched).contains("404"), "{}", stderr(&unfetched));
    assert_eq!(
        cli.json(&["trusted-issuer", "list", "--json"]),
        serde_json::json!([])
    );

    // By discovery (no --jwks-uri), and by a named JWK Set.
    let add = [
        "trusted-issuer",
        "add",
        "--issuer",
        &issuer.url,
        "--description",
        "the CI cluster",
        "--json",
    ];
    let discovered = json_of(&add, &run_insecure(&cli, &add));
    assert_eq!(discovered["issuer"], issuer.url.as_str());
    assert_eq!(discovered["jwks_uri"], serde_json::Value::Null);
    assert_eq!(discovered["description"], "the CI cluster");
    let uri = issuer.jwks_uri();
    let add = [
        "trusted-issuer",
        "add",
        "--issuer",
        "https://token.actions.example",
        "--jwks-uri",
        &uri,
        "--json",
    ];
    let named = json_of(&add, &run_insecure(&cli, &add));
    assert_eq!(named["jwks_uri"], uri.as_str());
    let again = run_insecure(&cli, &add);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already trusts"),
        "{}",
        stderr(&again)
    );

    let listed = cli.json(&["trusted-issuer", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let lines = cli.run(&["trusted-issuer", "list"]);
    let text = String::from_utf8_lossy(&lines.stdout);
    let named_id = named["id"].as_str().unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with(named_id) && l.contains("https://token.actions.example")),
        "{text}"
    );

    // A client answers to a subject of it (colons and all); while one does,
    // the issuer stays.
    let subject = "repo:acme/app:ref:refs/heads/main";
    let client = cli.json(&[
        "client",
        "create",
        "--name",
        "deployer",
        "--role",
        "reader",
        "--auth",
        "private_key_jwt",
        "--federated-subject",
        "https://token.actions.example",
        subject,
        "--federated-subject",
        "https://token.actions.example",
        "system:serviceaccount:ns:name",
        "--json",
    ]);
    assert!(client.get("client_secret").is_none(), "{client}");
    assert_eq!(
        client["federated_subjects"],
        serde_json::json!([
            {"issuer": "https://token.actions.example", "subject": subject},
            {"issuer": "https://token.actions.example", "subject": "system:serviceaccount:ns:name"}
        ])
    );
    let in_use = cli.run(&["trusted-issuer", "remove", named_id]);
    assert_eq!(in_use.status.code(), Some(1));
    assert!(
        stderr(&in_use).contains("federated_subjects"),
        "{}",
        stderr(&in_use)
    );
    let client_id = client["client_id"].as_str().unwrap();
    // The list is replaced whole; --no-federated-subjects empties it, which
    // a private_key_jwt client with no other keys may not be left with.
    let replaced = cli.json(&[
        "client",
        "update",
        client_id,
        "--federated-subject",
        "https://token.actions.example",
        subject,
        "--json",
    ]);
    assert_eq!(replaced["federated_subjects"].as_array().unwrap().len(), 1);
    let emptied = cli.run(&["client", "update", client_id, "--no-federated-subjects"]);
    assert_eq!(emptied.status.code(), Some(1));
    cli.json(&["client", "disable", client_id, "--json"]);
    assert!(cli.run(&["client", "delete", client_id]).status.success());

    let removed = cli.run(&["trusted-issuer", "remove", named_id]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(String::from_utf8_lossy(&removed.stdout).contains(named_id));
    let listed = cli.json(&["trusted-issuer", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let gone = cli.run(&["trusted-issuer", "remove", named_id]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("not found"), "{}", stderr(&gone));
    assert_eq!(
        audited(&cli, named_id),
        [
            ("trusted_issuer.delete".to_string(), "cli".to_string()),
            ("trusted_issuer.create".to_string(), "cli".to_string())
        ]
    );
}
