//! The audit queue in plain Rust: an audit row's encoding, and a ring of length-prefixed
//! records over a byte buffer. Where the buffer lives (shared memory), who may touch it (one
//! lock) and who drains it (the background writer) are in `writer`.

/// One `boundary.audit_log` row, as `enter` hands it to the queue or the inline INSERT.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// When it happened: PostgreSQL's `TimestampTz` (microseconds since 2000-01-01 UTC).
    pub at: i64,
    pub event: String,
    pub tenant_id: Option<String>,
    pub workspace_id: Option<String>,
    pub user_id: Option<String>,
    pub trace_id: Option<String>,
    pub run_id: Option<String>,
    pub prompt_version: Option<String>,
    pub retrieval_namespace: Option<String>,
    pub tool_ids: Vec<String>,
    pub datasource_ids: Vec<String>,
    pub memory_keys: Vec<String>,
    pub blocked_count: i32,
    pub resource: Option<String>,
    pub repeats: i32,
}

const NONE: u32 = u32::MAX;

impl Row {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&self.at.to_le_bytes());
        put_str(&mut out, Some(&self.event));
        for field in [
            &self.tenant_id,
            &self.workspace_id,
            &self.user_id,
            &self.trace_id,
            &self.run_id,
            &self.prompt_version,
            &self.retrieval_namespace,
        ] {
            put_str(&mut out, field.as_deref());
        }
        for list in [&self.tool_ids, &self.datasource_ids, &self.memory_keys] {
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for item in list {
                put_str(&mut out, Some(item));
            }
        }
        out.extend_from_slice(&self.blocked_count.to_le_bytes());
        put_str(&mut out, self.resource.as_deref());
        out.extend_from_slice(&self.repeats.to_le_bytes());
        out
    }

    /// The row `encode` wrote, or None for anything else (a short or garbled record).
    pub fn decode(bytes: &[u8]) -> Option<Row> {
        let mut r = Reader(bytes);
        let at = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let event = r.str()??;
        let mut strings = [(); 7].map(|_| None);
        for field in &mut strings {
            *field = r.str()?;
        }
        let mut lists = [(); 3].map(|_| Vec::new());
        for list in &mut lists {
            let count = r.u32()?;
            for _ in 0..count {
                list.push(r.str()??);
            }
        }
        let blocked_count = r.i32()?;
        let resource = r.str()?;
        let repeats = r.i32()?;
        if !r.0.is_empty() {
            return None;
        }
        let [tenant_id, workspace_id, user_id, trace_id, run_id, prompt_version, retrieval_namespace] =
            strings;
        let [tool_ids, datasource_ids, memory_keys] = lists;
        Some(Row {
            at,
            event,
            tenant_id,
            workspace_id,
            user_id,
            trace_id,
            run_id,
            prompt_version,
            retrieval_namespace,
            tool_ids,
            datasource_ids,
            memory_keys,
            blocked_count,
            resource,
            repeats,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.extend_from_slice(&NONE.to_le_bytes()),
        Some(s) => {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// Some(None) for an absent string, None for a garbled one.
    fn str(&mut self) -> Option<Option<String>> {
        let len = self.u32()?;
        if len == NONE {
            return Some(None);
        }
        let bytes = self.take(len as usize)?;
        Some(Some(String::from_utf8(bytes.to_vec()).ok()?))
    }
}

/// Where a ring stands: bytes ever written and ever consumed (so `head - tail` is in use and
/// neither ever wraps in practice: 2^64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RingState {
    pub head: u64,
    pub tail: u64,
}

const LENGTH_PREFIX: usize = 4;

impl RingState {
    pub fn used(&self) -> usize {
        (self.head - self.tail) as usize
    }

    /// The largest record a ring of `capacity` bytes takes: a quarter of it, so one outsized row
    /// cannot fill the queue (it is written inline instead).
    pub fn max_record(capacity: usize) -> usize {
        capacity / 4 - LENGTH_PREFIX
    }

    /// Appends `record`, or returns false when it does not fit (too large, or the ring is full).
    pub fn push(&mut self, buf: &mut [u8], record: &[u8]) -> bool {
        let need = LENGTH_PREFIX + record.len();
        if record.len() > Self::max_record(buf.len()) || buf.len() - self.used() < need {
            return false;
        }
        let at = self.head;
        copy_in(buf, at, &(record.len() as u32).to_le_bytes());
        copy_in(buf, at + LENGTH_PREFIX as u64, record);
        self.head += need as u64;
        true
    }

    /// Every record from the tail to the head, and the position after the last: consume up to
    /// it once they are written.
    pub fn peek(&self, buf: &[u8]) -> (Vec<Vec<u8>>, u64) {
        let mut records = Vec::new();
        let mut at = self.tail;
        while at < self.head {
            let mut len = [0u8; LENGTH_PREFIX];
            copy_out(buf, at, &mut len);
            let mut record = vec![0u8; u32::from_le_bytes(len) as usize];
            copy_out(buf, at + LENGTH_PREFIX as u64, &mut record);
            at += (LENGTH_PREFIX + record.len()) as u64;
            records.push(record);
        }
        (records, at)
    }

    pub fn consume(&mut self, up_to: u64) {
        self.tail = up_to.clamp(self.tail, self.head);
    }
}

fn copy_in(buf: &mut [u8], at: u64, bytes: &[u8]) {
    let start = (at % buf.len() as u64) as usize;
    let first = bytes.len().min(buf.len() - start);
    buf[start..start + first].copy_from_slice(&bytes[..first]);
    buf[..bytes.len() - first].copy_from_slice(&bytes[first..]);
}

fn copy_out(buf: &[u8], at: u64, out: &mut [u8]) {
    let start = (at % buf.len() as u64) as usize;
    let first = out.len().min(buf.len() - start);
    out[..first].copy_from_slice(&buf[start..start + first]);
    let rest = out.len() - first;
    out[first..].copy_from_slice(&buf[..rest]);
}

/// `items` as a PostgreSQL text[] literal: every element quoted, so commas, braces, quotes,
/// backslashes, spaces and the word NULL inside an id come back as they went in.
pub fn array_literal(items: &[String]) -> String {
    let mut out = String::with_capacity(2 + items.iter().map(|i| i.len() + 3).sum::<usize>());
    out.push('{');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(trace: &str) -> Row {
        Row {
            at: 123_456_789,
            event: "enter".into(),
            tenant_id: Some("northstar-dental".into()),
            workspace_id: Some("main".into()),
            user_id: Some("alice".into()),
            trace_id: Some(trace.into()),
            tool_ids: vec!["search".into(), "".into()],
            memory_keys: vec![],
            repeats: 3,
            blocked_count: -1,
            resource: None,
            ..Row::default()
        }
    }

    #[test]
    fn an_array_literal_quotes_every_element() {
        let items = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(array_literal(&[]), "{}");
        assert_eq!(array_literal(&items(&["search", ""])), r#"{"search",""}"#);
        assert_eq!(
            array_literal(&items(&[r#"a,b"#, r#"{x}"#, r#"say "hi""#, r#"back\slash"#, "NULL", " sp "])),
            r#"{"a,b","{x}","say \"hi\"","back\\slash","NULL"," sp "}"#
        );
    }

    #[test]
    fn a_row_survives_encoding_with_absent_empty_and_unicode_fields() {
        for r in [row("t-1"), row(""), row("trace \u{e9}\u{1F600}"), Row::default()] {
            assert_eq!(Row::decode(&r.encode()), Some(r));
        }
    }

    #[test]
    fn a_short_or_padded_record_is_not_a_row() {
        let bytes = row("t").encode();
        for cut in 0..bytes.len() {
            assert_eq!(Row::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert_eq!(Row::decode(&padded), None);
    }

    #[test]
    fn a_ring_gives_back_what_was_pushed_across_the_wrap_in_order() {
        let mut buf = vec![0u8; 64];
        let mut ring = RingState::default();
        let mut expected = std::collections::VecDeque::new();
        for i in 0..100u8 {
            let record = vec![i; (i % 11) as usize];
            if !ring.push(&mut buf, &record) {
                let (records, end) = ring.peek(&buf);
                assert_eq!(records, Vec::from(expected.clone()));
                ring.consume(end);
                expected.clear();
                assert!(ring.push(&mut buf, &record), "an empty ring takes any record up to the limit");
            }
            expected.push_back(record);
            assert!(ring.used() <= buf.len());
        }
        assert_eq!(ring.peek(&buf).0, Vec::from(expected));
    }

    #[test]
    fn a_full_ring_or_an_outsized_record_is_refused_and_nothing_changes() {
        let mut buf = vec![0u8; 64];
        let mut ring = RingState::default();
        assert!(!ring.push(&mut buf, &[1; 13]), "over a quarter of the ring");
        assert!(ring.push(&mut buf, &[1; 12]));
        for _ in 0..3 {
            assert!(ring.push(&mut buf, &[2; 12]));
        }
        let before = ring;
        assert!(!ring.push(&mut buf, &[3; 1]), "full");
        assert_eq!(ring, before);
        let (records, end) = ring.peek(&buf);
        assert_eq!(records.len(), 4);
        ring.consume(end);
        assert_eq!(ring.used(), 0);
    }

    #[test]
    fn consuming_never_passes_the_head_or_goes_back() {
        let mut buf = vec![0u8; 64];
        let mut ring = RingState::default();
        ring.push(&mut buf, b"abc");
        ring.consume(1_000);
        assert_eq!(ring.tail, ring.head);
        ring.consume(0);
        assert_eq!(ring.tail, ring.head);
    }
}
