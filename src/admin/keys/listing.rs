//! The rows of `borg-gate keys list`: every key line of authorized_keys with its name,
//! fingerprint, policy and what the policy grants, and the lines that are not borg-gate's
//! for what they are.
//!
//! Pure: the caller loads the policies and reads the audit logs.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::fingerprint::{key_bits, sha256_fingerprint};
use super::plan::{describe_line, name_of};
use crate::admin::authorized_keys::{Entry, ForcedCommand, classify_command, parse_file};
use crate::policy::{EngineProgram, Permissions, Policy, Protocol};

/// One line of authorized_keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Row {
    pub line: usize,
    /// From `borg-gate:NAME` in the comment, else the policy's name.
    pub name: Option<String>,
    /// `borg-gate`, or what else the line runs: `borg serve`, `command`, `shell`, `unreadable`.
    pub kind: &'static str,
    pub key_type: Option<String>,
    pub bits: Option<u32>,
    pub fingerprint: Option<String>,
    pub comment: Option<String>,
    pub policy: Option<PathBuf>,
    /// The generations of borg the key serves (`client.protocols`): `borg1` (borg 1.x,
    /// `borg serve`), `borg2` (borg 2, `borg serve --rest`) or `borg1,borg2`.
    pub protocol: Option<&'static str>,
    /// `builtin` or the external borg's path; with borg 2 too, both, as `borg1=...,borg2=...`.
    pub engine: Option<String>,
    pub paths: Vec<PathBuf>,
    /// `full`, `append-only` (borg 1's word for no-delete), `no-delete`, `write-only` or
    /// `read-only`.
    pub permissions: Option<&'static str>,
    pub quota: Option<String>,
    pub audit_log: Option<PathBuf>,
    /// The time of the last accepted session, when the audit log has one.
    pub last_session: Option<String>,
    /// Why the line or its policy does not work as it stands.
    pub problem: Option<String>,
}

/// borg's size notation (decimal units), as short as it is exact.
pub(crate) fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0".to_owned();
    }
    for (unit, factor) in [
        ("P", 1_000_000_000_000_000u64),
        ("T", 1_000_000_000_000),
        ("G", 1_000_000_000),
        ("M", 1_000_000),
        ("K", 1_000),
    ] {
        if bytes % factor == 0 {
            return format!("{}{unit}", bytes / factor);
        }
    }
    bytes.to_string()
}

/// The rows for the file `text`. `policies` holds each gate key's policy as loaded (or why
/// it could not be), `sessions` the last session per policy file.
pub(crate) fn rows(
    text: &str,
    policies: &BTreeMap<PathBuf, Result<Policy, String>>,
    sessions: &BTreeMap<PathBuf, String>,
) -> Vec<Row> {
    parse_file(text)
        .into_iter()
        .map(|entry| match entry {
            Entry::Broken { line, problem } => Row {
                line,
                kind: "unreadable",
                problem: Some(format!("sshd does not use this line: {problem}")),
                ..empty_row(line)
            },
            Entry::Key(key) => {
                let mut row = Row {
                    key_type: Some(key.key_type.clone()),
                    bits: key_bits(&key.key_type, &key.blob),
                    fingerprint: Some(sha256_fingerprint(&key.blob)),
                    comment: Some(key.comment.clone()).filter(|c| !c.is_empty()),
                    name: name_of(&key).map(str::to_owned),
                    ..empty_row(key.line)
                };
                match key.command().map(classify_command) {
                    Some(ForcedCommand::Gate { policy, .. }) => {
                        row.kind = "borg-gate";
                        match policies.get(&policy) {
                            Some(Ok(loaded)) => {
                                describe_policy(&mut row, loaded, sessions, &policy)
                            }
                            Some(Err(problem)) => row.problem = Some(problem.clone()),
                            None => {}
                        }
                        row.policy = Some(policy);
                    }
                    Some(ForcedCommand::Serve { .. }) => {
                        row.kind = "borg serve";
                        row.protocol = Some(Protocol::Borg1.name());
                        row.problem = Some(format!("not a borg-gate key: {}", describe_line(&key)));
                    }
                    Some(ForcedCommand::ServeRest { .. }) => {
                        row.kind = "borg serve --rest";
                        row.protocol = Some(Protocol::Borg2.name());
                        row.problem = Some(format!("not a borg-gate key: {}", describe_line(&key)));
                    }
                    Some(_) => {
                        row.kind = "command";
                        row.problem = Some(format!("not a borg-gate key: {}", describe_line(&key)));
                    }
                    None => {
                        row.kind = "shell";
                        row.problem = Some(
                            "not a borg-gate key: no forced command, so it gets a shell".to_owned(),
                        );
                    }
                }
                row
            }
        })
        .collect()
}

fn empty_row(line: usize) -> Row {
    Row {
        line,
        name: None,
        kind: "",
        key_type: None,
        bits: None,
        fingerprint: None,
        comment: None,
        policy: None,
        protocol: None,
        engine: None,
        paths: Vec::new(),
        permissions: None,
        quota: None,
        audit_log: None,
        last_session: None,
        problem: None,
    }
}

fn describe_policy(
    row: &mut Row,
    policy: &Policy,
    sessions: &BTreeMap<PathBuf, String>,
    file: &PathBuf,
) {
    let repository = &policy.repository;
    row.name = row.name.take().or_else(|| Some(policy.name.clone()));
    let protocols = policy.client.protocols;
    row.protocol = Some(protocols.label());
    let engine = |program: &EngineProgram| match program {
        EngineProgram::Builtin => "builtin".to_owned(),
        EngineProgram::External(program) => program.display().to_string(),
    };
    row.engine = Some(
        match (
            protocols.contains(Protocol::Borg1),
            protocols.contains(Protocol::Borg2),
        ) {
            (true, true) => format!(
                "borg1={},borg2={}",
                engine(&policy.engine.program),
                engine(&policy.engine.borg2_program)
            ),
            (false, true) => engine(&policy.engine.borg2_program),
            _ => engine(&policy.engine.program),
        },
    );
    row.paths = repository
        .restrict_to_paths
        .iter()
        .chain(&repository.restrict_to_repositories)
        .cloned()
        .collect();
    row.permissions = Some(match repository.permissions {
        Permissions::ReadOnly => "read-only",
        Permissions::WriteOnly => "write-only",
        Permissions::NoDelete => "no-delete",
        Permissions::All if repository.append_only => "append-only",
        Permissions::All => "full",
    });
    row.quota = repository.storage_quota.map(format_size);
    row.audit_log = policy.audit.file.clone();
    row.last_session = sessions.get(file).cloned();
}

/// The rows as an aligned table, with each line's problem below it.
pub(crate) fn render_table(rows: &[Row]) -> String {
    let header = [
        "LINE",
        "NAME",
        "ACCESS",
        "QUOTA",
        "LAST SESSION",
        "FINGERPRINT",
        "PROTOCOL",
        "POLICY",
        "PATHS",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|row| {
            let last_session = match (&row.audit_log, &row.last_session) {
                (_, Some(time)) => time.clone(),
                (Some(_), None) => "never".to_owned(),
                (None, None) if row.kind == "borg-gate" && row.problem.is_none() => {
                    "no audit log".to_owned()
                }
                (None, None) => "-".to_owned(),
            };
            let paths: Vec<String> = row.paths.iter().map(|p| p.display().to_string()).collect();
            [
                row.line.to_string(),
                row.name.clone().unwrap_or_else(|| "-".to_owned()),
                row.permissions.unwrap_or(row.kind).to_owned(),
                row.quota.clone().unwrap_or_else(|| "-".to_owned()),
                last_session,
                row.fingerprint.clone().unwrap_or_else(|| "-".to_owned()),
                row.protocol.unwrap_or("-").to_owned(),
                row.policy
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
                if paths.is_empty() {
                    "-".to_owned()
                } else {
                    paths.join(",")
                },
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        text.push('\n');
        text
    };
    let mut out = line(&header.map(str::to_owned));
    for (row, cells) in rows.iter().zip(&cells) {
        out.push_str(&line(cells));
        if let Some(problem) = &row.problem {
            out.push_str(&format!("      line {}: {problem}\n", row.line));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDvoPSbZwlcGhmUgC1ycT88UyNeOXQD8AU7m+J59iR4I";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINUNIH1taSZ74L2ixhuu3E1xrMnRlkQnBUi7WCl7x7hP";

    #[test]
    fn sizes_use_the_largest_exact_unit() {
        for (bytes, text) in [
            (0, "0"),
            (10_000_000, "10M"),
            (500_000_000_000, "500G"),
            (1_500_000_000, "1500M"),
            (1_000_000_000_000_000, "1P"),
            (1234, "1234"),
        ] {
            assert_eq!(format_size(bytes), text);
        }
    }

    #[test]
    fn a_borg2_key_shows_its_protocols_engines_and_mode() {
        let both = parse_policy(
            "version = 1\n[engine]\nborg2_program = \"/opt/borg2/bin/borg\"\n[client]\nprotocols = [\"borg1\", \"borg2\"]\n\
             [repository]\nrestrict_to_paths = [\"/srv/a\"]\npermissions = \"no-delete\"\n[audit]\nsyslog = true\n",
            "both",
        )
        .unwrap();
        let borg2 = parse_policy(
            "version = 1\n[client]\nprotocols = [\"borg2\"]\n[repository]\nrestrict_to_paths = [\"/srv/b\"]\n\
             permissions = \"write-only\"\n[audit]\nsyslog = true\n",
            "borg2",
        )
        .unwrap();
        let policies = BTreeMap::from([
            (PathBuf::from("/etc/both.toml"), Ok(both)),
            (PathBuf::from("/etc/borg2.toml"), Ok(borg2)),
        ]);
        let text = format!(
            "command=\"borg-gate --policy /etc/both.toml\",restrict {ED25519}\n\
             command=\"borg-gate --policy /etc/borg2.toml\",restrict {OTHER}\n\
             command=\"borg-gate serve --rest --restrict-to-path /srv/c\",restrict {OTHER}\n"
        );
        let rows = rows(&text, &policies, &BTreeMap::new());
        let summary: Vec<_> = rows
            .iter()
            .map(|r| (r.protocol, r.permissions, r.engine.as_deref(), r.kind))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    Some("borg1,borg2"),
                    Some("no-delete"),
                    Some("borg1=builtin,borg2=/opt/borg2/bin/borg"),
                    "borg-gate"
                ),
                (
                    Some("borg2"),
                    Some("write-only"),
                    Some("builtin"),
                    "borg-gate"
                ),
                (Some("borg2"), None, None, "borg serve --rest"),
            ]
        );
        let table = render_table(&rows);
        assert!(table.contains("  borg1,borg2  "), "{table}");
    }

    #[test]
    fn every_kind_of_line_gets_a_row() {
        let policy = parse_policy(
            "version = 1\nname = \"alice-policy\"\n[repository]\nrestrict_to_paths = [\"/srv/a\"]\nappend_only = true\nstorage_quota = \"20G\"\n[audit]\nfile = \"/log/a.jsonl\"\n",
            "a",
        )
        .unwrap();
        let read_only = parse_policy(
            "version = 1\n[repository]\nrestrict_to_repositories = [\"/srv/r\"]\npermissions = \"read-only\"\n[audit]\nsyslog = true\n",
            "r",
        )
        .unwrap();
        let policies = BTreeMap::from([
            (PathBuf::from("/etc/a.toml"), Ok(policy)),
            (PathBuf::from("/etc/r.toml"), Ok(read_only)),
            (
                PathBuf::from("/etc/gone.toml"),
                Err("policy /etc/gone.toml does not exist".to_owned()),
            ),
        ]);
        let sessions = BTreeMap::from([(
            PathBuf::from("/etc/a.toml"),
            "2026-12-07T10:00:00Z".to_owned(),
        )]);
        let text = format!(
            "# keys\n\ncommand=\"/usr/bin/borg-gate --policy /etc/a.toml\",restrict {ED25519} borg-gate:alice laptop\r\n\
             command=\"/usr/bin/borg-gate --policy /etc/r.toml\",restrict {OTHER}\n\
             command=\"/usr/bin/borg-gate --policy /etc/gone.toml\",restrict {OTHER} borg-gate:gone\n\
             command=\"rsync --server\" {OTHER}\n\
             {OTHER} admin\n\
             restrickt {OTHER}\n\
             command=\"/usr/bin/borg serve --restrict-to-path /srv\" {OTHER}"
        );
        let rows = rows(&text, &policies, &sessions);
        type Summary<'a> = (
            usize,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let summary: Vec<Summary<'_>> = rows
            .iter()
            .map(|r| {
                (
                    r.line,
                    r.kind,
                    r.name.as_deref(),
                    r.permissions,
                    r.last_session.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    3,
                    "borg-gate",
                    Some("alice"),
                    Some("append-only"),
                    Some("2026-12-07T10:00:00Z")
                ),
                (4, "borg-gate", Some("r"), Some("read-only"), None),
                (5, "borg-gate", Some("gone"), None, None),
                (6, "command", None, None, None),
                (7, "shell", None, None, None),
                (8, "unreadable", None, None, None),
                (9, "borg serve", None, None, None),
            ]
        );
        let alice = &rows[0];
        assert_eq!(
            alice.fingerprint.as_deref(),
            Some("SHA256:g3vd3Y3Wingr7aFJtX5o321r+kGYb5bz0LylFDK0cjY")
        );
        assert_eq!(
            (alice.bits, alice.quota.as_deref(), alice.protocol),
            (Some(256), Some("20G"), Some("borg1"))
        );
        assert_eq!(alice.paths, [PathBuf::from("/srv/a")]);
        assert_eq!(alice.comment.as_deref(), Some("borg-gate:alice laptop"));
        assert_eq!(rows[1].paths, [PathBuf::from("/srv/r")]);
        assert_eq!(
            rows[2].problem.as_deref(),
            Some("policy /etc/gone.toml does not exist")
        );
        assert_eq!(
            rows[4].problem.as_deref(),
            Some("not a borg-gate key: no forced command, so it gets a shell")
        );

        let table = render_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("LINE  NAME   ACCESS       QUOTA  LAST SESSION"),
            "{table}"
        );
        assert!(
            lines[1].starts_with(
                "3     alice  append-only  20G    2026-12-07T10:00:00Z  SHA256:g3vd3Y3W"
            ),
            "{table}"
        );
        assert!(
            lines[1].ends_with("borg1     /etc/a.toml     /srv/a"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("4     r      read-only    -      no audit log"),
            "{table}"
        );
        assert!(
            table.contains("      line 5: policy /etc/gone.toml does not exist\n"),
            "{table}"
        );
        assert!(
            table.contains("      line 6: not a borg-gate key: forced command `rsync --server`\n"),
            "{table}"
        );
    }
}
