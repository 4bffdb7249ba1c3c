//! Tables born without a tenant column: agent frameworks (LangGraph, langchain-postgres,
//! LlamaIndex, mem0) create their own tables and cannot be told to add one. With
//! `agent_boundary.auto_protect_add_columns` set, a new table in `auto_protect_schemas` gets the
//! scope columns before PostgreSQL creates it (the auto-protect event trigger then protects it),
//! and every unique key on such a table leads with them, so two tenants can hold the same key.
//!
//! Two hooks, both only while the setting is on or the table is protected:
//! - a utility hook rewrites `CREATE TABLE` (adds the columns; scopes PRIMARY KEY, UNIQUE and
//!   foreign keys to scoped tables), `CREATE UNIQUE INDEX` and `ALTER TABLE ... ADD CONSTRAINT`;
//! - an analysis hook completes `INSERT ... ON CONFLICT (key)` on a protected table whose unique
//!   index is `(scope..., key)`: the scope columns join the conflict target, so the upsert
//!   conflicts only with the caller's own row (the rows it inserts carry the boundary's scope,
//!   which the policies enforce) instead of failing with 42P10.
//!
//! Hooks work only in a backend that has loaded the library before the statement starts: with
//! `shared_preload_libraries` (or `session_preload_libraries`) always. A table created without
//! them is refused by the event trigger rather than left unscoped (see `auto.rs`).

use crate::error::{BoundaryError, Result};
use crate::gucs;
use crate::pg::catalog::{quote_ident, Table};
use pgrx::list::old_list::PgList;
use pgrx::pg_sys;
use pgrx::PgBox;
use std::collections::BTreeSet;
use std::ffi::{CStr, CString};

/// A scope field the setting may name, in the order the columns are added and keys lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeField {
    Tenant,
    Workspace,
    User,
}

/// The scope fields `agent_boundary.auto_protect_add_columns` lists: empty (off), or the tenant
/// and optionally the workspace and the user, in any order and case, comma-separated.
pub fn parse_fields(setting: &str) -> std::result::Result<Vec<ScopeField>, String> {
    let mut fields = Vec::new();
    for word in setting.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let field = match word.to_ascii_lowercase().as_str() {
            "tenant" => ScopeField::Tenant,
            "workspace" => ScopeField::Workspace,
            "user" => ScopeField::User,
            _ => return Err(format!("\"{word}\" is not a scope field (tenant, workspace, user)")),
        };
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    if !fields.is_empty() && !fields.contains(&ScopeField::Tenant) {
        return Err("the scope columns must include the tenant".into());
    }
    fields.sort_by_key(|f| *f as u8);
    Ok(fields)
}

/// The names of the columns the setting adds (tenant first), or None when it is off.
pub fn added_columns() -> Result<Option<Vec<String>>> {
    let fields = parse_fields(&gucs::auto_protect_add_columns()).map_err(|why| {
        BoundaryError::InvalidArgument(format!("agent_boundary.auto_protect_add_columns: {why}"))
    })?;
    if fields.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        fields
            .iter()
            .map(|f| match f {
                ScopeField::Tenant => gucs::tenant_column(),
                ScopeField::Workspace => super::ddl::AUTO_WORKSPACE_COLUMN.to_string(),
                ScopeField::User => super::ddl::AUTO_USER_COLUMN.to_string(),
            })
            .collect(),
    ))
}

/// Whether `schema.table` is one of `agent_boundary.auto_protect_shared_tables` (names with or
/// without schema): tables a framework keeps for itself, such as its migration log, that every
/// tenant shares and no tenant owns.
pub fn is_shared_table(schema: &str, table: &str) -> bool {
    listed(&gucs::auto_protect_shared_tables(), schema, table)
}

fn listed(list: &str, schema: &str, table: &str) -> bool {
    list.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| match entry.split_once('.') {
        Some((s, t)) => s == schema && t == table,
        None => entry == table,
    })
}

/// Called by the event trigger for a table in an auto-protected schema without the tenant
/// column: while the setting is on, a table created in this transaction is refused rather than
/// left unscoped. The utility hook did not see its CREATE (the statement itself loaded the
/// library) or the table takes its columns from LIKE.
pub fn refuse_unscoped_new_table(table: &Table) -> Result<()> {
    if added_columns()?.is_none() || is_shared_table(&table.schema, &table.name) {
        return Ok(());
    }
    if !crate::pg::catalog::created_in_this_transaction(table.oid) {
        return Ok(());
    }
    Err(BoundaryError::NotPreparedWithHint {
        what: format!(
            "table {} was created without the scope columns agent_boundary.auto_protect_add_columns adds",
            table.display
        ),
        hint: "Load the library before DDL runs (shared_preload_libraries, or session_preload_libraries \
               = 'agent_boundary'), list the columns instead of LIKE, or name the table in \
               agent_boundary.auto_protect_shared_tables if every tenant shares it."
            .into(),
    })
}

/// `keys` with the scope columns it lacks in front: the key made per tenant.
pub fn scoped_keys(scope: &[String], keys: &[String]) -> Vec<String> {
    scope.iter().filter(|s| !keys.contains(s)).chain(keys).cloned().collect()
}

/// What an `ON CONFLICT (...)` target needs added, if anything: when no unique index has exactly
/// `target`'s columns but one has them plus scope columns only, those scope columns.
pub fn arbiter_completion(
    target: &BTreeSet<i16>,
    unique_indexes: &[BTreeSet<i16>],
    scope: &BTreeSet<i16>,
) -> Option<BTreeSet<i16>> {
    if unique_indexes.iter().any(|keys| keys == target) {
        return None;
    }
    unique_indexes.iter().find_map(|keys| {
        let extra: BTreeSet<i16> = keys.difference(target).copied().collect();
        (keys.is_superset(target) && !extra.is_empty() && extra.is_subset(scope)).then_some(extra)
    })
}

// ---- PostgreSQL side -----------------------------------------------------------------------

static mut PREVIOUS_UTILITY_HOOK: pg_sys::ProcessUtility_hook_type = None;
static mut PREVIOUS_ANALYZE_HOOK: pg_sys::post_parse_analyze_hook_type = None;

pub fn init() {
    // SAFETY: _PG_init runs once per backend before any statement; hooks are chained as
    // PostgreSQL expects (each calls the one it replaced).
    unsafe {
        PREVIOUS_UTILITY_HOOK = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(utility_hook);
        PREVIOUS_ANALYZE_HOOK = pg_sys::post_parse_analyze_hook;
        pg_sys::post_parse_analyze_hook = Some(analyze_hook);
    }
}

// The hooks themselves are not #[pg_guard]: an error PostgreSQL raises while running the
// statement must reach the client as raised (pgrx re-raises a caught error without its CONTEXT,
// constraint and column fields). Their frames hold nothing to drop, so PostgreSQL's longjmp may
// cross them; the Rust work happens in the guarded functions they call.
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn utility_hook(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: PostgreSQL passes a valid statement; scoped_statement returns it or its rewritten
    // copy, and the next hook (or PostgreSQL's own) runs that.
    unsafe {
        let scoped = scoped_statement(pstmt, read_only_tree);
        let read_only_tree = read_only_tree && scoped == pstmt;
        match PREVIOUS_UTILITY_HOOK {
            Some(previous) => {
                previous(scoped, query_string, read_only_tree, context, params, query_env, dest, qc)
            }
            None => standard_process_utility(
                scoped,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
    }
}

unsafe extern "C-unwind" {
    /// PostgreSQL's own, declared here without pgrx's error trap (see utility_hook).
    #[link_name = "standard_ProcessUtility"]
    fn standard_process_utility(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const std::ffi::c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

/// The statement to run: `pstmt` itself, or (for DDL that needs scoping) a rewritten copy when
/// the tree is read-only.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn scoped_statement(
    pstmt: *mut pg_sys::PlannedStmt,
    read_only_tree: bool,
) -> *mut pg_sys::PlannedStmt {
    // SAFETY: a valid PlannedStmt; a read-only tree is copied (in the statement's memory
    // context) before it is changed.
    unsafe {
        if !wants_rewrite((*pstmt).utilityStmt) {
            return pstmt;
        }
        let pstmt = if read_only_tree { pg_sys::copyObjectImpl(pstmt.cast()).cast() } else { pstmt };
        if let Err(error) = rewrite((*pstmt).utilityStmt) {
            error.raise();
        }
        pstmt
    }
}

fn tag(node: *mut pg_sys::Node) -> pg_sys::NodeTag {
    // SAFETY: callers pass a node PostgreSQL built (or null).
    if node.is_null() {
        pg_sys::NodeTag::T_Invalid
    } else {
        unsafe { (*node).type_ }
    }
}

/// Cheap first look, for every utility statement: only DDL that may need scoping, and only
/// while the setting is on and our own DDL is not running.
fn wants_rewrite(stmt: *mut pg_sys::Node) -> bool {
    matches!(tag(stmt), pg_sys::NodeTag::T_CreateStmt | pg_sys::NodeTag::T_IndexStmt | pg_sys::NodeTag::T_AlterTableStmt)
        && !gucs::auto_protect_add_columns().trim().is_empty()
        // A dump brings its tables with the columns and keys they had, and Citus its shards.
        && !super::auto_protection_stands_aside()
}

fn rewrite(stmt: *mut pg_sys::Node) -> Result<()> {
    let Some(scope) = added_columns()? else { return Ok(()) };
    // SAFETY: the tag says which statement struct `stmt` is.
    unsafe {
        match tag(stmt) {
            pg_sys::NodeTag::T_CreateStmt => scope_create(stmt.cast(), &scope),
            pg_sys::NodeTag::T_IndexStmt => scope_index(stmt.cast(), &scope),
            pg_sys::NodeTag::T_AlterTableStmt => scope_alter(stmt.cast(), &scope),
            _ => Ok(()),
        }
    }
}

fn cstr(ptr: *const std::ffi::c_char) -> String {
    if ptr.is_null() {
        String::new()
    } else {
        // SAFETY: PostgreSQL strings are NUL-terminated.
        unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
    }
}

fn pstrdup(text: &str) -> *mut std::ffi::c_char {
    let text = CString::new(text).expect("identifiers have no NUL");
    // SAFETY: copies into the current memory context.
    unsafe { pg_sys::pstrdup(text.as_ptr()) }
}

/// The schema a `CREATE` of `relation` puts it in (search_path applied), or None for a
/// temporary relation.
unsafe fn creation_schema(relation: *mut pg_sys::RangeVar) -> Option<String> {
    // SAFETY: a RangeVar from the parser; the lookup raises the usual error for a bad schema.
    unsafe {
        if (*relation).relpersistence == pg_sys::RELPERSISTENCE_TEMP as std::ffi::c_char {
            return None;
        }
        let namespace = pg_sys::RangeVarGetCreationNamespace(relation);
        if pg_sys::isAnyTempNamespace(namespace) {
            return None;
        }
        Some(cstr(pg_sys::get_namespace_name(namespace)))
    }
}

fn in_auto_schema(schema: &str) -> bool {
    gucs::auto_protect_schemas().split(',').map(str::trim).any(|s| s == schema)
}

/// The string list (column names) as Rust strings.
unsafe fn names(list: *mut pg_sys::List) -> Vec<String> {
    // SAFETY: a List of String nodes from the parser.
    unsafe { PgList::<pg_sys::String>::from_pg(list).iter_ptr().map(|s| cstr((*s).sval)).collect() }
}

fn name_list(names: &[String]) -> *mut pg_sys::List {
    let mut list = PgList::<pg_sys::String>::new();
    for name in names {
        // SAFETY: makeString keeps the palloc'd copy.
        list.push(unsafe { pg_sys::makeString(pstrdup(name)) });
    }
    list.into_pg()
}

/// The column definitions for `scope`, as the parser builds them: `text NOT NULL` (protect()
/// adds the boundary defaults).
fn scope_column_defs(scope: &[String]) -> Result<Vec<*mut pg_sys::Node>> {
    let columns: Vec<String> =
        scope.iter().map(|c| format!("{} pg_catalog.text NOT NULL", quote_ident(c))).collect();
    let sql = CString::new(format!("CREATE TABLE agent_boundary_scope ({})", columns.join(", ")))
        .map_err(|_| BoundaryError::InvalidArgument("a scope column name contains NUL".into()))?;
    // SAFETY: raw_parser returns a List of RawStmt; this one holds a single CreateStmt.
    unsafe {
        let parsed = PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(
            sql.as_ptr(),
            pg_sys::RawParseMode::RAW_PARSE_DEFAULT,
        ));
        let create = (*parsed.get_ptr(0).expect("one statement")).stmt.cast::<pg_sys::CreateStmt>();
        Ok(PgList::<pg_sys::Node>::from_pg((*create).tableElts).iter_ptr().collect())
    }
}

/// The existing relation `relation` names, if any.
unsafe fn existing_relation(relation: *mut pg_sys::RangeVar) -> Option<pg_sys::Oid> {
    // SAFETY: a RangeVar from the parser; a missing relation is None, not an error.
    let oid = unsafe {
        pg_sys::RangeVarGetRelidExtended(
            relation,
            pg_sys::NoLock as _,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

fn has_scope_columns(oid: pg_sys::Oid, scope: &[String]) -> bool {
    scope.iter().all(|column| {
        let column = CString::new(column.as_str()).expect("identifiers have no NUL");
        // SAFETY: a syscache lookup of an existing relation's column.
        unsafe { pg_sys::get_attnum(oid, column.as_ptr()) != pg_sys::InvalidAttrNumber as i16 }
    })
}

/// Whether the relation `relation` names (if it exists) has every scope column, or is the table
/// being created (`creating`).
unsafe fn is_scoped_relation(
    relation: *mut pg_sys::RangeVar,
    scope: &[String],
    creating: Option<&str>,
) -> bool {
    // SAFETY: a RangeVar from the parser.
    match unsafe { existing_relation(relation) } {
        Some(oid) => has_scope_columns(oid, scope),
        None => creating.is_some_and(|name| cstr(unsafe { (*relation).relname }) == name),
    }
}

/// Makes a PRIMARY KEY, UNIQUE or FOREIGN KEY constraint per tenant.
unsafe fn scope_constraint(constraint: *mut pg_sys::Constraint, scope: &[String], creating: Option<&str>) {
    // SAFETY: a Constraint node from the parser.
    unsafe {
        match (*constraint).contype {
            // USING INDEX names an existing index: its columns are its own.
            pg_sys::ConstrType::CONSTR_PRIMARY | pg_sys::ConstrType::CONSTR_UNIQUE
                if (*constraint).indexname.is_null() =>
            {
                (*constraint).keys = name_list(&scoped_keys(scope, &names((*constraint).keys)));
            }
            pg_sys::ConstrType::CONSTR_FOREIGN
                if is_scoped_relation((*constraint).pktable, scope, creating) =>
            {
                (*constraint).fk_attrs = name_list(&scoped_keys(scope, &names((*constraint).fk_attrs)));
                if !(*constraint).pk_attrs.is_null() {
                    (*constraint).pk_attrs = name_list(&scoped_keys(scope, &names((*constraint).pk_attrs)));
                }
            }
            _ => {}
        }
    }
}

unsafe fn scope_create(stmt: *mut pg_sys::CreateStmt, scope: &[String]) -> Result<()> {
    // SAFETY: a CreateStmt from the parser (or our copy of it); lists rebuilt in place.
    unsafe {
        // Partitions, children and typed tables take their columns from elsewhere.
        if !(*stmt).partbound.is_null() || !(*stmt).inhRelations.is_null() || !(*stmt).ofTypename.is_null() {
            return Ok(());
        }
        let Some(schema) = creation_schema((*stmt).relation) else { return Ok(()) };
        let table = cstr((*(*stmt).relation).relname);
        if !in_auto_schema(&schema) || is_shared_table(&schema, &table) {
            return Ok(());
        }
        let elements = PgList::<pg_sys::Node>::from_pg((*stmt).tableElts);
        let has_column = |name: &str| {
            elements.iter_ptr().any(|e| {
                tag(e) == pg_sys::NodeTag::T_ColumnDef
                    && cstr((*e.cast::<pg_sys::ColumnDef>()).colname) == name
            })
        };
        // A table that names its tenant column (or copies columns with LIKE) is the user's own
        // design: protected as it is, or refused by the event trigger if it lacks the column.
        if has_column(&scope[0]) || elements.iter_ptr().any(|e| tag(e) == pg_sys::NodeTag::T_TableLikeClause)
        {
            return Ok(());
        }
        let missing: Vec<String> = scope.iter().filter(|c| !has_column(c)).cloned().collect();
        let mut rebuilt = PgList::<pg_sys::Node>::new();
        let mut constraints = Vec::new();
        for element in elements.iter_ptr() {
            match tag(element) {
                pg_sys::NodeTag::T_ColumnDef => {
                    // Column-level keys become table-level ones, which can name several columns.
                    let column = element.cast::<pg_sys::ColumnDef>();
                    let mut kept = PgList::<pg_sys::Node>::new();
                    for c in PgList::<pg_sys::Node>::from_pg((*column).constraints).iter_ptr() {
                        let constraint = c.cast::<pg_sys::Constraint>();
                        let columns = || name_list(&[cstr((*column).colname)]);
                        match (*constraint).contype {
                            pg_sys::ConstrType::CONSTR_PRIMARY | pg_sys::ConstrType::CONSTR_UNIQUE => {
                                (*constraint).keys = columns();
                                constraints.push(constraint);
                            }
                            pg_sys::ConstrType::CONSTR_FOREIGN => {
                                (*constraint).fk_attrs = columns();
                                constraints.push(constraint);
                            }
                            _ => kept.push(c),
                        }
                    }
                    (*column).constraints = kept.into_pg();
                    rebuilt.push(element);
                }
                pg_sys::NodeTag::T_Constraint => constraints.push(element.cast()),
                _ => rebuilt.push(element),
            }
        }
        for column in scope_column_defs(&missing)? {
            rebuilt.push(column);
        }
        for constraint in constraints {
            scope_constraint(constraint, scope, Some(&table));
            rebuilt.push(constraint.cast());
        }
        (*stmt).tableElts = rebuilt.into_pg();
    }
    Ok(())
}

/// Whether an existing table is one whose keys this setting scopes: in an auto-protected
/// schema, not shared, with every scope column.
unsafe fn scopes_existing(relation: *mut pg_sys::RangeVar, scope: &[String]) -> bool {
    // SAFETY: a RangeVar from the parser; catalog lookups of the relation it names.
    unsafe {
        let Some(oid) = existing_relation(relation) else { return false };
        let schema = cstr(pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid)));
        in_auto_schema(&schema)
            && !is_shared_table(&schema, &cstr(pg_sys::get_rel_name(oid)))
            && has_scope_columns(oid, scope)
    }
}

unsafe fn scope_index(stmt: *mut pg_sys::IndexStmt, scope: &[String]) -> Result<()> {
    // SAFETY: an IndexStmt from the parser or from a constraint being created.
    unsafe {
        if !(*stmt).unique || !scopes_existing((*stmt).relation, scope) {
            return Ok(());
        }
        let mut params = PgList::<pg_sys::IndexElem>::from_pg((*stmt).indexParams);
        let present: Vec<String> = params.iter_ptr().map(|e| cstr((*e).name)).collect();
        let mut leading = PgList::<pg_sys::IndexElem>::new();
        for column in scope.iter().filter(|c| !present.contains(c)) {
            let mut elem = PgBox::<pg_sys::IndexElem>::alloc_node(pg_sys::NodeTag::T_IndexElem);
            elem.name = pstrdup(column);
            leading.push(elem.into_pg());
        }
        for elem in params.iter_ptr() {
            leading.push(elem);
        }
        params = leading;
        (*stmt).indexParams = params.into_pg();
    }
    Ok(())
}

unsafe fn scope_alter(stmt: *mut pg_sys::AlterTableStmt, scope: &[String]) -> Result<()> {
    // SAFETY: an AlterTableStmt from the parser.
    unsafe {
        if (*stmt).objtype != pg_sys::ObjectType::OBJECT_TABLE || !scopes_existing((*stmt).relation, scope) {
            return Ok(());
        }
        for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() {
            if (*cmd).subtype == pg_sys::AlterTableType::AT_AddConstraint
                && tag((*cmd).def) == pg_sys::NodeTag::T_Constraint
            {
                scope_constraint((*cmd).def.cast(), scope, None);
            }
        }
    }
    Ok(())
}

// Not #[pg_guard], as utility_hook.
unsafe extern "C-unwind" fn analyze_hook(
    pstate: *mut pg_sys::ParseState,
    query: *mut pg_sys::Query,
    jstate: *mut pg_sys::JumbleState,
) {
    // SAFETY: PostgreSQL passes the analysed query; only its ON CONFLICT target list grows.
    unsafe {
        if let Some(previous) = PREVIOUS_ANALYZE_HOOK {
            previous(pstate, query, jstate);
        }
        complete_conflict_target(query);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn complete_conflict_target(query: *mut pg_sys::Query) {
    // SAFETY: an analysed INSERT: its result relation is in the range table and locked.
    unsafe {
        let on_conflict = (*query).onConflict;
        if (*query).commandType != pg_sys::CmdType::CMD_INSERT
            || on_conflict.is_null()
            || (*on_conflict).arbiterElems.is_null()
            || (*on_conflict).constraint != pg_sys::InvalidOid
        {
            return;
        }
        let mut target = BTreeSet::new();
        for elem in PgList::<pg_sys::InferenceElem>::from_pg((*on_conflict).arbiterElems).iter_ptr() {
            let expr = (*elem).expr;
            if tag(expr) != pg_sys::NodeTag::T_Var {
                return; // an expression index target: not ours to complete
            }
            target.insert((*expr.cast::<pg_sys::Var>()).varattno);
        }
        let result_relation = (*query).resultRelation;
        let rte = pg_sys::list_nth((*query).rtable, result_relation - 1).cast::<pg_sys::RangeTblEntry>();
        let relid = (*rte).relid;
        let Some((scope, unique_indexes)) = protected_keys(relid) else { return };
        let Some(extra) = arbiter_completion(&target, &unique_indexes, &scope) else { return };
        let mut elems = PgList::<pg_sys::InferenceElem>::from_pg((*on_conflict).arbiterElems);
        for attno in extra {
            let (mut typid, mut typmod, mut collation) = (pg_sys::InvalidOid, -1, pg_sys::InvalidOid);
            pg_sys::get_atttypetypmodcoll(relid, attno, &mut typid, &mut typmod, &mut collation);
            let var = pg_sys::makeVar(result_relation as _, attno, typid, typmod, collation, 0);
            let mut elem = PgBox::<pg_sys::InferenceElem>::alloc_node(pg_sys::NodeTag::T_InferenceElem);
            elem.expr = var.cast();
            elems.push(elem.into_pg());
        }
        (*on_conflict).arbiterElems = elems.into_pg();
    }
}

/// For a table protected by protect(): the attribute numbers of its scope columns and the key
/// columns of each plain (no expressions, no predicate, immediate) unique index.
unsafe fn protected_keys(relid: pg_sys::Oid) -> Option<(BTreeSet<i16>, Vec<BTreeSet<i16>>)> {
    // SAFETY: the parser holds a lock on the result relation; indexes are opened and closed
    // here (AccessShareLock kept to the end of the transaction, as inference itself does).
    unsafe {
        let rel = pg_sys::relation_open(relid, pg_sys::NoLock as _);
        if !super::has_boundary_policies(rel) {
            pg_sys::relation_close(rel, pg_sys::NoLock as _);
            return None;
        }
        let scope: BTreeSet<i16> = [
            gucs::tenant_column(),
            super::ddl::AUTO_WORKSPACE_COLUMN.into(),
            super::ddl::AUTO_USER_COLUMN.into(),
        ]
        .iter()
        .filter_map(|name| {
            let name = CString::new(name.as_str()).ok()?;
            let attno = pg_sys::get_attnum(relid, name.as_ptr());
            (attno != pg_sys::InvalidAttrNumber as i16).then_some(attno)
        })
        .collect();
        let mut unique_indexes = Vec::new();
        for index_oid in PgList::<std::ffi::c_void>::from_pg(pg_sys::RelationGetIndexList(rel)).iter_oid() {
            let index = pg_sys::index_open(index_oid, pg_sys::AccessShareLock as _);
            let form = (*index).rd_index;
            let plain = (*form).indisunique
                && (*form).indimmediate
                && pg_sys::heap_attisnull(
                    (*index).rd_indextuple,
                    pg_sys::Anum_pg_index_indpred as _,
                    std::ptr::null_mut(),
                )
                && pg_sys::heap_attisnull(
                    (*index).rd_indextuple,
                    pg_sys::Anum_pg_index_indexprs as _,
                    std::ptr::null_mut(),
                );
            if plain {
                let keys = (*form).indkey.values.as_slice((*form).indnkeyatts as usize);
                unique_indexes.push(keys.iter().copied().collect());
            }
            pg_sys::index_close(index, pg_sys::NoLock as _);
        }
        pg_sys::relation_close(rel, pg_sys::NoLock as _);
        Some((scope, unique_indexes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_names_the_tenant_and_optionally_more() {
        assert_eq!(parse_fields(""), Ok(vec![]));
        assert_eq!(parse_fields(" , "), Ok(vec![]));
        assert_eq!(parse_fields("tenant"), Ok(vec![ScopeField::Tenant]));
        assert_eq!(
            parse_fields("User, tenant,workspace,tenant"),
            Ok(vec![ScopeField::Tenant, ScopeField::Workspace, ScopeField::User])
        );
        assert!(parse_fields("workspace").unwrap_err().contains("must include the tenant"));
        assert!(parse_fields("tenant, org").unwrap_err().contains("\"org\" is not a scope field"));
    }

    #[test]
    fn shared_tables_match_by_name_or_qualified_name() {
        let list = "checkpoint_migrations, app.store_migrations";
        assert!(listed(list, "public", "checkpoint_migrations"));
        assert!(listed(list, "app", "store_migrations"));
        assert!(!listed(list, "public", "store_migrations"));
        assert!(!listed(list, "public", "checkpoints"));
        assert!(!listed("", "public", "checkpoints"));
    }

    #[test]
    fn keys_gain_the_scope_columns_they_lack_in_front() {
        let scope = ["tenant_id".to_string(), "user_id".to_string()];
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            scoped_keys(&scope, &keys(&["prefix", "key"])),
            keys(&["tenant_id", "user_id", "prefix", "key"])
        );
        assert_eq!(scoped_keys(&scope, &keys(&["key", "tenant_id"])), keys(&["user_id", "key", "tenant_id"]));
        assert_eq!(scoped_keys(&scope, &keys(&[])), keys(&["tenant_id", "user_id"]));
    }

    #[test]
    fn a_conflict_target_is_completed_only_by_scope_columns_and_only_when_needed() {
        let set = |v: &[i16]| v.iter().copied().collect::<BTreeSet<i16>>();
        let scope = set(&[1, 2]);
        // (prefix, key) = (3, 4); the index is (tenant, prefix, key).
        assert_eq!(arbiter_completion(&set(&[3, 4]), &[set(&[1, 3, 4])], &scope), Some(set(&[1])));
        // An index on exactly the target: inference works as it is.
        assert_eq!(arbiter_completion(&set(&[3, 4]), &[set(&[1, 3, 4]), set(&[3, 4])], &scope), None);
        // The extra column is not a scope column: not ours to add.
        assert_eq!(arbiter_completion(&set(&[3]), &[set(&[3, 5])], &scope), None);
        // The index lacks a target column.
        assert_eq!(arbiter_completion(&set(&[3, 4]), &[set(&[1, 3])], &scope), None);
        assert_eq!(arbiter_completion(&set(&[3]), &[], &scope), None);
    }
}
