//! Users and console sessions at the service level (API.md section 4):
//! every rule of `service::users`, `service::sessions` and the policy they
//! share with clients, on whichever store the run uses.

use keyward::domain::UserStatus;
use keyward::service::scopes::ScopeSet;
use keyward::service::sessions::{self, SignInError, ABSOLUTE_TTL, IDLE_TTL};
use keyward::service::users::{self, NewUser, UserPatch, UserView, SETUP_LINK_TTL};
use keyward::service::{now, Actor, ServiceError};
use keyward::store::Conn;

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

fn with_conn<T>(app: &TestApp, f: impl FnOnce(&mut Conn<'_>) -> T) -> T {
    let mut pooled = app.db.get().unwrap();
    let mut conn = Conn::detached(&mut pooled);
    f(&mut conn)
}

/// An actor of `tenant_id` holding exactly `scopes`.
fn actor(app: &TestApp, tenant_id: &str, scopes: &str) -> Actor {
    let mut conn = app.conn();
    let path = keyward::store::tenants::path_of(&mut conn, tenant_id)
        .unwrap()
        .unwrap();
    Actor {
        name: "test".into(),
        client_id: None,
        user_id: None,
        tenant_id: tenant_id.into(),
        tenant_path: path,
        scopes: ScopeSet::parse(scopes).unwrap(),
        ip: None,
    }
}

fn new_user(email: &str, role: &str, tenant: Option<&str>, password: Option<&str>) -> NewUser {
    NewUser {
        email: email.into(),
        name: format!("{email} person"),
        role: role.into(),
        tenant_id: tenant.map(str::to_string),
        password: password.map(str::to_string),
    }
}

fn create(
    app: &TestApp,
    by: &Actor,
    req: NewUser,
) -> Result<(UserView, Option<users::SetupLink>), ServiceError> {
    with_conn(app, |conn| users::create(conn, by, req))
}

fn sign_in(
    app: &TestApp,
    email: &str,
    password: &str,
    at: i64,
) -> Result<(String, String), SignInError> {
    with_conn(app, |conn| {
        sessions::sign_in(conn, email, password, None, at)
    })
    .map(|(cookie, csrf)| (cookie.value.expose().to_string(), csrf))
}

fn session_user(app: &TestApp, cookie: &str, at: i64) -> Option<String> {
    with_conn(app, |conn| sessions::authenticate_session(conn, cookie, at))
        .unwrap()
        .map(|(user, _)| user.user_id.to_string())
}

fn audit_actions(app: &TestApp) -> Vec<(String, String, String)> {
    let actor = app.root_actor();
    let mut conn = app.conn();
    keyward::service::audit::list(&mut conn, &actor, &Default::default(), 500, None)
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.actor, e.details.to_string()))
        .collect()
}

#[test]
fn emails_are_unique_regardless_of_case_and_passwords_follow_the_rules() {
    let app = spawn_app();
    let root = app.root_actor();
    let (view, link) = create(
        &app,
        &root,
        new_user("Ann@Example.com", "reader", None, None),
    )
    .unwrap();
    assert_eq!(view.status, "active");
    assert_eq!(view.tenant_id, app.root_tenant);
    assert!(link
        .unwrap()
        .path()
        .starts_with("/console/setup?token=kwl_"));
    let again = create(
        &app,
        &root,
        new_user("ann@EXAMPLE.com", "reader", None, Some(PASSWORD)),
    );
    assert!(matches!(again, Err(ServiceError::Conflict(_))), "{again:?}");

    for (password, email) in [
        ("elevenchars", "bob@example.com"),
        ("bob@example.com", "bob@example.com"),
        ("BOB@example.COM", "bob@example.com"),
    ] {
        let refused = create(&app, &root, new_user(email, "reader", None, Some(password)));
        assert!(
            matches!(refused, Err(ServiceError::Invalid(_))),
            "{password}: {refused:?}"
        );
    }
    let too_long = "x".repeat(1025);
    let refused = create(
        &app,
        &root,
        new_user("bob@example.com", "reader", None, Some(&too_long)),
    );
    assert!(matches!(refused, Err(ServiceError::Invalid(_))));
    let (_, link) = create(
        &app,
        &root,
        new_user("bob@example.com", "reader", None, Some(PASSWORD)),
    )
    .unwrap();
    assert!(link.is_none(), "a password given: no setup link");
    let bad_email = create(&app, &root, new_user("not-an-email", "reader", None, None));
    assert!(matches!(bad_email, Err(ServiceError::Invalid(_))));
}

#[test]
fn no_escalation_either_way_and_reach_is_not_found() {
    let app = spawn_app();
    let root = app.root_actor();
    let a = app.create_tenant("a", None);
    let b = app.create_tenant("b", None);
    // Holds the user scopes but not what the admin role holds.
    let limited = actor(&app, &a, "users:read users:write");
    let beyond = create(
        &app,
        &limited,
        new_user("x@example.com", "admin", None, None),
    );
    assert!(
        matches!(beyond, Err(ServiceError::Forbidden(_))),
        "{beyond:?}"
    );
    let (reader, _) = create(
        &app,
        &limited,
        new_user("r@example.com", "reader", None, None),
    )
    .unwrap();
    assert_eq!(reader.tenant_id, a);
    // Giving an existing user a role beyond the caller: refused.
    let up = with_conn(&app, |conn| {
        users::update(
            conn,
            &limited,
            &reader.user_id,
            UserPatch {
                role: Some("admin".into()),
                ..Default::default()
            },
        )
    });
    assert!(matches!(up, Err(ServiceError::Forbidden(_))), "{up:?}");

    // Acting on a user whose rights exceed the caller's: reading is fine,
    // anything else is refused.
    let (admin, _) = create(
        &app,
        &root,
        new_user("adm@example.com", "admin", Some(&a), None),
    )
    .unwrap();
    assert!(with_conn(&app, |conn| users::get(conn, &limited, &admin.user_id)).is_ok());
    let rename = with_conn(&app, |conn| {
        users::update(
            conn,
            &limited,
            &admin.user_id,
            UserPatch {
                name: Some("n".into()),
                ..Default::default()
            },
        )
    });
    assert!(
        matches!(rename, Err(ServiceError::Forbidden(_))),
        "{rename:?}"
    );
    let delete = with_conn(&app, |conn| users::delete(conn, &limited, &admin.user_id));
    assert!(matches!(delete, Err(ServiceError::Forbidden(_))));
    let link = with_conn(&app, |conn| {
        users::new_setup_link(conn, &limited, &admin.user_id)
    });
    assert!(matches!(link, Err(ServiceError::Forbidden(_))));

    // Out of reach: NotFound, as for a user that does not exist; and a
    // tenant out of reach cannot be named.
    let other = actor(&app, &b, &ScopeSet::all_admin().to_string());
    for id in [admin.user_id.as_str(), "usr_nope"] {
        let seen = with_conn(&app, |conn| users::get(conn, &other, id));
        assert!(
            matches!(seen, Err(ServiceError::NotFound("user"))),
            "{seen:?}"
        );
        let gone = with_conn(&app, |conn| users::delete(conn, &other, id));
        assert!(matches!(gone, Err(ServiceError::NotFound("user"))));
    }
    let elsewhere = create(
        &app,
        &other,
        new_user("e@example.com", "reader", Some(&a), None),
    );
    assert!(
        matches!(elsewhere, Err(ServiceError::NotFound(_))),
        "{elsewhere:?}"
    );
    let listed = with_conn(&app, |conn| {
        users::list(conn, &other, &Default::default(), 50, None)
    })
    .unwrap();
    assert!(listed.is_empty());
    let listed = with_conn(&app, |conn| {
        users::list(conn, &limited, &Default::default(), 50, None)
    })
    .unwrap();
    assert_eq!(listed.len(), 2);
}

#[test]
fn a_user_cannot_change_its_own_role_or_status_nor_delete_itself() {
    let app = spawn_app();
    let root = app.root_actor();
    let (me, _) = create(
        &app,
        &root,
        new_user("me@example.com", "admin", None, Some(PASSWORD)),
    )
    .unwrap();
    let myself = with_conn(&app, |conn| {
        let user = keyward::store::users::find(conn, &me.user_id)
            .unwrap()
            .unwrap();
        users::actor_for(conn, &user, None).unwrap()
    });
    assert!(myself.scopes.contains("users:write"));
    for patch in [
        UserPatch {
            role: Some("reader".into()),
            ..Default::default()
        },
        UserPatch {
            status: Some(UserStatus::Disabled),
            ..Default::default()
        },
    ] {
        let refused = with_conn(&app, |conn| {
            users::update(conn, &myself, &me.user_id, patch)
        });
        assert!(
            matches!(refused, Err(ServiceError::Forbidden(_))),
            "{refused:?}"
        );
    }
    let refused = with_conn(&app, |conn| users::delete(conn, &myself, &me.user_id));
    assert!(matches!(refused, Err(ServiceError::Forbidden(_))));
    let renamed = with_conn(&app, |conn| {
        users::update(
            conn,
            &myself,
            &me.user_id,
            UserPatch {
                name: Some("Me Myself".into()),
                ..Default::default()
            },
        )
    })
    .unwrap();
    assert_eq!(renamed.name, "Me Myself");
    // Another admin may.
    let (other, _) = create(&app, &root, new_user("o@example.com", "reader", None, None)).unwrap();
    let disabled = with_conn(&app, |conn| {
        users::update(
            conn,
            &myself,
            &other.user_id,
            UserPatch {
                status: Some(UserStatus::Disabled),
                ..Default::default()
            },
        )
    })
    .unwrap();
    assert_eq!(disabled.status, "disabled");
    with_conn(&app, |conn| users::delete(conn, &myself, &other.user_id)).unwrap();
    // The patch refuses fields it does not know.
    let unknown = serde_json::from_str::<UserPatch>(r#"{"email": "x@example.com"}"#);
    assert!(unknown.is_err());
}

#[test]
fn a_setup_link_works_once_for_24_hours_and_a_new_one_stops_the_old() {
    let app = spawn_app();
    let root = app.root_actor();
    let (user, link) =
        create(&app, &root, new_user("s@example.com", "reader", None, None)).unwrap();
    let link = link.unwrap();
    let token = link.token.expose().to_string();
    let t = now();
    assert!((link.expires_at - t - SETUP_LINK_TTL).abs() <= 5);
    // No password yet: cannot sign in.
    assert!(matches!(
        sign_in(&app, "s@example.com", PASSWORD, t),
        Err(SignInError::Refused)
    ));
    // The rules apply here too.
    let short = with_conn(&app, |conn| {
        users::complete_setup(conn, &token, "short", t, None)
    });
    assert!(matches!(short, Err(ServiceError::Invalid(_))));
    with_conn(&app, |conn| {
        users::complete_setup(conn, &token, PASSWORD, t, None)
    })
    .unwrap();
    assert!(sign_in(&app, "s@example.com", PASSWORD, t).is_ok());
    let twice = with_conn(&app, |conn| {
        users::complete_setup(conn, &token, "another long password", t, None)
    });
    assert!(matches!(twice, Err(ServiceError::NotFound(_))), "{twice:?}");

    // Expiry, by the time of asking.
    let old = with_conn(&app, |conn| {
        users::new_setup_link(conn, &root, &user.user_id)
    })
    .unwrap();
    let late = with_conn(&app, |conn| {
        users::complete_setup(conn, old.token.expose(), PASSWORD, old.expires_at, None)
    });
    assert!(matches!(late, Err(ServiceError::NotFound(_))), "{late:?}");
    // A new link stops the old one.
    let newer = with_conn(&app, |conn| {
        users::new_setup_link(conn, &root, &user.user_id)
    })
    .unwrap();
    let stopped = with_conn(&app, |conn| {
        users::complete_setup(conn, old.token.expose(), PASSWORD, t, None)
    });
    assert!(matches!(stopped, Err(ServiceError::NotFound(_))));
    let just_in_time = newer.expires_at - 1;
    with_conn(&app, |conn| {
        users::complete_setup(
            conn,
            newer.token.expose(),
            "a brand new password",
            just_in_time,
            None,
        )
    })
    .unwrap();
    assert!(sign_in(&app, "s@example.com", "a brand new password", t).is_ok());
}

#[test]
fn sign_in_fails_the_same_way_for_the_four_failures_and_is_audited_without_the_password() {
    let app = spawn_app();
    let root = app.root_actor();
    let t = now();
    create(
        &app,
        &root,
        new_user("ok@example.com", "reader", None, Some(PASSWORD)),
    )
    .unwrap();
    let (off, _) = create(
        &app,
        &root,
        new_user("off@example.com", "reader", None, Some(PASSWORD)),
    )
    .unwrap();
    with_conn(&app, |conn| {
        users::update(
            conn,
            &root,
            &off.user_id,
            UserPatch {
                status: Some(UserStatus::Disabled),
                ..Default::default()
            },
        )
    })
    .unwrap();
    create(
        &app,
        &root,
        new_user("nopw@example.com", "reader", None, None),
    )
    .unwrap();
    let failures = [
        ("nobody@example.com", PASSWORD),
        ("ok@example.com", "wrong password here"),
        ("off@example.com", PASSWORD),
        ("nopw@example.com", PASSWORD),
    ];
    for (email, password) in failures {
        let refused = sign_in(&app, email, password, t);
        assert!(
            matches!(refused, Err(SignInError::Refused)),
            "{email}: {refused:?}"
        );
    }
    let (cookie, csrf) = sign_in(&app, "OK@example.com", PASSWORD, t).unwrap();
    assert!(cookie.starts_with("kwss_"));
    assert!(csrf.len() >= 43);
    let (user, seen_csrf) = with_conn(&app, |conn| {
        sessions::authenticate_session(conn, &cookie, t)
    })
    .unwrap()
    .unwrap();
    assert_eq!(user.email, "ok@example.com");
    assert_eq!(seen_csrf, csrf);
    assert!(user.last_login_at.is_some());
    with_conn(&app, |conn| sessions::sign_out(conn, &cookie, None)).unwrap();
    assert_eq!(session_user(&app, &cookie, t), None);

    let log = audit_actions(&app);
    let failed: Vec<&str> = log
        .iter()
        .filter(|(action, _, _)| action == "user.sign_in_failed")
        .map(|(_, actor, _)| actor.as_str())
        .collect();
    assert_eq!(failed.len(), 4);
    assert!(failed.contains(&"nobody@example.com"));
    for action in [
        "user.create",
        "user.update",
        "user.sign_in",
        "user.sign_out",
    ] {
        assert!(
            log.iter().any(|(a, _, _)| a == action),
            "{action} audited: {log:?}"
        );
    }
    let text = format!("{log:?}");
    assert!(!text.contains(PASSWORD) && !text.contains("wrong password here"));
}

#[test]
fn a_session_ends_after_30_idle_minutes_and_8_hours_at_most() {
    let app = spawn_app();
    let root = app.root_actor();
    create(
        &app,
        &root,
        new_user("t@example.com", "reader", None, Some(PASSWORD)),
    )
    .unwrap();
    let t = now();
    let (idle, _) = sign_in(&app, "t@example.com", PASSWORD, t).unwrap();
    assert!(session_user(&app, &idle, t + IDLE_TTL - 1).is_some());
    // That use moved last_seen_at: another 30 minutes from there.
    assert!(session_user(&app, &idle, t + 2 * IDLE_TTL - 2).is_some());
    assert!(session_user(&app, &idle, t + 3 * IDLE_TTL).is_none());
    // Gone for good, even at an earlier time.
    assert!(session_user(&app, &idle, t).is_none());

    let (busy, _) = sign_in(&app, "t@example.com", PASSWORD, t).unwrap();
    let mut at = t;
    while at + 20 * 60 < t + ABSOLUTE_TTL {
        at += 20 * 60;
        assert!(
            session_user(&app, &busy, at).is_some(),
            "in use at +{}",
            at - t
        );
    }
    assert!(session_user(&app, &busy, t + ABSOLUTE_TTL).is_none());
}

#[test]
fn disabling_deleting_or_a_new_role_ends_sessions_and_a_password_change_ends_the_others() {
    let app = spawn_app();
    let root = app.root_actor();
    let t = now();
    let (user, _) = create(
        &app,
        &root,
        new_user("d@example.com", "reader", None, Some(PASSWORD)),
    )
    .unwrap();
    let patches = [
        UserPatch {
            role: Some("uploader".into()),
            ..Default::default()
        },
        UserPatch {
            status: Some(UserStatus::Disabled),
            ..Default::default()
        },
    ];
    for patch in patches {
        let (cookie, _) = sign_in(&app, "d@example.com", PASSWORD, t).unwrap();
        assert!(session_user(&app, &cookie, t).is_some());
        with_conn(&app, |conn| {
            users::update(conn, &root, &user.user_id, patch)
        })
        .unwrap();
        assert!(session_user(&app, &cookie, t).is_none());
    }
    // Disabled: cannot sign in until enabled again.
    assert!(sign_in(&app, "d@example.com", PASSWORD, t).is_err());
    with_conn(&app, |conn| {
        users::update(
            conn,
            &root,
            &user.user_id,
            UserPatch {
                status: Some(UserStatus::Active),
                ..Default::default()
            },
        )
    })
    .unwrap();

    let (mine, _) = sign_in(&app, "d@example.com", PASSWORD, t).unwrap();
    let (other, _) = sign_in(&app, "d@example.com", PASSWORD, t).unwrap();
    let wrong = with_conn(&app, |conn| {
        users::change_password(
            conn,
            &user.user_id,
            Some(&mine),
            "not the password",
            "a new long password",
            None,
        )
    });
    assert!(matches!(wrong, Err(ServiceError::Invalid(_))));
    with_conn(&app, |conn| {
        users::change_password(
            conn,
            &user.user_id,
            Some(&mine),
            PASSWORD,
            "a new long password",
            None,
        )
    })
    .unwrap();
    assert!(session_user(&app, &mine, t).is_some());
    assert!(session_user(&app, &other, t).is_none());
    assert!(sign_in(&app, "d@example.com", PASSWORD, t).is_err());
    assert!(sign_in(&app, "d@example.com", "a new long password", t).is_ok());

    with_conn(&app, |conn| users::delete(conn, &root, &user.user_id)).unwrap();
    assert!(session_user(&app, &mine, t).is_none());
    let log = audit_actions(&app);
    for action in ["user.password_change", "user.delete", "user.update"] {
        assert!(log.iter().any(|(a, _, _)| a == action), "{action} audited");
    }
}

#[test]
fn the_migration_gave_existing_admin_clients_and_the_admin_role_the_user_scopes() {
    use diesel_migrations::MigrationHarness;
    use keyward::store::{AnyConnection, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
    let app = spawn_app();
    let (narrow, _) = app.new_client("admin", |c| c.scopes = Some(vec!["clients:read".into()]));
    let (reader, _) = app.new_client("reader", |_| {});
    let mut conn = app.conn();
    let scopes_of = |conn: &mut AnyConnection, id: &str| -> String {
        use diesel::prelude::*;
        use keyward::store::schema::clients;
        clients::table
            .find(id)
            .select(clients::scopes)
            .first(conn)
            .unwrap()
    };
    let role_scopes = |conn: &mut AnyConnection| -> String {
        keyward::store::roles::find(conn, "admin")
            .unwrap()
            .unwrap()
            .scopes
    };
    let bootstrap = app.admin_id.clone();
    assert!(scopes_of(&mut conn, &bootstrap).ends_with("users:read users:write"));
    // Back to the store as it was before people existed: the migrations
    // after it (notices, expiry indexes) first, then the people migration.
    let mut reverted = Vec::new();
    while !reverted.iter().any(|v: &String| {
        v.contains("people") || v.starts_with("2026-11-30-000001") || v == "20261130000001"
    }) {
        let version = match &mut conn {
            AnyConnection::Postgresql(pg) => pg.revert_last_migration(POSTGRES_MIGRATIONS),
            AnyConnection::Sqlite(lite) => lite.revert_last_migration(SQLITE_MIGRATIONS),
        }
        .unwrap();
        reverted.push(version.to_string());
        assert!(
            reverted.len() <= 10,
            "reverted {reverted:?} without reaching people"
        );
    }
    assert!(!role_scopes(&mut conn).contains("users:"));
    assert!(!scopes_of(&mut conn, &bootstrap).contains("users:"));
    assert_eq!(scopes_of(&mut conn, &narrow.client_id), "clients:read");
    // ... and forward again: the admin clients hold the two new scopes.
    keyward::store::migrate_and(&mut conn, |_| Ok(())).unwrap();
    assert!(role_scopes(&mut conn).ends_with("introspect users:read users:write"));
    assert_eq!(
        ScopeSet::parse(&scopes_of(&mut conn, &bootstrap)).unwrap(),
        ScopeSet::all_admin()
    );
    assert_eq!(
        scopes_of(&mut conn, &narrow.client_id),
        "clients:read users:read users:write"
    );
    assert_eq!(scopes_of(&mut conn, &reader.client_id), "read");
}

#[test]
fn cli_creates_users_sets_passwords_and_makes_setup_links() {
    let app = spawn_app();
    let cli = CliRunner::for_app(&app);
    let out = cli.run(&[
        "user",
        "create",
        "--email",
        "first@example.com",
        "--name",
        "First",
        "--role",
        "admin",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = "/console/setup?token=kwl_";
    assert!(stdout.contains(expected), "{stdout}");
    let token = stdout
        .lines()
        .find_map(|l| l.split("token=").nth(1))
        .unwrap()
        .trim()
        .to_string();
    let t = now();
    with_conn(&app, |conn| {
        users::complete_setup(conn, &token, PASSWORD, t, None)
    })
    .unwrap();
    assert!(sign_in(&app, "first@example.com", PASSWORD, t).is_ok());

    let out = cli.run_with_stdin(
        &[
            "user",
            "create",
            "--email",
            "second@example.com",
            "--name",
            "Second",
            "--role",
            "reader",
            "--password-stdin",
        ],
        "a password from stdin\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("password set"));
    assert!(sign_in(&app, "second@example.com", "a password from stdin", t).is_ok());

    // The way back in for a locked-out admin.
    let out = cli.run_with_stdin(
        &[
            "user",
            "set-password",
            "--email",
            "FIRST@example.com",
            "--password-stdin",
        ],
        "the new admin password\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sign_in(&app, "first@example.com", PASSWORD, t).is_err());
    assert!(sign_in(&app, "first@example.com", "the new admin password", t).is_ok());
    let out = cli.run_with_stdin(
        &[
            "user",
            "set-password",
            "--email",
            "first@example.com",
            "--password-stdin",
        ],
        "short\n",
    );
    assert!(!out.status.success());

    let out = cli.run(&["user", "setup-link", "--email", "first@example.com"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(expected));
    let out = cli.run(&["user", "setup-link", "--email", "nobody@example.com"]);
    assert!(!out.status.success());

    let listed = cli.json(&["user", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let log = audit_actions(&app);
    for action in [
        "user.create",
        "user.set_password",
        "user.setup_link",
        "user.setup_complete",
    ] {
        assert!(
            log.iter()
                .any(|(a, actor, _)| a == action
                    && (actor == "cli" || action == "user.setup_complete")),
            "{action}"
        );
    }
}

#[test]
fn a_tenant_or_custom_role_that_a_user_holds_cannot_be_deleted() {
    use keyward::service::roles::{self, NewRole};
    use keyward::service::tenants;
    let app = spawn_app();
    let root = app.root_actor();
    let a = app.create_tenant("a", None);
    with_conn(&app, |conn| {
        roles::create(
            conn,
            &root,
            NewRole {
                name: "viewer".into(),
                scopes: vec!["users:read".into()],
                tenant_id: Some(a.clone()),
            },
        )
    })
    .unwrap();
    let (user, _) = create(
        &app,
        &root,
        new_user("v@example.com", "viewer", Some(&a), None),
    )
    .unwrap();
    let role_gone = with_conn(&app, |conn| roles::delete(conn, &root, "viewer"));
    assert!(
        matches!(role_gone, Err(ServiceError::Conflict(_))),
        "{role_gone:?}"
    );
    with_conn(&app, |conn| users::delete(conn, &root, &user.user_id)).unwrap();
    create(
        &app,
        &root,
        new_user("w@example.com", "reader", Some(&a), None),
    )
    .unwrap();
    with_conn(&app, |conn| roles::delete(conn, &root, "viewer")).unwrap();
    let tenant_gone = with_conn(&app, |conn| tenants::delete(conn, &root, &a));
    assert!(matches!(tenant_gone, Err(ServiceError::Conflict(m)) if m.contains("1 user(s)")));
}
