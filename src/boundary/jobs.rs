//! Long-running jobs: `boundary.snapshot(ttl)` signs the current boundary into a job token for
//! the queue payload; `boundary.resume(token)` verifies it, reloads the principal from the
//! registry, refuses if anything the job relied on changed, and otherwise enters the boundary
//! with today's permissions. A worker without a resumed boundary reads nothing protected.

use super::{admit, keys, sealed_guc, token, ttl_seconds, Admission, BoundaryJsonb};
use crate::audit;
use crate::boundary::claims::{rfc3339, truncate_for_message, Principal, Requested, Scope};
use crate::error::{BoundaryError, Result, SqlResult};
use crate::gucs;
use pgrx::prelude::*;
use serde_json::{json, Value};

/// Why a snapshot no longer holds, or None when the registry still grants everything it used.
pub fn what_changed(job: &Requested, now: Option<&Principal>) -> Option<String> {
    let Some(now) = now else {
        return Some("the principal is no longer registered".into());
    };
    if now.revoked {
        return Some("the principal has been revoked".into());
    }
    if now.role < job.role {
        return Some(format!("role downgraded from {} to {}", job.role.as_str(), now.role.as_str()));
    }
    if let Some(plan) = job.plan.filter(|p| *p != now.plan) {
        return Some(format!("plan changed from {} to {}", plan.as_str(), now.plan.as_str()));
    }
    if let Some(region) = job.region.filter(|r| *r != now.region) {
        return Some(format!("region changed from {} to {}", region.as_str(), now.region.as_str()));
    }
    let removed = |kind: &str, used: &Option<Vec<String>>, allowed: &[String]| {
        used.iter().flatten().find(|id| !allowed.contains(id)).map(|id| format!("{kind} {id} was removed"))
    };
    removed("tool", &job.tool_ids, &now.tool_ids)
        .or_else(|| removed("datasource", &job.datasource_ids, &now.datasource_ids))
}

fn random_run_id() -> Result<String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| BoundaryError::Internal(format!("no randomness: {e}")))?;
    Ok(format!("run-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// The last moment a job from a grant that began at `granted_at` may run.
fn job_deadline(granted_at: i64) -> i64 {
    granted_at.saturating_add(gucs::max_job_lifetime_secs())
}

/// A signed job token carrying the current boundary (tenant, workspace, user, role, plan,
/// region, tools, datasources, namespace, trace, prompt version), its run id (a new one if the
/// boundary has none) and when its grant began, valid for `ttl` but never past that grant plus
/// `agent_boundary.max_job_lifetime`. Only a boundary whose token carries `"allow_jobs": true`
/// may snapshot, and only in a transaction that can write the audit row. For the queue payload;
/// only `boundary.resume()` accepts it.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn snapshot(ttl: default!(pgrx::datum::Interval, "'1 hour'")) -> SqlResult<String> {
    let boundary = sealed_guc::current()?;
    if !boundary.allow_jobs {
        let why = "the token this boundary was entered with does not allow jobs";
        audit::refused("snapshot_refused", Some((&*boundary).into()), None, why);
        return Err(BoundaryError::NotAllowed {
            what: format!("boundary.snapshot() refused: {why}"),
            hint: "Trusted code that mints the token adds \"allow_jobs\": true when the request may start \
                   background jobs."
                .into(),
        }
        .into());
    }
    // Every job token is in the audit trail; a transaction that cannot write it makes none.
    if audit::read_only() {
        return Err(BoundaryError::ReadOnly(
            "boundary.snapshot() needs a read-write transaction: every job token is recorded in boundary.audit_log"
                .into(),
        )
        .into());
    }
    let ttl = ttl_seconds(&ttl, gucs::max_job_lifetime_secs(), "agent_boundary.max_job_lifetime allows")?;
    let now = sealed_guc::now_unix();
    let deadline = job_deadline(boundary.granted_at);
    if deadline <= now {
        let why = format!(
            "the grant this boundary came from began at {}, and jobs from it may run until {} \
             (agent_boundary.max_job_lifetime)",
            rfc3339(boundary.granted_at),
            rfc3339(deadline)
        );
        audit::refused("snapshot_refused", Some((&*boundary).into()), None, &why);
        return Err(BoundaryError::NotAllowed {
            what: format!("boundary.snapshot() refused: {why}"),
            hint: "Start the job from a new request.".into(),
        }
        .into());
    }
    let run_id = match &boundary.run_id {
        Some(run) => run.clone(),
        None => random_run_id()?,
    };
    let claims = json!({
        "tenant_id": boundary.tenant_id, "workspace_id": boundary.workspace_id,
        "user_id": boundary.user_id, "role": boundary.role.as_str(),
        "plan": boundary.plan.as_str(), "region": boundary.region.as_str(),
        "tool_ids": boundary.tool_ids, "datasource_ids": boundary.datasource_ids,
        "memory_namespace": boundary.memory_namespace, "trace_id": boundary.trace_id,
        "run_id": run_id, "prompt_version": boundary.prompt_version,
        "allow_jobs": true, "granted_at": boundary.granted_at,
        "iat": now, "exp": now.saturating_add(ttl).min(deadline), "aud": token::JOB_AUDIENCE,
    });
    let signed = keys::sign_claims(&claims, None)?;
    let mut recorded = (*boundary).clone();
    recorded.run_id = Some(run_id);
    audit::record("snapshot", Some(&recorded), audit::Event::default())?;
    Ok(signed)
}

/// Claims the job's run for this transaction: a second worker resuming the same run while this
/// one's transaction is open is refused, so one job token never runs twice at once. (A retry
/// after this transaction ends is allowed: queues retry failed jobs.)
fn claim_run(job: &Requested, run_id: &str) -> Result<()> {
    let digest = crate::stores::keyspace::sha256_hex(
        crate::stores::keyspace::compose(["agent-run", job.tenant_id.as_str(), run_id]).as_bytes(),
    );
    let key = i64::from_str_radix(&digest[..15], 16).unwrap_or(0);
    let claimed =
        Spi::get_one_with_args::<bool>("SELECT pg_catalog.pg_try_advisory_xact_lock($1)", &[key.into()])?
            .unwrap_or(false);
    if claimed {
        Ok(())
    } else {
        Err(BoundaryError::Busy(format!(
            "boundary.resume() refused: run {} is already running in another session",
            truncate_for_message(run_id)
        )))
    }
}

fn refused(job: Option<&Requested>, reason: String) -> BoundaryError {
    audit::refused("resume_refused", job.map(audit::Who::from), None, &reason);
    BoundaryError::JobRefused { reason }
}

/// Verifies a job token from `boundary.snapshot()`, checks the registry, and enters the job's
/// boundary with today's permissions for the rest of the transaction. Refused with SQLSTATE
/// 42501 `resume refused: permissions changed during execution` (the DETAIL says what changed)
/// when the token expired, the principal was revoked, its role was downgraded, its plan or
/// region changed, or a tool or datasource the job carried was removed. Returns the boundary.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn resume(job_token: &str) -> SqlResult<BoundaryJsonb> {
    let token_refused = BoundaryError::TokenRefused;
    let (kid, key) = keys::key_for_token(job_token)?;
    let now = sealed_guc::now_unix();
    let time = crate::boundary::time_policy(now, gucs::max_job_lifetime_secs());
    let verifier = key.verifier().map_err(token_refused)?;
    let claims: Value = match token::verify_job(job_token, verifier, time) {
        Ok(claims) => claims,
        Err(token::Refusal::Expired) => return Err(refused(None, "the job token has expired".into()).into()),
        Err(why) => return Err(token_refused(why.to_string()).into()),
    };
    let job = Requested::from_claims(&claims).map_err(token_refused)?;
    let granted_at = job
        .granted_at
        .filter(|granted| job.issued_at.is_none_or(|iat| *granted <= iat))
        .ok_or_else(|| token_refused("the job token has no valid granted_at claim".into()))?;
    let deadline = job_deadline(granted_at);
    if deadline < now || job.expires_at > deadline {
        let reason = format!("the grant this job came from ended at {}", rfc3339(deadline));
        return Err(refused(Some(&job), reason).into());
    }
    let principal = crate::boundary::registry::lookup(&job.tenant_id, &job.workspace_id, &job.user_id)?;
    if let Some(reason) = what_changed(&job, principal.as_deref()) {
        return Err(refused(Some(&job), reason).into());
    }
    let run_id =
        job.run_id.clone().ok_or_else(|| token_refused("the job token has no run_id claim".into()))?;
    claim_run(&job, &run_id)?;
    let principal = principal.expect("what_changed refuses a missing principal");
    let boundary =
        job.narrow(&principal, &kid, Scope::Transaction, now).map_err(BoundaryError::PrincipalRefused)?;
    let shown = BoundaryJsonb::of(&boundary);
    admit(&sealed_guc::seal(boundary)?, Admission::Resume)?;
    Ok(shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boundary::claims::{Plan, Region, Role};

    fn job() -> Requested {
        Requested::from_claims(&json!({
            "tenant_id": "t", "workspace_id": "w", "user_id": "u", "role": "admin",
            "plan": "pro", "region": "eu", "tool_ids": ["crm", "search"], "datasource_ids": ["kb"],
            "exp": 2_000_000_000,
        }))
        .unwrap()
    }

    fn registry() -> Principal {
        Principal {
            role: Role::Admin,
            plan: Plan::Pro,
            region: Region::Eu,
            tool_ids: vec!["crm".into(), "search".into(), "mail".into()],
            datasource_ids: vec!["kb".into()],
            revoked: false,
        }
    }

    #[test]
    fn an_unchanged_or_wider_registry_lets_the_job_resume() {
        assert_eq!(what_changed(&job(), Some(&registry())), None);
        let mut wider = registry();
        wider.role = Role::Owner;
        assert_eq!(what_changed(&job(), Some(&wider)), None);
    }

    #[test]
    fn every_kind_of_change_is_named() {
        let changed = |edit: fn(&mut Principal)| {
            let mut p = registry();
            edit(&mut p);
            what_changed(&job(), Some(&p)).unwrap()
        };
        assert_eq!(what_changed(&job(), None).unwrap(), "the principal is no longer registered");
        assert_eq!(changed(|p| p.revoked = true), "the principal has been revoked");
        assert_eq!(changed(|p| p.role = Role::Viewer), "role downgraded from admin to viewer");
        assert_eq!(changed(|p| p.plan = Plan::Free), "plan changed from pro to free");
        assert_eq!(changed(|p| p.region = Region::Us), "region changed from eu to us");
        assert_eq!(changed(|p| p.tool_ids.retain(|t| t != "crm")), "tool crm was removed");
        assert_eq!(changed(|p| p.datasource_ids.clear()), "datasource kb was removed");
    }
}
