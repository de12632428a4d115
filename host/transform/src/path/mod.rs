//! JSONPath (Jayway flavour) as SAP transformations use it: syntax tree and
//! parser. Reading lives in [`read`], writing (SAP's own semantics) in
//! [`write`].
//!
//! No JSONPath crate fits: RFC 9535 implementations reject Jayway's `=~`
//! regex filters and `.length()`, and SAP's filters share their grammar with
//! SAP conditions (`EMPTY`, `NIN`, `contains`, `===`), so the path and the
//! condition parsers are one grammar here.

pub(crate) mod read;
pub(crate) mod write;

use std::fmt;

use crate::condition::{self, Expr};
use crate::syntax::{Cursor, SyntaxError};

/// Where a path starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    /// `$`: the document.
    Doc,
    /// `@`: the current element of a filter or function condition.
    Current,
}

/// One step of a path.
#[derive(Debug, Clone)]
pub(crate) enum Seg {
    /// `.name` or `['name']`.
    Key(String),
    /// `['a','b']`.
    Keys(Vec<String>),
    /// `[n]`, negative from the end.
    Index(i64),
    /// `[0,2]`.
    Indexes(Vec<i64>),
    /// `[start:end]`.
    Slice(Option<i64>, Option<i64>),
    /// `[*]` or `.*`.
    Wildcard,
    /// `[?(expr)]`.
    Filter(Box<Expr>),
    /// `..name`, `..*`, `..[n]`: the inner step applied at every depth.
    Deep(Box<Seg>),
}

/// A trailing path function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathFn {
    /// `.length()` / `.size()`.
    Length,
}

/// A parsed path.
#[derive(Debug, Clone)]
pub(crate) struct Path {
    pub(crate) root: Root,
    pub(crate) segs: Vec<Seg>,
    pub(crate) func: Option<PathFn>,
    /// A property step on an array applies to each element (SAP's
    /// `isValidEmail(emails.value)` form); such a path yields a list.
    pub(crate) lenient: bool,
}

impl Path {
    /// Parses a whole string as one path. Like Jayway, a path that does not
    /// start with `$` or `@` is read relative to the root (`name.givenName`).
    pub(crate) fn parse(text: &str) -> Result<Path, SyntaxError> {
        let trimmed = text.trim_start();
        if !trimmed.is_empty() && !trimmed.starts_with(['$', '@']) {
            let sep = if trimmed.starts_with('[') { "" } else { "." };
            return Path::parse(&format!("${sep}{trimmed}"));
        }
        let mut c = Cursor::new(text);
        c.skip_ws();
        let path = parse_at(&mut c)?;
        c.skip_ws();
        if !c.at_end() {
            return Err(c.error("unexpected text after the path"));
        }
        Ok(path)
    }

    /// True when the path names at most one node (no wildcard, filter,
    /// slice, deep scan or union): Jayway returns a value, not a list.
    pub(crate) fn is_definite(&self) -> bool {
        !self.lenient && self.segs.iter().all(|s| matches!(s, Seg::Key(_) | Seg::Index(_)))
    }
}

fn is_name_char(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(
            c,
            '.' | '[' | ']' | '(' | ')' | '=' | '!' | '<' | '>' | '&' | '|' | ',' | '\'' | '"' | '~'
        )
}

/// Parses a path starting at the cursor (which must be on `$` or `@`) and
/// stops at the first character that cannot continue it.
pub(crate) fn parse_at(c: &mut Cursor) -> Result<Path, SyntaxError> {
    let root = match c.peek() {
        Some('$') => Root::Doc,
        Some('@') => Root::Current,
        _ => return Err(c.error("a path must start with '$' or '@'")),
    };
    c.bump();
    let mut segs = Vec::new();
    let mut func = None;
    loop {
        c.node()?;
        match c.peek() {
            Some('.') if c.rest().starts_with("..") => {
                c.bump();
                c.bump();
                let inner = if c.peek() == Some('[') {
                    parse_bracket(c)?
                } else if c.eat('*') {
                    Seg::Wildcard
                } else {
                    Seg::Key(parse_name(c)?)
                };
                segs.push(Seg::Deep(Box::new(inner)));
            }
            Some('.') => {
                c.bump();
                if c.peek() == Some('[') {
                    // Jayway accepts `.['a','b']` like `['a','b']`.
                    segs.push(parse_bracket(c)?);
                    continue;
                }
                if c.eat('*') {
                    segs.push(Seg::Wildcard);
                    continue;
                }
                let name = parse_name(c)?;
                if c.rest().starts_with("()") {
                    c.bump();
                    c.bump();
                    func = Some(match name.as_str() {
                        "length" | "size" => PathFn::Length,
                        other => {
                            return Err(c.error(format!("unsupported path function {other}()")));
                        }
                    });
                    break;
                }
                segs.push(Seg::Key(name));
            }
            Some('[') => segs.push(parse_bracket(c)?),
            _ => break,
        }
    }
    Ok(Path {
        root,
        segs,
        func,
        lenient: false,
    })
}

fn parse_name(c: &mut Cursor) -> Result<String, SyntaxError> {
    let name = c.take_while(is_name_char);
    if name.is_empty() {
        return Err(c.error("expected a property name"));
    }
    Ok(name.to_string())
}

fn parse_bracket(c: &mut Cursor) -> Result<Seg, SyntaxError> {
    c.expect('[')?;
    c.skip_ws();
    let seg = match c.peek() {
        Some('*') => {
            c.bump();
            Seg::Wildcard
        }
        Some('?') => {
            c.bump();
            c.skip_ws();
            Seg::Filter(Box::new(condition::parse_expr_at(c)?))
        }
        Some('\'' | '"') => {
            let mut keys = vec![c.string_literal()?];
            c.skip_ws();
            while c.eat(',') {
                c.skip_ws();
                keys.push(c.string_literal()?);
                c.skip_ws();
            }
            if keys.len() == 1 {
                Seg::Key(keys.remove(0))
            } else {
                Seg::Keys(keys)
            }
        }
        _ => {
            let first = c.opt_int()?;
            c.skip_ws();
            if c.eat(':') {
                c.skip_ws();
                let end = c.opt_int()?;
                Seg::Slice(first, end)
            } else {
                let Some(first) = first else {
                    return Err(c.error("expected an index, '*', '?', or a quoted name"));
                };
                let mut idx = vec![first];
                while c.eat(',') {
                    c.skip_ws();
                    idx.push(c.opt_int()?.ok_or_else(|| c.error("expected an index"))?);
                    c.skip_ws();
                }
                if idx.len() == 1 {
                    Seg::Index(first)
                } else {
                    Seg::Indexes(idx)
                }
            }
        }
    };
    c.skip_ws();
    c.expect(']')?;
    Ok(seg)
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Root::Doc => "$",
            Root::Current => "@",
        })
    }
}
