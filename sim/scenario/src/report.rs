//! What a run produced: per-step results with their measurements, and the renderings of it —
//! the live line, the summary table, JUnit XML and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use topo_lab::BackendKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepOutcome {
    Pass,
    /// An assertion did not hold.
    Fail,
    /// The backend cannot do this step (e.g. convergence time on the model); not a failure.
    NotApplicable,
    /// The step could not be carried out (backend error, bad fault).
    Error,
    /// Not run: an earlier step failed or the run was interrupted.
    Skipped,
}

impl StepOutcome {
    pub fn word(self) -> &'static str {
        match self {
            StepOutcome::Pass => "ok",
            StepOutcome::Fail => "FAIL",
            StepOutcome::NotApplicable => "n/a",
            StepOutcome::Error => "ERROR",
            StepOutcome::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Position: `3`, `5#2.1` (repeat iteration 2, its first step), `6b.1` (parallel branch b).
    pub id: String,
    pub label: String,
    /// `setup`, `fault`, `wait`, `assert` or `exec`.
    pub kind: String,
    pub outcome: StepOutcome,
    /// Milliseconds since the scenario started.
    pub start_ms: f64,
    pub duration_ms: f64,
    /// Why it failed / was not applicable, with the mismatching pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Key figures for the live line (`attempts`, `outage`, `seed`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<String, String>,
    /// Every measurement (matrices, paths, NAT observations, exec output, convergence report).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioOutcome {
    Passed,
    /// An assertion failed.
    Failed,
    /// The lab could not be built or changed, or teardown failed.
    Error,
    /// `requires:` excludes this backend.
    NotApplicable,
    Interrupted,
}

impl ScenarioOutcome {
    pub fn word(self) -> &'static str {
        match self {
            ScenarioOutcome::Passed => "passed",
            ScenarioOutcome::Failed => "FAILED",
            ScenarioOutcome::Error => "ERROR",
            ScenarioOutcome::NotApplicable => "n/a",
            ScenarioOutcome::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    pub file: String,
    pub backend: BackendKind,
    /// The unique lab name this run used.
    pub lab: String,
    /// Seed of random steps: `topo test --seed SEED` replays them.
    pub seed: u64,
    pub outcome: ScenarioOutcome,
    pub duration_ms: f64,
    pub steps: Vec<StepReport>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teardown_errors: Vec<String>,
    /// Set when `--keep-on-failure` left the lab up: how to enter it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
}

impl ScenarioReport {
    pub fn count(&self, o: StepOutcome) -> usize {
        self.steps.iter().filter(|s| s.outcome == o).count()
    }

    /// The first failing or erroring step.
    pub fn first_problem(&self) -> Option<&StepReport> {
        self.steps.iter().find(|s| matches!(s.outcome, StepOutcome::Fail | StepOutcome::Error))
    }
}

/// All scenarios of one `topo test` run (the `--json` document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub seed: u64,
    pub backend: BackendKind,
    pub scenarios: Vec<ScenarioReport>,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.scenarios
            .iter()
            .all(|s| matches!(s.outcome, ScenarioOutcome::Passed | ScenarioOutcome::NotApplicable))
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms:.1}ms")
    }
}

/// One line per finished step, as printed live on stderr.
pub fn live_line(scenario: &str, s: &StepReport) -> String {
    let mut line =
        format!("[{scenario}] {:>5} {:<7} {:>8}  {}", s.id, s.outcome.word(), fmt_ms(s.duration_ms), s.label);
    if !s.figures.is_empty() {
        let figs: Vec<String> = s.figures.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(line, "  [{}]", figs.join(" "));
    }
    if let Some(m) = &s.message {
        if s.outcome != StepOutcome::Pass {
            for l in m.lines() {
                let _ = write!(line, "\n        {l}");
            }
        }
    }
    line
}

/// The table printed on stdout at the end.
pub fn summary_table(run: &RunReport) -> String {
    let headers = ["SCENARIO", "BACKEND", "RESULT", "PASS", "FAIL", "N/A", "SKIP", "TIME", "LAB"];
    let rows: Vec<[String; 9]> = run
        .scenarios
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.backend.to_string(),
                s.outcome.word().to_owned(),
                s.count(StepOutcome::Pass).to_string(),
                (s.count(StepOutcome::Fail) + s.count(StepOutcome::Error)).to_string(),
                s.count(StepOutcome::NotApplicable).to_string(),
                s.count(StepOutcome::Skipped).to_string(),
                fmt_ms(s.duration_ms),
                s.lab.clone(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(headers.to_vec(), &mut out);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    let total = run.scenarios.len();
    let n = |o: ScenarioOutcome| run.scenarios.iter().filter(|s| s.outcome == o).count();
    let _ = write!(
        out,
        "\n{} of {total} scenarios passed, {} failed, {} with errors, {} n/a",
        n(ScenarioOutcome::Passed),
        n(ScenarioOutcome::Failed),
        n(ScenarioOutcome::Error),
        n(ScenarioOutcome::NotApplicable)
    );
    if n(ScenarioOutcome::Interrupted) > 0 {
        let _ = write!(out, ", {} interrupted", n(ScenarioOutcome::Interrupted));
    }
    let _ = writeln!(out, "; seed {}", run.seed);
    for s in &run.scenarios {
        if let Some(p) = s.first_problem() {
            let _ = writeln!(
                out,
                "  {}: step {} `{}`: {}",
                s.name,
                p.id,
                p.label,
                p.message.as_deref().unwrap_or("failed")
            );
        }
        for e in &s.teardown_errors {
            let _ = writeln!(out, "  {}: teardown: {e}", s.name);
        }
        if let Some(k) = &s.kept {
            let _ = writeln!(out, "  {}: lab kept up for debugging: {k}", s.name);
        }
    }
    out
}

/// Escape text for XML attributes and content; drops characters XML 1.0 forbids.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one `<testsuite>` per scenario, one `<testcase>` per step (timings in seconds;
/// failures carry the mismatching pairs; n/a and skipped steps are `<skipped>`).
pub fn junit(run: &RunReport) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let all: Vec<&StepReport> = run.scenarios.iter().flat_map(|s| &s.steps).collect();
    let count = |o: StepOutcome| all.iter().filter(|s| s.outcome == o).count();
    let total_ms: f64 = run.scenarios.iter().map(|s| s.duration_ms).sum();
    // A failed teardown is one more testcase (with an error) in its suite.
    let teardowns = run.scenarios.iter().filter(|s| !s.teardown_errors.is_empty()).count();
    let _ = writeln!(
        x,
        "<testsuites name=\"topo test\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
        all.len() + teardowns,
        count(StepOutcome::Fail),
        count(StepOutcome::Error) + teardowns,
        count(StepOutcome::Skipped) + count(StepOutcome::NotApplicable),
        total_ms / 1000.0
    );
    for s in &run.scenarios {
        let c = |o: StepOutcome| s.count(o);
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            xml_escape(&s.name),
            s.steps.len() + usize::from(!s.teardown_errors.is_empty()),
            c(StepOutcome::Fail),
            c(StepOutcome::Error) + usize::from(!s.teardown_errors.is_empty()),
            c(StepOutcome::Skipped) + c(StepOutcome::NotApplicable),
            s.duration_ms / 1000.0
        );
        x.push_str("    <properties>\n");
        for (k, v) in [
            ("file", s.file.clone()),
            ("backend", s.backend.to_string()),
            ("lab", s.lab.clone()),
            ("seed", s.seed.to_string()),
            ("outcome", s.outcome.word().to_owned()),
        ] {
            let _ = writeln!(x, "      <property name=\"{k}\" value=\"{}\"/>", xml_escape(&v));
        }
        x.push_str("    </properties>\n");
        for st in &s.steps {
            let _ = write!(
                x,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
                xml_escape(&format!("{} {}", st.id, st.label)),
                xml_escape(&format!("topo.{}", s.name)),
                st.duration_ms / 1000.0
            );
            let msg = st.message.clone().unwrap_or_default();
            let first = msg.lines().next().unwrap_or_default().to_owned();
            let body = match st.outcome {
                StepOutcome::Pass => String::new(),
                StepOutcome::Fail => format!(
                    "      <failure message=\"{}\" type=\"assertion\">{}</failure>\n",
                    xml_escape(&first),
                    xml_escape(&msg)
                ),
                StepOutcome::Error => {
                    format!(
                        "      <error message=\"{}\" type=\"error\">{}</error>\n",
                        xml_escape(&first),
                        xml_escape(&msg)
                    )
                }
                StepOutcome::NotApplicable => {
                    format!("      <skipped message=\"{}\"/>\n", xml_escape(&format!("n/a: {first}")))
                }
                StepOutcome::Skipped => format!("      <skipped message=\"{}\"/>\n", xml_escape(&first)),
            };
            let figures = if st.figures.is_empty() {
                String::new()
            } else {
                let f: Vec<String> = st.figures.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("      <system-out>{}</system-out>\n", xml_escape(&f.join("\n")))
            };
            if body.is_empty() && figures.is_empty() {
                x.push_str("/>\n");
            } else {
                let _ = write!(x, ">\n{body}{figures}    </testcase>\n");
            }
        }
        if !s.teardown_errors.is_empty() {
            let msg = s.teardown_errors.join("\n");
            let _ = write!(
                x,
                "    <testcase name=\"teardown\" classname=\"{}\" time=\"0\">\n      <error message=\"teardown failed\" type=\"teardown\">{}</error>\n    </testcase>\n",
                xml_escape(&format!("topo.{}", s.name)),
                xml_escape(&msg)
            );
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}
