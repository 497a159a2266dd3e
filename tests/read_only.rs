//! `--permissions=read-only` (policy `permissions = "read-only"`): unmodified borg 1.2 and
//! 1.4.5 clients list, inspect, extract, diff and check (without repair) through a read-only
//! key; every write path is refused by name; and no repository file changes, byte for byte.

mod lifecycle;
mod support;

use std::fs;

use lifecycle::{Site, repository_files};
use support::BorgClient;

const READ_ONLY: &[&str] = &["--restrict-to-path", "{repos}", "--permissions=read-only"];
const WRITER: &[&str] = &["--restrict-to-path", "{repos}"];

/// A site with repository `name` (encryption `encryption`) holding archives `a` and `b`,
/// written through a normal key; returns the site and the read-only key's BORG_RSH.
fn written_repository(client: &BorgClient, label: &str, encryption: &str) -> (Site, String) {
    let site = Site::new(label, WRITER);
    let url = site.url("repo");
    site.borg(client, &["init", "--encryption", encryption, &url])
        .assert_success();
    site.borg(client, &["create", &site.archive("repo", "a"), "."])
        .assert_success();
    fs::write(site.source().join("small.txt"), b"changed for b\n").unwrap();
    lifecycle::write_random(&site.source().join("new.bin"), 7, 300_000);
    site.borg(client, &["create", &site.archive("repo", "b"), "."])
        .assert_success();
    let read_only = site.key("read-only", READ_ONLY);
    (site, read_only)
}

#[test]
fn unmodified_clients_list_inspect_extract_diff_and_check_through_a_read_only_key() {
    for client in support::borg_clients() {
        let (site, read_only) = written_repository(&client, "ro-reads", "repokey");
        let before = repository_files(&site.repo("repo"));
        let url = site.url("repo");
        let run = |args: &[&str]| site.borg_via(&read_only, &client, &site.source(), args);

        let list = run(&["list", "--short", &url]);
        list.assert_success();
        assert_eq!(list.stdout_text(), "a\nb\n", "{list}");
        run(&["list", &site.archive("repo", "a")])
            .assert_success()
            .assert_stdout_contains("random.bin");
        run(&["info", &site.archive("repo", "a")])
            .assert_success()
            .assert_stdout_contains("Archive name: a");
        run(&["info", &url]).assert_success();
        run(&["diff", &site.archive("repo", "a"), "b"])
            .assert_success()
            .assert_stdout_contains("small.txt");
        let restore = site.path(&format!("restore-{}", client.label));
        fs::create_dir(&restore).unwrap();
        site.borg_via(
            &read_only,
            &client,
            &restore,
            &["extract", &site.archive("repo", "b")],
        )
        .assert_success();
        support::assert_trees_equal(&site.source(), &restore);
        // check without repair, including the parts that decrypt everything: no nonce needed.
        run(&["check", &url]).assert_success();
        run(&["check", "--verify-data", &url]).assert_success();
        run(&["check", "--repository-only", "--max-duration", "1", &url]).assert_success();
        run(&["check", "--archives-only", "--last", "1", &url]).assert_success();

        assert_eq!(
            repository_files(&site.repo("repo")),
            before,
            "{}: a read-only session changed the repository",
            client.label
        );
    }
}

/// Runs a write through the read-only key and requires borg's refusal for `operation`.
#[track_caller]
fn assert_refused(site: &Site, rsh: &str, client: &BorgClient, args: &[&str], operation: &str) {
    let output = client.run_in(
        &site.source(),
        args,
        &[
            ("BORG_RSH", rsh),
            ("BORG_DELETE_I_KNOW_WHAT_I_AM_DOING", "YES"),
            ("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES"),
            ("BORG_NEW_PASSPHRASE", "new secret"),
        ],
        Some(lifecycle::PASSPHRASE),
    );
    output.assert_failure().assert_stderr_contains(&format!(
        "Permission denied: this key is read-only ({operation} is not allowed)."
    ));
}

#[test]
fn every_write_path_is_refused_by_name() {
    let client = support::require!(support::borg14());
    let (site, ro) = written_repository(&client, "ro-writes", "repokey");
    let before = repository_files(&site.repo("repo"));
    let url = site.url("repo");
    let archive = |name: &str| site.archive("repo", name);
    let exported = site.path("exported.key");
    // Exporting the key is a read; importing it back is a write.
    site.borg_via(
        &ro,
        &client,
        &site.source(),
        &["key", "export", &url, exported.to_str().unwrap()],
    )
    .assert_success();
    let exported = exported.to_str().unwrap();
    let other = site.url("other");
    // The client reserves nonces before it encrypts (acknowledged, never stored), so new
    // data is refused at its first put. borg compact and with-lock rewrite the manifest
    // first (to take the lock the pre-1.0.7 way), so they are refused at that put.
    let refusals: &[(&[&str], &str)] = &[
        (&["create", &archive("c"), "."], "put"),
        (&["delete", &archive("a")], "delete"),
        (&["prune", "--keep-last", "1", &url], "delete"),
        (&["rename", &archive("a"), "renamed"], "put"),
        (&["recreate", "--exclude", "*.bin", &archive("a")], "put"),
        (&["with-lock", &url, "true"], "put"),
        (&["compact", &url], "put"),
        (&["check", "--repair", &url], "check --repair"),
        (&["delete", &url], "destroy"),
        (&["break-lock", &url], "break-lock"),
        (&["init", "--encryption", "none", &other], "init"),
        (&["key", "import", &url, exported], "save_key"),
        (&["key", "change-passphrase", &url], "save_key"),
    ];
    for (args, operation) in refusals {
        assert_refused(&site, &ro, &client, args, operation);
    }
    // borg 1.2 takes the same paths.
    if let Some(debian) = support::debian_borg() {
        assert_refused(&site, &ro, &debian, &["create", &archive("c"), "."], "put");
        assert_refused(&site, &ro, &debian, &["delete", &archive("a")], "delete");
    }
    assert!(!site.repo("other").exists());
    assert_eq!(
        repository_files(&site.repo("repo")),
        before,
        "refused writes changed the repository"
    );
    // Nothing was harmed: the writing key still works, and borg checks clean.
    site.borg(&client, &["create", &archive("c"), "."])
        .assert_success();
    site.local(&client, &["check", site.repo("repo").to_str().unwrap()])
        .assert_success();
}

#[test]
fn an_unencrypted_repository_refuses_puts_and_deletes_too() {
    let client = support::require!(support::borg14());
    let (site, ro) = written_repository(&client, "ro-writes-none", "none");
    let before = repository_files(&site.repo("repo"));
    assert_refused(
        &site,
        &ro,
        &client,
        &["create", &site.archive("repo", "c"), "."],
        "put",
    );
    assert_refused(
        &site,
        &ro,
        &client,
        &["delete", &site.archive("repo", "a")],
        "delete",
    );
    assert_eq!(repository_files(&site.repo("repo")), before);
}

#[test]
fn a_read_only_key_rebuilds_a_missing_index_and_changes_nothing_else() {
    let client = support::require!(support::borg14());
    let (site, ro) = written_repository(&client, "ro-index", "repokey");
    let repo = site.repo("repo");
    lifecycle::remove_index(&repo);
    let before = repository_files(&repo);
    site.borg_via(&ro, &client, &site.source(), &["list", &site.url("repo")])
        .assert_success();
    let after = repository_files(&repo);
    // The index is derived data (borg rebuilds it on any open); data and config are not.
    let derived = lifecycle::is_index_file;
    assert!(
        after.keys().any(|name| name.starts_with("index.")),
        "{after:?}"
    );
    let kept = |files: &std::collections::BTreeMap<String, (u64, u64)>| {
        files
            .iter()
            .filter(|(name, _)| !derived(name))
            .map(|(n, v)| (n.clone(), *v))
            .collect::<Vec<_>>()
    };
    assert_eq!(kept(&after), kept(&before));
    site.local(&client, &["check", repo.to_str().unwrap()])
        .assert_success();
}
