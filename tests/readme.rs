//! The README against the tree it describes: the two opening commands are the scripts CI
//! runs, the "How to read the code" table names every source file and only files that
//! exist, every path and `cargo test --test` the README gives is real, and every command
//! and metric family borg-gate has is documented. (`tests/walkthrough.rs` runs the README's
//! shell blocks.)

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use borg_gate::metrics::families;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    fs::read_to_string(root().join("README.md")).expect("read README.md")
}

/// The text of the section that starts with `heading`, up to the next `## ` heading.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("the README has no section {heading:?}"));
    let body = &text[start + heading.len() + 2..];
    match body.find("\n## ") {
        Some(end) => &body[..end],
        None => body,
    }
}

/// The `code spans` of a line of Markdown.
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// One row of the code table: the paths of its first cell, the names of its second.
struct Row {
    places: Vec<String>,
    names: Vec<String>,
}

/// The rows of the "How to read the code" table.
fn code_table(text: &str) -> Vec<Row> {
    section(text, "## How to read the code")
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            assert_eq!(cells.len(), 2, "a code table row has two cells: {line}");
            Row {
                places: code_spans(cells[0])
                    .into_iter()
                    .filter(|span| !span.starts_with('['))
                    .map(str::to_owned)
                    .collect(),
                names: code_spans(cells[1])
                    .into_iter()
                    .filter(|span| span.ends_with(".rs") || span.ends_with('/'))
                    .map(str::to_owned)
                    .collect(),
            }
        })
        .collect()
}

/// The source files the table must account for: every `.rs` under `src/` except a folder's
/// `mod.rs` and the unit tests kept beside their module (`tests.rs`, `<module>/tests.rs`).
fn source_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read a source folder") {
        let path = entry.expect("a source folder entry").path();
        if path.is_dir() {
            source_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs")
            && !path.ends_with("mod.rs")
            && !path.ends_with("tests.rs")
        {
            files.push(
                path.strip_prefix(root())
                    .expect("under the root")
                    .to_owned(),
            );
        }
    }
}

/// What the table names, as paths from the root: each file (a first cell's paths as
/// written, a second cell's names inside one of the row's folders), each folder a second
/// cell names as a whole (`lock/`), and what does not exist.
struct Named {
    files: Vec<PathBuf>,
    whole_folders: Vec<PathBuf>,
    missing: Vec<String>,
}

fn named_paths(rows: &[Row]) -> Named {
    let mut named = Vec::new();
    let mut missing = Vec::new();
    for row in rows {
        for place in &row.places {
            if !root().join(place).exists() {
                missing.push(place.clone());
            } else if !place.ends_with('/') {
                named.push(PathBuf::from(place));
            }
        }
        let folders: Vec<&String> = row.places.iter().filter(|p| p.ends_with('/')).collect();
        for name in &row.names {
            let found = folders
                .iter()
                .map(|folder| PathBuf::from(format!("{folder}{name}")))
                .find(|path| root().join(path).exists());
            match found {
                Some(path) => named.push(path),
                None => missing.push(format!("{name} (in {folders:?})")),
            }
        }
    }
    let (whole_folders, files) = named
        .into_iter()
        .partition(|path| path.to_string_lossy().ends_with('/'));
    Named {
        files,
        whole_folders,
        missing,
    }
}

#[test]
fn the_readme_opens_with_the_demo_and_the_test_suite_that_ci_runs() {
    let text = readme();
    let (_, first_block) = text.split_once("```sh\n").expect("a first sh block");
    let (first_block, after) = first_block.split_once("\n```").expect("a closed sh block");
    assert!(
        !text[..text.find("```sh\n").unwrap_or(0)].contains("\n## "),
        "the two commands come before any section"
    );
    let commands: Vec<&str> = first_block
        .lines()
        .map(|line| line.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(commands, ["./scripts/demo.sh", "./scripts/test.sh"]);
    for script in &commands {
        let mode = fs::metadata(root().join(script))
            .unwrap_or_else(|e| panic!("{script}: {e}"))
            .permissions()
            .mode();
        assert_ne!(
            mode & 0o111,
            0,
            "{script} is not executable, as the README runs it"
        );
    }
    let ci = fs::read_to_string(root().join(".ci/run")).expect("read .ci/run");
    assert!(
        ci.contains("scripts/test.sh"),
        "CI no longer runs scripts/test.sh, the README's second command:\n{ci}"
    );
    // A fresh Debian machine has no sudo: the README must say how to run them without it.
    let advice = after.trim_start().split("\n\n").next().unwrap_or("");
    assert!(
        advice.contains("as root") && advice.contains("sudo"),
        "the opening commands do not say to run them as root or with sudo:\n{advice}"
    );
}

#[test]
fn the_code_table_names_only_files_that_exist() {
    let rows = code_table(&readme());
    assert!(rows.len() > 10, "the code table was not found");
    let missing = named_paths(&rows).missing;
    assert!(
        missing.is_empty(),
        "the README's \"How to read the code\" names files that do not exist: {missing:#?}"
    );
}

#[test]
fn the_code_table_names_every_source_file() {
    let named = named_paths(&code_table(&readme()));
    let mut files = Vec::new();
    source_files(&root().join("src"), &mut files);
    assert!(files.len() > 50, "the source tree was not found");
    let unnamed: Vec<&PathBuf> = files
        .iter()
        .filter(|file| {
            !named.files.contains(file)
                && !named
                    .whole_folders
                    .iter()
                    .any(|folder| file.starts_with(folder))
        })
        .collect();
    assert!(
        unnamed.is_empty(),
        "add these files to the README's \"How to read the code\" table, with what they own: \
         {unnamed:#?}"
    );
}

/// Paths into the tree that the README gives: `scripts/...`, `src/...` and the like,
/// wherever they stand (not `/usr/share/doc/borg-gate/policy-examples/`).
fn tree_paths(text: &str) -> BTreeSet<String> {
    const TOP: [&str; 10] = [
        "src/",
        "tests/",
        "scripts/",
        "bench/",
        "contrib/",
        "policy-examples/",
        "man/",
        "fuzz/",
        "packaging/",
        ".ci/",
    ];
    let mut paths = BTreeSet::new();
    for (at, _) in text.char_indices() {
        let rest = &text[at..];
        let Some(top) = TOP.iter().find(|top| rest.starts_with(*top)) else {
            continue;
        };
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || "/._-~".contains(c)) {
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "_./-".contains(*c))
            .collect();
        let path = path.trim_end_matches('.');
        if path.len() > top.len() || *top == ".ci/" {
            paths.insert(path.to_owned());
        }
    }
    paths
}

#[test]
fn every_path_and_test_the_readme_gives_exists() {
    let text = readme();
    let paths = tree_paths(&text);
    assert!(paths.contains("scripts/borg-remote-suites.sh"));
    assert!(paths.contains("bench/status-10k.sh"));
    let missing: Vec<&String> = paths
        .iter()
        .filter(|path| !root().join(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "the README names paths that do not exist: {missing:#?}"
    );

    let tests: Vec<&str> = text
        .split("cargo test ")
        .skip(1)
        .filter_map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().take(4).collect();
            let at = words.iter().position(|word| *word == "--test")?;
            let name = words.get(at + 1)?;
            Some(name.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
        })
        .collect();
    assert!(
        tests.len() >= 5,
        "the developer section's tests were not found: {tests:?}"
    );
    let unknown: Vec<&&str> = tests
        .iter()
        .filter(|name| !root().join("tests").join(format!("{name}.rs")).exists())
        .collect();
    assert!(
        unknown.is_empty(),
        "`cargo test --test` of tests that do not exist: {unknown:?}"
    );
}

#[test]
fn the_developer_section_says_how_to_run_borgs_own_suites_and_the_benchmarks() {
    let text = readme();
    let developing = section(&text, "## Developing");
    for command in [
        "scripts/borg-remote-suites.sh",
        "bench/run.sh",
        "bench/rest.sh",
        "bench/status-10k.sh",
        "scripts/fuzz.sh",
    ] {
        assert!(
            developing.lines().any(|line| line.starts_with(command)
                || line.split_whitespace().any(|word| word == command)),
            "the developer section does not say how to run {command}"
        );
    }
}

#[test]
fn every_command_of_the_binary_is_in_the_readme() {
    let help = Command::new(env!("CARGO_BIN_EXE_borg-gate"))
        .arg("--help")
        .output()
        .expect("run borg-gate --help");
    let help = String::from_utf8(help.stdout).expect("help is UTF-8");
    let (_, commands) = help
        .split_once("Commands:\n")
        .expect("--help lists commands");
    let commands: Vec<&str> = commands
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    assert!(commands.len() >= 7, "commands not found in --help:\n{help}");
    let text = readme();
    let undocumented: Vec<&&str> = commands
        .iter()
        .filter(|name| !text.contains(&format!("borg-gate {name}")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "commands the README never shows: {undocumented:?}"
    );
}

#[test]
fn every_metric_family_is_in_the_readme() {
    let text = readme();
    let missing: Vec<&str> = families::ALL
        .iter()
        .map(|family| family.name)
        .filter(|name| !text.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "metric families the README does not list: {missing:?}"
    );
}

#[test]
fn the_path_scanner_finds_paths_and_skips_system_ones() {
    let paths = tree_paths(
        "see `scripts/demo.sh`, bench/RESULTS.md. and /usr/share/doc/borg-gate/policy-examples/ \
         or ~/src/x, tests/; policy-examples/full-access.toml",
    );
    let expected: BTreeSet<String> = [
        "scripts/demo.sh",
        "bench/RESULTS.md",
        "policy-examples/full-access.toml",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(paths, expected);
}
