use super::*;

fn borg() -> Account {
    Account {
        name: "borg".into(),
        uid: 998,
        gid: 997,
        group: "backup".into(),
        groups: vec![997],
        home: PathBuf::from("/var/lib/borg"),
        shell: PathBuf::from("/bin/sh"),
    }
}

fn request() -> Request {
    Request {
        policy_file: PathBuf::from("/etc/borg-gate/laptop.toml"),
        restrict_to_paths: vec![PathBuf::from("/srv/borg/alice")],
        restrict_to_repositories: vec![],
        read_only: false,
        audit_file: Some(PathBuf::from("/var/log/borg-gate/audit.jsonl")),
        syslog: false,
        refuses_unaudited: true,
        metrics_dir: None,
    }
}

fn clean() -> Report {
    Report {
        policy: Ok(()),
        places: vec![PlaceReport {
            path: PathBuf::from("/srv/borg/alice"),
            repository: false,
            trust: None,
            state: PlaceState::Directory(Ok(())),
        }],
        audit_file: Some(AuditAccess::Usable),
        syslog: None,
        metrics_dir: None,
    }
}

fn denied(blocked_at: Option<&str>) -> Failure {
    Failure {
        error: "Permission denied".into(),
        not_found: false,
        blocked_at: blocked_at.map(PathBuf::from),
    }
}

fn missing() -> Failure {
    Failure {
        error: "No such file or directory".into(),
        not_found: true,
        blocked_at: None,
    }
}

fn texts(request: &Request, report: &Report) -> Vec<String> {
    let place = Place::file(&request.policy_file);
    findings(&place, request, report, &borg())
        .iter()
        .map(|f| f.to_string())
        .collect()
}

#[test]
fn a_setup_the_account_can_use_has_no_finding() {
    assert_eq!(texts(&request(), &clean()), Vec::<String>::new());
}

#[test]
fn an_unreadable_policy_names_the_account_and_the_fix_for_a_file() {
    let mut report = clean();
    report.policy = Err(denied(None));
    assert_eq!(
        texts(&request(), &report),
        [
            "error: /etc/borg-gate/laptop.toml: borg cannot read policy /etc/borg-gate/laptop.toml (Permission denied), so every session with this key is refused; chmod 0644 /etc/borg-gate/laptop.toml"
        ]
    );
    report.policy = Err(denied(Some("/etc/borg-gate")));
    assert_eq!(
        texts(&request(), &report),
        [
            "error: /etc/borg-gate/laptop.toml: borg cannot read policy /etc/borg-gate/laptop.toml (Permission denied), so every session with this key is refused; chmod o+x /etc/borg-gate"
        ]
    );
    // Missing for everyone: root's view says so already.
    report.policy = Err(missing());
    assert_eq!(texts(&request(), &report), Vec::<String>::new());
}

#[test]
fn the_engines_trust_check_is_an_error_with_a_fix_for_the_directory_it_names() {
    let mut report = clean();
    report.places[0].trust = Some(TrustProblem::ForeignWritable {
        dir: PathBuf::from("/srv"),
        owner: 1001,
        owner_name: Some("alice".into()),
        mode: 0o40775,
    });
    assert_eq!(
        texts(&request(), &report),
        [
            "error: /etc/borg-gate/laptop.toml: the engine refuses every repository under /srv/borg/alice: /srv (owner alice, mode 0775) could be changed by an account other than root and borg, which could redirect a repository outside the allowed paths; chown root: /srv && chmod go-w /srv"
        ]
    );
    report.places[0].trust = Some(TrustProblem::ForeignWritable {
        dir: PathBuf::from("/srv/borg/alice"),
        owner: 998,
        owner_name: Some("borg".into()),
        mode: 0o40770,
    });
    assert_eq!(
        texts(&request(), &report),
        [
            "error: /etc/borg-gate/laptop.toml: the engine refuses every repository under /srv/borg/alice: /srv/borg/alice (owner borg, mode 0770) could be changed by an account other than root and borg, which could redirect a repository outside the allowed paths; chmod go-w /srv/borg/alice"
        ]
    );
    report.places[0].trust = Some(TrustProblem::ForeignWritable {
        dir: PathBuf::from("/srv/borg/alice"),
        owner: 4242,
        owner_name: None,
        mode: 0o40700,
    });
    assert!(texts(&request(), &report)[0].ends_with(
        "/srv/borg/alice (owner uid 4242, mode 0700) could be changed by an account other than root and borg, which could redirect a repository outside the allowed paths; chown borg:backup /srv/borg/alice && chmod go-w /srv/borg/alice"
    ));
}

#[test]
fn a_directory_the_account_cannot_create_repositories_in_is_a_warning_naming_owner_and_group() {
    let mut report = clean();
    report.places[0].state = PlaceState::Directory(Err(denied(None)));
    assert_eq!(
        texts(&request(), &report),
        [
            "warning: /etc/borg-gate/laptop.toml: borg cannot create repositories in /srv/borg/alice (Permission denied), so `borg init` there fails; install -d -o borg -g backup -m 0700 /srv/borg/alice"
        ]
    );
}

#[test]
fn repositories_need_write_access_or_read_access_for_read_only_keys() {
    let mut request = request();
    request.restrict_to_paths.clear();
    request.restrict_to_repositories = vec![PathBuf::from("/srv/borg/alice/laptop")];
    let mut report = clean();
    report.places = vec![PlaceReport {
        path: PathBuf::from("/srv/borg/alice/laptop"),
        repository: true,
        trust: None,
        state: PlaceState::Directory(Err(denied(None))),
    }];
    assert_eq!(
        texts(&request, &report),
        [
            "error: /etc/borg-gate/laptop.toml: borg cannot write repository /srv/borg/alice/laptop (Permission denied), so every backup with this key fails; chown -R borg:backup /srv/borg/alice/laptop"
        ]
    );
    request.read_only = true;
    assert!(texts(&request, &report)[0].contains(
        "borg cannot read repository /srv/borg/alice/laptop (Permission denied), so every restore with this key fails"
    ));
    report.places[0].state = PlaceState::Missing(Err(denied(None)));
    request.read_only = false;
    assert_eq!(
        texts(&request, &report),
        [
            "warning: /etc/borg-gate/laptop.toml: `borg init` of repository /srv/borg/alice/laptop fails: borg cannot create it in /srv/borg/alice (Permission denied); install -d -o borg -g backup -m 0700 /srv/borg/alice/laptop"
        ]
    );
    report.places[0].state = PlaceState::Missing(Err(missing()));
    assert_eq!(texts(&request, &report), Vec::<String>::new());
}

#[test]
fn a_path_the_account_cannot_reach_names_the_closed_directory() {
    let mut report = clean();
    report.places[0].state = PlaceState::Unreachable(denied(Some("/srv/borg")));
    assert_eq!(
        texts(&request(), &report),
        [
            "error: /etc/borg-gate/laptop.toml: borg cannot reach /srv/borg/alice (Permission denied at /srv/borg), so every session with this key fails there; chmod o+x /srv/borg"
        ]
    );
}

#[test]
fn audit_problems_say_file_or_directory_and_follow_on_failure() {
    let mut report = clean();
    report.audit_file = Some(AuditAccess::File(denied(None)));
    assert_eq!(
        texts(&request(), &report),
        [
            "error: /etc/borg-gate/laptop.toml: borg cannot append to the audit file /var/log/borg-gate/audit.jsonl (Permission denied), so every session with this key is refused; chown borg:backup /var/log/borg-gate/audit.jsonl"
        ]
    );
    report.audit_file = Some(AuditAccess::File(denied(Some("/var/log/borg-gate"))));
    assert_eq!(
        texts(&request(), &report),
        [
            "error: /etc/borg-gate/laptop.toml: borg cannot append to the audit file /var/log/borg-gate/audit.jsonl (Permission denied at /var/log/borg-gate), so every session with this key is refused; install -d -o borg -g backup -m 0750 /var/log/borg-gate"
        ]
    );
    report.audit_file = Some(AuditAccess::File(denied(Some("/var/log"))));
    assert!(texts(&request(), &report)[0].ends_with("; chmod o+x /var/log"));
    report.audit_file = Some(AuditAccess::Directory {
        dir: PathBuf::from("/var/log/borg-gate"),
        failure: denied(None),
    });
    assert_eq!(
        texts(&request(), &report),
        [
            "error: /etc/borg-gate/laptop.toml: borg cannot create the audit file /var/log/borg-gate/audit.jsonl in /var/log/borg-gate (Permission denied), so every session with this key is refused; install -d -o borg -g backup -m 0750 /var/log/borg-gate"
        ]
    );
    report.audit_file = Some(AuditAccess::Directory {
        dir: PathBuf::from("/var/log/borg-gate"),
        failure: missing(),
    });
    let mut lenient = request();
    lenient.refuses_unaudited = false;
    assert_eq!(
        texts(&lenient, &report),
        [
            "warning: /etc/borg-gate/laptop.toml: the audit directory /var/log/borg-gate does not exist, so sessions go unaudited; install -d -o borg -g backup -m 0750 /var/log/borg-gate"
        ]
    );
}

#[test]
fn syslog_without_dev_log_refuses_every_session() {
    let mut request = request();
    request.syslog = true;
    let mut report = clean();
    report.syslog = Some(Err(missing()));
    assert_eq!(
        texts(&request, &report),
        [
            "error: /etc/borg-gate/laptop.toml: audit.syslog = true, but borg cannot reach /dev/log (No such file or directory), so every session with this key is refused; run a syslog service that provides /dev/log (systemd-journald or rsyslog), or remove `syslog = true` and keep audit.file"
        ]
    );
    report.syslog = Some(Ok(()));
    assert_eq!(texts(&request, &report), Vec::<String>::new());
}

#[test]
fn metrics_directories_must_take_new_files_from_the_account() {
    let mut request = request();
    request.metrics_dir = Some(PathBuf::from("/var/lib/prom"));
    let mut report = clean();
    report.metrics_dir = Some(Err(missing()));
    assert_eq!(
        texts(&request, &report),
        [
            "warning: /etc/borg-gate/laptop.toml: the metrics directory /var/lib/prom does not exist, so the gate silently skips its metrics; install -d -o borg -g backup -m 0755 /var/lib/prom, or remove [metrics]"
        ]
    );
    report.metrics_dir = Some(Err(denied(None)));
    assert!(texts(&request, &report)[0].contains(
        "borg cannot create files in the metrics directory /var/lib/prom (Permission denied)"
    ));
}

#[test]
fn gathering_as_this_process_finds_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    let repos = root.join("repos");
    fs::create_dir(&repos).unwrap();
    let policy = root.join("p.toml");
    fs::write(&policy, "x").unwrap();
    let request = Request {
        policy_file: policy,
        restrict_to_paths: vec![repos.clone(), root.join("missing")],
        restrict_to_repositories: vec![root.join("file")],
        read_only: false,
        audit_file: Some(root.join("no-dir/audit.jsonl")),
        syslog: false,
        refuses_unaudited: true,
        metrics_dir: Some(root.clone()),
    };
    fs::write(root.join("file"), "").unwrap();
    let report = gather(&request, nix::unistd::geteuid().as_raw());
    assert_eq!(report.policy, Ok(()));
    assert_eq!(report.places[0].state, PlaceState::Directory(Ok(())));
    assert!(matches!(
        report.places[1].state,
        PlaceState::Missing(Ok(()))
    ));
    assert_eq!(report.places[2].state, PlaceState::NotDirectory);
    assert!(matches!(
        report.audit_file,
        Some(AuditAccess::Directory { ref failure, .. }) if failure.not_found
    ));
    assert_eq!(report.metrics_dir, Some(Ok(())));
    assert_eq!(report.syslog, None);
}
