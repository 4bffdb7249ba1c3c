//! Backend-local "our own code is running" flags: raised for the length of a call and lowered
//! again even when the call raises an ERROR (pgrx unwinds through it), so SQL can never find one
//! left up.

use std::cell::Cell;
use std::thread::LocalKey;

pub type Flag = LocalKey<Cell<bool>>;

/// Runs `f` with `flag` raised.
pub fn raised<T>(flag: &'static Flag, f: impl FnOnce() -> T) -> T {
    struct Lower(&'static Flag, bool);
    impl Drop for Lower {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _lower = Lower(flag, flag.with(|c| c.replace(true)));
    f()
}

pub fn is_raised(flag: &'static Flag) -> bool {
    flag.with(|c| c.get())
}
