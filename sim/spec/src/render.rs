//! Rendering diagnostics: miette's graphical report (snippet, caret, help) for people, JSON
//! for tools.

use std::fmt::{self, Write as _};

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

use crate::diag::{Diagnostic, Diagnostics};
use crate::ir::Span;

/// One diagnostic bound to its source, in the shape miette wants.
struct Report<'a> {
    d: &'a Diagnostic,
    source: NamedSource<String>,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.d, f)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.d.message)
    }
}

impl std::error::Error for Report<'_> {}

fn source_span(s: Span) -> SourceSpan {
    SourceSpan::new(s.offset.into(), s.len)
}

impl miette::Diagnostic for Report<'_> {
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.d.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.d.span.map(|_| &self.source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = self.d.span?;
        let label = (!self.d.label.is_empty()).then(|| self.d.label.clone());
        let mut labels = vec![LabeledSpan::new_primary_with_span(label, source_span(primary))];
        labels.extend(
            self.d.related.iter().map(|(s, l)| LabeledSpan::new_with_span(Some(l.clone()), source_span(*s))),
        );
        Some(Box::new(labels.into_iter()))
    }
}

/// Render all diagnostics of a file, miette style (each headed by `error[code]: file:line:col`),
/// followed by a one-line summary.
/// `color: false` gives plain ASCII art with no escape codes (stable for snapshots).
pub fn render(diags: &Diagnostics, color: bool) -> String {
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::none() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
    let mut out = String::new();
    let text: String = diags.source.text.to_string();
    for d in &diags.items {
        // Our own first line: the code and the primary `file:line:col` (miette orders snippets
        // by position, so a related span earlier in the file would otherwise come first).
        let _ = match d.span {
            Some(s) => writeln!(out, "error[{}]: {}:{}:{}", d.code, diags.source.path, s.line, s.col),
            None => writeln!(out, "error[{}]: {}", d.code, diags.source.path),
        };
        let report = Report { d, source: NamedSource::new(&diags.source.path, text.clone()) };
        if handler.render_report(&mut out, &report).is_err() {
            let _ = writeln!(out, "{}: {d}", diags.source.path);
        }
        out.push('\n');
    }
    let n = diags.items.len();
    let _ = writeln!(out, "{}: {n} error{}", diags.source.path, if n == 1 { "" } else { "s" });
    out
}

/// One line per diagnostic: `file:line:col: message [code]` (for logs and compact output).
pub fn render_short(diags: &Diagnostics) -> String {
    let mut out = String::new();
    for d in &diags.items {
        let _ = match d.span {
            Some(s) => {
                writeln!(out, "{}:{}:{}: {} [{}]", diags.source.path, s.line, s.col, d.message, d.code)
            }
            None => writeln!(out, "{}: {} [{}]", diags.source.path, d.message, d.code),
        };
    }
    out
}

#[derive(Serialize)]
struct JsonRelated<'a> {
    span: Span,
    label: &'a str,
}

#[derive(Serialize)]
struct JsonDiag<'a> {
    file: &'a str,
    code: &'a str,
    message: &'a str,
    span: Option<Span>,
    label: &'a str,
    help: Option<&'a str>,
    related: Vec<JsonRelated<'a>>,
}

/// Diagnostics as JSON values (one object per diagnostic, with `file`).
pub fn to_json(diags: &Diagnostics) -> serde_json::Value {
    let items: Vec<JsonDiag<'_>> = diags
        .items
        .iter()
        .map(|d| JsonDiag {
            file: &diags.source.path,
            code: d.code,
            message: &d.message,
            span: d.span,
            label: &d.label,
            help: d.help.as_deref(),
            related: d.related.iter().map(|(span, label)| JsonRelated { span: *span, label }).collect(),
        })
        .collect();
    serde_json::to_value(items).unwrap_or(serde_json::Value::Null)
}
