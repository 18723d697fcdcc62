//! Robustness: random byte mutations of the example topologies never panic the parser; they
//! give a topology or diagnostics, and every diagnostic span lies inside the text.

use proptest::prelude::*;

const EXAMPLES: &[&str] = &[
    include_str!("../../../topologies/lan.yaml"),
    include_str!("../../../topologies/triangle.yaml"),
    include_str!("../../../topologies/triangle-static.yaml"),
    include_str!("../../../topologies/elixir-cluster.yaml"),
    include_str!("../../../topologies/multi-dc.yaml"),
    include_str!("../../../topologies/multi-dc-static.yaml"),
    include_str!("../../../fixtures/topology/valid/counters.yaml"),
    include_str!("../../../fixtures/topology/valid/addressing.yaml"),
];

#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

/// Bytes that are likely to change YAML structure or values, plus arbitrary ones.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![prop::sample::select(b":{}[],-'\"#\n \t&*!|>{}.0123456789/%n".to_vec()), any::<u8>(),]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), byte()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), byte()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        let len = bytes.len().max(1);
        match *e {
            Edit::Replace(i, b) if !bytes.is_empty() => bytes[i % len] = b,
            Edit::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Edit::Delete(i) if !bytes.is_empty() => {
                bytes.remove(i % len);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn check(text: &str) -> Result<(), TestCaseError> {
    match topo_spec::parse_str("mutated.yaml", text) {
        Ok(t) => prop_assert!(!t.name.is_empty()),
        Err(d) => {
            prop_assert!(!d.items.is_empty());
            for item in &d.items {
                if let Some(s) = item.span {
                    prop_assert!(s.offset + s.len <= text.len(), "span {:?} outside text", s);
                    prop_assert!(text.is_char_boundary(s.offset), "span {:?} not on a char boundary", s);
                }
            }
            let _ = topo_spec::render(&d, false);
        }
    }
    Ok(())
}

/// Line-level edits keep most of the YAML intact, so they reach the semantic checks
/// (references, addresses, templates) rather than stopping at a syntax error.
#[derive(Debug, Clone)]
enum LineEdit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    /// Replace one digit with another on a line (addresses, counters, prefixes).
    Digit(usize, usize, u8),
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    prop_oneof![
        any::<usize>().prop_map(LineEdit::Delete),
        any::<usize>().prop_map(LineEdit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        (any::<usize>(), any::<usize>(), 0u8..10).prop_map(|(l, i, d)| LineEdit::Digit(l, i, d)),
    ]
}

fn apply_lines(text: &str, edits: &[LineEdit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match *e {
            LineEdit::Delete(i) => {
                lines.remove(i % n);
            }
            LineEdit::Duplicate(i) => lines.insert(i % n, lines[i % n].clone()),
            LineEdit::Swap(a, b) => lines.swap(a % n, b % n),
            LineEdit::Digit(which_line, which_digit, digit) => {
                let line = &mut lines[which_line % n];
                let digits: Vec<usize> =
                    line.char_indices().filter(|(_, c)| c.is_ascii_digit()).map(|(p, _)| p).collect();
                if !digits.is_empty() {
                    let at = digits[which_digit % digits.len()];
                    line.replace_range(at..=at, &digit.to_string());
                }
            }
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn line_edited_examples_never_panic(which in 0..EXAMPLES.len(), edits in prop::collection::vec(line_edit(), 1..6)) {
        check(&apply_lines(EXAMPLES[which], &edits))?;
    }

    #[test]
    fn mutated_examples_never_panic(which in 0..EXAMPLES.len(), edits in prop::collection::vec(edit(), 1..8)) {
        let text = apply(EXAMPLES[which], &edits);
        check(&text)?;
    }
}
