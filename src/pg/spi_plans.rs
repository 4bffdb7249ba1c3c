//! Plans kept per backend for statements that run on every request (memory and cache reads,
//! the audit insert, vector_search's count and exact ranking) and for the key and registry reads
//! behind `enter`'s remembered verdicts. Planning is most of a short statement's cost;
//! PostgreSQL's plan cache still revalidates kept plans after DDL.

use crate::error::{BoundaryError, Result};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::spi::{OwnedPreparedStatement, Spi, SpiClient, SpiHeapTupleData, SpiTupleTable};
use pgrx::PgOid;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    static PLANS: RefCell<HashMap<&'static str, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
    /// Plans for [`read_latest`], which pgrx cannot run with a snapshot of our choosing.
    static LATEST_PLANS: RefCell<HashMap<&'static str, usize>> = RefCell::new(HashMap::new());
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

fn latest_plan(sql: &'static str, types: &mut [pg_sys::Oid]) -> Result<pg_sys::SPIPlanPtr> {
    if let Some(plan) = LATEST_PLANS.with(|plans| plans.borrow().get(sql).copied()) {
        return Ok(plan as pg_sys::SPIPlanPtr);
    }
    let text = std::ffi::CString::new(sql).map_err(|e| BoundaryError::Internal(e.to_string()))?;
    // SAFETY: inside an SPI connection; SPI_prepare raises on error, SPI_keepplan moves the plan
    // out of the connection's memory so it lives (and is revalidated after DDL) for the backend.
    let plan = unsafe {
        let plan = pg_sys::SPI_prepare(text.as_ptr(), types.len() as i32, types.as_mut_ptr());
        if plan.is_null() || pg_sys::SPI_keepplan(plan) != 0 {
            return Err(BoundaryError::Internal(format!("cannot keep a plan for: {sql}")));
        }
        plan
    };
    LATEST_PLANS.with(|plans| plans.borrow_mut().insert(sql, plan as usize));
    Ok(plan)
}

/// Runs the fixed read `sql` through a plan kept for this backend against the latest committed
/// state (not the statement's snapshot, nor a REPEATABLE READ transaction's), and decodes its
/// first row. For reads whose result is remembered across transactions (see
/// `boundary::verified`): what the latest snapshot shows is never older than the last
/// invalidation this backend has taken.
pub fn read_latest<T>(
    sql: &'static str,
    args: &[DatumWithOid],
    decode: impl FnOnce(&SpiHeapTupleData) -> Result<T>,
) -> Result<Option<T>> {
    Spi::connect(|_client| {
        let mut types: Vec<pg_sys::Oid> = args.iter().map(|a| a.oid()).collect();
        let plan = latest_plan(sql, &mut types)?;
        let mut datums: Vec<pg_sys::Datum> = args
            .iter()
            .map(|a| a.datum().map_or(pg_sys::Datum::from(0usize), |d| d.sans_lifetime()))
            .collect();
        let nulls: Vec<std::ffi::c_char> =
            args.iter().map(|a| if a.datum().is_some() { b' ' } else { b'n' } as std::ffi::c_char).collect();
        // SAFETY: the plan was prepared for these argument types; SPI copies the snapshot it is
        // given before use; the tuple table belongs to this SPI connection.
        unsafe {
            let status = pg_sys::SPI_execute_snapshot(
                plan,
                datums.as_mut_ptr(),
                nulls.as_ptr(),
                pg_sys::GetLatestSnapshot(),
                std::ptr::null_mut(),
                true,
                false,
                1,
            );
            if status != pg_sys::SPI_OK_SELECT as i32 {
                return Err(BoundaryError::Internal(format!("SPI status {status} for: {sql}")));
            }
            let table = pg_sys::SPI_tuptable;
            if table.is_null() || pg_sys::SPI_processed == 0 {
                return Ok(None);
            }
            match SpiHeapTupleData::new((*table).tupdesc, *(*table).vals)? {
                Some(row) => decode(&row).map(Some),
                None => Ok(None),
            }
        }
    })
}
