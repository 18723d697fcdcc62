//! Robustness: random byte mutations of the example topologies never panic the parser; they
//! give a topology or diagnostics, and every diagnostic span lies inside the text.

use proptest::prelude::*;

const EXAMPLES: &[&str] = &[
    include_str!("../../../topologies/lan.yaml"),
    include_str!("../../../topologies/triangle.yaml"),
    include_str!("../../../topologies/triangle-ospf.yaml"),
    include_str!("../../../topologies/elixir-cluster.yaml"),
    include_str!("../../../topologies/multi-dc.yaml"),
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_examples_never_panic(which in 0..EXAMPLES.len(), edits in prop::collection::vec(edit(), 1..8)) {
        let text = apply(EXAMPLES[which], &edits);
        match topo_spec::parse_str("mutated.yaml", &text) {
            Ok(t) => prop_assert!(!t.name.is_empty()),
            Err(d) => {
                prop_assert!(!d.items.is_empty());
                for item in &d.items {
                    if let Some(s) = item.span {
                        prop_assert!(s.offset + s.len <= text.len(), "span {:?} outside text", s);
                        prop_assert!(text.is_char_boundary(s.offset), "span {:?} not on a char boundary", s);
                    }
                }
                // Rendering must not panic either.
                let _ = topo_spec::render(&d, false);
            }
        }
    }
}
