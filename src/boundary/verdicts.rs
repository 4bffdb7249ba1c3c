//! What this backend has already read and verified, so that `boundary.enter` with a token it has
//! seen before reads no table and checks no signature: active keys by key id, registry rows by
//! principal, and whole entered boundaries by token.
//!
//! Forgetting is what makes this safe. Row triggers on `boundary.signing_keys` and
//! `boundary.principals` (and a TRUNCATE trigger) queue a relcache invalidation for the table on
//! every change (also with `session_replication_role = replica`, and in the logical replication
//! apply worker, which fires row triggers only); PostgreSQL delivers it to every backend when the change
//! commits and replays it locally when it rolls back, and the callback here bumps a generation
//! that empties every cache before its next use. `enter` takes delivered invalidations first, so a
//! change committed before it started is always seen. A miss reads the tables through the latest
//! snapshot (`kept::read_latest`; not the statement's, nor an older REPEATABLE READ one), so
//! nothing older than the last invalidation is remembered; a read during which an invalidation
//! arrives is used once and not remembered.
//! Time rules (exp, nbf, iat, lifetime, skew) are checked again on every use.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// The tables whose changes make remembered verdicts stale.
const WATCHED_TABLES: [&std::ffi::CStr; 2] = [c"signing_keys", c"principals"];

thread_local! {
    /// Bumped by every invalidation of a watched table (or of all relations).
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    /// The watched tables' oids, resolved on first use and again after any invalidation of them
    /// (DROP/CREATE EXTENSION gives them new oids).
    static WATCHED: Cell<Option<[pg_sys::Oid; 2]>> = const { Cell::new(None) };
}

extension_sql!(
    r#"
-- Row triggers, because the logical replication apply worker fires row triggers but no
-- statement triggers (a registry replicated from a control plane); TRUNCATE has no rows.
CREATE TRIGGER forget_verified AFTER INSERT OR UPDATE OR DELETE ON boundary.signing_keys
    FOR EACH ROW EXECUTE FUNCTION boundary.forget_verified();
CREATE TRIGGER forget_verified AFTER INSERT OR UPDATE OR DELETE ON boundary.principals
    FOR EACH ROW EXECUTE FUNCTION boundary.forget_verified();
CREATE TRIGGER forget_verified_truncate AFTER TRUNCATE ON boundary.signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION boundary.forget_verified();
CREATE TRIGGER forget_verified_truncate AFTER TRUNCATE ON boundary.principals
    FOR EACH STATEMENT EXECUTE FUNCTION boundary.forget_verified();
-- Fire under session_replication_role = replica (which the apply worker runs with) too: a
-- stale verdict must not outlive a change.
ALTER TABLE boundary.signing_keys ENABLE ALWAYS TRIGGER forget_verified;
ALTER TABLE boundary.principals ENABLE ALWAYS TRIGGER forget_verified;
ALTER TABLE boundary.signing_keys ENABLE ALWAYS TRIGGER forget_verified_truncate;
ALTER TABLE boundary.principals ENABLE ALWAYS TRIGGER forget_verified_truncate;
"#,
    name = "forget_verified_triggers",
    requires = ["signing_keys_table", "principals_table", forget_verified],
);

/// Row (and TRUNCATE) trigger on the key and registry tables: every backend forgets what it
/// verified against them once this transaction commits (this one, at its next command or
/// rollback). Queuing the same invalidations once per row costs little: these tables change
/// rarely. The watched tables are invalidated, not the trigger's: on Citus the trigger fires on
/// each node's placement of a reference table (`boundary.distribute_own_tables()`), another
/// relation.
#[pg_trigger]
fn forget_verified<'a>(
    _trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    for oid in resolve_watched().into_iter().filter(|oid| *oid != pg_sys::InvalidOid) {
        crate::pg::invalidation::invalidate(oid);
    }
    Ok(None)
}

/// Subscribed at load (see `init`): a change to a watched table (or to every relation) makes
/// every remembered verdict stale.
fn note_invalidation(relid: pg_sys::Oid) {
    let watched = WATCHED.get();
    if relid == pg_sys::InvalidOid || watched.is_none_or(|oids| oids.contains(&relid)) {
        GENERATION.set(GENERATION.get() + 1);
        WATCHED.set(None);
    }
}

fn resolve_watched() -> [pg_sys::Oid; 2] {
    // SAFETY: syscache lookups by name; InvalidOid when missing (never while the extension exists).
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"boundary".as_ptr(), true);
        WATCHED_TABLES.map(|table| pg_sys::get_relname_relid(table.as_ptr(), schema))
    }
}

pub fn init() {
    crate::pg::invalidation::subscribe(note_invalidation);
}

/// The current generation, after taking any invalidations already delivered to this backend.
pub fn generation() -> u64 {
    crate::pg::invalidation::take_pending();
    while WATCHED.get().is_none() {
        let before = GENERATION.get();
        let oids = resolve_watched();
        if GENERATION.get() == before {
            WATCHED.set(Some(oids));
        }
    }
    GENERATION.get()
}

/// A bounded map of remembered values, emptied whenever the generation moves on. When full (the
/// bound is given on each `put`, so a changed setting holds from the next one), the least
/// recently used entry makes room (a hot tenant's verdict stays while cold ones cycle).
pub struct Memo<V> {
    /// Value and the tick of its last use.
    entries: HashMap<Rc<str>, (V, u64)>,
    /// Tick of last use -> key (the same allocation as the entry's: keys are whole tokens),
    /// oldest first.
    by_use: BTreeMap<u64, Rc<str>>,
    tick: u64,
    generation: u64,
}

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Memo { entries: HashMap::new(), by_use: BTreeMap::new(), tick: 0, generation: 0 }
    }
}

impl<V: Clone> Memo<V> {
    fn touch(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    pub fn get(&mut self, key: &str, generation: u64) -> Option<V> {
        if self.generation != generation {
            self.entries.clear();
            self.by_use.clear();
            self.generation = generation;
        }
        let tick = self.touch();
        let (value, used) = self.entries.get_mut(key)?;
        let previous = std::mem::replace(used, tick);
        let value = value.clone();
        if let Some(key) = self.by_use.remove(&previous) {
            self.by_use.insert(tick, key);
        }
        Some(value)
    }

    /// Remembers `value`, read at `read_at`, unless an invalidation arrived since; holds at most
    /// `capacity` entries afterwards (0: remembers nothing).
    pub fn put(&mut self, key: &str, value: V, read_at: u64, capacity: usize) {
        if read_at != GENERATION.get() || read_at != self.generation || capacity == 0 {
            return;
        }
        let tick = self.touch();
        if let Some((known, used)) = self.entries.get_mut(key) {
            *known = value;
            let previous = std::mem::replace(used, tick);
            if let Some(key) = self.by_use.remove(&previous) {
                self.by_use.insert(tick, key);
            }
            return;
        }
        // More than one when the capacity was lowered since.
        while self.entries.len() >= capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else { break };
            self.entries.remove(&oldest);
        }
        let key: Rc<str> = key.into();
        self.by_use.insert(tick, key.clone());
        self.entries.insert(key, (value, tick));
    }
}

/// The value remembered under `key`, or what `read` finds (remembered when found). `read` must
/// see the latest committed state, as `kept::read_latest` does.
pub fn remembered<V>(
    memo: &'static std::thread::LocalKey<RefCell<Memo<Rc<V>>>>,
    key: &str,
    capacity: usize,
    read: impl FnOnce() -> crate::error::Result<Option<V>>,
) -> crate::error::Result<Option<Rc<V>>> {
    let generation = generation();
    if let Some(found) = memo.with(|m| m.borrow_mut().get(key, generation)) {
        return Ok(Some(found));
    }
    let Some(found) = read()?.map(Rc::new) else { return Ok(None) };
    memo.with(|m| m.borrow_mut().put(key, found.clone(), generation, capacity));
    Ok(Some(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memo_forgets_everything_when_the_generation_moves_on() {
        let mut memo = Memo::default();
        let read_at = GENERATION.get();
        assert_eq!(memo.get("k", read_at), None);
        memo.put("k", 1, read_at, 8);
        assert_eq!(memo.get("k", read_at), Some(1));
        GENERATION.set(read_at + 1);
        assert_eq!(memo.get("k", read_at + 1), None, "an invalidation empties the memo");
    }

    #[test]
    fn a_full_memo_forgets_the_least_recently_used() {
        let mut memo = Memo::default();
        let now = GENERATION.get();
        memo.get("a", now);
        memo.put("a", 1, now, 2);
        memo.put("b", 2, now, 2);
        assert_eq!(memo.get("a", now), Some(1), "a is now the most recently used");
        memo.put("c", 3, now, 2);
        assert_eq!((memo.get("a", now), memo.get("b", now), memo.get("c", now)), (Some(1), None, Some(3)));
        memo.put("a", 4, now, 2);
        assert_eq!(memo.entries.len(), 2);
        assert_eq!(memo.by_use.len(), 2, "replacing a value keeps one use entry per key");
        assert_eq!(memo.get("a", now), Some(4));
    }

    #[test]
    fn a_lowered_capacity_holds_from_the_next_put_and_zero_remembers_nothing() {
        let mut memo = Memo::default();
        let now = GENERATION.get();
        memo.get("a", now);
        for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
            memo.put(key, i, now, 4);
        }
        memo.put("e", 4, now, 2);
        assert_eq!(memo.entries.len(), 2);
        assert_eq!((memo.get("d", now), memo.get("e", now)), (Some(3), Some(4)), "the most recent stay");
        memo.put("f", 5, now, 0);
        assert_eq!(memo.get("f", now), None);
    }

    #[test]
    fn a_value_read_while_an_invalidation_arrived_is_not_remembered() {
        let mut memo = Memo::default();
        let read_at = GENERATION.get();
        assert_eq!(memo.get("k", read_at), None);
        GENERATION.set(read_at + 1); // arrives during the read
        memo.put("k", 1, read_at, 8);
        assert_eq!(memo.get("k", read_at + 1), None);
    }
}
