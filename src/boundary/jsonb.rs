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
    /// The jsonb's length in bytes.
    pub fn byte_len(&self) -> usize {
        self.0.len()
    }

    /// Builds the jsonb straight from the boundary's fields: one object value, its keys already
    /// in jsonb's order (shorter first, then bytewise) and unique, converted by PostgreSQL in one
    /// call (no JSON text to write and parse back, no value-by-value push and key sort).
    pub fn of(boundary: &Boundary) -> BoundaryJsonb {
        let mut fields = boundary.public_fields();
        fields.sort_unstable_by_key(|(key, _)| (key.len(), key.as_bytes()));
        // Every array's elements, kept alive here until the jsonb is built.
        let arrays: Vec<Vec<pg_sys::JsonbValue>> = fields
            .iter()
            .map(|(_, value)| match value {
                PublicValue::Texts(items) => items.iter().map(|item| string(item)).collect(),
                _ => Vec::new(),
            })
            .collect();
        let mut pairs: Vec<pg_sys::JsonbPair> = fields
            .iter()
            .zip(&arrays)
            .enumerate()
            .map(|(order, ((key, value), elements))| pg_sys::JsonbPair {
                key: string(key),
                value: match value {
                    PublicValue::Text(text) => string(text),
                    PublicValue::Bool(flag) => boolean(*flag),
                    PublicValue::Null => null(),
                    PublicValue::Texts(_) => array(elements),
                },
                order: order as u32,
            })
            .collect();
        let mut object = pg_sys::JsonbValue { type_: pg_sys::jbvType::jbvObject, ..null() };
        object.val.object = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_3 {
            nPairs: pairs.len() as i32,
            pairs: pairs.as_mut_ptr(),
        };
        // SAFETY: JsonbValueToJsonb reads the object, its pairs, arrays and strings (all alive
        // in `fields`, `arrays` and `pairs` for this call) and copies them into one palloc'd
        // varlena in the current memory context. It writes keys in the order given, so they
        // must be sorted and unique as jsonb requires: the sort above, and public_fields' keys
        // are distinct. No string holds a NUL (claim checks), and none is longer than an
        // identifier or a claim limit (well under jsonb's).
        unsafe {
            let varlena = pg_sys::JsonbValueToJsonb(&mut object).cast::<pg_sys::varlena>();
            let bytes = std::slice::from_raw_parts(varlena as *const u8, pgrx::varlena::varsize_any(varlena));
            let built = BoundaryJsonb(Rc::from(bytes));
            pg_sys::pfree(varlena.cast());
            built
        }
    }
}

fn array(elements: &[pg_sys::JsonbValue]) -> pg_sys::JsonbValue {
    let mut value = pg_sys::JsonbValue { type_: pg_sys::jbvType::jbvArray, ..null() };
    value.val.array = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_2 {
        nElems: i32::try_from(elements.len()).expect("allow-lists are bounded"),
        elems: elements.as_ptr() as *mut pg_sys::JsonbValue,
        rawScalar: false,
    };
    value
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
