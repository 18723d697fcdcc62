//! Diagnostics: every error the spec and plan stages report, with its source span.
//!
//! Stages collect all diagnostics they find instead of stopping at the first, and the
//! CLI renders them with miette (snippet, caret, hint).

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::ir::Span;

/// A topology file's text, kept so diagnostics can show snippets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path as the user gave it (used in `file:line:col`).
    pub path: String,
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        Self { path: path.into(), text: text.into() }
    }
}

/// One problem found in a topology file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable machine-readable code, e.g. `topo::duplicate-name`.
    pub code: &'static str,
    /// What is wrong, in one sentence.
    pub message: String,
    /// Where; `None` only for problems that have no place in the file (e.g. an empty file).
    pub span: Option<Span>,
    /// Short text shown under the caret.
    pub label: String,
    /// What to do about it.
    pub help: Option<String>,
    /// Other places that explain the error (e.g. the first definition of a duplicate name).
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn new(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            span: Some(span),
            label: String::new(),
            help: None,
            related: Vec::new(),
        }
    }

    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    #[must_use]
    pub fn related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.span {
            Some(s) => write!(f, "{}:{}: {}", s.line, s.col, self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// All diagnostics of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    pub source: SourceFile,
    pub items: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{}:{d}", self.source.path)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
