//! JSON text (a filter's pluginConfig) to a [`Node`] tree, with serde_json's grammar, error
//! words and line/column positions, but none of its generic machinery: serde_json's parser
//! behind a tree visitor was about 16 KB of the rate-limit filter's Wasm, this is a few. The
//! error sites and their positions follow serde_json 1.0's `de.rs`/`read.rs` (`error` points
//! at the last byte read, `peek_error` at the next one); `json_test.rs` holds both to the
//! same tree or the same error, message, line and column on every one-byte edit of a full
//! policy. Objects keep their document order and refuse a repeated key. Nesting is limited
//! to 127 levels (serde_json's limit), so a hostile config cannot overflow the stack.
//! Knows nothing of the policy.

use std::fmt;

use super::de::Node;

/// A syntax error: what, and where (1-based line; column of the byte, 0 before a line's first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for JsonError {}

/// Nesting serde_json allows (its `remaining_depth`): the 128th open bracket is refused.
const MAX_DEPTH: u32 = 128;

const EOF_VALUE: &str = "EOF while parsing a value";
const EOF_STRING: &str = "EOF while parsing a string";
const EOF_LIST: &str = "EOF while parsing a list";
const EOF_OBJECT: &str = "EOF while parsing an object";
const INVALID_NUMBER: &str = "invalid number";
const INVALID_ESCAPE: &str = "invalid escape";
const OUT_OF_RANGE: &str = "number out of range";
const TRAILING_COMMA: &str = "trailing comma";
const LONE_SURROGATE: &str = "lone leading surrogate in hex escape";

/// Parses one JSON document (whitespace around it allowed, nothing else). (Errors are boxed
/// inside: a pointer is all the parser's functions pass up.)
pub(crate) fn parse(bytes: &[u8]) -> Result<Node, JsonError> {
    parse_boxed(bytes).map_err(|e| *e)
}

fn parse_boxed(bytes: &[u8]) -> Result<Node, Box<JsonError>> {
    let mut p = Parser {
        s: bytes,
        i: 0,
        depth: MAX_DEPTH,
    };
    let value = p.value()?;
    if p.ws().is_some() {
        return Err(p.peek_err("trailing characters"));
    }
    Ok(value)
}

struct Parser<'a> {
    s: &'a [u8],
    /// Index of the next byte to read.
    i: usize,
    /// Levels of nesting left.
    depth: u32,
}

impl Parser<'_> {
    /// Skips whitespace; the next byte, not consumed.
    fn ws(&mut self) -> Option<u8> {
        while let Some(&b) = self.s.get(self.i) {
            if !matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(b);
            }
            self.i += 1;
        }
        None
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    /// An error at the last byte read.
    fn err(&self, message: &str) -> Box<JsonError> {
        self.err_at(self.i, message.to_string())
    }

    /// An error at the next byte (at the end when there is none).
    fn peek_err(&self, message: &str) -> Box<JsonError> {
        self.err_at((self.i + 1).min(self.s.len()), message.to_string())
    }

    /// serde_json's position of index `i`: the line, and the bytes before `i` on it.
    fn err_at(&self, i: usize, message: String) -> Box<JsonError> {
        let before = self.s.get(..i).unwrap_or(self.s);
        let start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |n| n + 1);
        let line = 1 + before.iter().take(start).filter(|&&b| b == b'\n').count();
        Box::new(JsonError {
            line,
            column: i - start,
            message,
        })
    }

    fn value(&mut self) -> Result<Node, Box<JsonError>> {
        let Some(b) = self.ws() else {
            return Err(self.peek_err(EOF_VALUE));
        };
        match b {
            b'n' => self.ident(b"null", Node::Null),
            b't' => self.ident(b"true", Node::Bool(true)),
            b'f' => self.ident(b"false", Node::Bool(false)),
            b'-' => {
                self.i += 1;
                self.number(false)
            }
            b'0'..=b'9' => self.number(true),
            b'"' => {
                self.i += 1;
                self.string().map(Node::Str)
            }
            b'[' | b'{' => {
                self.depth -= 1;
                if self.depth == 0 {
                    return Err(self.peek_err("recursion limit exceeded"));
                }
                self.i += 1;
                let node = if b == b'[' { self.seq() } else { self.map() };
                self.depth += 1;
                node
            }
            _ => Err(self.peek_err("expected value")),
        }
    }

    /// `null`, `true` or `false`, whose first byte is the next one.
    fn ident(&mut self, word: &[u8], node: Node) -> Result<Node, Box<JsonError>> {
        self.i += 1;
        for &expected in word.iter().skip(1) {
            match self.next() {
                None => return Err(self.err(EOF_VALUE)),
                Some(b) if b != expected => return Err(self.err("expected ident")),
                Some(_) => {}
            }
        }
        Ok(node)
    }

    /// Elements after `[` up to and including `]`.
    fn seq(&mut self) -> Result<Node, Box<JsonError>> {
        let mut items = Vec::new();
        loop {
            match self.ws() {
                Some(b']') => break,
                Some(b',') if !items.is_empty() => {
                    self.i += 1;
                    match self.ws() {
                        Some(b']') => return Err(self.peek_err(TRAILING_COMMA)),
                        Some(_) => {}
                        None => return Err(self.peek_err(EOF_VALUE)),
                    }
                }
                Some(_) if !items.is_empty() => return Err(self.peek_err("expected `,` or `]`")),
                Some(_) => {}
                None => return Err(self.peek_err(EOF_LIST)),
            }
            items.push(self.value()?);
        }
        self.i += 1;
        Ok(Node::Seq(items))
    }

    /// Entries after `{` up to and including `}`.
    fn map(&mut self) -> Result<Node, Box<JsonError>> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        loop {
            let next = match self.ws() {
                Some(b'}') => break,
                Some(b',') if !entries.is_empty() => {
                    self.i += 1;
                    self.ws()
                }
                Some(_) if !entries.is_empty() => return Err(self.peek_err("expected `,` or `}`")),
                Some(b) => Some(b),
                None => return Err(self.peek_err(EOF_OBJECT)),
            };
            match next {
                Some(b'"') => self.i += 1,
                Some(b'}') => return Err(self.peek_err(TRAILING_COMMA)),
                Some(_) => return Err(self.peek_err("key must be a string")),
                None => return Err(self.peek_err(EOF_VALUE)),
            }
            let key = self.string()?;
            if entries.iter().any(|(k, _)| *k == key) {
                // serde_json places a visitor's error after the whitespace that follows.
                self.ws();
                return Err(self.err(&super::text::concat(&["duplicate key `", &key, "`"])));
            }
            match self.ws() {
                Some(b':') => self.i += 1,
                Some(_) => return Err(self.peek_err("expected `:`")),
                None => return Err(self.peek_err(EOF_OBJECT)),
            }
            let value = self.value()?;
            entries.push((key, value));
        }
        self.i += 1;
        Ok(Node::Map(entries))
    }

    /// The rest of a string after its opening quote, escapes decoded, UTF-8 checked.
    fn string(&mut self) -> Result<String, Box<JsonError>> {
        let mut out = Vec::new();
        loop {
            let Some(b) = self.next() else {
                return Err(self.err(EOF_STRING));
            };
            match b {
                b'"' => break,
                b'\\' => self.escape(&mut out)?,
                0..=0x1f => {
                    return Err(self
                        .err("control character (\\u0000-\\u001F) found while parsing a string"))
                }
                _ => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|e| {
            // serde_json points back from the closing quote to the first bad byte.
            let bad = e.as_bytes().len() - e.utf8_error().valid_up_to();
            let mut err = self.err("invalid unicode code point");
            err.column = err.column.saturating_sub(bad);
            err
        })
    }

    /// One escape after its backslash.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Box<JsonError>> {
        let Some(b) = self.next() else {
            return Err(self.err(EOF_STRING));
        };
        let byte = match b {
            b'"' | b'\\' | b'/' => b,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => return self.unicode_escape(out),
            _ => return Err(self.err(INVALID_ESCAPE)),
        };
        out.push(byte);
        Ok(())
    }

    /// `\uXXXX` after its `u`, a surrogate pair as one character.
    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> Result<(), Box<JsonError>> {
        let n = self.hex4()?;
        let code = match n {
            0xDC00..=0xDFFF => return Err(self.err(LONE_SURROGATE)),
            0xD800..=0xDBFF => {
                for expected in [b'\\', b'u'] {
                    match self.next() {
                        None => return Err(self.err(EOF_STRING)),
                        Some(b) if b != expected => {
                            return Err(self.err("unexpected end of hex escape"))
                        }
                        Some(_) => {}
                    }
                }
                let n2 = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&n2) {
                    return Err(self.err(LONE_SURROGATE));
                }
                (((n - 0xD800) << 10) | (n2 - 0xDC00)) + 0x1_0000
            }
            _ => n,
        };
        let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        Ok(())
    }

    /// Four hex digits.
    fn hex4(&mut self) -> Result<u32, Box<JsonError>> {
        let Some(digits) = self.s.get(self.i..self.i + 4) else {
            self.i = self.s.len();
            return Err(self.err(EOF_STRING));
        };
        self.i += 4;
        let mut n = 0;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.err(INVALID_ESCAPE)),
            };
            n = n * 16 + u32::from(v);
        }
        Ok(n)
    }

    /// A number after its sign: an integer that fits 64 bits is one, anything else a float.
    fn number(&mut self, positive: bool) -> Result<Node, Box<JsonError>> {
        let start = self.i;
        let mut significand: u64 = match self.next() {
            None => return Err(self.err(EOF_VALUE)),
            Some(b'0') => {
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return Err(self.peek_err(INVALID_NUMBER));
                }
                0
            }
            Some(b @ b'1'..=b'9') => u64::from(b - b'0'),
            Some(_) => return Err(self.err(INVALID_NUMBER)),
        };
        // Digits that did not fit: each one a power of ten.
        let mut exponent: i32 = 0;
        let mut float = false;
        while let Some(b @ b'0'..=b'9') = self.peek() {
            self.i += 1;
            match significand
                .checked_mul(10)
                .and_then(|s| s.checked_add(u64::from(b - b'0')))
            {
                Some(s) if !float => significand = s,
                _ => {
                    float = true;
                    exponent = exponent.saturating_add(1);
                }
            }
        }
        if self.peek() == Some(b'.') {
            float = true;
            self.i += 1;
            let mut digits = 0;
            let mut full = false;
            while let Some(b @ b'0'..=b'9') = self.peek() {
                self.i += 1;
                digits += 1;
                match significand
                    .checked_mul(10)
                    .and_then(|s| s.checked_add(u64::from(b - b'0')))
                {
                    Some(s) if !full => {
                        significand = s;
                        exponent = exponent.saturating_sub(1);
                    }
                    _ => full = true,
                }
            }
            if digits == 0 {
                return Err(match self.peek() {
                    Some(_) => self.peek_err(INVALID_NUMBER),
                    None => self.peek_err(EOF_VALUE),
                });
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            float = true;
            self.i += 1;
            let positive_exp = match self.peek() {
                Some(b'+') => {
                    self.i += 1;
                    true
                }
                Some(b'-') => {
                    self.i += 1;
                    false
                }
                _ => true,
            };
            let mut exp: i32 = match self.next() {
                None => return Err(self.err(EOF_VALUE)),
                Some(b @ b'0'..=b'9') => i32::from(b - b'0'),
                Some(_) => return Err(self.err(INVALID_NUMBER)),
            };
            while let Some(b @ b'0'..=b'9') = self.peek() {
                self.i += 1;
                match exp
                    .checked_mul(10)
                    .and_then(|e| e.checked_add(i32::from(b - b'0')))
                {
                    Some(e) => exp = e,
                    None if significand != 0 && positive_exp => return Err(self.err(OUT_OF_RANGE)),
                    None => {
                        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                            self.i += 1;
                        }
                        return Ok(Node::Float(if positive { 0.0 } else { -0.0 }));
                    }
                }
            }
            exponent = if positive_exp {
                exponent.saturating_add(exp)
            } else {
                exponent.saturating_sub(exp)
            };
        }
        if !float {
            if positive {
                return Ok(Node::Unsigned(significand));
            }
            // `-0` and what does not fit an i64 are floats, as in serde_json.
            let neg = (significand as i64).wrapping_neg();
            return Ok(if neg >= 0 {
                Node::Float(-(significand as f64))
            } else {
                Node::Signed(neg)
            });
        }
        let text = self.s.get(start..self.i).unwrap_or_default();
        match float_value(text, significand, exponent) {
            Some(f) => Ok(Node::Float(if positive { f } else { -f })),
            None => Err(self.err(OUT_OF_RANGE)),
        }
    }
}

/// The magnitude of a JSON float (`text` without its sign, also given as `significand` ×
/// 10^`exponent`), `None` when it is too large for an f64. Correctly rounded where a value
/// can be read (the renderer's `deployment:` section); the filters only ever refuse a
/// float, so their build keeps core's float parser out and approximates.
fn float_value(text: &[u8], significand: u64, exponent: i32) -> Option<f64> {
    #[cfg(feature = "deployment")]
    {
        let _ = (significand, exponent);
        let f: f64 = std::str::from_utf8(text).ok()?.parse().ok()?;
        f.is_finite().then_some(f)
    }
    #[cfg(not(feature = "deployment"))]
    {
        let _ = text;
        let f = significand as f64;
        if f == 0.0 {
            return Some(0.0);
        }
        if exponent >= 0 {
            let f = f * 10f64.powi(exponent);
            f.is_finite().then_some(f)
        } else {
            Some(f / 10f64.powi(exponent.saturating_neg()))
        }
    }
}

#[cfg(test)]
#[path = "json_test.rs"]
mod tests;
