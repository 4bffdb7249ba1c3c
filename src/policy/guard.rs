//! What row level security does not see: referential actions (the cascade guard's condition,
//! ddl.rs) and DDL on protected tables (the `boundary_guard_ddl` event triggers, policy.sql).
//!
//! A table's owner can always take its protection apart; these guards stop the accidents
//! (a framework's `reset()` dropping a table inside a request, a migration validating a
//! constraint against every tenant's rows) and keep the generated objects what protect() made.

use super::RUNNING_OWN_DDL;
use crate::boundary::sealed_guc;
use crate::error::{BoundaryError, Result, SqlResult};
use crate::pg::catalog::table;
use pgrx::prelude::*;

/// For the cascade guard's condition: see [`crate::pg::session_role_bypasses_rls`].
#[pg_extern(stable, parallel_safe)]
fn outer_role_bypasses_rls() -> bool {
    crate::pg::session_role_bypasses_rls()
}

/// For the insert guard's condition: see [`crate::pg::current_role_bypasses_rls`].
#[pg_extern(stable, parallel_safe)]
fn current_role_bypasses_rls() -> bool {
    crate::pg::current_role_bypasses_rls()
}

const INSIDE_HINT: &str = "Run schema changes outside agent boundaries, as a role agents never connect as.";
const GENERATED_HINT: &str =
    "Use boundary.unprotect() to stop protecting the table, and boundary.reprotect() to rebuild its protection.";

fn refused_inside(tag: &str, table: &str) -> BoundaryError {
    BoundaryError::NotAllowed {
        what: format!(
            "{tag} on protected table {table} is refused inside an agent boundary: it would read, check or \
             rewrite every tenant's rows, or take its protection apart"
        ),
        hint: INSIDE_HINT.into(),
    }
}

fn refused_generated(tag: &str, object: &str, table: &str) -> BoundaryError {
    BoundaryError::NotAllowed {
        what: format!("{tag} on {object} of protected table {table} is refused: agent_boundary generates it"),
        hint: GENERATED_HINT.into(),
    }
}

/// At ddl_command_end: inside a boundary, no command may touch a protected table (an index
/// build, a constraint's validation or a rewrite runs over every tenant's rows); anywhere,
/// ALTER POLICY may not change a generated policy.
fn guard_commands(tag: &str, inside: bool) -> Result<()> {
    let commands: Vec<(pg_sys::Oid, Option<String>)> = Spi::connect(|client| {
        client
            .select(
                "SELECT t.relid, p.polname::text
                   FROM pg_catalog.pg_event_trigger_ddl_commands() c
                   LEFT JOIN pg_catalog.pg_policy p ON c.object_type = 'policy' AND p.oid = c.objid
                  CROSS JOIN LATERAL (SELECT CASE c.object_type
                        WHEN 'table' THEN c.objid
                        WHEN 'index' THEN (SELECT indrelid FROM pg_catalog.pg_index WHERE indexrelid = c.objid)
                        WHEN 'table constraint' THEN (SELECT conrelid FROM pg_catalog.pg_constraint WHERE oid = c.objid)
                        WHEN 'policy' THEN p.polrelid
                        WHEN 'trigger' THEN (SELECT tgrelid FROM pg_catalog.pg_trigger WHERE oid = c.objid)
                        WHEN 'rule' THEN (SELECT ev_class FROM pg_catalog.pg_rewrite WHERE oid = c.objid)
                        END AS relid) t
                  WHERE t.relid IS NOT NULL",
                None,
                &[],
            )?
            .map(|row| Ok((row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid), row.get::<String>(2)?)))
            .collect::<Result<Vec<_>>>()
    })?;
    for (relid, policy) in commands {
        // Protected means what protect() recorded (one definition for every capability).
        if super::stored_options(relid)?.is_none() {
            continue;
        }
        let display = table(relid)?.display;
        // A table this transaction created holds only this boundary's rows: a framework may
        // create (and index) its tables lazily inside a request.
        if inside && !crate::pg::catalog::created_in_this_transaction(relid) {
            return Err(refused_inside(tag, &display));
        }
        // (CREATE POLICY of the generated names is how pg_restore brings them back.)
        if let Some(policy) = policy.filter(|p| tag == "ALTER POLICY" && p.starts_with("boundary_")) {
            return Err(refused_generated(tag, &policy, &display));
        }
    }
    Ok(())
}

/// At sql_drop: inside a boundary, nothing protected may go (the table, its scope columns, its
/// policies or guards); anywhere, a generated policy or guard goes only with its table.
fn guard_drops(tag: &str, inside: bool) -> Result<()> {
    let dropped: Vec<(String, String, String, bool)> = Spi::connect(|client| {
        client
            .select(
                "SELECT d.address_names[1], d.address_names[2], d.address_names[3],
                        EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_dropped_objects() t
                                 WHERE t.object_type IN ('table', 'partitioned table')
                                   AND t.address_names = d.address_names[1:2])
                   FROM pg_catalog.pg_event_trigger_dropped_objects() d
                  WHERE d.object_type IN ('policy', 'trigger') AND d.address_names[3] LIKE 'boundary\\_%'
                  ORDER BY d.address_names[3]",
                None,
                &[],
            )?
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<String>(3)?.unwrap_or_default(),
                    row.get::<bool>(4)?.unwrap_or(false),
                ))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    for (schema, name, object, with_its_table) in dropped {
        // As catalog::table() spells it: the table may be gone already.
        let display = format!("{schema}.{name}");
        if inside {
            return Err(refused_inside(tag, &display));
        }
        if !with_its_table {
            return Err(refused_generated(tag, &object, &display));
        }
    }
    Ok(())
}

/// Called by the `boundary_guard_ddl` and `boundary_guard_drop` event triggers (policy.sql)
/// with TG_EVENT and TG_TAG. protect(), reprotect() and unprotect() run their own DDL unguarded,
/// and Citus applies theirs on the workers unguarded.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn guard_ddl(event: &str, tag: &str) -> SqlResult<()> {
    if crate::pg::flag::is_raised(&RUNNING_OWN_DDL) {
        return Ok(());
    }
    let inside = sealed_guc::current_if_any()?.is_some();
    // Citus replaying protect()'s DDL from the coordinator on a worker's shards and copies.
    if super::citus_replaying() {
        return Ok(());
    }
    match event {
        "sql_drop" => guard_drops(tag, inside)?,
        _ => guard_commands(tag, inside)?,
    }
    Ok(())
}

/// The supported way to validate a constraint of a protected table (a tenant-leading foreign
/// key added `NOT VALID`, a CHECK): PostgreSQL validates a foreign key under the owner's row
/// level security, so the owner's own `VALIDATE CONSTRAINT` fails outside a boundary and inside
/// one would check a single tenant's rows. This validates against every row, for the table's
/// owner (after SET ROLE), outside any boundary.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn validate_constraint(tbl: pgrx::PgRelation, constraint: &str) -> SqlResult<()> {
    let oid = crate::pg::catalog::release(tbl);
    let table = table(oid)?;
    let owner = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1",
        &[oid.into()],
    )
    .map_err(BoundaryError::from)?
    .unwrap_or(pg_sys::InvalidOid);
    // SAFETY: reads backend-local role state and the role syscache.
    let caller_owns = unsafe { pg_sys::has_privs_of_role(pg_sys::GetOuterUserId(), owner) };
    if !caller_owns {
        return Err(BoundaryError::NotAllowed {
            what: format!("boundary.validate_constraint() is for the owner of table {}", table.display),
            hint: "Connect (or SET ROLE) as the role that owns the table.".into(),
        }
        .into());
    }
    if sealed_guc::current_if_any()?.is_some() {
        return Err(refused_inside("VALIDATE CONSTRAINT", &table.display).into());
    }
    crate::pg::catalog::validate_identifier("constraint", constraint)
        .map_err(BoundaryError::InvalidArgument)?;
    let statement = format!(
        "ALTER TABLE {} VALIDATE CONSTRAINT {}",
        table.qualified,
        crate::pg::catalog::quote_ident(constraint)
    );
    super::muting_event_trigger(|| Spi::run(&statement)).map_err(BoundaryError::from)?;
    Ok(())
}
