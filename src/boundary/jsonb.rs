//! What `boundary.enter` and `boundary.resume` return: the boundary as jsonb. Built once per
//! verdict (serialising and parsing jsonb costs more than the rest of a remembered `enter`) and
//! copied out on each call.

use super::claims::Boundary;
use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::prelude::*;
use pgrx::JsonB;
use std::rc::Rc;

/// The boundary as `enter` returns it: jsonb, built once per verdict and copied out per call.
#[derive(Clone)]
pub struct BoundaryJsonb(Rc<[u8]>);

impl BoundaryJsonb {
    pub fn of(boundary: &Boundary) -> BoundaryJsonb {
        let datum = JsonB(boundary.to_public_json()).into_datum().expect("jsonb_in returns a value");
        // SAFETY: jsonb_in returns a freshly built, untoasted varlena in the current context.
        let bytes = unsafe {
            let varlena = datum.cast_mut_ptr::<pg_sys::varlena>();
            std::slice::from_raw_parts(varlena as *const u8, pgrx::varlena::varsize_any(varlena))
        };
        BoundaryJsonb(Rc::from(bytes))
    }
}

// SAFETY: returns a palloc'd copy of a complete jsonb varlena in the caller's memory context.
unsafe impl BoxRet for BoundaryJsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        unsafe {
            let copy = pg_sys::palloc(self.0.len()) as *mut u8;
            std::ptr::copy_nonoverlapping(self.0.as_ptr(), copy, self.0.len());
            fcinfo.return_raw_datum(pg_sys::Datum::from(copy))
        }
    }
}

pgrx::impl_sql_translatable!(BoundaryJsonb, "jsonb");
