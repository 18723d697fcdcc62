//! A YAML tree with byte spans, built from marked-yaml's nodes (which only record where a
//! value starts). Scenario errors point at `file:line:col` like topology errors do.

use marked_yaml::loader::{parse_yaml_with_options, LoaderOptions};
use marked_yaml::{LoadError, Marker, Node};
use topo_spec::{Diagnostic, Span};

#[derive(Debug, Clone)]
pub enum Y {
    Scalar(Scalar),
    Seq(Vec<Y>, Span),
    Map(Map),
}

#[derive(Debug, Clone)]
pub struct Scalar {
    pub s: String,
    pub span: Span,
    /// Unquoted: only plain scalars can mean null.
    pub plain: bool,
}

#[derive(Debug, Clone)]
pub struct Map {
    pub entries: Vec<(Scalar, Y)>,
    pub span: Span,
}

impl Map {
    pub fn get(&self, key: &str) -> Option<&Y> {
        self.entries.iter().find(|(k, _)| k.s == key).map(|(_, v)| v)
    }
}

impl Y {
    pub fn span(&self) -> Span {
        match self {
            Y::Scalar(s) => s.span,
            Y::Seq(_, span) => *span,
            Y::Map(m) => m.span,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Y::Scalar(s) if s.plain && matches!(s.s.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            _ if self.is_null() => "nothing (null)",
            Y::Scalar(_) => "a scalar",
            Y::Seq(..) => "a list",
            Y::Map(_) => "a mapping",
        }
    }

    /// The first byte this value covers: for a mapping its first key, for a list its first item.
    pub fn start(&self) -> usize {
        match self {
            Y::Scalar(s) => s.span.offset,
            Y::Seq(items, span) => items.first().map_or(span.offset, |i| i.start().min(span.offset)),
            Y::Map(m) => m.entries.first().map_or(m.span.offset, |(k, _)| k.span.offset.min(m.span.offset)),
        }
    }
}

/// Byte offsets of line starts.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    fn offset(&self, line: usize, col: usize) -> usize {
        let Some(&start) = self.starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        let line_text = &rest[..rest.find('\n').unwrap_or(rest.len())];
        start + line_text.char_indices().nth(col.saturating_sub(1)).map_or(line_text.len(), |(i, _)| i)
    }

    fn span_at(&self, m: &Marker, len: usize) -> Span {
        let offset = self.offset(m.line(), m.column());
        Span {
            offset,
            len: len.min(self.text.len().saturating_sub(offset)),
            line: m.line() as u32,
            col: m.column() as u32,
        }
    }

    /// Start of the line holding `offset`.
    pub fn line_start(&self, offset: usize) -> usize {
        let i = self.starts.partition_point(|&s| s <= offset).saturating_sub(1);
        self.starts[i]
    }

    /// Length of the scalar at `offset` on its line (quoted: to the closing quote).
    fn scalar_len(&self, offset: usize, value: &str) -> usize {
        let rest = &self.text[offset.min(self.text.len())..];
        let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
        match line.as_bytes().first() {
            Some(&q @ (b'"' | b'\'')) => line[1..].find(q as char).map_or(line.len(), |i| i + 2),
            _ if !value.is_empty() && line.starts_with(value) => value.len(),
            _ => line.find(" #").unwrap_or(line.len()).max(1),
        }
    }
}

/// Parse a YAML document whose top level must be a mapping.
pub fn parse(text: &str) -> Result<Map, Diagnostic> {
    let idx = LineIndex::new(text);
    let opts = LoaderOptions::default().error_on_duplicate_keys(true).prevent_coercion(true);
    let node = parse_yaml_with_options(0, text, opts).map_err(|e| load_error(&idx, &e))?;
    match convert(&idx, &node) {
        Y::Map(m) => Ok(m),
        other => {
            Err(Diagnostic::new("topo::yaml", other.span(), "the top level of a scenario must be a mapping")
                .label("expected `name:`, `topology:`, `steps:`"))
        }
    }
}

fn convert(idx: &LineIndex<'_>, node: &Node) -> Y {
    match node {
        Node::Scalar(s) => {
            let span = s.span().start().map_or_else(Span::default, |m| {
                let offset = idx.offset(m.line(), m.column());
                idx.span_at(m, idx.scalar_len(offset, s.as_str()))
            });
            Y::Scalar(Scalar { s: s.as_str().to_owned(), span, plain: s.may_coerce() })
        }
        Node::Sequence(seq) => {
            let span = seq.span().start().map(|m| idx.span_at(m, 1)).unwrap_or_default();
            Y::Seq(seq.iter().map(|n| convert(idx, n)).collect(), span)
        }
        Node::Mapping(map) => {
            let span = map.span().start().map(|m| idx.span_at(m, 1)).unwrap_or_default();
            let entries = map
                .iter()
                .map(|(k, v)| {
                    let key = match convert(idx, &Node::Scalar(k.clone())) {
                        Y::Scalar(s) => s,
                        _ => Scalar { s: k.as_str().to_owned(), span, plain: true },
                    };
                    (key, convert(idx, v))
                })
                .collect();
            Y::Map(Map { entries, span })
        }
    }
}

fn load_error(idx: &LineIndex<'_>, e: &LoadError) -> Diagnostic {
    let at = |m: &Marker| idx.span_at(m, 1);
    match e {
        LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => {
            Diagnostic::new("topo::yaml", at(m), "the top level of a scenario must be a mapping")
                .label("expected `name:`, `topology:`, `steps:`")
        }
        LoadError::UnexpectedAnchor(m) => {
            Diagnostic::new("topo::yaml", at(m), "YAML anchors and aliases are not supported")
                .label("anchor here")
                .help("use a `repeat:` block to run steps more than once")
        }
        LoadError::MappingKeyMustBeScalar(m) => {
            Diagnostic::new("topo::yaml", at(m), "mapping keys must be plain strings").label("complex key")
        }
        LoadError::UnexpectedTag(m) => {
            Diagnostic::new("topo::yaml", at(m), "YAML tags (`!tag`) are not supported").label("tag here")
        }
        LoadError::ScanError(m, err) => {
            Diagnostic::new("topo::yaml", at(m), format!("invalid YAML: {}", err.info())).label("here")
        }
        LoadError::DuplicateKey(inner) => {
            let k = inner.key.as_str();
            let first = inner.prev_key.span().start().map(|m| idx.span_at(m, k.len())).unwrap_or_default();
            let second = inner.key.span().start().map(|m| idx.span_at(m, k.len())).unwrap_or_default();
            Diagnostic::new(
                "topo::duplicate-key",
                second,
                format!("key `{k}` is given twice in the same mapping"),
            )
            .label("second definition")
            .related(first, "first defined here")
        }
    }
}
