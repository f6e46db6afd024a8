//! Reading a body for [`super::inspect`] without building all of it.
//!
//! A report can run to tens of kilobytes of transcript, and ingest wants two
//! fields of it. [`skim`] reads the whole body with the same parser and the
//! same checks as `serde_json::from_slice::<Value>` (syntax, UTF-8, numbers
//! out of range, nesting depth, trailing characters), so that it refuses
//! exactly the bodies the worker's full parse refuses; but it keeps only the
//! values on the paths a source's `inspect` reads, and of a value `inspect`
//! only asks whether it is there, that it is. Everything else is read and
//! dropped without an allocation.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{Body, ParseError};

/// Values of a body, each as the keys leading to it from the top.
pub type Paths = &'static [&'static [&'static str]];

/// What a source's `inspect` reads of a body. An object on the way to a
/// path keeps only what the paths through it need.
#[derive(Debug, Clone, Copy)]
pub struct Reads {
    /// Values read: kept whole.
    pub values: Paths,
    /// Values `inspect` only asks whether they are there and not null (a
    /// transcript that tells a report from a later correction): kept as
    /// `true`, or `null` when null, the key being there either way.
    pub present: Paths,
}

impl Reads {
    /// Reads of values only.
    pub const fn values(values: Paths) -> Self {
        Self {
            values,
            present: &[],
        }
    }
}

/// The body as a JSON object holding only what `reads` names, or why the
/// whole body is refused (as `serde_json::from_slice` would refuse it).
pub fn skim(body: &[u8], reads: Reads) -> Result<Body, ParseError> {
    let mut parser = serde_json::Deserializer::from_slice(body);
    let top = Keep { reads, depth: 0 }
        .deserialize(&mut parser)
        .and_then(|top| parser.end().map(|()| top))
        .map_err(|e| ParseError::NotJson(e.to_string()))?;
    match top {
        Value::Object(object) => Ok(object),
        _ => Err(ParseError::NotAnObject),
    }
}

/// A value at `depth` on the paths of `reads`. An object keeps the keys a
/// path goes through; a value of another type is kept whole, since its type
/// is what `inspect` looks at then (`"message": "x"` is not an envelope).
#[derive(Clone, Copy)]
struct Keep {
    reads: Reads,
    depth: usize,
}

/// What becomes of the value under a key.
enum Under {
    /// A path ends here.
    Whole,
    /// A path of `present` ends here.
    Presence,
    /// Paths go on inside it.
    Through(Keep),
    /// No path goes here.
    Skip,
}

impl Keep {
    fn under(self, key: &str) -> Under {
        let mut through = false;
        let ends = [
            (self.reads.values, Under::Whole),
            (self.reads.present, Under::Presence),
        ];
        for (paths, end) in ends {
            for path in paths {
                if path.get(self.depth) == Some(&key) {
                    if path.len() == self.depth + 1 {
                        return end;
                    }
                    through = true;
                }
            }
        }
        if through {
            Under::Through(Keep {
                reads: self.reads,
                depth: self.depth + 1,
            })
        } else {
            Under::Skip
        }
    }
}

impl<'de> DeserializeSeed<'de> for Keep {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Keep {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            // A key given twice keeps its last value, as in a full parse.
            match self.under(key.as_str()) {
                Under::Whole => {
                    kept.insert(key.into_owned(), map.next_value::<Value>()?);
                }
                Under::Presence => {
                    kept.insert(key.into_owned(), map.next_value_seed(Presence)?);
                }
                Under::Through(inner) => {
                    kept.insert(key.into_owned(), map.next_value_seed(inner)?);
                }
                Under::Skip => map.next_value_seed(Skip)?,
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut values = Vec::new();
        while let Some(value) = seq.next_element::<Value>()? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        // As `Value` reads a float: one JSON cannot hold becomes null.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// A key, borrowed from the body when it holds no escape.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }

    fn into_owned(self) -> String {
        match self {
            Key::Borrowed(s) => s.to_owned(),
            Key::Owned(s) => s,
        }
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::Borrowed(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v))
    }
}

/// The scalar visits of a visitor that reads a value through and answers
/// `$answer` for any of them (null apart: each visitor says what it is).
macro_rules! read_through_scalars {
    ($answer:expr) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($answer)
        }

        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($answer)
        }

        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($answer)
        }

        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($answer)
        }

        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($answer)
        }
    };
}

/// A value read and dropped. Not `serde::de::IgnoredAny`: serde_json skips
/// that without checking numbers' range or strings' UTF-8, and a body with
/// `1e400` in a field nobody reads would then pass ingest and be refused by
/// the worker. This asks for every value as `Value` does, and keeps nothing.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(KeySkip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    read_through_scalars!(());

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A value read through as [`Skip`] reads it: `null` if it is null,
/// otherwise `true`.
struct Presence;

impl<'de> DeserializeSeed<'de> for Presence {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Presence {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        Skip.visit_map(map).map(|()| Value::Bool(true))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        Skip.visit_seq(seq).map(|()| Value::Bool(true))
    }

    read_through_scalars!(Value::Bool(true));

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// A key read as a string, as `Value` reads keys, and dropped.
struct KeySkip;

impl<'de> DeserializeSeed<'de> for KeySkip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(Skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READS: Reads = Reads::values(&[&["message", "type"], &["message", "call", "id"]]);

    /// What the worker's full parse makes of `body`, as `skim` reports it.
    fn whole(body: &[u8]) -> Result<Body, ParseError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => Ok(object),
            Ok(_) => Err(ParseError::NotAnObject),
            Err(e) => Err(ParseError::NotJson(e.to_string())),
        }
    }

    #[test]
    fn only_the_values_on_the_paths_are_kept_and_the_last_of_each_whole() {
        let body = br#"{"message": {"type": "end-of-call-report", "summary": "long",
            "call": {"id": {"nested": [1, 2]}, "status": "ended"}, "artifact": {"messages": [1]}},
            "other": [1, 2, 3]}"#;
        let kept = skim(body, READS).unwrap();
        assert_eq!(
            Value::Object(kept),
            serde_json::json!({"message": {"type": "end-of-call-report", "call": {"id": {"nested": [1, 2]}}}})
        );
    }

    #[test]
    fn a_value_on_the_way_that_is_not_an_object_is_kept_as_it_is() {
        for body in [
            &br#"{"message": "end-of-call-report"}"#[..],
            br#"{"message": [{"type": "end-of-call-report"}]}"#,
            br#"{"message": {"call": null, "type": 7}}"#,
            br#"{"message": {"call": 1.5e3}}"#,
        ] {
            let whole = whole(body).unwrap();
            assert_eq!(
                skim(body, READS).unwrap(),
                whole,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_key_given_twice_keeps_its_last_value_as_the_full_parse_does() {
        let body =
            br#"{"message": {"type": "a", "type": "b", "call": {"id": "1"}, "call": {"id": "2"}}}"#;
        let kept = skim(body, READS).unwrap();
        assert_eq!(kept, whole(body).unwrap());
        assert_eq!(kept["message"]["type"], "b");
    }

    #[test]
    fn whatever_the_full_parse_refuses_in_a_field_nobody_reads_is_refused_with_the_same_error() {
        let deep = format!("{{\"x\": {}1{}}}", "[".repeat(200), "]".repeat(200));
        let cases: Vec<Vec<u8>> = vec![
            // Out of range for an f64: `IgnoredAny` would let it through.
            br#"{"x": 1e400, "message": {"type": "end-of-call-report"}}"#.to_vec(),
            br#"{"x": [-1e999]}"#.to_vec(),
            // A string that is not UTF-8, in a value and in a key.
            b"{\"x\": \"\xff\xfe\"}".to_vec(),
            b"{\"\xc3\x28\": 1}".to_vec(),
            // A bad escape, a control character, a lone surrogate.
            br#"{"x": "\q"}"#.to_vec(),
            b"{\"x\": \"a\x01b\"}".to_vec(),
            br#"{"x": "\ud800"}"#.to_vec(),
            // Deeper than the parser's limit.
            deep.into_bytes(),
            // Trailing characters, a missing brace, a trailing comma.
            br#"{"message": {}} x"#.to_vec(),
            br#"{"message": {}"#.to_vec(),
            br#"{"x": [1, 2,]}"#.to_vec(),
            b"".to_vec(),
        ];
        for body in cases {
            let expected = whole(&body);
            assert!(expected.is_err(), "{}", String::from_utf8_lossy(&body));
            assert_eq!(
                skim(&body, READS),
                expected,
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_as_such() {
        for body in [&b"[1, 2]"[..], b"\"message\"", b"null", b"12"] {
            assert_eq!(skim(body, READS), Err(ParseError::NotAnObject));
        }
    }

    #[test]
    fn a_value_read_for_its_presence_is_kept_as_true_or_null_whatever_it_held() {
        let reads = Reads {
            values: &[&["id"]],
            present: &[
                &["transcripts"],
                &["summary"],
                &["gone"],
                &["inner", "text"],
            ],
        };
        let body = br#"{"id": "c1", "transcripts": [{"text": "long"}], "summary": null,
            "inner": {"text": "x", "other": 1}, "other": "y"}"#;
        assert_eq!(
            Value::Object(skim(body, reads).unwrap()),
            serde_json::json!({"id": "c1", "transcripts": true, "summary": null, "inner": {"text": true}})
        );
        // Read through, it is still checked as a full parse checks it.
        let bad = br#"{"transcripts": [1e400]}"#;
        assert_eq!(skim(bad, reads), whole(bad));
    }

    #[test]
    fn escaped_keys_are_matched_by_what_they_say() {
        let body = br#"{"mess\u0061ge": {"\u0074ype": "end-of-call-report", "x": 1}}"#;
        assert_eq!(
            Value::Object(skim(body, READS).unwrap()),
            serde_json::json!({"message": {"type": "end-of-call-report"}})
        );
    }
}
