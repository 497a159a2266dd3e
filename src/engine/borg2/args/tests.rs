use super::*;

fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

fn parse(text: &str) -> Result<RestConfig, ArgsError> {
    parse_rest_args(&words(text))
}

#[test]
fn every_option_of_borg_2_serve_and_every_extension_parses() {
    let config = parse(
        "--rest --backend FILE:/srv/r --restrict-to-path /a --restrict-to-path=/b \
         --restrict-to-repository /r --permissions no-delete --info --debug-topic lock \
         --lock-wait 5 --umask 0027 -p --log-json --show-rc --show-version -r x \
         --storage-quota 20M --idle-timeout 10m --lock-release keep --lock-fence 5m --no-fsync",
    )
    .unwrap();
    assert!(config.rest);
    assert_eq!(config.backend.as_deref(), Some("FILE:/srv/r"));
    assert_eq!(
        config.restrict_to_paths,
        [PathBuf::from("/a"), PathBuf::from("/b")]
    );
    assert_eq!(config.restrict_to_repositories, [PathBuf::from("/r")]);
    assert_eq!(config.permissions, Some(Mode::NoDelete));
    assert_eq!(config.log_level, LogLevel::Info);
    assert_eq!(config.debug_topics, ["borg.debug.lock"]);
    assert_eq!(config.lock_wait, 5);
    assert_eq!(config.umask, 0o027);
    assert_eq!(config.storage_quota, Some(20_000_000));
    assert_eq!(config.idle_timeout, Some(Duration::from_secs(600)));
    assert_eq!(config.lock_release, ReleasePolicy::Keep);
    assert_eq!(config.lock_fence, Duration::from_secs(300));
    assert!(!config.fsync);
}

#[test]
fn defaults_are_borgs() {
    let config = parse("--rest").unwrap();
    assert_eq!(config.backend, None);
    assert_eq!(config.permissions, None);
    assert_eq!(config.log_level, LogLevel::Warning);
    assert_eq!(config.umask, 0o077);
    assert_eq!(config.storage_quota, None);
    assert_eq!(config.idle_timeout, None);
    assert_eq!(config.lock_release, ReleasePolicy::Release);
    assert_eq!(config.lock_fence, DEFAULT_FENCE);
    assert!(config.fsync);
}

#[test]
fn spellings_argparse_accepts_are_accepted() {
    let table: &[(&str, &str)] = &[
        ("--backend=FILE:x", "FILE:x"),
        ("--back FILE:x", "FILE:x"),
        ("--backend=FILE:a=b", "FILE:a=b"),
    ];
    for (text, backend) in table {
        assert_eq!(
            parse(text).unwrap().backend.as_deref(),
            Some(*backend),
            "{text}"
        );
    }
    assert_eq!(parse("-vp").unwrap().log_level, LogLevel::Info);
    assert_eq!(parse("-rrepo").unwrap(), RestConfig::default());
    assert!(parse("--rest").unwrap().rest);
    // "--rest" is also a prefix of --restrict-to-*, but exact names win.
    assert!(matches!(parse("--re"), Err(ArgsError::Ambiguous(_))));
    assert!(matches!(parse("--restrict"), Err(ArgsError::Ambiguous(_))));
}

#[test]
fn bad_command_lines_are_errors() {
    let table: &[&str] = &[
        "--frobnicate",
        "--permissions append-only",
        "--umask 999",
        "--lock-wait soon",
        "--storage-quota lots",
        "--idle-timeout forever",
        "--lock-release never",
        "--backend",
        "extra",
        "--rest=yes",
        "-x",
    ];
    for text in table {
        assert!(parse(text).is_err(), "{text}");
    }
    assert_eq!(
        parse("--permissions x").unwrap_err().to_string(),
        "invalid value \"x\" for --permissions: expected one of all, no-delete, write-only, read-only"
    );
}

#[test]
fn the_session_clocks_are_the_servers_with_borg_1s_semantics_and_defaults() {
    let config = parse("--rest --request-timeout=90s --session-limit 12h").unwrap();
    assert_eq!(config.request_timeout, Some(Duration::from_secs(90)));
    assert_eq!(config.session_limit, Some(Duration::from_secs(12 * 3600)));
    let defaults = parse("--rest").unwrap();
    let borg1 = crate::engine::borg1::args::ServeConfig::default();
    assert_eq!(defaults.request_timeout, Some(DEFAULT_REQUEST_TIMEOUT));
    assert_eq!(defaults.request_timeout, borg1.request_timeout);
    assert_eq!(defaults.session_limit, None);
    assert_eq!(defaults.session_limit, borg1.session_limit);
    let unlimited = parse("--rest --request-timeout=0 --session-limit=0s").unwrap();
    assert_eq!(unlimited.request_timeout, None);
    assert_eq!(unlimited.session_limit, None);
    for text in ["--request-timeout soon", "--session-limit=forever"] {
        assert!(
            matches!(parse(text), Err(ArgsError::BadValue { .. })),
            "{text}"
        );
    }
    // A client cannot send them: they are the server's.
    for client in [
        "borg serve --rest --request-timeout 1h",
        "borg serve --rest --session-limit=0",
    ] {
        let mut config = forced("--rest --session-limit 1h");
        assert!(
            matches!(
                apply_client_command(&mut config, client),
                Err(ArgsError::Client(_))
            ),
            "{client}"
        );
        assert_eq!(config.session_limit, Some(Duration::from_secs(3600)));
    }
}

#[test]
fn the_rest_flag_chooses_the_engine() {
    assert!(wants_rest(&["--rest", "--backend", "FILE:x"]));
    assert!(wants_rest(&["--info", "--rest"]));
    assert!(!wants_rest(&["--restrict-to-path", "/x"]));
    assert!(!wants_rest::<&str>(&[]));
    assert!(!wants_rest(&["--", "--rest"]));
}

fn forced(text: &str) -> RestConfig {
    parse(text).unwrap()
}

#[test]
fn the_client_chooses_backend_level_topics_and_lock_wait_only() {
    let mut config = forced(
        "--rest --restrict-to-path /srv --permissions read-only --umask 0027 --info \
         --backend FILE:/srv/forced --storage-quota 1G",
    );
    apply_client_command(
        &mut config,
        "BORG_X=1 LANG=C /opt/borg serve --rest --backend FILE:/srv/r --debug --debug-topic=lock \
         --lock-wait 3 --restrict-to-path=/ --permissions all --umask 0000",
    )
    .unwrap();
    assert_eq!(config.backend.as_deref(), Some("FILE:/srv/r"));
    assert_eq!(config.log_level, LogLevel::Debug);
    assert_eq!(config.debug_topics, ["borg.debug.lock"]);
    assert_eq!(config.lock_wait, 3);
    assert_eq!(config.restrict_to_paths, [PathBuf::from("/srv")]);
    assert_eq!(config.permissions, Some(Mode::ReadOnly));
    assert_eq!(config.umask, 0o027);
    assert_eq!(config.storage_quota, Some(1_000_000_000));
}

#[test]
fn client_defaults_replace_forced_values_as_in_borg() {
    let mut config = forced("--rest --info --backend FILE:/srv/forced --lock-wait 99");
    apply_client_command(&mut config, "borg serve --rest").unwrap();
    assert_eq!(config.backend, None);
    assert_eq!(config.log_level, LogLevel::Warning);
    assert_eq!(config.lock_wait, 10);
}

#[test]
fn the_client_cannot_switch_modes_or_use_extensions() {
    let mut config = forced("--backend FILE:/x");
    apply_client_command(&mut config, "borg serve --rest --backend FILE:/y").unwrap();
    assert!(!config.rest, "--rest is pinned by the forced command");
    let mut config = forced("--rest");
    for command in [
        "borg serve --rest --backend FILE:/y --storage-quota 1T",
        "borg serve --rest --backend FILE:/y --no-fsync",
        "borg serve --rest --backend FILE:/y --lock-release=keep",
        "borg --config /etc/shadow serve --rest --backend FILE:/y",
        "borg serve --rest --backend FILE:/y extra",
        "borg serve --rest --backend 'FILE:/y",
        "sh -c id",
    ] {
        assert!(
            matches!(
                apply_client_command(&mut config, command),
                Err(ArgsError::Client(_))
            ),
            "{command}"
        );
    }
}

#[test]
fn a_client_asking_for_another_borg_command_gets_the_forced_one() {
    let mut config = forced("--rest --backend FILE:/srv/forced --info");
    let before = config.clone();
    for command in [
        "borg repo-list --json",
        "borg --debug repo-create",
        "borg",
        "",
    ] {
        apply_client_command(&mut config, command).unwrap();
        assert_eq!(config, before, "{command}");
    }
}

#[test]
fn common_options_may_come_before_serve() {
    let mut config = forced("--rest");
    apply_client_command(&mut config, "borg --debug serve --rest --backend=FILE:r").unwrap();
    assert_eq!(config.log_level, LogLevel::Debug);
    assert_eq!(config.backend.as_deref(), Some("FILE:r"));
}

#[test]
fn permissions_come_from_the_option_then_the_environment() {
    let mut config = RestConfig::default();
    assert_eq!(effective_permissions(&config, None), Ok(Mode::All));
    assert_eq!(
        effective_permissions(&config, Some("write-only")),
        Ok(Mode::WriteOnly)
    );
    assert_eq!(
        effective_permissions(&config, Some("bogus")),
        Err(
            "Invalid BORG_REPO_PERMISSIONS value: bogus, should be one of: all, no-delete, \
             write-only, read-only."
                .to_owned()
        )
    );
    config.permissions = Some(Mode::ReadOnly);
    assert_eq!(
        effective_permissions(&config, Some("bogus")),
        Ok(Mode::ReadOnly)
    );
}

#[test]
fn the_gate_s_reporting_options_are_the_server_s() {
    let config = forced(
        "--rest --session-id=0123abcd --policy-name=laptop --audit-file=/var/log/a.jsonl \
         --audit-syslog --audit-on-failure=continue --metrics-textfile=/var/lib/m.prom",
    );
    let reporting = &config.reporting;
    assert_eq!(reporting.session_id.as_ref().unwrap().as_str(), "0123abcd");
    assert_eq!(reporting.policy.as_deref(), Some("laptop"));
    assert!(reporting.audit.syslog);
    assert_eq!(
        reporting.metrics_textfile.as_deref(),
        Some(std::path::Path::new("/var/lib/m.prom"))
    );
    assert_eq!(
        parse_rest_args(&["--rest", "--audit-file=relative"]),
        Err(ArgsError::BadValue {
            option: "--audit-file",
            value: "relative".into(),
            expected: "an absolute path"
        })
    );
    let mut config = forced("--rest");
    assert!(apply_client_command(&mut config, "borg serve --rest --session-id=forged").is_err());
    assert!(apply_client_command(&mut config, "borg serve --rest --audit-file=/tmp/x").is_err());
}
