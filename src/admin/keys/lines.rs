//! Editing authorized_keys as bytes: append a line, drop lines, and show the change as a
//! unified diff. Every line that is not dropped keeps its bytes exactly (CRLF ends, comments,
//! blank lines, invalid UTF-8); a last line without a newline gets one when a line follows it.
//!
//! Pure. One [`Edit`] yields both the new bytes and the diff, so `--dry-run` shows exactly
//! what a real run writes.
#![forbid(unsafe_code)]

/// The lines of `bytes`, each with its own `\n` (the last may have none). Numbering matches
/// [`str::lines`], which the authorized_keys parser uses.
pub(crate) fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&byte| byte == b'\n').collect()
}

/// What happens to a file: which of its lines go (1-based) and which new lines follow them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edit {
    pub remove: Vec<usize>,
    /// Lines without their newline; each is written with `\n`.
    pub append: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op<'a> {
    Keep(&'a [u8]),
    Remove(&'a [u8]),
    Add(Vec<u8>),
}

fn ops<'a>(old: &'a [u8], edit: &Edit) -> Vec<Op<'a>> {
    let lines = split_lines(old);
    let last_kept = (1..=lines.len()).rev().find(|n| !edit.remove.contains(n));
    let mut ops = Vec::with_capacity(lines.len() + edit.append.len() + 1);
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        let needs_newline =
            !edit.append.is_empty() && Some(number) == last_kept && !line.ends_with(b"\n");
        if edit.remove.contains(&number) {
            ops.push(Op::Remove(line));
        } else if needs_newline {
            ops.push(Op::Remove(line));
            let mut with_newline = line.to_vec();
            with_newline.push(b'\n');
            ops.push(Op::Add(with_newline));
        } else {
            ops.push(Op::Keep(line));
        }
    }
    for line in &edit.append {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        ops.push(Op::Add(bytes));
    }
    ops
}

/// The file after `edit`.
pub(crate) fn apply(old: &[u8], edit: &Edit) -> Vec<u8> {
    let mut new = Vec::with_capacity(old.len() + 256);
    for op in ops(old, edit) {
        match op {
            Op::Keep(line) => new.extend_from_slice(line),
            Op::Add(line) => new.extend_from_slice(&line),
            Op::Remove(_) => {}
        }
    }
    new
}

/// Lines of context around each change, as `diff -u` gives.
const CONTEXT: usize = 3;

/// `edit` as a unified diff of `label`, empty when nothing changes.
pub(crate) fn unified_diff(label: &str, old: &[u8], edit: &Edit) -> String {
    let ops = ops(old, edit);
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Keep(_)))
        .map(|(index, _)| index)
        .collect();
    if changed.is_empty() {
        return String::new();
    }
    // Group changes whose context overlaps into hunks of op indices.
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &index in &changed {
        let start = index.saturating_sub(CONTEXT);
        let end = (index + CONTEXT + 1).min(ops.len());
        match hunks.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    let mut out = format!("--- {label}\n+++ {label}\n");
    // Line numbers before each op, in the old and the new file.
    let mut old_before = Vec::with_capacity(ops.len());
    let mut new_before = Vec::with_capacity(ops.len());
    let (mut old_line, mut new_line) = (1usize, 1usize);
    for op in &ops {
        old_before.push(old_line);
        new_before.push(new_line);
        match op {
            Op::Keep(_) => {
                old_line += 1;
                new_line += 1;
            }
            Op::Remove(_) => old_line += 1,
            Op::Add(_) => new_line += 1,
        }
    }
    for (start, end) in hunks {
        let slice = &ops[start..end];
        let old_count = slice.iter().filter(|op| !matches!(op, Op::Add(_))).count();
        let new_count = slice
            .iter()
            .filter(|op| !matches!(op, Op::Remove(_)))
            .count();
        let position = |first: usize, count: usize| {
            if count == 0 { first - 1 } else { first }
        };
        out.push_str(&format!(
            "@@ -{},{old_count} +{},{new_count} @@\n",
            position(old_before[start], old_count),
            position(new_before[start], new_count)
        ));
        for op in slice {
            let (sign, line) = match op {
                Op::Keep(line) => (' ', *line),
                Op::Remove(line) => ('-', *line),
                Op::Add(line) => ('+', line.as_slice()),
            };
            out.push(sign);
            let text = String::from_utf8_lossy(line);
            match text.strip_suffix('\n') {
                Some(body) => {
                    out.push_str(body);
                    out.push('\n');
                }
                None => {
                    out.push_str(&text);
                    out.push_str("\n\\ No newline at end of file\n");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(remove: &[usize], append: &[&str]) -> Edit {
        Edit {
            remove: remove.to_vec(),
            append: append.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn lines_are_numbered_like_str_lines() {
        for text in [
            "",
            "a",
            "a\n",
            "a\r\nb",
            "\n\n",
            "a\rb\nc\r\n",
            "# c\n\nkey\r\nlast",
        ] {
            assert_eq!(
                split_lines(text.as_bytes()).len(),
                text.lines().count(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn edits_keep_every_other_byte() {
        let cases: &[(&[u8], Edit, &[u8])] = &[
            (b"", edit(&[], &["new"]), b"new\n"),
            (b"a\n", edit(&[], &["new"]), b"a\nnew\n"),
            (b"a", edit(&[], &["new"]), b"a\nnew\n"),
            (b"a\r\n", edit(&[], &["new"]), b"a\r\nnew\n"),
            (b"a\r", edit(&[], &["new"]), b"a\r\nnew\n"),
            (
                b"# c\n\n\xff\xfe\r\nx",
                edit(&[], &["n"]),
                b"# c\n\n\xff\xfe\r\nx\nn\n",
            ),
            (b"a\nb\nc\n", edit(&[2], &[]), b"a\nc\n"),
            (b"a\nb\nc", edit(&[3], &[]), b"a\nb\n"),
            (b"a\nb\nc", edit(&[1, 3], &[]), b"b\n"),
            (b"a\r\nb\r\n", edit(&[1], &[]), b"b\r\n"),
            (b"a\nb", edit(&[2], &["n"]), b"a\nn\n"),
            (b"a\nb\n", edit(&[], &[]), b"a\nb\n"),
            (b"only", edit(&[1], &[]), b""),
        ];
        for (old, edit, new) in cases {
            assert_eq!(
                apply(old, edit),
                *new,
                "{:?} {edit:?}",
                String::from_utf8_lossy(old)
            );
        }
    }

    #[test]
    fn an_append_shows_three_lines_of_context() {
        let old = b"1\n2\n3\n4\n5\n";
        assert_eq!(
            unified_diff("ak", old, &edit(&[], &["new"])),
            "--- ak\n+++ ak\n@@ -3,3 +3,4 @@\n 3\n 4\n 5\n+new\n"
        );
        assert_eq!(
            unified_diff("ak", b"", &edit(&[], &["new"])),
            "--- ak\n+++ ak\n@@ -0,0 +1,1 @@\n+new\n"
        );
    }

    #[test]
    fn a_last_line_without_newline_is_shown_as_diff_shows_it() {
        assert_eq!(
            unified_diff("ak", b"a\nb", &edit(&[], &["new"])),
            "--- ak\n+++ ak\n@@ -1,2 +1,3 @@\n a\n-b\n\\ No newline at end of file\n+b\n+new\n"
        );
    }

    #[test]
    fn removals_far_apart_make_separate_hunks() {
        let old: Vec<u8> = (1..=20)
            .flat_map(|n| format!("{n}\n").into_bytes())
            .collect();
        assert_eq!(
            unified_diff("ak", &old, &edit(&[2, 18], &[])),
            "--- ak\n+++ ak\n@@ -1,5 +1,4 @@\n 1\n-2\n 3\n 4\n 5\n@@ -15,6 +14,5 @@\n 15\n 16\n 17\n-18\n 19\n 20\n"
        );
        assert_eq!(unified_diff("ak", &old, &edit(&[], &[])), "");
    }

    #[test]
    fn the_diff_agrees_with_diff_u() {
        // The same edits through the real diff(1), when it is installed.
        let Some(diff) = crate::test_support::require_tool("/usr/bin/diff") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        for (old, edit) in [
            (&b"# keys\n\nk1\r\nk2"[..], edit(&[], &["new line"])),
            (&b"1\n2\n3\n4\n5\n6\n7\n8\n9\n"[..], edit(&[1, 9], &[])),
            (&b"a\nb\nc\nd\n"[..], edit(&[2, 3], &["z"])),
        ] {
            let (a, b) = (dir.path().join("a"), dir.path().join("b"));
            std::fs::write(&a, old).unwrap();
            std::fs::write(&b, apply(old, &edit)).unwrap();
            let output = std::process::Command::new(&diff)
                .arg("-u")
                .arg("--label=ak")
                .arg("--label=ak")
                .arg(&a)
                .arg(&b)
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&output.stdout),
                unified_diff("ak", old, &edit),
                "{edit:?}"
            );
        }
    }
}
