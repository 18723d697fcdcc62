//! Templates: counters (`web-{1..5}`, `10.0.0.{n+10}`) and merging of defaults and groups.

use crate::diag::Diagnostic;
use crate::tree::{Map, Scalar, Y};

/// Most nodes (or links) one counter may produce; keeps typos like `{1..100000000}` harmless.
pub const MAX_COUNT: i64 = 10_000;

/// A name with a counter range: `prefix{start..end}suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub prefix: String,
    pub start: i64,
    pub end: i64,
    pub suffix: String,
}

impl Range {
    pub fn values(&self) -> std::ops::RangeInclusive<i64> {
        self.start..=self.end
    }

    pub fn name(&self, n: i64) -> String {
        format!("{}{n}{}", self.prefix, self.suffix)
    }

    pub fn len(&self) -> i64 {
        self.end - self.start + 1
    }
}

/// Find a `{a..b}` range in a name. `Ok(None)` when there is none.
pub fn parse_range(s: &str) -> Result<Option<Range>, String> {
    let Some(open) = s.find('{') else { return Ok(None) };
    let Some(close_rel) = s[open..].find('}') else {
        return Err("a counter range looks like `name-{1..5}`; the `}` is missing".to_owned());
    };
    let close = open + close_rel;
    let inner = &s[open + 1..close];
    let Some((a, b)) = inner.split_once("..") else {
        return Err(format!("`{{{inner}}}` is not a counter range; write `{{1..5}}`"));
    };
    let (Ok(start), Ok(end)) = (a.trim().parse::<i64>(), b.trim().parse::<i64>()) else {
        return Err(format!(
            "`{{{inner}}}` is not a counter range; both ends must be whole numbers, e.g. `{{1..5}}`"
        ));
    };
    if start < 0 || end < start {
        return Err(format!("the counter range `{{{inner}}}` is empty or negative; write `{{low..high}}` with 0 <= low <= high"));
    }
    if end - start >= MAX_COUNT {
        return Err(format!("the counter range `{{{inner}}}` gives more than {MAX_COUNT} items"));
    }
    let suffix = &s[close + 1..];
    if suffix.contains('{') {
        return Err("only one counter range is allowed in a name".to_owned());
    }
    Ok(Some(Range { prefix: s[..open].to_owned(), start, end, suffix: suffix.to_owned() }))
}

/// Replace every `{n}`, `{n+K}`, `{n-K}`, `{n*K}` in `s`. Braces not starting with `n` are
/// left alone. `n == None` (a node without counter) makes any expression an error.
pub fn substitute(s: &str, n: Option<i64>) -> Result<Option<String>, String> {
    if !s.contains("{n") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len() + 4);
    let mut rest = s;
    while let Some(i) = rest.find("{n") {
        out.push_str(&rest[..i]);
        let Some(close) = rest[i..].find('}') else {
            return Err("a counter expression like `{n+1}` is missing its `}`".to_owned());
        };
        let expr = &rest[i + 2..i + close];
        let Some(n) = n else {
            return Err(format!(
                "`{{n{expr}}}` is used by a node that has no counter; counters come from names like `web-{{1..3}}`"
            ));
        };
        let expr = expr.trim();
        let value = if expr.is_empty() {
            Some(n)
        } else {
            let mut chars = expr.chars();
            let op = chars.next();
            match (op, chars.as_str().trim().parse::<i64>()) {
                (Some('+'), Ok(k)) => n.checked_add(k),
                (Some('-'), Ok(k)) => n.checked_sub(k),
                (Some('*'), Ok(k)) => n.checked_mul(k),
                _ => {
                    return Err(format!(
                        "`{{n{expr}}}` is not a counter expression; use `{{n}}`, `{{n+K}}`, `{{n-K}}` or `{{n*K}}`"
                    ))
                }
            }
        };
        let Some(value) = value else { return Err("counter expression overflows".to_owned()) };
        out.push_str(&value.to_string());
        rest = &rest[i + close + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// Apply [`substitute`] to every scalar (and mapping key) of a tree, reporting errors at the
/// scalar that holds the bad expression.
pub fn substitute_tree(y: &mut Y, n: Option<i64>, diags: &mut Vec<Diagnostic>) {
    match y {
        Y::Scalar(s) => substitute_scalar(s, n, diags),
        Y::Seq(items, _) => items.iter_mut().for_each(|i| substitute_tree(i, n, diags)),
        Y::Map(m) => {
            for (k, v) in &mut m.entries {
                substitute_scalar(k, n, diags);
                substitute_tree(v, n, diags);
            }
        }
    }
}

fn substitute_scalar(s: &mut Scalar, n: Option<i64>, diags: &mut Vec<Diagnostic>) {
    match substitute(&s.s, n) {
        Ok(Some(new)) => s.s = new,
        Ok(None) => {}
        Err(msg) => {
            // Clear the value so later checks don't report the same mistake again.
            let span = s.span;
            s.s.clear();
            s.plain = true;
            diags.push(
            Diagnostic::new("topo::counter", span, msg).label("counter expression").help(
                "counter expressions are `{n}`, `{n+K}`, `{n-K}`, `{n*K}` inside a node or link that has a `{a..b}` range",
            ),
        );
        }
    }
}

/// Merge `over` onto `base`: mappings merge key by key (recursively), lists concatenate
/// (base first), anything else in `over` replaces the base value. A null in `over` clears.
pub fn merge(base: &Map, over: &Map) -> Map {
    let mut out = base.clone();
    merge_into(&mut out, over.entries.iter());
    out.span = over.span;
    out
}

/// [`merge`] in place, taking the entries to lay over `base`.
pub fn merge_into<'a>(base: &mut Map, over: impl Iterator<Item = &'a (Scalar, Y)>) {
    for (k, v) in over {
        match base.entries.iter_mut().find(|(bk, _)| bk.s == k.s) {
            Some((bk, bv)) => {
                *bk = k.clone();
                *bv = merge_value(bv, v);
            }
            None => base.entries.push((k.clone(), v.clone())),
        }
    }
}

fn merge_value(base: &Y, over: &Y) -> Y {
    match (base, over) {
        (Y::Map(b), Y::Map(o)) => Y::Map(merge(b, o)),
        (Y::Seq(b, _), Y::Seq(o, span)) => Y::Seq(b.iter().chain(o).cloned().collect(), *span),
        _ => over.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree;

    #[test]
    fn ranges() {
        let r = parse_range("web-{1..3}").unwrap().unwrap();
        assert_eq!((r.prefix.as_str(), r.start, r.end, r.suffix.as_str()), ("web-", 1, 3, ""));
        assert_eq!(r.name(2), "web-2");
        let r = parse_range("rack{0..1}-sw").unwrap().unwrap();
        assert_eq!(r.name(0), "rack0-sw");
        assert_eq!(parse_range("plain").unwrap(), None);
        assert!(parse_range("web-{3..1}").is_err());
        assert!(parse_range("web-{1..}").is_err());
        assert!(parse_range("web-{1..3").is_err());
        assert!(parse_range("web-{1..2}-{1..2}").is_err());
        assert!(parse_range("web-{0..99999999}").is_err());
        assert!(parse_range("web-{0..9223372036854775807}").is_err(), "no overflow");
        assert!(parse_range("web-{1..10000}").is_ok());
        assert!(parse_range("web-{1..10001}").is_err());
    }

    #[test]
    fn substitution() {
        assert_eq!(substitute("10.0.0.{n+10}", Some(3)).unwrap().unwrap(), "10.0.0.13");
        assert_eq!(substitute("x{n}y{n*2}z{n-1}", Some(4)).unwrap().unwrap(), "x4y8z3");
        assert_eq!(substitute("no counter", Some(4)).unwrap(), None);
        assert_eq!(substitute("{x}", Some(4)).unwrap(), None);
        assert!(substitute("{n}", None).is_err());
        assert!(substitute("{n/2}", Some(1)).is_err());
        assert!(substitute("{n+1", Some(1)).is_err());
        assert!(substitute("{n*9223372036854775807}", Some(2)).is_err());
        assert!(substitute("{n\u{fffd}10}", Some(2)).is_err(), "multi-byte operator");
    }

    fn map(text: &str) -> Map {
        tree::parse(text).unwrap()
    }

    fn render(y: &Y) -> String {
        match y {
            Y::Scalar(s) => s.s.clone(),
            Y::Seq(items, _) => format!("[{}]", items.iter().map(render).collect::<Vec<_>>().join(",")),
            Y::Map(m) => format!(
                "{{{}}}",
                m.entries.iter().map(|(k, v)| format!("{}:{}", k.s, render(v))).collect::<Vec<_>>().join(",")
            ),
        }
    }

    #[test]
    fn merging() {
        let base = map("kind: host\nlabels: {a: '1', b: '2'}\nroutes: [r1]\nsysctls: {x: '1'}\n");
        let over = map("labels: {b: '3', c: '4'}\nroutes: [r2]\nkind: router\nsysctls: ~\n");
        let merged = merge(&base, &over);
        assert_eq!(render(&Y::Map(merged)), "{kind:router,labels:{a:1,b:3,c:4},routes:[r1,r2],sysctls:~}");
    }

    #[test]
    fn substitution_in_tree_reports_spans() {
        let mut y = Y::Map(map("a: '{n+1}'\nb: ['{n}', '{n/2}']\n"));
        let mut diags = Vec::new();
        substitute_tree(&mut y, Some(7), &mut diags);
        assert_eq!(render(&y), "{a:8,b:[7,]}");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].span.map(|s| (s.line, s.col)), Some((2, 12)));
    }
}
