//! Lenient accessors over provider JSON: a field of the wrong type reads as
//! absent instead of failing the whole report.

use serde_json::{Map, Value};

/// The first of `keys` present in `object` (for snake_case/camelCase twins).
pub fn field<'a>(object: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .find_map(|k| object.get(*k))
        .filter(|v| !v.is_null())
}

pub fn object<'a>(object: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Map<String, Value>> {
    field(object, keys).and_then(Value::as_object)
}

/// A non-empty string; numbers are accepted and written in decimal, because
/// providers are not consistent about ids (`"12345"` vs `12345`).
pub fn text(object: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    match field(object, keys)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A non-negative number of seconds, from an integer, a float or a numeric string.
pub fn seconds(object: &Map<String, Value>, keys: &[&str]) -> Option<std::time::Duration> {
    let value = match field(object, keys)? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (value.is_finite() && value >= 0.0).then(|| std::time::Duration::from_secs_f64(value))
}

/// A flag that may be a boolean or a string such as `"true"`/`"yes"`.
pub fn flag(object: &Map<String, Value>, keys: &[&str]) -> bool {
    match field(object, keys) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "1")
        }
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// `object` without `known` keys: what a format carries that callsync does not map.
pub fn without(object: &Map<String, Value>, known: &[&str]) -> Map<String, Value> {
    object
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
