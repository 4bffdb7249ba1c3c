//! On Citus, a query on a protected table goes to the tenant's shard without the application
//! naming the tenant.
//!
//! Citus prunes shards only on constants and parameters in the query. The generated policies
//! compare the tenant column with `boundary.tenant_id()`, a function, and apply on the workers,
//! so a query that does not repeat the tenant in its WHERE runs on every shard. The planner hook
//! adds, for each table of the query distributed by its tenant column, the policy's own tenant
//! comparison with the boundary's value computed (`tenant_id = 'acme'`): implied by the
//! policies, which still run on every shard the query reaches, so it can only narrow.
//!
//! Such a plan holds one tenant's value, and PostgreSQL keeps plans (prepared statements,
//! PL/pgSQL) on a connection that a pooler then hands to the next tenant, whose queries would go
//! to the wrong shard and, the policies applying there, return nothing. So these plans carry an
//! invalidation item, and the backend invalidates them itself (no message to other backends)
//! whenever it admits another tenant's boundary, or plans under one.

use crate::boundary::sealed_guc;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// The tenant this backend's valid routed plans were made for, and the hash value their
    /// invalidation item carries.
    static ROUTED_FOR: RefCell<Option<(String, u32)>> = const { RefCell::new(None) };
    /// Per relation: the Citus distribution column's name (`None`: not distributed, or by no
    /// column). Emptied by relcache invalidations.
    static DISTRIBUTION: RefCell<HashMap<pg_sys::Oid, Option<String>>> = RefCell::new(HashMap::new());
}

static mut PREVIOUS_PLANNER_HOOK: pg_sys::planner_hook_type = None;

pub fn init() {
    // SAFETY: _PG_init runs once per process before any statement; the hook calls the one it
    // replaced. Loaded after Citus (which must come first in shared_preload_libraries), this
    // hook runs before Citus' planner and so changes what Citus prunes on.
    unsafe {
        PREVIOUS_PLANNER_HOOK = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(planner_hook);
    }
    crate::pg::invalidation::subscribe(forget_distribution);
}

fn forget_distribution(relid: pg_sys::Oid) {
    DISTRIBUTION.with(|cache| {
        if let Ok(mut cache) = cache.try_borrow_mut() {
            if relid == pg_sys::InvalidOid {
                cache.clear();
            } else {
                cache.remove(&relid);
            }
        }
    });
}

/// Not #[pg_guard], like the other hooks (scope_columns.rs): an error raised while planning
/// must reach the client as raised. Its frame holds nothing to drop, so PostgreSQL's longjmp
/// may cross it; the Rust work happens in the guarded functions it calls.
unsafe extern "C-unwind" fn planner_hook(
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: std::ffi::c_int,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    // SAFETY: PostgreSQL passes the query it is about to plan, which the planner may change;
    // the planner chain runs as PostgreSQL calls it, and the plan it returns is its own.
    unsafe {
        let routed = route_to_tenant_shard(parse);
        let planned = match PREVIOUS_PLANNER_HOOK {
            Some(previous) => previous(parse, query_string, cursor_options, bound_params),
            None => standard_planner(parse, query_string, cursor_options, bound_params),
        };
        if routed {
            invalidated_with_the_tenant(planned);
        }
        planned
    }
}

unsafe extern "C-unwind" {
    /// PostgreSQL's own, declared here without pgrx's error trap (see planner_hook).
    #[link_name = "standard_planner"]
    fn standard_planner(
        parse: *mut pg_sys::Query,
        query_string: *const std::ffi::c_char,
        cursor_options: std::ffi::c_int,
        bound_params: pg_sys::ParamListInfo,
    ) -> *mut pg_sys::PlannedStmt;
}

/// Gives a routed plan the invalidation item [`admitting`] fires.
#[pg_guard]
unsafe extern "C-unwind" fn invalidated_with_the_tenant(planned: *mut pg_sys::PlannedStmt) {
    let Some(hash) = ROUTED_FOR.with(|cell| cell.borrow().as_ref().map(|(_, hash)| *hash)) else { return };
    // SAFETY: a node allocated in the planner's memory context, appended to the plan's list.
    unsafe {
        let item =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::PlanInvalItem>()).cast::<pg_sys::PlanInvalItem>();
        (*item).type_ = pg_sys::NodeTag::T_PlanInvalItem;
        (*item).cacheId = pg_sys::SysCacheIdentifier::PROCOID as i32;
        (*item).hashValue = hash;
        (*planned).invalItems = pg_sys::lappend((*planned).invalItems, item.cast());
    }
}

/// Invalidates this backend's plans routed for another tenant than `tenant` (called whenever a
/// boundary is admitted).
pub fn admitting(tenant: &str) {
    ROUTED_FOR.with(|cell| {
        let stale = cell.borrow().as_ref().is_some_and(|(routed, _)| routed != tenant);
        if stale {
            if let Some((_, hash)) = cell.borrow_mut().take() {
                // SAFETY: runs this backend's syscache callbacks for one pg_proc hash value;
                // the plan cache's marks the plans carrying that item invalid.
                unsafe { pg_sys::CallSyscacheCallbacks(pg_sys::SysCacheIdentifier::PROCOID as i32, hash) };
            }
        }
    });
}

/// Adds the tenant filter to `parse` where it routes (see the module comment); true when it
/// added one, and the plan must then carry the invalidation item of [`ROUTED_FOR`].
#[pg_guard]
unsafe extern "C-unwind" fn route_to_tenant_shard(parse: *mut pg_sys::Query) -> bool {
    // SAFETY: as the caller's.
    unsafe { add_tenant_filters(parse) }.is_some()
}

unsafe fn add_tenant_filters(parse: *mut pg_sys::Query) -> Option<()> {
    // SAFETY: `parse` is the query being planned; every node read is part of it or of the
    // relcache entry held open while it is read.
    unsafe {
        use pg_sys::CmdType::*;
        if !matches!((*parse).commandType, CMD_SELECT | CMD_UPDATE | CMD_DELETE)
            || (*parse).jointree.is_null()
        {
            return None;
        }
        let relations: Vec<(i32, pg_sys::Oid)> = PgList::<pg_sys::RangeTblEntry>::from_pg((*parse).rtable)
            .iter_ptr()
            .enumerate()
            .filter(|(_, rte)| (**rte).rtekind == pg_sys::RTEKind::RTE_RELATION)
            .map(|(index, rte)| (index as i32 + 1, (*rte).relid))
            .collect();
        // A Citus connection to a worker plans shard queries, which name their shard already.
        if relations.is_empty()
            || !crate::pg::citus::loaded()
            || !crate::gucs::route_to_tenant_shard()
            || crate::pg::citus::connection_gpid().is_some()
        {
            return None;
        }
        let boundary = sealed_guc::current_if_any().ok()??;
        if !crate::pg::citus::installed() {
            return None;
        }
        let mut routed = None;
        for (rt_index, relid) in relations {
            let Some(filter) = tenant_filter(rt_index, relid) else { continue };
            let quals = (*(*parse).jointree).quals;
            (*(*parse).jointree).quals = if quals.is_null() {
                filter.cast()
            } else {
                pg_sys::makeBoolExpr(pg_sys::BoolExprType::AND_EXPR, list_of_two(quals, filter.cast()), -1)
                    .cast()
            };
            routed = Some(tenant_id_hash());
        }
        let hash = routed?;
        ROUTED_FOR.with(|cell| {
            let stale = cell.borrow().as_ref().is_some_and(|(tenant, _)| *tenant != boundary.tenant_id);
            if stale {
                admitting(&boundary.tenant_id);
            }
            *cell.borrow_mut() = Some((boundary.tenant_id.clone(), hash));
        });
        Some(())
    }
}

unsafe fn list_of_two(first: *mut pg_sys::Node, second: *mut pg_sys::Node) -> *mut pg_sys::List {
    // SAFETY: builds a new list in the current memory context.
    unsafe { pg_sys::lappend(pg_sys::lappend(std::ptr::null_mut(), first.cast()), second.cast()) }
}

/// The hash value of `boundary.tenant_id()`'s pg_proc entry: the plan cache invalidates plans
/// whose items carry it when this backend calls the pg_proc callbacks with it.
fn tenant_id_hash() -> u32 {
    // SAFETY: syscache hash of a key; no lookup happens.
    unsafe {
        pg_sys::GetSysCacheHashValue(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            pg_sys::Datum::from(tenant_id_function()),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        )
    }
}

/// `boundary.tenant_id()`'s oid.
fn tenant_id_function() -> pg_sys::Oid {
    // SAFETY: a cheap lookup by name; InvalidOid when missing.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(c"boundary".as_ptr(), true);
        if namespace == pg_sys::InvalidOid {
            return pg_sys::InvalidOid;
        }
        let name =
            pg_sys::lappend(std::ptr::null_mut(), pg_sys::makeString(c"boundary".as_ptr().cast_mut()).cast());
        let name = pg_sys::lappend(name, pg_sys::makeString(c"tenant_id".as_ptr().cast_mut()).cast());
        pg_sys::LookupFuncName(name, 0, std::ptr::null(), true)
    }
}

/// For the relation at `rt_index`: when it is protected and distributed by its tenant column,
/// its `boundary_select` policy's tenant comparison on that column, with the boundary's side
/// evaluated now and the column pointing at `rt_index`.
unsafe fn tenant_filter(rt_index: i32, relid: pg_sys::Oid) -> Option<*mut pg_sys::OpExpr> {
    // SAFETY: the relation is locked by the query being planned; its relcache entry is held
    // open while its policies are read and copied.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return None;
        }
        let comparison = if super::has_boundary_policies(rel) { tenant_comparison(rel) } else { None };
        let copied = comparison.map(|op| pg_sys::copyObjectImpl(op.cast()).cast::<pg_sys::OpExpr>());
        pg_sys::RelationClose(rel);
        let op = copied?;
        let args = PgList::<pg_sys::Node>::from_pg((*op).args);
        let column = args.get_ptr(0)?.cast::<pg_sys::Var>();
        if !distributed_by(relid, (*column).varattno) {
            return None;
        }
        (*column).varno = rt_index;
        (*column).varnosyn = rt_index as _;
        let value = args.get_ptr(1)?.cast::<pg_sys::Expr>();
        let evaluated = pg_sys::evaluate_expr(
            value,
            pg_sys::exprType(value.cast()),
            pg_sys::exprTypmod(value.cast()),
            pg_sys::exprCollation(value.cast()),
        );
        (*op).args = list_of_two(column.cast(), evaluated.cast());
        Some(op)
    }
}

/// In the `boundary_select` policy of `rel`, the top-level conjunct `column = <expression of
/// boundary.tenant_id()>` (protect() always makes one, for the tenant column).
unsafe fn tenant_comparison(rel: pg_sys::Relation) -> Option<*mut pg_sys::OpExpr> {
    // SAFETY: `rel` is open; its policy list and expressions live in its relcache entry.
    unsafe {
        let policy = PgList::<pg_sys::RowSecurityPolicy>::from_pg((*(*rel).rd_rsdesc).policies)
            .iter_ptr()
            .find(|p| {
                !(**p).policy_name.is_null()
                    && std::ffi::CStr::from_ptr((**p).policy_name).to_bytes()
                        == super::ddl::SELECT_POLICY.as_bytes()
            })?;
        let qual = (*policy).qual.cast::<pg_sys::Node>();
        let conjuncts: Vec<*mut pg_sys::Node> = if is_and(qual) {
            PgList::<pg_sys::Node>::from_pg((*qual.cast::<pg_sys::BoolExpr>()).args).iter_ptr().collect()
        } else {
            vec![qual]
        };
        let tenant_id = tenant_id_function();
        conjuncts.into_iter().find_map(|node| {
            if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_OpExpr {
                return None;
            }
            let op = node.cast::<pg_sys::OpExpr>();
            let args = PgList::<pg_sys::Node>::from_pg((*op).args);
            let (column, value) = (args.get_ptr(0)?, args.get_ptr(1)?);
            let is_column =
                (*column).type_ == pg_sys::NodeTag::T_Var && (*column.cast::<pg_sys::Var>()).varlevelsup == 0;
            (args.len() == 2 && is_column && calls(value, tenant_id)).then_some(op)
        })
    }
}

unsafe fn is_and(node: *mut pg_sys::Node) -> bool {
    // SAFETY: reads a node's tag, and a BoolExpr's kind when it is one.
    unsafe {
        !node.is_null()
            && (*node).type_ == pg_sys::NodeTag::T_BoolExpr
            && (*node.cast::<pg_sys::BoolExpr>()).boolop == pg_sys::BoolExprType::AND_EXPR
    }
}

/// Whether `expr` is a call of `function`, possibly under casts (`(boundary.tenant_id())::uuid`).
unsafe fn calls(expr: *mut pg_sys::Node, function: pg_sys::Oid) -> bool {
    // SAFETY: walks a cast chain of an expression tree by node tags.
    unsafe {
        let mut node = expr;
        loop {
            if node.is_null() {
                return false;
            }
            match (*node).type_ {
                pg_sys::NodeTag::T_FuncExpr => {
                    let call = node.cast::<pg_sys::FuncExpr>();
                    if (*call).funcid == function && function != pg_sys::InvalidOid {
                        return true;
                    }
                    // A cast written as a function call (text to uuid, to bigint): its argument.
                    let args = PgList::<pg_sys::Node>::from_pg((*call).args);
                    if (*call).funcformat != pg_sys::CoercionForm::COERCE_EXPLICIT_CAST || args.len() != 1 {
                        return false;
                    }
                    node = args.get_ptr(0).unwrap_or(std::ptr::null_mut());
                }
                pg_sys::NodeTag::T_CoerceViaIO => node = (*node.cast::<pg_sys::CoerceViaIO>()).arg.cast(),
                pg_sys::NodeTag::T_RelabelType => node = (*node.cast::<pg_sys::RelabelType>()).arg.cast(),
                _ => return false,
            }
        }
    }
}

/// Whether `relid` is a Citus table distributed by its column `attnum`.
fn distributed_by(relid: pg_sys::Oid, attnum: i16) -> bool {
    let known = DISTRIBUTION.with(|cache| cache.borrow().get(&relid).cloned());
    let column = known.unwrap_or_else(|| {
        let column = crate::pg::citus::distribution_column(relid).ok().flatten();
        DISTRIBUTION.with(|cache| cache.borrow_mut().insert(relid, column.clone()));
        column
    });
    let Some(column) = column else { return false };
    // SAFETY: a syscache lookup of the column's name; NULL when it does not exist.
    let name = unsafe { pg_sys::get_attname(relid, attnum, true) };
    // SAFETY: a palloc'd NUL-terminated string when not NULL.
    !name.is_null() && unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes() == column.as_bytes()
}
