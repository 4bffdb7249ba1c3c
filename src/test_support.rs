//! Helpers shared by the `#[pg_test]` modules (they run inside PostgreSQL as a superuser).

use pgrx::prelude::*;
use serde_json::{json, Value};

const SECRET_HEX: &str = "6167656e745f626f756e646172795f746573745f7365637265745f3332627974";

/// Runs `sql` in a subtransaction; returns "ok" or "SQLSTATE: message".
pub fn try_sql(sql: &str) -> String {
    // Created once per test transaction, before any SET ROLE, and callable after it. Not in
    // pg_temp: boundary.enter() refuses sessions that hold temporary objects.
    let missing = one::<bool>("SELECT to_regprocedure('tests.try_sql(text)') IS NULL");
    if missing == Some(true) {
        Spi::run("GRANT USAGE ON SCHEMA tests TO PUBLIC").unwrap();
        Spi::run(
            "CREATE FUNCTION tests.try_sql(q text) RETURNS text LANGUAGE plpgsql AS $$
         BEGIN EXECUTE q; RETURN 'ok';
         EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$",
        )
        .unwrap();
    }
    Spi::get_one_with_args::<String>("SELECT tests.try_sql($1)", &[sql.into()]).unwrap().unwrap()
}

pub fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
    Spi::get_one::<T>(sql).unwrap()
}

/// The lookalike tenants (tests/fixtures/lookalike_tenants.sql, shared by every test layer),
/// one key, and an ordinary role `agent_tester` that can call enter().
pub fn fixture() {
    try_sql("SELECT 1");
    Spi::run(&format!("SELECT boundary.add_signing_key('test-k1', 'HS256', decode('{SECRET_HEX}', 'hex'))"))
        .unwrap();
    Spi::run(include_str!("../tests/fixtures/lookalike_tenants.sql")).unwrap();
    Spi::run("CREATE ROLE agent_tester NOLOGIN NOBYPASSRLS").unwrap();
}

/// A token for `user` at `tenant` (workspace "support") with `role`, signed in the database;
/// `extra` claims are merged in (and may override these).
pub fn sign_for(tenant: &str, user: &str, role: &str, extra: Value) -> String {
    let mut claims = json!({"tenant_id": tenant, "workspace_id": "support", "user_id": user, "role": role});
    if let (Value::Object(claims), Value::Object(extra)) = (&mut claims, extra) {
        claims.extend(extra);
    }
    Spi::get_one_with_args::<String>("SELECT boundary.sign($1::jsonb)", &[claims.to_string().into()])
        .unwrap()
        .unwrap()
}

pub fn token_for(tenant: &str, extra: Value) -> String {
    sign_for(tenant, "alice", "admin", extra)
}

/// Enters that boundary (signing needs the superuser) and then becomes `agent_tester`.
pub fn as_agent(tenant: &str, user: &str, role: &str, extra: Value) {
    Spi::run("RESET ROLE").unwrap();
    Spi::run(&enter_sql(&sign_for(tenant, user, role, extra))).unwrap();
    Spi::run("SET ROLE agent_tester").unwrap();
}

pub fn enter_sql(token: &str) -> String {
    format!("SELECT boundary.enter('{token}')")
}

/// The plan of `sql` as `EXPLAIN (COSTS OFF)` prints it, one line per plan line.
pub fn explain(sql: &str) -> String {
    Spi::connect(|c| {
        c.select(&format!("EXPLAIN (COSTS OFF) {sql}"), None, &[])
            .unwrap()
            .map(|row| row.get::<String>(1).unwrap().unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    })
}
