use diesel::prelude::*;
use std::collections::BTreeMap;

use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use keyward::store::{self, AnyConnection};

use crate::helpers::{connect, new_store, postgres_or_skip};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Bool)]
    nullable: bool,
}

fn columns(conn: &mut AnyConnection) -> Vec<Column> {
    let mut found = match conn {
        AnyConnection::Sqlite(c) => diesel::sql_query(
            "SELECT m.name AS table_name, p.name AS column_name, lower(p.type) AS data_type, \
             p.\"notnull\" = 0 AS nullable \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '__diesel%'",
        )
        .load::<Column>(c)
        .unwrap(),
        AnyConnection::Postgresql(c) => diesel::sql_query(
            "SELECT table_name::text AS table_name, column_name::text AS column_name, \
             data_type::text AS data_type, (is_nullable = 'YES') AS nullable \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name NOT LIKE '__diesel%'",
        )
        .load::<Column>(c)
        .unwrap(),
    };
    found.sort();
    found
}

/// An index made with CREATE INDEX (not one behind a primary key or a
/// UNIQUE constraint). Columns as the index definition has them, so an
/// expression such as `lower(name)` compares too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Index {
    table: String,
    name: String,
    columns: Vec<String>,
    unique: bool,
    partial: bool,
}

/// A UNIQUE constraint of a table. Compared without its name: SQLite names
/// them `sqlite_autoindex_*`, PostgreSQL `<table>_<columns>_key`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct UniqueConstraint {
    table: String,
    columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ForeignKey {
    table: String,
    columns: Vec<String>,
    references_table: String,
    references_columns: Vec<String>,
    on_delete: String,
}

#[derive(QueryableByName)]
struct IndexRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    index_name: String,
    #[diesel(sql_type = Bool)]
    is_unique: bool,
    #[diesel(sql_type = Bool)]
    partial: bool,
    #[diesel(sql_type = Text)]
    definition: String,
}

/// One column of a UNIQUE constraint or a foreign key.
#[derive(QueryableByName)]
struct KeyColumnRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    constraint_id: String,
    #[diesel(sql_type = BigInt)]
    position: i64,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Nullable<Text>)]
    references_table: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    references_column: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    on_delete: Option<String>,
}

/// The column list of `CREATE [UNIQUE] INDEX name ON table [USING m] (a, f(b))`.
fn index_columns(definition: &str) -> Vec<String> {
    let after_on = &definition[definition.find(" ON ").expect("an index definition")..];
    let open = after_on.find('(').expect("a column list");
    let (mut depth, mut columns, mut current) = (0, Vec::new(), String::new());
    for c in after_on[open + 1..].chars() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => break,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                columns.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    columns.push(current);
    columns
        .iter()
        .map(|c| c.split_whitespace().collect::<String>().to_lowercase())
        .collect()
}

fn indexes(conn: &mut AnyConnection) -> Vec<Index> {
    let rows = match conn {
        AnyConnection::Sqlite(c) => diesel::sql_query(
            "SELECT m.tbl_name AS table_name, m.name AS index_name, l.\"unique\" = 1 AS is_unique, \
             l.partial = 1 AS partial, m.sql AS definition \
             FROM sqlite_master m JOIN pragma_index_list(m.tbl_name) l ON l.name = m.name \
             WHERE m.type = 'index' AND l.origin = 'c' AND m.tbl_name NOT LIKE '__diesel%'",
        )
        .load::<IndexRow>(c)
        .unwrap(),
        AnyConnection::Postgresql(c) => diesel::sql_query(
            "SELECT t.relname::text AS table_name, i.relname::text AS index_name, \
             x.indisunique AS is_unique, x.indpred IS NOT NULL AS partial, \
             pg_get_indexdef(x.indexrelid) AS definition \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = current_schema() AND t.relname NOT LIKE '__diesel%' \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid \
             AND c.conrelid = x.indrelid AND c.contype IN ('p', 'u'))",
        )
        .load::<IndexRow>(c)
        .unwrap(),
    };
    let mut found: Vec<Index> = rows
        .into_iter()
        .map(|r| Index {
            columns: index_columns(&r.definition),
            table: r.table_name,
            name: r.index_name,
            unique: r.is_unique,
            partial: r.partial,
        })
        .collect();
    found.sort();
    found
}

/// Key columns grouped by constraint, in key order.
fn group_keys(rows: Vec<KeyColumnRow>) -> Vec<Vec<KeyColumnRow>> {
    let mut grouped: BTreeMap<(String, String), Vec<KeyColumnRow>> = BTreeMap::new();
    for row in rows {
        grouped
            .entry((row.table_name.clone(), row.constraint_id.clone()))
            .or_default()
            .push(row);
    }
    grouped
        .into_values()
        .map(|mut key| {
            key.sort_by_key(|r| r.position);
            key
        })
        .collect()
}

fn unique_constraints(conn: &mut AnyConnection) -> Vec<UniqueConstraint> {
    let rows = match conn {
        AnyConnection::Sqlite(c) => diesel::sql_query(
            "SELECT m.name AS table_name, l.name AS constraint_id, i.seqno AS position, \
             i.name AS column_name, NULL AS references_table, NULL AS references_column, \
             NULL AS on_delete \
             FROM sqlite_master m JOIN pragma_index_list(m.name) l \
             JOIN pragma_index_info(l.name) i \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND m.name NOT LIKE '__diesel%' AND l.origin = 'u'",
        )
        .load::<KeyColumnRow>(c)
        .unwrap(),
        AnyConnection::Postgresql(c) => diesel::sql_query(
            "SELECT t.relname::text AS table_name, c.conname::text AS constraint_id, \
             k.position AS position, a.attname::text AS column_name, \
             NULL::text AS references_table, NULL::text AS references_column, \
             NULL::text AS on_delete \
             FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
             JOIN pg_namespace n ON n.oid = c.connamespace \
             CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, position) \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
             WHERE n.nspname = current_schema() AND c.contype = 'u'",
        )
        .load::<KeyColumnRow>(c)
        .unwrap(),
    };
    let mut found: Vec<UniqueConstraint> = group_keys(rows)
        .into_iter()
        .map(|key| UniqueConstraint {
            table: key[0].table_name.clone(),
            columns: key.into_iter().map(|r| r.column_name).collect(),
        })
        .collect();
    found.sort();
    found
}

fn foreign_keys(conn: &mut AnyConnection) -> Vec<ForeignKey> {
    let rows = match conn {
        AnyConnection::Sqlite(c) => diesel::sql_query(
            "SELECT m.name AS table_name, CAST(f.id AS TEXT) AS constraint_id, f.seq AS position, \
             f.\"from\" AS column_name, f.\"table\" AS references_table, \
             f.\"to\" AS references_column, f.on_delete AS on_delete \
             FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND m.name NOT LIKE '__diesel%'",
        )
        .load::<KeyColumnRow>(c)
        .unwrap(),
        AnyConnection::Postgresql(c) => diesel::sql_query(
            "SELECT t.relname::text AS table_name, c.conname::text AS constraint_id, \
             k.position AS position, a.attname::text AS column_name, \
             r.relname::text AS references_table, ra.attname::text AS references_column, \
             CASE c.confdeltype WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' \
             WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' \
             END AS on_delete \
             FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
             JOIN pg_class r ON r.oid = c.confrelid \
             JOIN pg_namespace n ON n.oid = c.connamespace \
             CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY \
             AS k(attnum, refnum, position) \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
             JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = k.refnum \
             WHERE n.nspname = current_schema() AND c.contype = 'f'",
        )
        .load::<KeyColumnRow>(c)
        .unwrap(),
    };
    let mut found: Vec<ForeignKey> = group_keys(rows)
        .into_iter()
        .map(|key| ForeignKey {
            table: key[0].table_name.clone(),
            references_table: key[0].references_table.clone().unwrap_or_default(),
            on_delete: key[0].on_delete.clone().unwrap_or_default(),
            columns: key.iter().map(|r| r.column_name.clone()).collect(),
            // SQLite leaves `to` NULL for REFERENCES t without columns; ours
            // always name them, so a NULL here is a difference worth seeing.
            references_columns: key
                .iter()
                .map(|r| r.references_column.clone().unwrap_or_default())
                .collect(),
        })
        .collect();
    found.sort();
    found
}

fn migrate(conn: &mut AnyConnection) {
    store::migrate_and(conn, |_| Ok(())).unwrap();
}

#[test]
fn both_migration_sets_give_the_same_columns_indexes_unique_constraints_and_foreign_keys() {
    let Some(postgres) = postgres_or_skip(
        "both_migration_sets_give_the_same_columns_indexes_unique_constraints_and_foreign_keys",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = connect(&format!("sqlite://{}", dir.path().join("a.db").display())).unwrap();
    migrate(&mut sqlite);
    let schema = postgres.schema();
    let mut pg = connect(&schema.url()).unwrap();
    migrate(&mut pg);
    // SQLite's change log stands in for PostgreSQL's NOTIFY (see
    // migrations/sqlite/2026-11-30-000005_change_log): it has no
    // PostgreSQL counterpart on purpose, and no index or key besides its id.
    let mut lite = columns(&mut sqlite);
    lite.retain(|c| c.table_name != "change_log");
    let post = columns(&mut pg);
    assert!(lite.len() > 40, "the schema has its tables: {}", lite.len());
    assert_eq!(
        lite, post,
        "migrations/sqlite and migrations/postgres drifted apart"
    );
    let lite_indexes = indexes(&mut sqlite);
    assert!(
        lite_indexes
            .iter()
            .any(|i| i.name == "roles_name_folded_idx" && i.unique && i.columns == ["lower(name)"]),
        "the index list reads expressions: {lite_indexes:?}"
    );
    assert_eq!(
        lite_indexes,
        indexes(&mut pg),
        "the two migration sets have different indexes"
    );
    let lite_uniques = unique_constraints(&mut sqlite);
    assert!(!lite_uniques.is_empty());
    assert_eq!(
        lite_uniques,
        unique_constraints(&mut pg),
        "the two migration sets have different UNIQUE constraints"
    );
    let lite_keys = foreign_keys(&mut sqlite);
    assert!(lite_keys.len() >= 5, "{lite_keys:?}");
    // Deliberately none on roles.tenant_id, on either side (see the migration).
    assert!(!lite_keys
        .iter()
        .any(|k| k.table == "roles" && k.columns == ["tenant_id"]));
    assert_eq!(
        lite_keys,
        foreign_keys(&mut pg),
        "the two migration sets have different foreign keys"
    );
    // And schema.rs reads every table of both: a missing column or a type
    // that does not map fails here.
    for conn in [&mut sqlite, &mut pg] {
        read_every_table(conn);
    }
}

fn read_every_table(conn: &mut AnyConnection) {
    use keyward::store::models::*;
    use keyward::store::schema::*;
    tenants::table
        .select(Tenant::as_select())
        .load(conn)
        .unwrap();
    roles::table.select(Role::as_select()).load(conn).unwrap();
    device_groups::table
        .select(DeviceGroup::as_select())
        .load(conn)
        .unwrap();
    clients::table
        .select(Client::as_select())
        .load(conn)
        .unwrap();
    client_secrets::table
        .select(ClientSecret::as_select())
        .load(conn)
        .unwrap();
    api_tokens::table
        .select(ApiTokenRow::as_select())
        .load(conn)
        .unwrap();
    revoked_access_tokens::table
        .select(RevokedAccessToken::as_select())
        .load(conn)
        .unwrap();
    token_families::table
        .select(TokenFamilyRow::as_select())
        .load(conn)
        .unwrap();
    audit_events::table
        .select(AuditEvent::as_select())
        .load(conn)
        .unwrap();
    let builtin: Vec<String> = roles::table
        .select(roles::name)
        .order(roles::name)
        .load(conn)
        .unwrap();
    assert_eq!(builtin, ["admin", "reader", "resource_server", "uploader"]);
}

#[test]
fn every_migration_runs_up_down_and_up_again() {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = new_store(dir.path());
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let mut conn = connect(&url).unwrap();
    migrate(&mut conn);
    let first = columns(&mut conn);
    let first_keys = (
        indexes(&mut conn),
        unique_constraints(&mut conn),
        foreign_keys(&mut conn),
    );
    store::revert_all(&mut conn).unwrap();
    assert!(columns(&mut conn).is_empty(), "down removes every table");
    migrate(&mut conn);
    assert_eq!(columns(&mut conn), first);
    assert_eq!(
        (
            indexes(&mut conn),
            unique_constraints(&mut conn),
            foreign_keys(&mut conn)
        ),
        first_keys
    );
    drop(schema);
}

/// A stored value that cannot be read is an error wherever it is read,
/// never a default: an unreadable `allowed_ips` once showed as "any address"
/// in the admin API while the token endpoint refused every address.
#[test]
fn a_corrupt_stored_value_is_a_500_everywhere_it_is_read_never_a_default() {
    use keyward::store::schema::clients;
    let app = crate::helpers::spawn_app();
    let admin = app.admin_token();
    let (view, secret) = app.new_client("reader", |_| {});
    let actor = app.root_actor();
    for (column, corrupt) in [("allowed_ips", "not json"), ("allowed_ips", r#"["bogus"]"#)] {
        app.db
            .run_here(|conn| {
                conn.write(|tx| {
                    keyward::service::audit::record(
                        tx,
                        &actor,
                        "test.client.corrupt",
                        Some(&view.client_id),
                        None,
                        serde_json::json!({}),
                    )?;
                    diesel::update(clients::table.find(&view.client_id))
                        .set(clients::allowed_ips.eq(corrupt))
                        .execute(&mut **tx)?;
                    tx.announce(keyward::store::changes::Change::Client(
                        view.client_id.clone(),
                    ))?;
                    Ok::<_, keyward::service::ServiceError>(())
                })
            })
            .unwrap();
        let shown = app
            .request("GET", &format!("/admin/v1/clients/{}", view.client_id))
            .bearer(&admin)
            .send();
        let body = shown.assert_error(500, "server_error");
        assert!(
            !body.to_string().contains(column) && !body.to_string().contains("bogus"),
            "a 500 carries no internal text: {body}"
        );
        app.request("GET", "/admin/v1/clients")
            .bearer(&admin)
            .send()
            .assert_error(500, "server_error");
        let token = app.post_form(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            crate::helpers::Auth::Basic(&view.client_id, &secret),
        );
        assert_eq!(token.status, 500, "{column}={corrupt}: {}", token.body);
    }
}
