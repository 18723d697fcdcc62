//! A small YAML tree with exact byte spans, built from marked-yaml's nodes.
//!
//! marked-yaml records only where a scalar starts (line and character column); the rest of
//! the spec stage wants byte ranges for miette snippets, so this module converts markers into
//! [`Span`]s once and measures each scalar's extent in the source text. Templates (defaults,
//! groups, counters) are then applied to this tree, which keeps every value's original span.

use marked_yaml::loader::{parse_yaml_with_options, LoaderOptions};
use marked_yaml::types::MarkedScalarNode;
use marked_yaml::{LoadError, Marker, Node};

use crate::diag::Diagnostic;
use crate::ir::Span;

/// A YAML value with its span.
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
    /// Unquoted (plain) scalar: `~`, `null` and the empty string mean "no value" only when plain.
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

impl Scalar {
    pub fn is_null(&self) -> bool {
        self.plain && matches!(self.s.as_str(), "" | "~" | "null" | "Null" | "NULL")
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
        matches!(self, Y::Scalar(s) if s.is_null())
    }

    /// The first byte this value covers: for a mapping its first key, for a list its first item.
    pub fn start(&self) -> usize {
        match self {
            Y::Scalar(s) => s.span.offset,
            Y::Seq(items, span) => items.first().map_or(span.offset, |i| i.start().min(span.offset)),
            Y::Map(m) => m.entries.first().map_or(m.span.offset, |(k, _)| k.span.offset.min(m.span.offset)),
        }
    }

    /// What kind of YAML value this is, for "expected X, found Y" messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Y::Scalar(s) if s.is_null() => "nothing (null)",
            Y::Scalar(_) => "a scalar",
            Y::Seq(..) => "a list",
            Y::Map(_) => "a mapping",
        }
    }
}

/// Byte offsets of line starts, to turn (line, column) markers into byte spans.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
    /// Characters before the parsed text on line 1 (a byte order mark is not given to the parser).
    first_line_shift: usize,
    /// Whether each line is pure ASCII (then character columns are byte columns).
    ascii: Vec<bool>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let ascii =
            (0..starts.len()).map(|i| text[starts[i]..Self::end_of(text, &starts, i)].is_ascii()).collect();
        let first_line_shift = usize::from(text.starts_with('\u{feff}'));
        Self { text, starts, first_line_shift, ascii }
    }

    fn end_of(text: &str, starts: &[usize], line_idx: usize) -> usize {
        starts.get(line_idx + 1).map_or(text.len(), |next| next - 1)
    }

    /// The byte offset of a 1-based line and 1-based character column, clamped to the text.
    pub fn offset(&self, line: usize, col: usize) -> usize {
        let idx = line.saturating_sub(1);
        let Some(&start) = self.starts.get(idx) else {
            return self.text.len();
        };
        let end = Self::end_of(self.text, &self.starts, idx);
        let col = col.saturating_sub(1) + if idx == 0 { self.first_line_shift } else { 0 };
        if self.ascii[idx] {
            return (start + col).min(end);
        }
        let line_text = &self.text[start..end];
        start + line_text.char_indices().nth(col).map_or(line_text.len(), |(i, _)| i)
    }

    pub fn span_at(&self, m: &Marker, len: usize) -> Span {
        let offset = self.offset(m.line(), m.column());
        let mut end = (offset + len).min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end += 1;
        }
        let len = end - offset;
        Span { offset, len, line: m.line() as u32, col: m.column() as u32 }
    }

    /// Start of the line holding `offset`.
    pub fn line_start(&self, offset: usize) -> usize {
        let i = self.starts.partition_point(|&s| s <= offset).saturating_sub(1);
        self.starts[i]
    }

    /// The span of `len` bytes at a byte offset.
    pub fn span_of_offset(&self, offset: usize, len: usize) -> Span {
        let offset = offset.min(self.text.len());
        let line_idx = self.starts.partition_point(|&s| s <= offset).saturating_sub(1);
        let col = self.text[self.starts[line_idx]..offset].chars().count() + 1;
        let mut end = (offset + len).min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end += 1;
        }
        Span { offset, len: end - offset, line: line_idx as u32 + 1, col: col as u32 }
    }

    /// The extent of the scalar starting at `offset`: a quoted string up to its closing quote,
    /// a plain scalar as far as its value reaches on that line.
    fn scalar_len(&self, offset: usize, value: &str) -> usize {
        let offset = offset.min(self.text.len());
        let line_idx = self.starts.partition_point(|&s| s <= offset).saturating_sub(1);
        let line = &self.text[offset..Self::end_of(self.text, &self.starts, line_idx).max(offset)];
        let bytes = line.as_bytes();
        match bytes.first() {
            Some(b'"') => {
                let mut i = 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b'"' => return i + 1,
                        _ => i += 1,
                    }
                }
                line.len()
            }
            Some(b'\'') => {
                let mut i = 1;
                while i < bytes.len() {
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        return i + 1;
                    }
                    i += 1;
                }
                line.len()
            }
            Some(b'|' | b'>') => 1,
            _ if !value.is_empty() && line.starts_with(value) => value.len(),
            _ => {
                // Multi-line plain scalars: underline the first line, without a trailing comment.
                let end = line.find(" #").unwrap_or(line.len());
                line[..end].trim_end().len().max(1)
            }
        }
    }
}

/// What kind of file is being read, for the messages about its top level.
#[derive(Debug, Clone, Copy)]
pub struct DocKind {
    /// "topology", "scenario".
    pub name: &'static str,
    /// Label under a wrong top level, e.g. "expected `name:`, `networks:`, `nodes:`, ...".
    pub expected: &'static str,
    /// Hint for YAML anchors: how this format shares settings instead.
    pub anchor_help: &'static str,
}

/// A topology file.
pub const TOPOLOGY: DocKind = DocKind {
    name: "topology",
    expected: "expected `name:`, `networks:`, `nodes:`, ...",
    anchor_help: "use `defaults` or `groups` to share settings between nodes",
};

/// Parse a topology's YAML text into a [`Y`] tree. The top level must be a mapping.
pub fn parse(text: &str) -> Result<Map, Box<Diagnostic>> {
    parse_document(text, &TOPOLOGY)
}

/// Parse one YAML document of the given kind into a [`Y`] tree (shared by topology and scenario
/// files, so both get the same spans and the same checks). The top level must be a mapping.
pub fn parse_document(text: &str, kind: &DocKind) -> Result<Map, Box<Diagnostic>> {
    let idx = LineIndex::new(text);
    let opts = LoaderOptions::default().error_on_duplicate_keys(true).prevent_coercion(true);
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(span) = second_document(&idx, text) {
        return Err(Box::new(
            Diagnostic::new("topo::yaml", span, format!("a {} file holds one YAML document", kind.name))
                .label("a second document starts here")
                .help(format!("put each {} in its own file", kind.name)),
        ));
    }
    // Nothing but comments and markers: an empty topology (the missing `name` is reported).
    if body.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    }) {
        return Ok(Map { entries: Vec::new(), span: idx.span_of_offset(0, 0) });
    }
    let node = parse_yaml_with_options(0, body, opts).map_err(|e| Box::new(load_error(&idx, &e, kind)))?;
    match convert(&idx, &node) {
        Y::Map(m) => Ok(m),
        // An empty document (`---` alone) is an empty topology; the missing `name` says the rest.
        Y::Scalar(s) if s.is_null() => Ok(Map { entries: Vec::new(), span: s.span }),
        other => Err(Box::new(
            Diagnostic::new(
                "topo::yaml",
                other.span(),
                format!("the top level of a {} must be a mapping", kind.name),
            )
            .label(kind.expected),
        )),
    }
}

/// A `---` (or `...` followed by more content) after the first document's content: the
/// loader would silently ignore everything after it.
fn second_document(idx: &LineIndex<'_>, text: &str) -> Option<Span> {
    let mut seen_content = false;
    let mut ended = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_end();
        let is_marker = |m: &str| trimmed == m || trimmed.starts_with(&format!("{m} "));
        if is_marker("---") {
            if seen_content {
                return Some(idx.span_of_offset(offset, 3));
            }
        } else if is_marker("...") {
            ended = true;
        } else if !(trimmed.trim_start().is_empty() || trimmed.trim_start().starts_with('#')) {
            if ended {
                return Some(idx.span_of_offset(offset, trimmed.len()));
            }
            seen_content = true;
        }
        offset += line.len();
    }
    None
}

fn scalar(idx: &LineIndex<'_>, s: &MarkedScalarNode) -> Scalar {
    let span = match s.span().start() {
        Some(m) => {
            let offset = idx.offset(m.line(), m.column());
            idx.span_at(m, idx.scalar_len(offset, s.as_str()))
        }
        None => Span::default(),
    };
    Scalar { s: s.as_str().to_owned(), span, plain: s.may_coerce() }
}

fn convert(idx: &LineIndex<'_>, node: &Node) -> Y {
    match node {
        Node::Scalar(s) => Y::Scalar(scalar(idx, s)),
        Node::Sequence(seq) => {
            let span = seq.span().start().map(|m| idx.span_at(m, 1)).unwrap_or_default();
            Y::Seq(seq.iter().map(|n| convert(idx, n)).collect(), span)
        }
        Node::Mapping(map) => {
            let mut span = map.span().start().map(|m| idx.span_at(m, 1)).unwrap_or_default();
            let entries: Vec<(Scalar, Y)> =
                map.iter().map(|(k, v)| (scalar(idx, k), convert(idx, v))).collect();
            // A block mapping's start mark can trail its first key; point at the key instead.
            if let Some((k, _)) = entries.first() {
                if k.span.offset < span.offset {
                    span = Span { len: 1, ..k.span };
                }
            }
            Y::Map(Map { entries, span })
        }
    }
}

fn load_error(idx: &LineIndex<'_>, e: &LoadError, kind: &DocKind) -> Diagnostic {
    let at = |m: &Marker| idx.span_at(m, 1);
    match e {
        LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => Diagnostic::new(
            "topo::yaml",
            at(m),
            format!("the top level of a {} must be a mapping", kind.name),
        )
        .label(kind.expected),
        LoadError::UnexpectedAnchor(m) => {
            Diagnostic::new("topo::yaml", at(m), "YAML anchors and aliases are not supported")
                .label("anchor here")
                .help(kind.anchor_help)
        }
        LoadError::MappingKeyMustBeScalar(m) => {
            Diagnostic::new("topo::yaml", at(m), "mapping keys must be plain strings").label("complex key")
        }
        LoadError::UnexpectedTag(m) => {
            Diagnostic::new("topo::yaml", at(m), "YAML tags (`!tag`) are not supported").label("tag here")
        }
        LoadError::ScanError(m, err) => {
            // Errors found at the end of input point past the text; show the last token.
            let mut span = at(m);
            let trimmed = idx.text.trim_end().len();
            if span.offset >= trimmed && trimmed > 0 {
                let last = idx.text[..trimmed].chars().next_back().map_or(1, char::len_utf8);
                span = idx.span_of_offset(trimmed - last, last);
            }
            Diagnostic::new("topo::yaml", span, format!("invalid YAML: {}", err.info())).label("here")
        }
        LoadError::DuplicateKey(inner) => {
            let first = inner.prev_key.span().start().map(&at).unwrap_or_default();
            let second = inner.key.span().start().map(&at).unwrap_or_default();
            let k = inner.key.as_str();
            let first = Span { len: k.len().min(idx.text.len().saturating_sub(first.offset)), ..first };
            let second = Span { len: k.len().min(idx.text.len().saturating_sub(second.offset)), ..second };
            Diagnostic::new(
                "topo::duplicate-key",
                second,
                format!("key `{k}` is given twice in the same mapping"),
            )
            .label("second definition")
            .related(first, "first defined here")
            .help("remove or rename one of them")
        }
    }
}
