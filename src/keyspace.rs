//! Injective composite keys. `compose(["a:b", "c"])` and `compose(["a", "b:c"])` must differ, so
//! every part escapes the separator (and the escape character itself) before joining.

const SEPARATOR: char = ':';
const ESCAPE: char = '%';

fn escape_into(out: &mut String, part: &str) {
    for ch in part.chars() {
        match ch {
            ESCAPE => out.push_str("%25"),
            SEPARATOR => out.push_str("%3A"),
            other => out.push(other),
        }
    }
}

/// Joins `parts` with `:` after escaping `%` and `:` in each part. Decoding splits on `:` and
/// unescapes, so two different part lists can never produce the same key.
pub fn compose<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        escape_into(&mut out, part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::compose;

    fn decompose(key: &str) -> Vec<String> {
        key.split(':').map(|p| p.replace("%3A", ":").replace("%25", "%")).collect()
    }

    #[test]
    fn separator_inside_a_part_cannot_shift_the_boundary() {
        assert_ne!(compose(["a:b", "c"]), compose(["a", "b:c"]));
        assert_ne!(compose(["a%3Ab", "c"]), compose(["a:b", "c"]));
        assert_ne!(compose(["a%", "3A"]), compose(["a", "%3A"]));
    }

    #[test]
    fn round_trips_adversarial_parts() {
        let samples = ["", ":", "%", "%3A", "::", "a:b%c", "Northstar:Dental", "é:ü", "%25"];
        for a in samples {
            for b in samples {
                let key = compose([a, b]);
                assert_eq!(decompose(&key), vec![a.to_string(), b.to_string()], "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn distinct_inputs_give_distinct_keys() {
        let samples = ["", ":", "%", "%3A", "a", "a:", ":a", "a%", "%25", "b:c"];
        let mut seen = std::collections::HashMap::new();
        for a in samples {
            for b in samples {
                for c in samples {
                    let key = compose([a, b, c]);
                    if let Some(prev) = seen.insert(key.clone(), (a, b, c)) {
                        panic!("{prev:?} and {:?} both give {key:?}", (a, b, c));
                    }
                }
            }
        }
    }
}
