//! What `boundary.enter`, `boundary.resume` and `boundary.current()` return: the boundary as
//! jsonb, built from its fields without a JSON text in between, once per verdict for `enter`
//! (and copied out on each call).

use super::claims::{Boundary, PublicValue};
use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::prelude::*;
use std::rc::Rc;

/// The boundary as `enter` returns it: jsonb, built once per verdict and copied out per call.
#[derive(Clone)]
pub struct BoundaryJsonb(Rc<[u8]>);

impl BoundaryJsonb {
    /// Builds the jsonb straight from the boundary's fields (no JSON text to write and parse
    /// back: on a token's first `enter` that was a third of the verification's cost).
    pub fn of(boundary: &Boundary) -> BoundaryJsonb {
        use pg_sys::JsonbIteratorToken::{
            WJB_BEGIN_ARRAY, WJB_BEGIN_OBJECT, WJB_ELEM, WJB_END_ARRAY, WJB_END_OBJECT, WJB_KEY, WJB_VALUE,
        };
        // The strings the parse state points into live here until the jsonb is built.
        let fields = boundary.public_fields();
        let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
        // SAFETY: pushJsonbValue copies each JsonbValue (not the bytes its string points to) into
        // the parse state, allocated in the current memory context; every string is valid for
        // `fields`' lifetime, which outlasts JsonbValueToJsonb. No string holds a NUL (claim
        // checks), and none is longer than an identifier or a claim limit (well under jsonb's).
        unsafe {
            let mut push = |token, value: Option<pg_sys::JsonbValue>| {
                let mut value = value;
                pg_sys::pushJsonbValue(
                    &mut state,
                    token,
                    value.as_mut().map_or(std::ptr::null_mut(), |v| v as *mut pg_sys::JsonbValue),
                )
            };
            push(WJB_BEGIN_OBJECT, None);
            for (key, value) in &fields {
                push(WJB_KEY, Some(string(key)));
                match value {
                    PublicValue::Text(text) => push(WJB_VALUE, Some(string(text))),
                    PublicValue::Bool(flag) => push(WJB_VALUE, Some(boolean(*flag))),
                    PublicValue::Null => push(WJB_VALUE, Some(null())),
                    PublicValue::Texts(items) => {
                        push(WJB_BEGIN_ARRAY, None);
                        for item in items.iter() {
                            push(WJB_ELEM, Some(string(item)));
                        }
                        push(WJB_END_ARRAY, None)
                    }
                };
            }
            let object = push(WJB_END_OBJECT, None);
            let varlena = pg_sys::JsonbValueToJsonb(object).cast::<pg_sys::varlena>();
            let bytes = std::slice::from_raw_parts(varlena as *const u8, pgrx::varlena::varsize_any(varlena));
            BoundaryJsonb(Rc::from(bytes))
        }
    }
}

fn string(text: &str) -> pg_sys::JsonbValue {
    let mut value = pg_sys::JsonbValue { type_: pg_sys::jbvType::jbvString, ..null() };
    value.val.string = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 {
        len: i32::try_from(text.len()).expect("boundary strings are short"),
        val: text.as_ptr() as *mut std::ffi::c_char,
    };
    value
}

fn boolean(flag: bool) -> pg_sys::JsonbValue {
    let mut value = pg_sys::JsonbValue { type_: pg_sys::jbvType::jbvBool, ..null() };
    value.val.boolean = flag;
    value
}

fn null() -> pg_sys::JsonbValue {
    // SAFETY: JsonbValue is plain C data; all-zero is a valid jbvNull (type 0).
    unsafe { std::mem::zeroed() }
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
