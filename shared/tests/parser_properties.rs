//! Property tests of every source's parser (`inspect` and `parse`): whatever
//! bytes arrive, they never panic, they agree with each other, and they
//! answer either a report, an ignored event or a refusal that says why.
//!
//! Inputs: arbitrary bytes; each platform's documented bodies with arbitrary
//! JSON put in at arbitrary places, or parts taken away (the platform's
//! shape with every type wrong somewhere); those bodies cut short; and
//! bodies made large or deep. The case count is proptest's default (256 per
//! property), a few seconds in a debug build; `PROPTEST_CASES=1000000` runs
//! the long version (docs/testing.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsync_shared::sources::{Envelope, ParseContext, Parsed, inspect, parse};
use callsync_shared::{Region, Source};
use proptest::prelude::*;
use serde_json::{Map, Value};
use time::macros::datetime;

fn ctx() -> ParseContext {
    ParseContext {
        received_at: datetime!(2026-02-01 00:00:00 UTC),
        region: Region::US,
    }
}

/// Every documented body, by source: the fixtures named `<source>_…`.
fn fixtures() -> Vec<(Source, Value)> {
    let dir = format!("{}/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(source) = Source::ALL
            .into_iter()
            .find(|s| name.starts_with(&format!("{s}_")))
        else {
            continue;
        };
        if let Ok(body) = serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()) {
            found.push((source, body));
        }
    }
    found.sort_by_key(|(source, body)| (*source, body.to_string()));
    assert!(
        Source::ALL
            .iter()
            .all(|s| found.iter().any(|(f, _)| f == s)),
        "a fixture per source"
    );
    found
}

/// `inspect` and `parse` of `body` agree, neither panics, a refusal says
/// why, and a final report is read whole with the call id `inspect` found.
fn answers_clearly(source: Source, body: &[u8]) -> Result<(), TestCaseError> {
    let inspected = inspect(source, body);
    let parsed = parse(source, body, &ctx());
    match (&inspected, &parsed) {
        (Err(a), Err(b)) => {
            prop_assert_eq!(a, b);
            prop_assert!(!a.to_string().trim().is_empty());
        }
        (Ok(Envelope::Ignored(a)), Ok(Parsed::Ignored { event })) => prop_assert_eq!(a, event),
        (Ok(Envelope::Final(id)), Ok(Parsed::Report(report))) => {
            prop_assert_eq!(&report.call_id, id);
            prop_assert_eq!(report.source, source);
            let prefix = format!("callsync:{source}:");
            prop_assert!(report.marker().starts_with(&prefix));
        }
        _ => prop_assert!(
            false,
            "{source}: inspect {inspected:?} but parse {parsed:?}"
        ),
    }
    Ok(())
}

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
        // Strings the parsers look at twice: numbers, dates, phone numbers.
        prop_oneof![
            Just("2026-01-01T10:00:00.000Z"),
            Just("+14155550132"),
            Just("4155550132"),
            Just("true"),
            Just("end-of-call-report"),
            Just("call_analyzed"),
            Just("post_call_transcription"),
            Just("-1"),
            Just("1e400"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{1,16}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every JSON pointer in `value`, the root (`""`) first.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// What one change does to a body: replace the value at a pointer, or
/// take it away.
#[derive(Debug, Clone)]
enum Change {
    Replace(usize, Value),
    Remove(usize),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (any::<usize>(), json()).prop_map(|(at, value)| Change::Replace(at, value)),
        1 => any::<usize>().prop_map(Change::Remove),
    ]
}

/// `body` with `changes` applied in turn, each at a pointer of the body as
/// it is by then.
fn changed(mut body: Value, changes: &[Change]) -> Value {
    for change in changes {
        let mut all = Vec::new();
        pointers(&body, String::new(), &mut all);
        match change {
            Change::Replace(at, value) => {
                let pointer = &all[at % all.len()];
                if let Some(slot) = body.pointer_mut(pointer) {
                    *slot = value.clone();
                }
            }
            Change::Remove(at) => {
                let pointer = &all[at % all.len()];
                let Some((parent, key)) = pointer.rsplit_once('/') else {
                    continue;
                };
                let key = key.replace("~1", "/").replace("~0", "~");
                match body.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&key);
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(i) = key.parse::<usize>()
                            && i < items.len()
                        {
                            items.remove(i);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    body
}

/// A documented body of some source.
fn documented() -> impl Strategy<Value = (Source, Value)> {
    prop::sample::select(fixtures())
}

proptest! {
    #[test]
    fn arbitrary_bytes_are_refused_or_read_never_a_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        source in prop::sample::select(Source::ALL.to_vec()),
    ) {
        answers_clearly(source, &bytes)?;
    }

    #[test]
    fn arbitrary_json_is_refused_ignored_or_read_never_a_panic(
        value in json(),
        source in prop::sample::select(Source::ALL.to_vec()),
    ) {
        answers_clearly(source, value.to_string().as_bytes())?;
    }

    #[test]
    fn a_platforms_own_shape_with_arbitrary_values_anywhere_is_refused_ignored_or_read(
        (source, body) in documented(),
        changes in prop::collection::vec(change(), 1..6),
    ) {
        let body = changed(body, &changes);
        answers_clearly(source, body.to_string().as_bytes())?;
    }

    #[test]
    fn a_documented_body_cut_short_is_refused_as_not_json_or_read(
        (source, body) in documented(),
        keep in any::<prop::sample::Index>(),
    ) {
        let bytes = serde_json::to_vec_pretty(&body).unwrap();
        let cut = &bytes[..keep.index(bytes.len())];
        answers_clearly(source, cut)?;
        // Cut inside the object, it is no longer JSON: a 400, not a 422.
        if let Err(error) = inspect(source, cut) {
            prop_assert!(error.is_syntax(), "{source}: {error}");
        }
    }
}

proptest! {
    // Each case builds a body of megabytes: fewer of them.
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.div_ceil(16),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_documented_body_made_huge_is_refused_or_read(
        (source, body) in documented(),
        at in any::<usize>(),
        size in 0usize..3 * 1024 * 1024,
    ) {
        let mut body = body;
        let mut all = Vec::new();
        pointers(&body, String::new(), &mut all);
        let objects: Vec<&String> = all
            .iter()
            .filter(|p| body.pointer(p).is_some_and(Value::is_object))
            .collect();
        let pointer = objects[at % objects.len()].clone();
        if let Some(Value::Object(map)) = body.pointer_mut(&pointer) {
            map.insert("padding".to_owned(), Value::String("x".repeat(size)));
        }
        answers_clearly(source, body.to_string().as_bytes())?;
    }

    #[test]
    fn a_body_nested_deeper_than_any_parser_reads_is_refused_never_a_stack_overflow(
        source in prop::sample::select(Source::ALL.to_vec()),
        depth in 0usize..100_000,
    ) {
        let body = format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        answers_clearly(source, body.as_bytes())?;
    }
}
