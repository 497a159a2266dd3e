//! The body of `cmd=gather` and `cmd=defrag`: a JSON list of `[name, offset, size]`, checked
//! as borgstore's `validate_sources` checks it (`backends/_base.py`).
//!
//! Pure. A source is a name, an offset (negative counts from the end) and a non-negative
//! size; booleans are not numbers, as in Python.

use serde_json::Value;

/// One range to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub offset: i64,
    pub size: u64,
}

/// The most sources one request may name; borg sends at most 1000 per gather.
pub const MAX_SOURCES: usize = 100_000;

/// Parses and checks a sources body; the error is the message of borgstore's `ValueError`
/// (HTTP 400).
pub fn parse_sources(body: &[u8]) -> Result<Vec<Source>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|error| error.to_string())?;
    let items = match value {
        Value::Array(items) => items,
        other => return Err(format!("sources must be a list, got {other}")),
    };
    if items.len() > MAX_SOURCES {
        return Err(format!("too many sources (max: {MAX_SOURCES})"));
    }
    items.into_iter().map(source).collect()
}

fn source(item: Value) -> Result<Source, String> {
    let shape = || format!("source must be a (name, offset, size) tuple, got {item}");
    let Value::Array(parts) = &item else {
        return Err(shape());
    };
    let [name, offset, size] = parts.as_slice() else {
        return Err(shape());
    };
    let Value::String(name) = name else {
        return Err(format!("source name must be a str, got {name}"));
    };
    let offset = match offset {
        Value::Number(number) => number.as_i64(),
        _ => None,
    }
    .ok_or_else(|| format!("source offset must be an int, got {offset}"))?;
    let size = match size {
        Value::Number(number) => number.as_u64(),
        _ => None,
    }
    .ok_or_else(|| format!("source size must be a non-negative int, got {size}"))?;
    Ok(Source {
        name: name.clone(),
        offset,
        size,
    })
}

/// The distinct names of `sources` in order of first appearance (posixfs checks the read
/// permission of each once, before reading anything).
pub fn distinct_names(sources: &[Source]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    sources
        .iter()
        .map(|source| source.name.as_str())
        .filter(|name| seen.insert(*name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(name: &str, offset: i64, size: u64) -> Source {
        Source {
            name: name.to_owned(),
            offset,
            size,
        }
    }

    #[test]
    fn well_formed_sources_parse() {
        let table: &[(&str, Vec<Source>)] = &[
            ("[]", vec![]),
            (
                r#"[["packs/ab/ab00", 0, 3], ["packs/ab/ab00", -3, 3]]"#,
                vec![src("packs/ab/ab00", 0, 3), src("packs/ab/ab00", -3, 3)],
            ),
            (r#"[["x", 5, 0]]"#, vec![src("x", 5, 0)]),
        ];
        for (body, expected) in table {
            assert_eq!(
                parse_sources(body.as_bytes()).as_ref(),
                Ok(expected),
                "{body}"
            );
        }
    }

    #[test]
    fn malformed_sources_are_value_errors() {
        let table: &[(&str, &str)] = &[
            ("", "EOF while parsing"),
            ("{}", "sources must be a list"),
            ("\"abc\"", "sources must be a list"),
            ("[1]", "source must be a (name, offset, size) tuple, got 1"),
            (
                r#"[["x", 1]]"#,
                "source must be a (name, offset, size) tuple",
            ),
            (
                r#"[["x", 1, 2, 3]]"#,
                "source must be a (name, offset, size) tuple",
            ),
            ("[[1, 0, 0]]", "source name must be a str, got 1"),
            (
                r#"[["x", true, 0]]"#,
                "source offset must be an int, got true",
            ),
            (
                r#"[["x", 1.5, 0]]"#,
                "source offset must be an int, got 1.5",
            ),
            (
                r#"[["x", 0, -1]]"#,
                "source size must be a non-negative int, got -1",
            ),
            (
                r#"[["x", 0, false]]"#,
                "source size must be a non-negative int, got false",
            ),
            (
                r#"[["x", 99999999999999999999, 0]]"#,
                "source offset must be an int",
            ),
        ];
        for (body, prefix) in table {
            let error = parse_sources(body.as_bytes()).expect_err(body);
            assert!(error.starts_with(prefix), "{body}: {error}");
        }
    }

    #[test]
    fn names_are_checked_once_each_in_order() {
        let sources = [src("b", 0, 1), src("a", 0, 1), src("b", 1, 1)];
        assert_eq!(distinct_names(&sources), ["b", "a"]);
    }
}
