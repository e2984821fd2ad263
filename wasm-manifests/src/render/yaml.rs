//! A small YAML emitter over `serde_json::Value`, used instead of serde_yaml's serializer for
//! two reasons that matter to Kubernetes: serde_yaml writes YAML 1.2 plain scalars such as
//! `no`, `on` or `y` unquoted, which Kubernetes' YAML 1.1 decoder reads as booleans, and it
//! writes enums as `!tags`, which no Kubernetes decoder accepts. Here every string that is not
//! unmistakably a plain string is double-quoted (JSON escaping is valid YAML), multi-line
//! strings become literal blocks, and output is deterministic. Knows nothing of manifests.

use serde_json::Value;

/// Words YAML 1.1 resolves to booleans or null.
const RESERVED: &[&str] = &[
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~",
];

/// YAML text of `v` (a mapping or sequence at the top), ending with a newline.
pub(crate) fn to_string(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other, 0));
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    for (k, v) in m {
        pad(out, indent);
        out.push_str(&key(k));
        out.push(':');
        value_after_key(out, v, indent);
    }
}

fn seq(out: &mut String, a: &[Value], indent: usize) {
    for v in a {
        pad(out, indent);
        out.push('-');
        match v {
            Value::Object(m) if !m.is_empty() => {
                // First key on the dash line, the rest aligned under it.
                let mut first = true;
                for (k, val) in m {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        pad(out, indent + 2);
                    }
                    out.push_str(&key(k));
                    out.push(':');
                    value_after_key(out, val, indent + 2);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                seq(out, inner, indent + 2);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn value_after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            map(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            seq(out, a, indent);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other, indent + 2));
            out.push('\n');
        }
    }
}

fn key(k: &str) -> String {
    if plain_ok(k) {
        k.to_string()
    } else {
        quoted(k)
    }
}

fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s, indent),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

fn string(s: &str, indent: usize) -> String {
    if s.contains('\n') && s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t') {
        // Literal block; `-` strips the final newline when the string has none, `+` keeps
        // extra trailing newlines; an indentation indicator guards leading spaces.
        let chomp = if !s.ends_with('\n') {
            "-"
        } else if s.ends_with("\n\n") {
            "+"
        } else {
            ""
        };
        let ind = if s.starts_with(' ') { "2" } else { "" };
        let mut out = format!("|{ind}{chomp}\n");
        let body = s.strip_suffix('\n').unwrap_or(s);
        let lines: Vec<&str> = body.split('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.is_empty() {
                for _ in 0..indent {
                    out.push(' ');
                }
                out.push_str(line);
            }
            if i + 1 < lines.len() {
                out.push('\n');
            }
        }
        out
    } else if plain_ok(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

/// A plain scalar that every YAML 1.1 and 1.2 reader takes as this exact string.
fn plain_ok(s: &str) -> bool {
    if s.is_empty() || RESERVED.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_alphabetic() || first == b'/' || first == b'_') {
        return false;
    }
    if s.ends_with(':') || s.contains(": ") || s.contains(" #") {
        return false;
    }
    // Anything that could read as a number, date or special value starts with a letter or /
    // here; keep to a conservative alphabet.
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:@ ".contains(&b))
        && !s.ends_with(' ')
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_1_1_booleans_and_numbers_stay_strings() {
        let v = json!({"a": ["no", "on", "Y", "1.0", "", "0755", "x: y", "#c", "ok/path-1"]});
        let text = to_string(&v);
        let back: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, v);
        assert!(text.contains("\"no\""), "{text}");
        assert!(text.contains("- ok/path-1"), "{text}");
    }

    #[test]
    fn multi_line_strings_round_trip_as_literal_blocks() {
        for s in ["#!/bin/sh\necho hi\n", "a\n  b", "  lead\nx\n", "x\n\n\n"] {
            let v = json!({"data": {"k": s}, "list": [s]});
            let text = to_string(&v);
            let back: serde_json::Value = serde_yaml::from_str(&text).unwrap();
            assert_eq!(back, v, "{text}");
        }
    }

    #[test]
    fn nested_sequences_and_empty_collections_round_trip() {
        let v = json!({"a": [[1, 2], {"b": []}, {"c": {}}], "d": {"e": [{"f": 1, "g": [true]}]}});
        let back: serde_json::Value = serde_yaml::from_str(&to_string(&v)).unwrap();
        assert_eq!(back, v);
    }
}
