//! The registry of principals: what each (tenant, workspace, user) may do *now*. Tokens say
//! what trusted code asked for when it signed them; `boundary.enter` checks them against this.

use crate::boundary::claims::{normalize_ids, validate_id, Plan, Principal, Region, Role};
use crate::boundary::verdicts::{remembered, Memo};
use crate::error::{BoundaryError, Result, SqlResult};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

extension_sql!(
    r#"
CREATE TABLE boundary.principals (
    tenant_id      text NOT NULL,
    workspace_id   text NOT NULL,
    user_id        text NOT NULL,
    role           text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    plan           text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise')),
    region         text NOT NULL DEFAULT 'us' CHECK (region IN ('us', 'eu', 'in')),
    tool_ids       text[] NOT NULL DEFAULT '{}',
    datasource_ids text[] NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    PRIMARY KEY (tenant_id, workspace_id, user_id),
    CHECK (octet_length(tenant_id) BETWEEN 1 AND 256 AND tenant_id !~ '[[:cntrl:]]'),
    CHECK (octet_length(workspace_id) BETWEEN 1 AND 256 AND workspace_id !~ '[[:cntrl:]]'),
    CHECK (octet_length(user_id) BETWEEN 1 AND 256 AND user_id !~ '[[:cntrl:]]')
);
COMMENT ON TABLE boundary.principals IS
  'What each (tenant, workspace, user) may currently do. boundary.enter() refuses principals '
  'that are missing or revoked and narrows a token''s role, tools and datasources to this row.';
SELECT pg_catalog.pg_extension_config_dump('boundary.principals', '');
"#,
    name = "principals_table",
);

thread_local! {
    static PRINCIPALS: RefCell<Memo<Rc<Principal>>> = RefCell::new(Memo::default());
}

/// The registry row for a principal, if one exists; remembered until the registry changes.
/// Caller must run as the extension owner.
pub fn lookup(tenant_id: &str, workspace_id: &str, user_id: &str) -> Result<Option<Rc<Principal>>> {
    // Ids never hold control characters (CHECK constraints), so NUL joins them unambiguously.
    let key = [tenant_id, workspace_id, user_id].join("\0");
    remembered(&PRINCIPALS, &key, crate::gucs::remembered_tokens(), || read(tenant_id, workspace_id, user_id))
}

fn read(tenant_id: &str, workspace_id: &str, user_id: &str) -> Result<Option<Principal>> {
    crate::pg::spi_plans::read_latest(
        "SELECT role, plan, region, tool_ids, datasource_ids, revoked_at IS NOT NULL
           FROM boundary.principals
          WHERE tenant_id = $1 AND workspace_id = $2 AND user_id = $3",
        &[tenant_id.into(), workspace_id.into(), user_id.into()],
        |row| {
            let text =
                |ordinal: usize| -> Result<String> { Ok(row.get::<String>(ordinal)?.unwrap_or_default()) };
            let internal = BoundaryError::Internal;
            Ok(Principal {
                role: Role::parse(&text(1)?).map_err(internal)?,
                plan: Plan::parse(&text(2)?).map_err(internal)?,
                region: Region::parse(&text(3)?).map_err(internal)?,
                tool_ids: row.get::<Vec<String>>(4)?.unwrap_or_default(),
                datasource_ids: row.get::<Vec<String>>(5)?.unwrap_or_default(),
                revoked: row.get::<bool>(6)?.unwrap_or(true),
            })
        },
    )
}

fn id_list(field: &str, values: Vec<Option<String>>) -> Result<Vec<String>> {
    let values = values
        .into_iter()
        .map(|v| v.ok_or_else(|| BoundaryError::InvalidArgument(format!("{field} must not contain NULL"))))
        .collect::<Result<Vec<_>>>()?;
    normalize_ids(field, values).map_err(BoundaryError::InvalidArgument)
}

/// Creates or updates a principal (and un-revokes it). The same id rules as tokens apply, so
/// every registered principal can be entered.
#[allow(clippy::too_many_arguments)]
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn register_principal(
    tenant_id: &str,
    workspace_id: &str,
    user_id: &str,
    role: &str,
    plan: default!(&str, "'free'"),
    region: default!(&str, "'us'"),
    tool_ids: default!(Vec<Option<String>>, "'{}'"),
    datasource_ids: default!(Vec<Option<String>>, "'{}'"),
) -> SqlResult<()> {
    let invalid = BoundaryError::InvalidArgument;
    validate_id("tenant_id", tenant_id).map_err(invalid)?;
    validate_id("workspace_id", workspace_id).map_err(invalid)?;
    validate_id("user_id", user_id).map_err(invalid)?;
    let role = Role::parse(role).map_err(invalid)?;
    let plan = Plan::parse(plan).map_err(invalid)?;
    let region = Region::parse(region).map_err(invalid)?;
    let tool_ids = id_list("tool_ids", tool_ids)?;
    let datasource_ids = id_list("datasource_ids", datasource_ids)?;
    // updated_at from the inserted row's default: Citus refuses non-immutable functions in
    // DO UPDATE SET of a reference table (boundary.distribute_own_tables()).
    Spi::run_with_args(
        "INSERT INTO boundary.principals AS p
                (tenant_id, workspace_id, user_id, role, plan, region, tool_ids, datasource_ids)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, workspace_id, user_id) DO UPDATE
            SET role = excluded.role, plan = excluded.plan, region = excluded.region,
                tool_ids = excluded.tool_ids, datasource_ids = excluded.datasource_ids,
                revoked_at = NULL, updated_at = excluded.updated_at",
        &[
            tenant_id.into(),
            workspace_id.into(),
            user_id.into(),
            role.as_str().into(),
            plan.as_str().into(),
            region.as_str().into(),
            tool_ids.into(),
            datasource_ids.into(),
        ],
    )
    .map_err(BoundaryError::from)?;
    Ok(())
}

/// Revokes one principal, every principal of a workspace (user_id NULL), or of a whole tenant
/// (workspace_id and user_id NULL). Returns how many were newly revoked; raises when nothing
/// matches, so a typo does not pass silently. Boundaries already entered keep running until
/// their transaction ends; no new one can be entered.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn revoke(
    tenant_id: &str,
    workspace_id: default!(Option<&str>, "NULL"),
    user_id: default!(Option<&str>, "NULL"),
) -> SqlResult<i64> {
    if workspace_id.is_none() && user_id.is_some() {
        return Err(
            BoundaryError::InvalidArgument("revoking a user_id needs its workspace_id too".into()).into()
        );
    }
    let (matched, newly) = Spi::get_two_with_args::<i64, i64>(
        "WITH matched AS (
            SELECT tenant_id, workspace_id, user_id, revoked_at FROM boundary.principals
             WHERE tenant_id = $1
               AND ($2::text IS NULL OR workspace_id = $2)
               AND ($3::text IS NULL OR user_id = $3)
               FOR UPDATE),
         revoked AS (
            UPDATE boundary.principals p SET revoked_at = now(), updated_at = now()
              FROM matched m
             WHERE m.revoked_at IS NULL AND (p.tenant_id, p.workspace_id, p.user_id)
                   = (m.tenant_id, m.workspace_id, m.user_id)
            RETURNING 1)
         SELECT (SELECT count(*) FROM matched), (SELECT count(*) FROM revoked)",
        &[tenant_id.into(), workspace_id.into(), user_id.into()],
    )
    .map_err(BoundaryError::from)?;
    if matched.unwrap_or(0) == 0 {
        return Err(BoundaryError::UndefinedObject(
            "no registered principal matches; nothing was revoked".into(),
        )
        .into());
    }
    Ok(newly.unwrap_or(0))
}
