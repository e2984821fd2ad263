//! YAML text to a JSON value plus a map from field path (`routes[0].ratelimit.rules[1]`)
//! to where that field is written, so every problem found later (serde's first one and all
//! of `validate`'s) can be shown as file:line:column. One document only; anchors and aliases
//! are expanded; duplicate keys and non-string keys are errors. Scalars follow the YAML 1.2
//! core schema (what yaml-rust2 resolves): `true`, `10`, `1.5`, `null`/`~`; quoted = string.
//! Knows nothing of the policy's types.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

use super::error::{PolicyError, PolicyErrors};

/// A loaded document.
pub(crate) struct Doc {
    pub(crate) value: Value,
    positions: HashMap<String, (usize, usize)>,
}

impl Doc {
    /// Line and column (1-based) of `path`, or of its nearest written ancestor.
    pub(crate) fn locate(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return *pos;
            }
            // Drop the last segment: `a.b[2]` -> `a.b`, `a.b` -> `a`.
            match p.rfind(['.', '[']) {
                Some(0) | None => return self.positions.get("").copied().unwrap_or((1, 1)),
                Some(i) => p = p.get(..i).unwrap_or(""),
            }
        }
    }
}

enum Frame {
    Seq {
        path: String,
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        path: String,
        map: Map<String, Value>,
        key: Option<String>,
        anchor: usize,
    },
}

struct Loader<'a> {
    file: &'a str,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    positions: HashMap<String, (usize, usize)>,
    root: Option<Value>,
    documents: usize,
    errors: Vec<PolicyError>,
}

fn pos(m: Marker) -> (usize, usize) {
    // yaml-rust2 markers: line 1-based, column 0-based.
    (m.line(), m.col() + 1)
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn scalar(v: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(v);
    }
    match Yaml::from_str(&v) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or(Value::String(v), Value::Number),
        _ => Value::String(v),
    }
}

impl Loader<'_> {
    fn error(&mut self, mark: Marker, path: &str, message: String) {
        let (line, column) = pos(mark);
        self.errors.push(PolicyError {
            file: self.file.to_string(),
            line,
            column,
            path: if path.is_empty() {
                ".".into()
            } else {
                path.into()
            },
            message,
        });
    }

    /// A node starts: returns its path, records its position, and whether it is a mapping key.
    fn begin(&mut self, mark: Marker) -> (String, bool) {
        match self.stack.last() {
            None => {
                self.positions.insert(String::new(), pos(mark));
                (String::new(), false)
            }
            Some(Frame::Seq { path, items, .. }) => {
                let p = format!("{path}[{}]", items.len());
                self.positions.insert(p.clone(), pos(mark));
                (p, false)
            }
            Some(Frame::Map {
                path, key: None, ..
            }) => (path.clone(), true),
            Some(Frame::Map {
                path, key: Some(k), ..
            }) => (join(path, k), false),
        }
    }

    /// A node is complete: attach it to its parent.
    fn finish(&mut self, value: Value, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(value);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, .. }) => {
                if let Some(k) = key.take() {
                    map.insert(k, value);
                }
            }
        }
    }

    fn key(&mut self, path: &str, name: String, mark: Marker) {
        let full = join(path, &name);
        let dup = match self.stack.last() {
            Some(Frame::Map { map, .. }) => map.contains_key(&name),
            _ => false,
        };
        if dup {
            self.error(mark, &full, format!("duplicate key `{name}`"));
        }
        self.positions.entry(full).or_insert(pos(mark));
        // A block mapping's start event is marked at its first `:`; point at the first key.
        if let Some(at) = self.positions.get_mut(path) {
            let (l, c) = pos(mark);
            if at.0 == l && c < at.1 {
                at.1 = c;
            }
        }
        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
            *key = Some(name);
        }
    }
}

impl MarkedEventReceiver for Loader<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.error(mark, "", "only one YAML document is allowed".into());
                }
            }
            Event::Scalar(v, style, anchor, _tag) => {
                let (path, is_key) = self.begin(mark);
                if is_key {
                    self.key(&path, v, mark);
                } else {
                    self.finish(scalar(v, style), anchor);
                }
            }
            Event::Alias(id) => {
                let (path, is_key) = self.begin(mark);
                let value = self.anchors.get(&id).cloned().unwrap_or(Value::Null);
                if is_key {
                    match value {
                        Value::String(s) => self.key(&path, s, mark),
                        _ => self.error(mark, &path, "mapping keys must be strings".into()),
                    }
                } else {
                    self.finish(value, 0);
                }
            }
            Event::SequenceStart(anchor, _) => {
                let (path, is_key) = self.begin(mark);
                if is_key {
                    self.error(mark, &path, "mapping keys must be strings".into());
                }
                self.stack.push(Frame::Seq {
                    path,
                    items: Vec::new(),
                    anchor,
                });
            }
            Event::MappingStart(anchor, _) => {
                let (path, is_key) = self.begin(mark);
                if is_key {
                    self.error(mark, &path, "mapping keys must be strings".into());
                }
                self.stack.push(Frame::Map {
                    path,
                    map: Map::new(),
                    key: None,
                    anchor,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { items, anchor, .. }) => (Value::Array(items), anchor),
                    Some(Frame::Map { map, anchor, .. }) => (Value::Object(map), anchor),
                    None => return,
                };
                self.finish(value, anchor);
            }
            _ => {}
        }
    }
}

/// Loads one YAML document.
pub(crate) fn load(text: &str, file: &str) -> Result<Doc, PolicyErrors> {
    let mut loader = Loader {
        file,
        stack: Vec::new(),
        anchors: HashMap::new(),
        positions: HashMap::new(),
        root: None,
        documents: 0,
        errors: Vec::new(),
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut loader, true) {
        let (line, column) = pos(*e.marker());
        return Err(PolicyErrors(vec![PolicyError {
            file: file.to_string(),
            line,
            column,
            path: ".".into(),
            message: format!("YAML syntax: {}", e.info()),
        }]));
    }
    if !loader.errors.is_empty() {
        return Err(PolicyErrors(loader.errors));
    }
    Ok(Doc {
        value: loader.root.unwrap_or(Value::Null),
        positions: loader.positions,
    })
}
