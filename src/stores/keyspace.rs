//! Every composite key the extension hands out, built in one place and injective:
//! `compose(["a:b", "c"])` and `compose(["a", "b:c"])` differ because each part escapes the
//! separator (and the escape character itself) before joining. The key kinds are tagged and have
//! a fixed number of parts per tag, so keys of different kinds can never collide either.

use sha2::{Digest, Sha256};

const SEPARATOR: char = ':';
const ESCAPE: char = '%';

/// One part, escaped: `%` → `%25`, `:` → `%3A`.
pub fn part(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for ch in raw.chars() {
        match ch {
            ESCAPE => out.push_str("%25"),
            SEPARATOR => out.push_str("%3A"),
            other => out.push(other),
        }
    }
    out
}

/// Joins `parts` with `:` after escaping each.
pub fn compose<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    parts.into_iter().map(part).collect::<Vec<_>>().join(":")
}

/// The inverse of [`compose`]: the tests' proof that keys are injective.
#[cfg(test)]
pub fn decompose(key: &str) -> Vec<String> {
    key.split(SEPARATOR).map(|p| p.replace("%3A", ":").replace("%25", "%")).collect()
}

/// How many parts a composed key has (without unescaping them: escaped parts hold no separator).
pub fn part_count(key: &str) -> usize {
    key.matches(SEPARATOR).count() + 1
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in Sha256::digest(bytes) {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

pub const MEMORY_TAG: &str = "agent-memory";
pub const CACHE_TAG: &str = "agent-cache";

/// Whose memory: one user's, a token-named namespace inside the workspace, or the workspace's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryOwner<'a> {
    User(&'a str),
    Namespace(&'a str),
    Workspace,
}

/// `agent-memory:<tenant>:<workspace>:user:<user>` (or `:ns:<namespace>`, or `:workspace`).
pub fn memory_namespace(tenant: &str, workspace: &str, owner: MemoryOwner) -> String {
    match owner {
        MemoryOwner::User(user) => compose([MEMORY_TAG, tenant, workspace, "user", user]),
        MemoryOwner::Namespace(ns) => compose([MEMORY_TAG, tenant, workspace, "ns", ns]),
        MemoryOwner::Workspace => compose([MEMORY_TAG, tenant, workspace, "workspace"]),
    }
}

/// The key of memory `name` in `namespace` (a [`memory_namespace`]).
pub fn memory_key(namespace: &str, name: &str) -> String {
    format!("{namespace}{SEPARATOR}{}", part(name))
}

/// Everything in a cache key that comes from the boundary: tenant, workspace, role and a hash
/// of the sorted allowed datasource ids. Ends with the separator.
pub fn cache_prefix(tenant: &str, workspace: &str, role: &str, sorted_datasources: &[String]) -> String {
    let datasources = sha256_hex(compose(sorted_datasources.iter().map(String::as_str)).as_bytes());
    let mut prefix = compose([CACHE_TAG, tenant, workspace, role, &datasources]);
    prefix.push(SEPARATOR);
    prefix
}

/// `<cache_prefix><prompt version>:<namespace>:<sha256 of input>`.
pub fn cache_key(prefix: &str, prompt_version: &str, namespace: &str, input: &str) -> String {
    format!("{prefix}{}", compose([prompt_version, namespace, &sha256_hex(input.as_bytes())]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn adversarial() -> impl Strategy<Value = String> {
        // Short strings over an alphabet heavy in separators and escapes.
        proptest::collection::vec(
            prop_oneof![
                Just(':'),
                Just('%'),
                Just('3'),
                Just('A'),
                Just('a'),
                Just('2'),
                Just('5'),
                Just('é')
            ],
            0..6,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    #[test]
    fn sha256_hex_is_the_lower_case_digest() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(sha256_hex(b"").len(), 64);
    }

    #[test]
    fn separator_inside_a_part_cannot_shift_the_boundary() {
        assert_ne!(compose(["a:b", "c"]), compose(["a", "b:c"]));
        assert_ne!(compose(["a%3Ab", "c"]), compose(["a:b", "c"]));
        assert_ne!(compose(["a%", "3A"]), compose(["a", "%3A"]));
    }

    proptest! {
        #[test]
        fn compose_round_trips(parts in proptest::collection::vec(adversarial(), 1..5)) {
            let key = compose(parts.iter().map(String::as_str));
            prop_assert_eq!(part_count(&key), parts.len());
            prop_assert_eq!(decompose(&key), parts);
        }

        #[test]
        fn memory_keys_are_injective(
            a in (adversarial(), adversarial(), adversarial(), 0..3u8, adversarial()),
            b in (adversarial(), adversarial(), adversarial(), 0..3u8, adversarial()),
        ) {
            let key = |(t, w, o, kind, name): &(String, String, String, u8, String)| {
                let owner = match kind { 0 => MemoryOwner::User(o), 1 => MemoryOwner::Namespace(o), _ => MemoryOwner::Workspace };
                memory_key(&memory_namespace(t, w, owner), name)
            };
            // Workspace memory ignores the owner string, so normalize it before comparing inputs.
            let norm = |x: &(String, String, String, u8, String)| {
                let mut x = x.clone();
                if x.3 == 2 { x.2.clear(); }
                x
            };
            prop_assert_eq!(key(&a) == key(&b), norm(&a) == norm(&b));
        }

        #[test]
        fn cache_keys_are_injective(
            a in (adversarial(), adversarial(), 0..4usize, proptest::collection::btree_set(adversarial(), 0..3), adversarial(), adversarial(), adversarial()),
            b in (adversarial(), adversarial(), 0..4usize, proptest::collection::btree_set(adversarial(), 0..3), adversarial(), adversarial(), adversarial()),
        ) {
            let roles = ["viewer", "member", "admin", "owner"];
            let key = |(t, w, r, ds, pv, ns, input): &(String, String, usize, std::collections::BTreeSet<String>, String, String, String)| {
                let ds: Vec<String> = ds.iter().cloned().collect();
                cache_key(&cache_prefix(t, w, roles[*r], &ds), pv, ns, input)
            };
            prop_assert_eq!(key(&a) == key(&b), a == b);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// Any text at all (not only the adversarial alphabet): composing and decomposing never
        /// panics, round-trips, and a part never contains the separator once escaped.
        #[test]
        fn arbitrary_parts_round_trip(parts in proptest::collection::vec(".{0,40}", 1..6)) {
            let key = compose(parts.iter().map(String::as_str));
            prop_assert_eq!(decompose(&key), parts.clone());
            prop_assert!(parts.iter().all(|p| !part(p).contains(':')));
        }
    }

    #[test]
    fn key_shapes() {
        let ns = memory_namespace("northstar:dental", "support", MemoryOwner::User("alice"));
        assert_eq!(ns, "agent-memory:northstar%3Adental:support:user:alice");
        assert_eq!(
            memory_key(&ns, "renewal%notes"),
            "agent-memory:northstar%3Adental:support:user:alice:renewal%25notes"
        );
        assert_eq!(memory_namespace("t", "w", MemoryOwner::Workspace), "agent-memory:t:w:workspace");
        let prefix = cache_prefix("t", "w", "admin", &["kb".into(), "tickets".into()]);
        assert!(prefix.starts_with("agent-cache:t:w:admin:") && prefix.ends_with(':'));
        assert_eq!(cache_key(&prefix, "v1", "answers", "hi").len(), prefix.len() + "v1:answers:".len() + 64);
    }
}
