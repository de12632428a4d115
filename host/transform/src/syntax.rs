//! A small cursor over text shared by the path and condition parsers.

use std::fmt;

/// A syntax error at a character offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// What was wrong.
    pub message: String,
    /// Byte offset into the parsed text.
    pub offset: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at offset {})", self.message, self.offset)
    }
}

impl std::error::Error for SyntaxError {}

/// Position in a text being parsed.
pub(crate) struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
    nodes: usize,
}

/// Nesting limit (parentheses, filters, lists, `!`) so hostile input cannot
/// overflow the stack while parsing, evaluating or dropping.
const MAX_DEPTH: usize = 64;
/// Limit on syntax nodes (operands, operators, path steps) per expression.
const MAX_NODES: usize = 1024;

impl<'a> Cursor<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Cursor {
            text,
            pos: 0,
            depth: 0,
            nodes: 0,
        }
    }

    /// Enters a nested construct; fails when nested too deeply.
    pub(crate) fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("expression nested too deeply"));
        }
        Ok(())
    }

    /// Leaves a nested construct.
    pub(crate) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Counts one syntax node; fails when the expression is too large.
    pub(crate) fn node(&mut self) -> Result<(), SyntaxError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.error("expression too large"));
        }
        Ok(())
    }

    pub(crate) fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    pub(crate) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(crate) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    pub(crate) fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    pub(crate) fn eat_str(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// Consumes `word` case-insensitively when it is followed by a non-word
    /// character.
    pub(crate) fn eat_keyword(&mut self, word: &str) -> bool {
        let rest = self.rest();
        if rest.len() >= word.len()
            && rest.is_char_boundary(word.len())
            && rest[..word.len()].eq_ignore_ascii_case(word)
            && !rest[word.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, c: char) -> Result<(), SyntaxError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(format!("expected '{c}'")))
        }
    }

    pub(crate) fn skip_ws(&mut self) {
        self.take_while(char::is_whitespace);
    }

    pub(crate) fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c: char| !f(c)).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            message: message.into(),
            offset: self.pos,
        }
    }

    /// A `'…'` or `"…"` literal; backslash escapes the next character.
    pub(crate) fn string_literal(&mut self) -> Result<String, SyntaxError> {
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(self.error("expected a quoted string")),
        };
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error("unterminated string")),
                Some('\\') => match self.bump() {
                    Some(c) => out.push(c),
                    None => return Err(self.error("unterminated string")),
                },
                Some(c) if c == quote => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    /// An optional signed integer.
    pub(crate) fn opt_int(&mut self) -> Result<Option<i64>, SyntaxError> {
        let start = self.pos;
        self.eat('-');
        let digits = self.take_while(|c| c.is_ascii_digit());
        if digits.is_empty() {
            self.pos = start;
            return Ok(None);
        }
        self.text[start..self.pos]
            .parse()
            .map(Some)
            .map_err(|_| self.error("integer out of range"))
    }

    /// A JSON-style number.
    pub(crate) fn number(&mut self) -> Option<serde_json::Number> {
        let start = self.pos;
        self.eat('-');
        if self.take_while(|c| c.is_ascii_digit()).is_empty() {
            self.pos = start;
            return None;
        }
        let before_frac = self.pos;
        if self.eat('.') && self.take_while(|c| c.is_ascii_digit()).is_empty() {
            self.pos = before_frac;
        }
        let before_exp = self.pos;
        if self.eat('e') || self.eat('E') {
            if !self.eat('+') {
                self.eat('-');
            }
            if self.take_while(|c| c.is_ascii_digit()).is_empty() {
                self.pos = before_exp;
            }
        }
        let text = &self.text[start..self.pos];
        if let Ok(i) = text.parse::<i64>() {
            return Some(i.into());
        }
        text.parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .or_else(|| {
                self.pos = start;
                None
            })
    }
}
