//! Plans kept per backend for statements that run on every request (enter's key and registry
//! lookups, memory and cache reads, vector_search's count and exact ranking). Planning is most
//! of a short statement's cost; PostgreSQL's plan cache still revalidates kept plans after DDL.

use crate::error::Result;
use pgrx::datum::DatumWithOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};
use pgrx::PgOid;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    static PLANS: RefCell<HashMap<&'static str, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
}

fn prepare(client: &SpiClient, sql: &str, args: &[DatumWithOid]) -> Result<OwnedPreparedStatement> {
    let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
    Ok(client.prepare(sql, &types)?.keep())
}

/// Runs `sql` through the plan kept in `slot`, preparing it (for the argument types given) on
/// first use.
pub fn select_in<'conn>(
    client: &SpiClient<'conn>,
    slot: &RefCell<Option<Rc<OwnedPreparedStatement>>>,
    sql: &str,
    args: &[DatumWithOid],
) -> Result<SpiTupleTable<'conn>> {
    let existing = slot.borrow().clone();
    let plan = match existing {
        Some(plan) => plan,
        None => {
            let plan = Rc::new(prepare(client, sql, args)?);
            *slot.borrow_mut() = Some(plan.clone());
            plan
        }
    };
    Ok(client.select(&*plan, None, args)?)
}

fn kept_plan(
    client: &SpiClient,
    sql: &'static str,
    args: &[DatumWithOid],
) -> Result<Rc<OwnedPreparedStatement>> {
    if let Some(plan) = PLANS.with(|plans| plans.borrow().get(sql).cloned()) {
        return Ok(plan);
    }
    let plan = Rc::new(prepare(client, sql, args)?);
    PLANS.with(|plans| plans.borrow_mut().insert(sql, plan.clone()));
    Ok(plan)
}

/// Runs the fixed query `sql` through a plan kept for this backend.
pub fn select<'conn>(
    client: &SpiClient<'conn>,
    sql: &'static str,
    args: &[DatumWithOid],
) -> Result<SpiTupleTable<'conn>> {
    let plan = kept_plan(client, sql, args)?;
    Ok(client.select(&*plan, None, args)?)
}

/// Runs the fixed writing statement `sql` through a plan kept for this backend.
pub fn update<'conn>(
    client: &mut SpiClient<'conn>,
    sql: &'static str,
    args: &[DatumWithOid],
) -> Result<SpiTupleTable<'conn>> {
    let plan = kept_plan(client, sql, args)?;
    Ok(client.update(&*plan, None, args)?)
}
