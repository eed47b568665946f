use crate::helpers::{spawn_app, Auth};

#[test]
fn both_discovery_paths_serve_every_required_field() {
    let app = spawn_app();
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let response = app.get(path, Auth::None);
        assert_eq!(response.status, 200);
        let doc = response.json();
        let issuer = doc["issuer"].as_str().unwrap();
        assert_eq!(issuer, app.address);
        assert_eq!(doc["token_endpoint"], format!("{issuer}/oauth/token"));
        assert_eq!(doc["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
        assert_eq!(
            doc["introspection_endpoint"],
            format!("{issuer}/oauth/introspect")
        );
        assert_eq!(doc["revocation_endpoint"], format!("{issuer}/oauth/revoke"));
        let grants: Vec<&str> = doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(grants.contains(&"client_credentials"));
        let methods: Vec<&str> = doc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            methods.contains(&"client_secret_basic") && methods.contains(&"client_secret_post")
        );
        let scopes: Vec<&str> = doc["scopes_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for scope in [
            "read",
            "upload",
            "introspect",
            "clients:write",
            "audit:read",
        ] {
            assert!(
                scopes.contains(&scope),
                "{scope} missing from scopes_supported"
            );
        }
        assert!(doc["introspection_endpoint_auth_methods_supported"].is_array());
        assert!(doc["revocation_endpoint_auth_methods_supported"].is_array());
    }
}

#[test]
fn configured_issuer_is_the_base_of_every_endpoint() {
    let app =
        crate::helpers::spawn_app_with(|s| s.issuer = Some("https://auth.example.com/".into()));
    let doc = app
        .get("/.well-known/oauth-authorization-server", Auth::None)
        .json();
    assert_eq!(doc["issuer"], "https://auth.example.com");
    assert_eq!(
        doc["token_endpoint"],
        "https://auth.example.com/oauth/token"
    );
}

#[test]
fn jwks_publishes_the_signing_key_with_kid_kty_alg_and_use() {
    let app = spawn_app();
    let response = app.get("/.well-known/jwks.json", Auth::None);
    assert_eq!(response.status, 200);
    let jwks = response.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert!(key["kid"].as_str().unwrap().len() >= 40);
    assert!(key.get("d").is_none(), "no private part in the JWKS");
}

#[test]
fn unknown_paths_and_wrong_methods_answer_in_the_error_shape() {
    let app = spawn_app();
    app.get("/no/such/thing", Auth::None)
        .assert_error(404, "not_found");
    app.get("/oauth/token", Auth::None)
        .assert_error(405, "invalid_request");
}
