//! Issue 15, items 3 and 6: `save_key` cannot destroy a repository. An append-only key may
//! store a key only into a repository that has none (`borg init`), so `borg key
//! change-passphrase` and `key import` through it are refused with one clear sentence and the
//! config stays as it was; and key data with a `\r` or any other control character (which
//! would end the option when the config is read back) is refused from every key.

mod lifecycle;
mod support;

use std::fs;
use std::path::Path;

use rmpv::Value;

use lifecycle::raw::{RawSession, Reply};
use lifecycle::{PASSPHRASE, Site};
use support::BorgClient;

const WRITER: &[&str] = &["--restrict-to-path", "{repos}"];
const APPEND_ONLY: &[&str] = &["--restrict-to-path", "{repos}", "--append-only"];
const REFUSAL: &str = "Permission denied: this key is append-only and may only store the key of a repository that has none (as borg init does); change or import keys with a key that has full access.";

/// Runs borg through the key of `rsh`, with a new passphrase ready for `change-passphrase`.
fn borg_via(site: &Site, rsh: &str, client: &BorgClient, args: &[&str]) -> support::CmdOutput {
    client.run_in(
        &site.source(),
        args,
        &[
            ("BORG_RSH", rsh),
            ("BORG_NEW_PASSPHRASE", "attacker's choice"),
        ],
        Some(PASSPHRASE),
    )
}

/// `<repo>/config` and whether a `config.old` lies next to it.
fn config_of(repo: &Path) -> (Vec<u8>, bool) {
    (
        fs::read(repo.join("config")).unwrap(),
        repo.join("config.old").exists(),
    )
}

#[test]
fn an_append_only_key_cannot_change_or_import_the_key_of_a_repokey_repository() {
    for client in support::borg_clients() {
        let site = Site::new("key-append-only", WRITER);
        let append_only = site.key("append-only", APPEND_ONLY);
        let url = site.url("repo");
        let repo = site.repo("repo");
        site.borg(&client, &["init", "--encryption", "repokey", &url])
            .assert_success();
        site.borg(&client, &["create", &site.archive("repo", "a"), "."])
            .assert_success();
        let exported = site.path("exported.key");
        site.borg(
            &client,
            &["key", "export", &url, exported.to_str().unwrap()],
        )
        .assert_success();
        let before = config_of(&repo);

        for args in [
            &["key", "change-passphrase", &url][..],
            &["key", "import", &url, exported.to_str().unwrap()][..],
        ] {
            let refused = borg_via(&site, &append_only, &client, args);
            refused.assert_failure().assert_stderr_contains(REFUSAL);
            assert_eq!(
                config_of(&repo),
                before,
                "{}: {args:?} changed the config",
                client.label
            );
        }
        // The append-only key keeps working for what it is for.
        borg_via(
            &site,
            &append_only,
            &client,
            &["create", &site.archive("repo", "b"), "."],
        )
        .assert_success();
        // The old passphrase still opens the repository, and a full key may change it.
        let list = site.borg(&client, &["list", "--short", &url]);
        assert_eq!(list.stdout_text(), "a\nb\n", "{list}");
        borg_via(
            &site,
            &site.key("full", WRITER),
            &client,
            &["key", "change-passphrase", &url],
        )
        .assert_success();
        assert_ne!(config_of(&repo).0, before.0);
    }
}

#[test]
fn an_append_only_key_still_inits_repokey_repositories() {
    for client in support::borg_clients() {
        let site = Site::new("key-append-only-init", WRITER);
        let append_only = site.key("append-only", APPEND_ONLY);
        let url = site.url("fresh");
        for args in [
            &["init", "--encryption", "repokey", &url][..],
            &["create", &site.archive("fresh", "a"), "."][..],
        ] {
            site.borg_via(&append_only, &client, &site.source(), args)
                .assert_success();
        }
        let list = site.borg_via(
            &append_only,
            &client,
            &site.source(),
            &["list", "--short", &url],
        );
        assert_eq!(list.stdout_text(), "a\n", "{list}");
        site.local(&client, &["check", site.repo("fresh").to_str().unwrap()])
            .assert_success();
    }
}

/// A raw session of `site` with `args`, with `repo` opened as `borg key ...` opens it.
fn raw_session(site: &Site, args: &[&str], repo: &Path) -> RawSession {
    let mut session = site.raw_engine(args);
    assert!(matches!(
        session.open(repo, false, true, 1),
        Reply::Result(_)
    ));
    session
}

fn save_key(session: &mut RawSession, keydata: &[u8]) -> Reply {
    session.call(
        "save_key",
        vec![("keydata", Value::Binary(keydata.to_vec()))],
    )
}

#[test]
fn an_append_only_key_cannot_overwrite_a_key_with_garbage() {
    let client = support::require!(support::borg14());
    let site = Site::new("key-garbage", WRITER);
    let url = site.url("repo");
    let repo = site.repo("repo");
    site.borg(&client, &["init", "--encryption", "repokey", &url])
        .assert_success();
    let before = config_of(&repo);
    let mut session = raw_session(&site, APPEND_ONLY, &repo);
    assert_eq!(
        save_key(&mut session, b"garbage"),
        Reply::Exception("PermissionDenied".into())
    );
    assert_eq!(
        save_key(&mut session, b""),
        Reply::Exception("PermissionDenied".into())
    );
    session.close_stdin();
    assert!(
        session
            .wait_exit(std::time::Duration::from_secs(20))
            .is_some()
    );
    assert_eq!(config_of(&repo), before);
    site.borg(&client, &["list", &url]).assert_success();
}

#[test]
fn key_data_with_a_carriage_return_or_other_control_character_is_refused() {
    let client = support::require!(support::borg14());
    let site = Site::new("key-control", WRITER);
    let url = site.url("repo");
    let repo = site.repo("repo");
    site.borg(&client, &["init", "--encryption", "repokey", &url])
        .assert_success();
    let before = config_of(&repo);
    let valid = String::from_utf8(fs::read(repo.join("config")).unwrap())
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("key = ").map(str::to_owned))
        .unwrap();
    let mut session = raw_session(&site, WRITER, &repo);
    for bad in [
        format!("{valid}\rappend_only = 0"),
        format!("{valid}\r\nid = 00"),
        format!("{valid}\0"),
        format!("{valid}\x0b"),
        format!("{valid}\t"),
        format!("{valid}\u{85}"),
        format!("{valid}\u{2028}id = 00"),
    ] {
        assert_eq!(
            save_key(&mut session, bad.as_bytes()),
            Reply::Exception("ValueError".into()),
            "{bad:?}"
        );
        assert_eq!(config_of(&repo), before, "{bad:?}");
    }
    assert_eq!(
        save_key(&mut session, b"\xff\xfe"),
        Reply::Exception("ValueError".into())
    );
    session.close_stdin();
    assert!(
        session
            .wait_exit(std::time::Duration::from_secs(20))
            .is_some()
    );
    assert_eq!(config_of(&repo), before);
    let list = site.borg(&client, &["list", &url]);
    list.assert_success();
}
