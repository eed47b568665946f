//! Property tests of everything that reads untrusted input: the form and
//! Basic parsers, client authentication, durations and expiries, CIDRs and
//! X-Forwarded-For, opaque secrets, and JWT verification of tampered tokens.
//! Properties: no panic, and every refusal is the contract's error. Each runs
//! a bounded number of cases so that all of them take a few seconds.

use std::net::IpAddr;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use proptest::prelude::*;

use crate::oauth::client_auth::{parse_basic, presented, Presented};
use crate::oauth::form::Form;
use crate::service::durations::{self, DurationSpec};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Text that looks like form input: the characters that matter to a parser.
fn form_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z_=&%+0-9A-F.:;\\[\\] \u{e9}\u{0}-\u{1f}]{0,64}").unwrap()
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)]).unwrap()[2..].to_string()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_form_body_parses_or_is_invalid_request(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = Form::parse(&body, &["audience", "resource"]) {
            prop_assert_eq!(e.error, "invalid_request");
            prop_assert_eq!(e.status.as_u16(), 400);
        }
    }

    #[test]
    fn form_like_text_parses_or_is_invalid_request(body in form_text()) {
        if let Err(e) = Form::parse(body.as_bytes(), &[]) {
            prop_assert_eq!(e.error, "invalid_request");
        }
    }

    #[test]
    fn encoded_forms_read_back_and_hide_secrets(
        id in "[ -~]{1,20}", secret in "[ -~]{1,40}", scope in "[a-z ]{0,20}",
    ) {
        let marker = format!("S3CR3T{secret}");
        let body = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
            urlencode(&id), urlencode(&marker), urlencode(&scope)
        );
        let form = Form::parse(body.as_bytes(), &[]).unwrap();
        prop_assert_eq!(form.get("client_id"), Some(id.as_str()));
        prop_assert_eq!(form.get("client_secret"), Some(marker.as_str()));
        let shown = format!("{:?}", form);
        prop_assert!(!shown.contains(&marker));
        // The same parameter twice is refused.
        let twice = format!("{body}&client_id=x");
        prop_assert_eq!(Form::parse(twice.as_bytes(), &[]).unwrap_err().error, "invalid_request");
    }

    #[test]
    fn any_basic_credentials_parse_or_are_invalid_client(encoded in "[ -~]{0,80}") {
        if let Err(e) = parse_basic(&encoded) {
            prop_assert_eq!(e.error, "invalid_client");
            prop_assert_eq!(e.status.as_u16(), 401);
            prop_assert!(e.challenge.is_some());
        }
    }

    #[test]
    fn any_decoded_basic_payload_parses_or_is_invalid_client(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Err(e) = parse_basic(&STANDARD.encode(&raw)) {
            prop_assert_eq!(e.error, "invalid_client");
        }
    }

    #[test]
    fn basic_credentials_round_trip(id in "[ -~]{1,30}", secret in "[ -~\u{e9}]{0,40}") {
        let encoded = STANDARD.encode(format!("{}:{}", urlencode(&id), urlencode(&secret)));
        let (got_id, got_secret) = parse_basic(&encoded).unwrap();
        prop_assert_eq!(got_id, id);
        prop_assert_eq!(got_secret, secret);
    }

    #[test]
    fn presented_credentials_are_read_or_refused_with_a_contract_error(
        authorization in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
        scheme in prop_oneof![Just(""), Just("Basic "), Just("Bearer "), Just("bearer: "), Just("Digest ")],
        second_header in any::<bool>(),
        body in form_text(),
    ) {
        let mut headers = HeaderMap::new();
        if let Some(raw) = &authorization {
            let mut value = scheme.as_bytes().to_vec();
            value.extend_from_slice(raw);
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                headers.insert(AUTHORIZATION, v.clone());
                if second_header {
                    headers.append(HeaderName::from_static("authorization"), v);
                }
            }
        }
        let Ok(form) = Form::parse(body.as_bytes(), &[]) else { return Ok(()); };
        match presented(&headers, &form) {
            Ok(Presented::ClientSecret { client_id, .. }) => prop_assert!(!client_id.is_empty()),
            Ok(Presented::Bearer(token)) => prop_assert!(!token.is_empty()),
            Ok(Presented::Assertion { .. } | Presented::Nothing) => {}
            Err(e) => prop_assert!(
                ["invalid_request", "invalid_client", "invalid_token"].contains(&e.error),
                "{}", e.error
            ),
        }
    }

    #[test]
    fn any_named_duration_is_positive_or_refused(text in "[0-9a-z+\\-. ]{0,24}") {
        if let Ok(seconds) = durations::parse_named(&text) {
            prop_assert!(seconds > 0);
        }
    }

    #[test]
    fn any_json_number_is_a_duration_or_a_clear_refusal(
        value in prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            "[ -~]{0,12}".prop_map(serde_json::Value::from),
        ]
    ) {
        match serde_json::from_value::<DurationSpec>(value.clone()) {
            Ok(spec) => { let _ = spec.seconds(); }
            Err(e) => prop_assert!(!e.to_string().contains("untagged"), "{e}"),
        }
    }

    #[test]
    fn a_resolved_expiry_is_in_the_future_and_within_ten_years(
        at in proptest::option::of(prop_oneof![
            "[0-9T:Z+\\-.]{0,30}",
            (-100_000_000_000i64..300_000_000_000i64).prop_map(|s| {
                chrono::DateTime::from_timestamp(s, 0).map(|t| t.to_rfc3339()).unwrap_or_default()
            }),
        ]),
        seconds in proptest::option::of(any::<i64>()),
        now in 0i64..4_000_000_000,
    ) {
        let spec = seconds.map(DurationSpec::Seconds);
        match crate::service::clients::resolve_expiry(at.as_deref(), spec.as_ref(), now) {
            Ok(Some(t)) => prop_assert!(t > now && t - now <= durations::EXPIRY_MAX),
            Ok(None) => prop_assert!(at.is_none() && spec.is_none()),
            Err(e) => prop_assert!(matches!(e, crate::service::ServiceError::Invalid(_))),
        }
    }

    #[test]
    fn any_cidr_text_parses_or_is_refused(text in "[0-9a-f:./\\[\\] ]{0,45}") {
        let _ = crate::config::parse_cidr(&text);
    }

    #[test]
    fn a_cidr_contains_the_address_it_was_written_from(ip in any_ip(), prefix in 0u8..=128) {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let net = crate::config::parse_cidr(&format!("{ip}/{}", prefix.min(max))).unwrap();
        prop_assert!(net.contains(&ip));
        prop_assert_eq!(crate::config::parse_cidr(&ip.to_string()).unwrap().addr(), ip);
    }

    #[test]
    fn forwarded_for_never_panics_and_an_untrusted_peer_is_itself(
        peer in any_ip(),
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..3),
        trusted in proptest::collection::vec((any_ip(), 0u8..=128), 0..3),
    ) {
        let nets: Vec<ipnet::IpNet> = trusted
            .iter()
            .filter_map(|(ip, p)| ipnet::IpNet::new(*ip, *p).ok())
            .collect();
        let resolved = crate::http::resolve_client_ip(peer, values.iter().map(Vec::as_slice), &nets);
        let peer = peer.to_canonical();
        if !nets.iter().any(|n| n.contains(&peer)) {
            prop_assert_eq!(resolved, Some(peer));
        }
    }

    #[test]
    fn a_trusted_proxy_forwarding_an_unreadable_client_makes_it_unknown(
        proxy in any_ip(),
        client in any_ip(),
        junk in prop_oneof![
            Just("unknown".to_string()),
            Just(String::new()),
            any_ip().prop_map(|ip| format!("[{ip}]")),
            (any_ip(), any::<u16>()).prop_map(|(ip, port)| std::net::SocketAddr::new(ip, port).to_string()),
            "[a-z_:]{1,12}",
        ]
        .prop_filter("not an address", |j| j.trim().parse::<IpAddr>().is_err()),
    ) {
        let nets = vec![ipnet::IpNet::from(proxy.to_canonical())];
        let readable = format!("{client}");
        let resolved = |header: &str| {
            crate::http::resolve_client_ip(proxy, [header.as_bytes()], &nets)
        };
        // A junk client entry, alone or behind more proxies, is unknown.
        prop_assert_eq!(resolved(&junk), None);
        prop_assert_eq!(resolved(&format!("{readable}, {junk}")), None);
        // A readable one is the client (unless it is the proxy itself).
        let client = client.to_canonical();
        if client != proxy.to_canonical() {
            prop_assert_eq!(resolved(&format!("{junk}, {readable}")), Some(client));
            prop_assert_eq!(resolved(&format!("{readable}, {}", proxy)), Some(client));
        }
    }

    #[test]
    fn any_text_is_checked_as_an_opaque_secret_without_panicking(candidate in "(kw[st]_)?[ -~\u{e9}]{0,60}") {
        let _ = crate::tokens::opaque::is_well_formed(&candidate, crate::tokens::opaque::API_TOKEN_PREFIX);
        let _ = crate::tokens::opaque::is_well_formed(&candidate, crate::tokens::opaque::CLIENT_SECRET_PREFIX);
        let _ = crate::tokens::opaque::display_prefix(&candidate);
    }

    #[test]
    fn a_changed_character_breaks_an_opaque_secret(index in 0usize..53, replacement in "[A-Za-z0-9_\\-]") {
        let prefix = crate::tokens::opaque::API_TOKEN_PREFIX;
        let secret = crate::tokens::opaque::generate(prefix);
        let text = secret.expose();
        prop_assert!(crate::tokens::opaque::is_well_formed(text, prefix));
        let mut chars: Vec<char> = text.chars().collect();
        let index = index % chars.len();
        let new = replacement.chars().next().unwrap();
        prop_assume!(chars[index] != new);
        chars[index] = new;
        let changed: String = chars.into_iter().collect();
        // 32 bits of checksum: a body change passing is a 1-in-4-billion event.
        prop_assert!(!crate::tokens::opaque::is_well_formed(&changed, prefix));
        prop_assert!(!crate::tokens::opaque::is_well_formed(text, crate::tokens::opaque::CLIENT_SECRET_PREFIX));
    }
}

mod jwt {
    use std::sync::OnceLock;

    use super::*;
    use crate::tokens::jwt::{self, AccessClaims, Audience};
    use crate::tokens::keys::{KeyRing, SigningAlg};

    const ISSUER: &str = "https://issuer.test";

    struct Fixture {
        ring: KeyRing,
        token: String,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let ring = KeyRing::open(dir.path(), Some(SigningAlg::EdDSA)).unwrap();
            let now = chrono::Utc::now().timestamp();
            let claims = AccessClaims {
                iss: ISSUER.into(),
                sub: "kwc_1".into(),
                client_id: "kwc_1".into(),
                aud: Audience::One(ISSUER.into()),
                iat: now,
                exp: now + 3600,
                jti: jwt::new_jti(),
                scope: "read".into(),
                role: "reader".into(),
                tenant: "tn_1".into(),
                device_group: None,
            };
            let token = jwt::sign(&ring.current(), &claims).unwrap();
            assert!(jwt::verify(&ring, &token, ISSUER).is_some());
            Fixture {
                ring,
                token,
                _dir: dir,
            }
        })
    }

    fn verifies(token: &str) -> bool {
        let f = fixture();
        jwt::verify(&f.ring, token, ISSUER).is_some()
    }

    fn b64_json(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn a_token_with_a_byte_flipped_is_refused(index in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = fixture().token.clone().into_bytes();
            let index = index % bytes.len();
            prop_assume!(bytes[index] != byte);
            bytes[index] = byte;
            let changed = String::from_utf8_lossy(&bytes).into_owned();
            prop_assume!(changed != fixture().token);
            prop_assert!(!verifies(&changed), "accepted {changed}");
        }

        #[test]
        fn a_truncated_token_is_refused(len in any::<usize>()) {
            let token = &fixture().token;
            let len = len % token.len();
            prop_assert!(!verifies(&token[..len]));
        }

        #[test]
        fn a_token_with_a_byte_inserted_is_refused(index in any::<usize>(), byte in 0x20u8..0x7f) {
            let token = &fixture().token;
            let index = index % (token.len() + 1);
            let mut changed = token.clone();
            changed.insert(index, byte as char);
            prop_assert!(!verifies(&changed), "accepted {changed}");
        }

        #[test]
        fn a_token_with_its_header_swapped_is_refused(
            alg in prop_oneof![Just("none"), Just("HS256"), Just("RS256"), Just("ES256"), Just("EdDSA"), Just("PS256")],
            typ in proptest::option::of(prop_oneof![Just("JWT"), Just("at+jwt"), Just("AT+JWT")]),
            kid in proptest::option::of(prop_oneof![Just(String::new()), "[A-Za-z0-9_\\-]{1,43}"]),
            keep_kid in any::<bool>(),
        ) {
            let token = &fixture().token;
            let mut parts = token.splitn(3, '.');
            let (header, claims, signature) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            let original: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
            let mut swapped = serde_json::json!({"alg": alg});
            if let Some(typ) = typ { swapped["typ"] = typ.into(); }
            if keep_kid { swapped["kid"] = original["kid"].clone(); } else if let Some(kid) = kid { swapped["kid"] = kid.into(); }
            let new_header = b64_json(&swapped);
            prop_assume!(new_header != header);
            for sig in [signature, ""] {
                let changed = format!("{new_header}.{claims}.{sig}");
                prop_assert!(!verifies(&changed), "accepted {changed}");
            }
        }

        #[test]
        fn claims_changed_without_re_signing_are_refused(
            field in prop_oneof![Just("sub"), Just("scope"), Just("exp"), Just("tenant"), Just("role"), Just("aud"), Just("iss")],
            value in prop_oneof![
                "[ -~]{0,20}".prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
            ],
        ) {
            let token = &fixture().token;
            let mut parts = token.splitn(3, '.');
            let (header, claims, signature) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            let mut decoded: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
            decoded[field] = value;
            let new_claims = b64_json(&decoded);
            prop_assume!(new_claims != claims);
            let changed = format!("{header}.{new_claims}.{signature}");
            prop_assert!(!verifies(&changed), "accepted {changed}");
        }
    }
}
