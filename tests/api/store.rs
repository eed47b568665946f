use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
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

fn migrate(conn: &mut AnyConnection) {
    store::migrate_and(conn, |_| Ok(())).unwrap();
}

#[test]
fn both_migration_sets_give_the_same_tables_columns_types_and_nullability() {
    let Some(postgres) =
        postgres_or_skip("both_migration_sets_give_the_same_tables_columns_types_and_nullability")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = connect(&format!("sqlite://{}", dir.path().join("a.db").display())).unwrap();
    migrate(&mut sqlite);
    let schema = postgres.schema();
    let mut pg = connect(&schema.url()).unwrap();
    migrate(&mut pg);
    let lite = columns(&mut sqlite);
    let post = columns(&mut pg);
    assert!(lite.len() > 40, "the schema has its tables: {}", lite.len());
    assert_eq!(
        lite, post,
        "migrations/sqlite and migrations/postgres drifted apart"
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
    store::revert_all(&mut conn).unwrap();
    assert!(columns(&mut conn).is_empty(), "down removes every table");
    migrate(&mut conn);
    assert_eq!(columns(&mut conn), first);
    drop(schema);
}
