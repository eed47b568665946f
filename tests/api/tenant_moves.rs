//! Moving a tenant moves its audit history's visibility with it, and two
//! concurrent moves cannot make a cycle.

use std::sync::{Arc, Barrier};

use serde_json::json;

use crate::helpers::{postgres_or_skip, spawn_app, TestApp};

fn audit_targets(app: &TestApp, token: &str) -> Vec<String> {
    let page = app.admin("GET", "/admin/v1/audit?limit=500", token, None);
    assert_eq!(page.status, 200, "{}", page.body);
    page.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["target"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn audit_events_of_a_moved_subtree_are_seen_from_its_new_parent_and_not_its_old() {
    let app = spawn_app();
    let root_token = app.admin_token();
    let old_parent = app.create_tenant("old parent", None);
    let new_parent = app.create_tenant("new parent", None);
    let moved = app.create_tenant("moved", Some(&old_parent));
    let below = app.create_tenant("below", Some(&moved));
    let (client, _) = app.new_client("reader", |c| c.tenant_id = Some(below.clone()));
    let old_admin = app.tenant_admin(&old_parent, None);
    let new_admin = app.tenant_admin(&new_parent, None);
    let subtree = [moved.clone(), below.clone(), client.client_id.clone()];
    let seen = audit_targets(&app, &old_admin);
    assert!(subtree.iter().all(|t| seen.contains(t)), "{seen:?}");
    assert!(!audit_targets(&app, &new_admin)
        .iter()
        .any(|t| subtree.contains(t)));

    let response = app.admin(
        "PATCH",
        &format!("/admin/v1/tenants/{moved}"),
        &root_token,
        Some(json!({"parent_id": new_parent})),
    );
    assert_eq!(response.status, 200, "{}", response.body);

    let seen = audit_targets(&app, &new_admin);
    assert!(subtree.iter().all(|t| seen.contains(t)), "{seen:?}");
    let old_seen = audit_targets(&app, &old_admin);
    assert!(
        !old_seen.iter().any(|t| subtree.contains(t)),
        "the old parent still sees the moved subtree's history: {old_seen:?}"
    );
    // The root, above both, sees it all along.
    let all = audit_targets(&app, &root_token);
    assert!(subtree.iter().all(|t| all.contains(t)));
}

/// Every tenant's parent chain reaches the root, and every path is its
/// parent's path plus its own id.
fn assert_tree_is_sound(app: &TestApp) {
    use diesel::prelude::*;
    use keyward::store::schema::tenants as t;
    let mut conn = app.conn();
    let rows: Vec<(String, Option<String>, String)> = t::table
        .select((t::id, t::parent_id, t::path))
        .load(&mut conn)
        .unwrap();
    let by_id: std::collections::HashMap<_, _> = rows
        .iter()
        .map(|(id, parent, path)| (id.clone(), (parent.clone(), path.clone())))
        .collect();
    for (id, parent, path) in &rows {
        let mut steps = 0;
        let mut at = parent.clone();
        while let Some(p) = at {
            steps += 1;
            assert!(steps <= rows.len(), "tenant {id} is in a cycle");
            at = by_id[&p].0.clone();
        }
        match parent {
            Some(p) => assert_eq!(path, &format!("{}{id}/", by_id[p].1), "path of {id}"),
            None => assert_eq!(path, &format!("/{id}/")),
        }
    }
}

#[test]
fn two_concurrent_opposite_moves_never_make_a_cycle() {
    // SQLite serialises writers (BEGIN IMMEDIATE); the race needs PostgreSQL.
    if postgres_or_skip("two_concurrent_opposite_moves_never_make_a_cycle").is_none() {
        return;
    }
    let app = spawn_app();
    let token = app.admin_token();
    for round in 0..20 {
        let a = app.create_tenant(&format!("a{round}"), None);
        let b = app.create_tenant(&format!("b{round}"), None);
        let barrier = Arc::new(Barrier::new(2));
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let moves = [(a.clone(), b.clone()), (b.clone(), a.clone())].map(|(child, parent)| {
                let barrier = barrier.clone();
                let (app, token) = (&app, &token);
                scope.spawn(move || {
                    barrier.wait();
                    app.admin(
                        "PATCH",
                        &format!("/admin/v1/tenants/{child}"),
                        token,
                        Some(json!({"parent_id": parent})),
                    )
                })
            });
            moves
                .into_iter()
                .map(|m| {
                    let response = m.join().unwrap();
                    if response.status == 400 {
                        response.assert_error(400, "invalid_request");
                    }
                    response.status
                })
                .collect()
        });
        let mut sorted = statuses.clone();
        sorted.sort();
        assert_eq!(sorted, vec![200, 400], "round {round}: {statuses:?}");
        assert_tree_is_sound(&app);
    }
}
