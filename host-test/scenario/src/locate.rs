//! Where each node of a YAML document starts (line and column), by path, so checks made
//! after deserializing (an unknown template name, a status mix that does not add up) can
//! point at the line a person has to fix. Knows nothing of the scenario model.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A position in a file: 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// Node positions by dotted path: `phases.1.templates.browse` (a map key's own position is
/// stored under the same path as its value, and wins: that is where a person looks).
#[derive(Debug, Default)]
pub struct Locations {
    by_path: HashMap<String, Position>,
}

impl Locations {
    /// Indexes `text`. A document that does not parse gives an empty index (the
    /// deserializer reports the syntax error with its own position).
    pub fn index(text: &str) -> Self {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut walker, false).is_err() {
            return Locations::default();
        }
        Locations {
            by_path: walker.found,
        }
    }

    /// The position of `path`, or of its nearest indexed ancestor.
    pub fn find(&self, path: &[&str]) -> Option<Position> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.by_path.get(&path[..n].join(".")).copied())
    }
}

enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    found: HashMap<String, Position>,
}

impl Walker {
    fn path(&self) -> String {
        let parts: Vec<String> = self
            .stack
            .iter()
            .filter_map(|f| match f {
                Frame::Map { key } => key.clone(),
                Frame::Seq { index } => Some(index.to_string()),
            })
            .collect();
        parts.join(".")
    }

    /// Called when a value (scalar, map or sequence) starts. Returns true when the node
    /// was a map key instead.
    fn at_node(&mut self, scalar: Option<&str>, mark: Marker) -> bool {
        let pos = Position {
            line: mark.line(),
            col: mark.col() + 1,
        };
        if let Some(Frame::Map { key }) = self.stack.last_mut() {
            if key.is_none() {
                *key = Some(scalar.unwrap_or("?").to_string());
                let path = self.path();
                self.found.insert(path, pos);
                return true;
            }
        }
        let path = self.path();
        self.found.entry(path).or_insert(pos);
        false
    }

    /// Called when a value is complete: the parent moves on to its next entry.
    fn after_value(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key }) => *key = None,
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) if !self.at_node(Some(&value), mark) => self.after_value(),
            Event::Alias(_) if !self.at_node(None, mark) => self.after_value(),
            Event::MappingStart(..) => {
                self.at_node(None, mark);
                self.stack.push(Frame::Map { key: None });
            }
            Event::SequenceStart(..) => {
                self.at_node(None, mark);
                self.stack.push(Frame::Seq { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.after_value();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_sequence_items() {
        let text = "a: 1\nphases:\n  - name: x\n    templates:\n      browse: 2\n  - name: y\n";
        let loc = Locations::index(text);
        assert_eq!(loc.find(&["a"]), Some(Position { line: 1, col: 1 }));
        assert_eq!(
            loc.find(&["phases", "0", "templates", "browse"]),
            Some(Position { line: 5, col: 7 })
        );
        assert_eq!(
            loc.find(&["phases", "1", "name"]),
            Some(Position { line: 6, col: 5 })
        );
        // Unknown leaf: nearest ancestor.
        assert_eq!(
            loc.find(&["phases", "1", "name", "zzz"]),
            Some(Position { line: 6, col: 5 })
        );
    }
}
