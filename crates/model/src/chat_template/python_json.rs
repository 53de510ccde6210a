//! JSON as Hugging Face templates see it. `apply_chat_template` passes Python objects (dicts keep
//! the request's key order) and replaces Jinja's `tojson` with plain `json.dumps`: `", "` and
//! `": "` separators, no HTML escaping, non-ASCII kept (`ensure_ascii=False`). Tool definitions
//! are rendered through it into the prompt, so the model sees them byte for byte as it would under
//! transformers.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// A request's JSON as a template value, objects in their original key order.
pub fn to_template_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => items.iter().map(to_template_value).collect(),
        serde_json::Value::Object(map) => Value::from_pairs(map.iter().map(|(k, v)| (Value::from(k.as_str()), to_template_value(v))).collect::<Vec<_>>()),
    }
}

/// The `tojson` filter: `json.dumps(value, ensure_ascii=False, indent=indent)`. Other keyword
/// arguments templates pass (`ensure_ascii`, `sort_keys`, `separators`) are accepted; only
/// `indent` changes the output.
pub fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent.or(kwargs.get::<Option<Value>>("indent")?) {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(usize::try_from(v)?),
    };
    for name in ["ensure_ascii", "sort_keys", "separators"] {
        let _: Option<Value> = kwargs.get(name)?;
    }
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_value(&mut out, value, indent, 0)?;
    Ok(Value::from(out))
}

/// `json.dumps(value, ensure_ascii=False)` of a request's JSON.
pub fn tojson_string(v: &serde_json::Value) -> String {
    let mut out = String::new();
    // Values converted from JSON always serialize.
    let _ = write_value(&mut out, &to_template_value(v), None, 0);
    out
}

fn write_value(out: &mut String, v: &Value, indent: Option<usize>, depth: usize) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, v),
        ValueKind::String => write_str(out, v.as_str().unwrap_or_default()),
        ValueKind::Map => {
            let keys: Vec<Value> = v.try_iter()?.collect();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                separate(out, i, indent, depth + 1);
                write_str(out, &key.to_string());
                out.push_str(": ");
                write_value(out, &v.get_item(key)?, indent, depth + 1)?;
            }
            close(out, '}', keys.is_empty(), indent, depth);
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separate(out, i, indent, depth + 1);
                write_value(out, item, indent, depth + 1)?;
            }
            close(out, ']', items.is_empty(), indent, depth);
        }
        other => return Err(Error::new(ErrorKind::InvalidOperation, format!("tojson: cannot serialize a {other}"))),
    }
    Ok(())
}

/// Python's separators: `", "` inline; `","` then a new indented line with `indent`.
fn separate(out: &mut String, i: usize, indent: Option<usize>, depth: usize) {
    match indent {
        None if i > 0 => out.push_str(", "),
        None => {}
        Some(n) => {
            if i > 0 {
                out.push(',');
            }
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    }
}

fn close(out: &mut String, bracket: char, empty: bool, indent: Option<usize>, depth: usize) {
    if let (Some(n), false) = (indent, empty) {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', n * depth));
    }
    out.push(bracket);
}

/// Integers as integers; floats as Python's `repr` for the common cases (`1.0`, `0.5`, `1e-05`).
fn write_number(out: &mut String, v: &Value) {
    if let Ok(i) = i64::try_from(v.clone()) {
        if !v.is_integer() {
            // A float with an integral value keeps its `.0`.
            out.push_str(&format!("{i}.0"));
        } else {
            out.push_str(&i.to_string());
        }
        return;
    }
    match f64::try_from(v.clone()) {
        Ok(f) if f.is_finite() => {
            let s = format!("{f:e}");
            let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
            let exp: i32 = exp.parse().unwrap_or(0);
            // Python's repr switches to exponent notation below 1e-4 and from 1e16.
            if (-4..16).contains(&exp) {
                out.push_str(&f.to_string());
            } else {
                out.push_str(&format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()));
            }
        }
        Ok(f) if f.is_nan() => out.push_str("NaN"),
        Ok(f) => out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" }),
        Err(_) => out.push_str(&v.to_string()),
    }
}

/// A JSON string as `json.dumps(ensure_ascii=False)` writes it.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumps(json: &str, indent: Option<usize>) -> String {
        let v = to_template_value(&serde_json::from_str(json).unwrap());
        let mut out = String::new();
        write_value(&mut out, &v, indent, 0).unwrap();
        out
    }

    /// Expected strings are Python 3's `json.dumps(json.loads(s), ensure_ascii=False[, indent=2])`.
    #[test]
    fn matches_python_json_dumps() {
        let src = r#"{"type": "function", "b": [1, 2.5, -3, 1e-07, 1.0, true, null], "a": {"<x>": "é'\"\n\u0001"}, "e": {}, "l": []}"#;
        assert_eq!(dumps(src, None), "{\"type\": \"function\", \"b\": [1, 2.5, -3, 1e-07, 1.0, true, null], \"a\": {\"<x>\": \"é'\\\"\\n\\u0001\"}, \"e\": {}, \"l\": []}");
        assert_eq!(dumps(r#"{"a": [1, {"b": null}], "c": []}"#, Some(2)), "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": []\n}");
        assert_eq!(dumps("[1e20, 123456789012345680000.0, 0.0001, 0.00001]", None), "[1e+20, 1.2345678901234568e+20, 0.0001, 1e-05]");
    }
}
