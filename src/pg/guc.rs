//! Changing a setting from inside the extension, through guc.c exactly as `SET` would (check
//! hooks and permissions included), written once.

use pgrx::pg_sys;
use pgrx::PgLogLevel;
use std::ffi::CStr;

/// Sets `name` to `value` with `context`'s privileges. `GUC_ACTION_LOCAL` ends with the
/// transaction, `GUC_ACTION_SET` with the session, `GUC_ACTION_SAVE` with the nest level it was
/// made in (see [`with_nest_level`]). A refusal raises an ERROR.
pub fn set(name: &CStr, value: &CStr, context: pg_sys::GucContext::Type, action: pg_sys::GucAction::Type) {
    // SAFETY: plain call into guc.c with NUL-terminated strings; on failure it raises an ERROR,
    // which pgrx carries back to PostgreSQL at the function boundary.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            context,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            PgLogLevel::ERROR as i32,
            false,
        );
    }
}

/// Where the current value of setting `name` came from (`PGC_S_CLIENT`: the connection's
/// startup packet; `PGC_S_SESSION`: SET), or `None` for no such setting.
pub fn source(name: &CStr) -> Option<pg_sys::GucSource::Type> {
    // SAFETY: guc.c's own records, read between statements of this backend; the name is
    // NUL-terminated and never makes a placeholder.
    unsafe {
        #[cfg(feature = "pg15")]
        let record = {
            let all = pg_sys::get_guc_variables();
            let count = usize::try_from(pg_sys::GetNumConfigOptions()).unwrap_or(0);
            (0..count)
                .map(|i| *all.add(i))
                .find(|r| {
                    !r.is_null()
                        && CStr::from_ptr((**r).name).to_bytes().eq_ignore_ascii_case(name.to_bytes())
                })
                .unwrap_or(std::ptr::null_mut())
        };
        #[cfg(not(feature = "pg15"))]
        let record = pg_sys::find_option(name.as_ptr(), false, true, PgLogLevel::ERROR as i32);
        (!record.is_null()).then(|| (*record).source)
    }
}

/// The current value of setting `name` as text (empty for no such setting).
pub fn current(name: &CStr) -> String {
    // SAFETY: guc.c lookup by a NUL-terminated name; missing_ok returns NULL instead of raising,
    // and the returned string is copied before anything can change the setting.
    unsafe {
        let value = pg_sys::GetConfigOption(name.as_ptr(), true, false);
        if value.is_null() {
            return String::new();
        }
        CStr::from_ptr(value).to_string_lossy().into_owned()
    }
}

/// Whether a setting called `name` exists (an extension's settings exist once it is loaded).
pub fn exists(name: &CStr) -> bool {
    // SAFETY: guc.c lookup by a NUL-terminated name; missing_ok returns NULL instead of raising.
    unsafe { !pg_sys::GetConfigOption(name.as_ptr(), true, false).is_null() }
}

/// Runs `f` in a new GUC nest level: settings changed inside with `GUC_ACTION_SAVE` get their
/// previous values back afterwards, as a function's `SET` clause does. On an ERROR inside `f`,
/// the (sub)transaction abort pops the level instead.
pub fn with_nest_level<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: nest levels are a stack; this one is popped below or by (sub)transaction abort.
    let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
    let result = f();
    // SAFETY: pops exactly the level pushed above.
    unsafe { pg_sys::AtEOXact_GUC(true, nest_level) };
    result
}
