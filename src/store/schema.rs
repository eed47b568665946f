//! One portable schema for PostgreSQL and SQLite. Only types both backends
//! share are used: Text, BigInt, Bool. A test compares it against both
//! migration sets.

diesel::table! {
    tenants (id) {
        id -> Text,
        name -> Text,
        parent_id -> Nullable<Text>,
        path -> Text,
        owner_emails -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    roles (name) {
        name -> Text,
        scopes -> Text,
        builtin -> Bool,
        created_at -> BigInt,
        tenant_id -> Nullable<Text>,
    }
}

diesel::table! {
    device_groups (id) {
        id -> Text,
        tenant_id -> Text,
        name -> Text,
        description -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    clients (client_id) {
        client_id -> Text,
        kind -> Text,
        name -> Text,
        description -> Nullable<Text>,
        tenant_id -> Text,
        role -> Text,
        scopes -> Text,
        device_group_id -> Nullable<Text>,
        owner -> Nullable<Text>,
        owner_email -> Nullable<Text>,
        status -> Text,
        expires_at -> Nullable<BigInt>,
        can_renew -> Bool,
        allowed_ips -> Text,
        access_token_ttl -> BigInt,
        token_lifetime -> BigInt,
        audience -> Text,
        metadata -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
        version -> BigInt,
        /// Set for a personal API access key: the user it belongs to.
        user_id -> Nullable<Text>,
        token_endpoint_auth_method -> Text,
        jwks -> Nullable<Text>,
        jwks_uri -> Nullable<Text>,
        federated_subjects -> Text,
    }
}

diesel::table! {
    client_federated_subjects (issuer, subject, client_id) {
        issuer -> Text,
        subject -> Text,
        client_id -> Text,
    }
}

diesel::table! {
    trusted_issuers (id) {
        id -> Text,
        tenant_id -> Text,
        issuer -> Text,
        jwks_uri -> Nullable<Text>,
        description -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    assertion_jtis (issuer, jti) {
        issuer -> Text,
        jti -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    leases (name) {
        name -> Text,
        holder -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    client_secrets (id) {
        id -> Text,
        client_id -> Text,
        secret_hash -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        client_id -> Text,
        token_hash -> Text,
        prefix -> Text,
        scope -> Text,
        audience -> Text,
        tenant_id -> Text,
        issued_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    revoked_access_tokens (jti) {
        jti -> Text,
        client_id -> Text,
        expires_at -> BigInt,
        revoked_at -> BigInt,
    }
}

diesel::table! {
    /// Who was renewed from whom: see the migration 2026-11-29-000002.
    token_families (token_id) {
        token_id -> Text,
        kind -> Text,
        parent_id -> Nullable<Text>,
        client_id -> Text,
        expires_at -> BigInt,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        at -> BigInt,
        actor -> Text,
        action -> Text,
        target -> Nullable<Text>,
        tenant_id -> Nullable<Text>,
        tenant_path -> Nullable<Text>,
        ip -> Nullable<Text>,
        details -> Text,
    }
}

diesel::table! {
    users (user_id) {
        user_id -> Text,
        email -> Text,
        name -> Text,
        tenant_id -> Text,
        role -> Text,
        status -> Text,
        password_hash -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        last_login_at -> Nullable<BigInt>,
        version -> BigInt,
    }
}

diesel::table! {
    user_setup_links (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    sessions (session_hash) {
        session_hash -> Text,
        user_id -> Text,
        csrf_token -> Text,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    notices (id) {
        id -> Text,
        kind -> Text,
        recipient -> Text,
        target -> Text,
        token_id -> Text,
        threshold -> BigInt,
        expires_at -> BigInt,
        tenant_id -> Text,
        tenant_path -> Text,
        subject -> Text,
        body_text -> Text,
        body_html -> Text,
        created_at -> BigInt,
        sent_at -> Nullable<BigInt>,
        attempts -> BigInt,
        next_attempt_at -> BigInt,
        claimed_until -> Nullable<BigInt>,
        status -> Text,
        last_error -> Nullable<Text>,
    }
}

diesel::joinable!(clients -> tenants (tenant_id));
diesel::joinable!(users -> tenants (tenant_id));
diesel::joinable!(user_setup_links -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(device_groups -> tenants (tenant_id));
diesel::joinable!(client_secrets -> clients (client_id));
diesel::joinable!(api_tokens -> clients (client_id));
diesel::joinable!(trusted_issuers -> tenants (tenant_id));

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    client_federated_subjects,
    trusted_issuers,
    assertion_jtis,
    leases,
    roles,
    device_groups,
    clients,
    client_secrets,
    api_tokens,
    revoked_access_tokens,
    token_families,
    audit_events,
    users,
    user_setup_links,
    sessions,
    notices,
);
