//! `borg-gate status` on real repositories: written by the engine and by Python `borg serve`
//! (borg 1.2.4 and 1.4.5 clients), with live and stale locks, quotas, append-only, a last
//! segment without a commit, nested directories, symlinks, a damaged repository, and a
//! repository being written while status reads it. What status reports is checked against
//! what borg's own code reads from the same files (`LoggedIO.get_segments_transaction_id`,
//! the hints) and against `du`.

mod lifecycle;
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rmpv::Value;
use serde_json::Value as Json;

use lifecycle::raw::{RawSession, Reply, object_id};
use lifecycle::{PASSPHRASE, Site};
use support::{BorgClient, CmdOutput};

/// The keys every `--json` object has, in order.
const JSON_KEYS: [&str; 13] = [
    "path",
    "last_commit",
    "age_s",
    "size_bytes",
    "quota_bytes",
    "quota_used_bytes",
    "segments",
    "compactable_bytes",
    "append_only",
    "lock",
    "policies",
    "transaction_id",
    "problems",
];

/// A host id shared by the borg processes of a test and by status, so that liveness does not
/// depend on how this machine's hostid is computed.
const HOST_ID: &str = "status-test-host@1";

/// Runs `borg-gate status ARGS` with an environment built from empty plus `env`.
fn status(args: &[&str], env: &[(&str, &str)]) -> CmdOutput {
    let mut command = Command::new(support::cargo_bin());
    command
        .arg("status")
        .args(args)
        .env_clear()
        .env("PATH", support::SAFE_PATH)
        .env("LANG", "C.UTF-8");
    for (name, value) in env {
        command.env(name, value);
    }
    support::run_with_timeout(command, Duration::from_secs(120))
}

/// `status --json ARGS`, which must succeed; its objects by path, each with exactly the
/// documented keys in order.
#[track_caller]
fn status_json(args: &[&str], env: &[(&str, &str)]) -> BTreeMap<String, Json> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let output = status(&all, env);
    output.assert_success();
    parse_json_lines(&output)
}

#[track_caller]
fn parse_json_lines(output: &CmdOutput) -> BTreeMap<String, Json> {
    let mut objects = BTreeMap::new();
    for line in output.stdout_text().lines() {
        let object: serde_json::Map<String, Json> = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON object ({error}): {line}\n{output}"));
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable_by_key(|key| line.find(&format!("\"{key}\":")));
        assert_eq!(keys, JSON_KEYS, "{line}");
        let path = object["path"].as_str().unwrap().to_owned();
        assert!(
            objects.insert(path, Json::Object(object)).is_none(),
            "reported twice: {line}"
        );
    }
    objects
}

fn paths_of(objects: &BTreeMap<String, Json>) -> Vec<String> {
    objects.keys().cloned().collect()
}

/// The canonical text of `path`.
fn real(path: &Path) -> String {
    fs::canonicalize(path).unwrap().display().to_string()
}

/// A BORG_RSH script that plays sshd in front of Python `borg serve` (the client's own borg)
/// restricted to `repos`.
fn python_serve_rsh(dir: &Path, client: &BorgClient, repos: &Path) -> String {
    let script = dir.join(format!("rsh-python-{}.sh", client.label));
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec {} serve --restrict-to-path {}\n",
            client.path.display(),
            real(repos)
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}

/// `borg init` and one `borg create` of the site's source through `rsh`. `init` options are
/// sent to the server as a client sends them; a forced command drops `--storage-quota`, so a
/// quota is set with [`init_locally`] instead.
#[track_caller]
fn make_repository(site: &Site, rsh: &str, client: &BorgClient, url: &str, init: &[&str]) {
    let mut args = vec!["init", "--encryption", "repokey"];
    args.extend_from_slice(init);
    args.push(url);
    site.borg_via(rsh, client, &site.source(), &args)
        .assert_success();
    create_first(site, rsh, client, url);
}

/// `borg init` on the server's side (local borg), with `options`.
#[track_caller]
fn init_locally(site: &Site, client: &BorgClient, repo: &Path, options: &[&str]) {
    let mut args = vec!["init", "--encryption", "repokey"];
    args.extend_from_slice(options);
    args.push(repo.to_str().unwrap());
    site.local(client, &args).assert_success();
}

/// The first `borg create` of the site's source, through `rsh`.
#[track_caller]
fn create_first(site: &Site, rsh: &str, client: &BorgClient, url: &str) {
    site.borg_via(
        rsh,
        client,
        &site.source(),
        &["create", &format!("{url}::first"), "."],
    )
    .assert_success();
}

/// What borg's own code reads from each repository: the transaction id
/// (`LoggedIO.get_segments_transaction_id`), the mtime of its segment, the non-empty segments,
/// and `storage_quota_use` and the sum of `compact` from its hints.
fn borg_reads(python_client: &BorgClient, repositories: &[&str]) -> BTreeMap<String, Json> {
    let script = format!(
        r#"
import json, os, msgpack
from configparser import ConfigParser
from borg.repository import LoggedIO
out = {{}}
for path in {paths}:
    config = ConfigParser(interpolation=None)
    config.read(os.path.join(path, 'config'))
    io = LoggedIO(path, 0, config.getint('repository', 'segments_per_dir'))
    tid = io.get_segments_transaction_id()
    found = {{'transaction_id': tid,
             'segments': sum(1 for _, f in io.segment_iterator() if os.path.getsize(f) > 0)}}
    if tid is not None:
        found['mtime'] = int(os.stat(io.segment_filename(tid)).st_mtime)
        with open(os.path.join(path, 'hints.%d' % tid), 'rb') as f:
            hints = msgpack.unpackb(f.read(), raw=True, strict_map_key=False)
        found['quota_used'] = hints[b'storage_quota_use']
        found['compactable'] = sum(hints[b'compact'].values())
    out[path] = found
print(json.dumps(out))
"#,
        paths = serde_json::to_string(repositories).unwrap()
    );
    let text = lifecycle::borg_python(python_client, &script);
    serde_json::from_str(&text).unwrap()
}

/// `du -s -B1 PATH`.
fn du(path: &str) -> u64 {
    let output = Command::new("du")
        .args(["-s", "-B1", path])
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn unix_seconds(rfc3339: &str) -> u64 {
    humantime::parse_rfc3339(rfc3339)
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Checks a status object against borg's reading of the same repository.
#[track_caller]
fn assert_agrees_with_borg(object: &Json, borg: &Json) {
    let path = object["path"].as_str().unwrap();
    assert_eq!(object["transaction_id"], borg["transaction_id"], "{path}");
    assert_eq!(
        unix_seconds(object["last_commit"].as_str().unwrap()),
        borg["mtime"].as_u64().unwrap(),
        "{path}"
    );
    assert_eq!(object["segments"], borg["segments"], "{path}");
    assert_eq!(object["quota_used_bytes"], borg["quota_used"], "{path}");
    assert_eq!(object["compactable_bytes"], borg["compactable"], "{path}");
    assert_eq!(object["size_bytes"].as_u64().unwrap(), du(path), "{path}");
    assert!(object["age_s"].as_u64().unwrap() < 3600, "{object}");
    assert_eq!(object["problems"], serde_json::json!([]), "{object}");
}

fn borg14_or_skip() -> Option<BorgClient> {
    support::borg14()
}

#[test]
fn repositories_written_by_the_engine_and_by_borg_serve_read_as_borg_reads_them() {
    let clients = support::borg_clients();
    let python = support::require!(borg14_or_skip());
    let site = Site::new("status-writers", &["--restrict-to-path", "{repos}"]);
    let engine_rsh = site.env()[0].1.to_owned();
    let mut repositories = Vec::new();
    for client in &clients {
        let python_rsh = python_serve_rsh(site.dir.path(), client, &site.path("repos"));
        for (server, rsh) in [("engine", engine_rsh.as_str()), ("python", &python_rsh)] {
            let name = format!("{server}-{}", client.label);
            make_repository(&site, rsh, client, &site.url(&name), &[]);
            repositories.push(site.repo(&name).display().to_string());
        }
    }
    repositories.sort();
    let names: Vec<&str> = repositories.iter().map(String::as_str).collect();
    let borg = borg_reads(&python, &names);
    let objects = status_json(&[site.path("repos").to_str().unwrap()], &[]);
    assert_eq!(paths_of(&objects), repositories);
    for path in &repositories {
        let object = &objects[path];
        assert_agrees_with_borg(object, &borg[path]);
        assert_eq!(object["quota_bytes"], Json::Null);
        assert_eq!(object["append_only"], Json::Bool(false));
        assert_eq!(
            object["lock"],
            serde_json::json!({"state": "free", "holders": []})
        );
        assert_eq!(object["policies"], serde_json::json!([]));
    }

    let text = status(&[site.path("repos").to_str().unwrap()], &[]);
    text.assert_success();
    let lines: Vec<String> = text.stdout_text().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), repositories.len(), "{text}");
    for (line, path) in lines.iter().zip(&repositories) {
        assert!(line.starts_with(&format!("{path}: last commit ")), "{line}");
        assert!(line.contains(" ago), "), "{line}");
        assert!(
            line.ends_with(", not append-only, lock free, no policy"),
            "{line}"
        );
    }
}

/// A policy file, owned by us and private, as the gate demands.
fn write_policy(dir: &Path, name: &str, repository: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    fs::write(
        &path,
        format!(
            "version = 1\nname = \"{name}\"\n[repository]\n{repository}\n[audit]\nsyslog = true\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn quota_and_append_only_come_from_the_repository_and_the_policies_that_reach_it() {
    let clients = support::borg_clients();
    let python = support::require!(borg14_or_skip());
    let site = Site::new("status-policies", &["--restrict-to-path", "{repos}"]);
    let engine_rsh = site.env()[0].1.to_owned();
    let debian = clients.first().unwrap_or(&python);
    let python_rsh = python_serve_rsh(site.dir.path(), debian, &site.path("repos"));
    fs::create_dir(site.path("repos/tenant")).unwrap();
    init_locally(
        &site,
        &python,
        &site.repo("tenant/a"),
        &["--storage-quota", "20M", "--append-only"],
    );
    create_first(&site, &engine_rsh, &python, &site.url("tenant/a"));
    make_repository(&site, &python_rsh, debian, &site.url("tenant/b"), &[]);
    let (a, b) = (
        site.repo("tenant/a").display().to_string(),
        site.repo("tenant/b").display().to_string(),
    );

    // The repository's own settings, without policies.
    let objects = status_json(&[site.path("repos").to_str().unwrap()], &[]);
    assert_eq!(objects[&a]["quota_bytes"], 20_000_000);
    assert_eq!(objects[&a]["append_only"], true);
    assert!(objects[&a]["quota_used_bytes"].as_u64().unwrap() > 0);
    assert_eq!(objects[&b]["quota_bytes"], Json::Null);
    assert_eq!(objects[&b]["append_only"], false);
    let borg = borg_reads(&python, &[&a, &b]);
    assert_agrees_with_borg(&objects[&a], &borg[&a]);
    assert_agrees_with_borg(&objects[&b], &borg[&b]);

    let policies = site.path("policies");
    fs::create_dir(&policies).unwrap();
    let tenant = write_policy(
        &policies,
        "tenant",
        &format!(
            "restrict_to_paths = [\"{}\"]\nappend_only = true\nstorage_quota = \"50M\"",
            site.repo("tenant").display()
        ),
    );
    let admin = write_policy(
        &policies,
        "admin",
        &format!("restrict_to_repositories = [\"{b}\"]"),
    );
    let nobody = write_policy(
        &policies,
        "nobody",
        &format!(
            "restrict_to_paths = [\"{}\"]",
            site.path("repos/nobody-yet").display()
        ),
    );
    let (tenant, admin, nobody) = (
        tenant.to_str().unwrap(),
        admin.to_str().unwrap(),
        nobody.to_str().unwrap(),
    );
    // No PATH: the policies say where to look.
    let output = status(
        &[
            "--json", "--policy", tenant, "--policy", admin, "--policy", nobody,
        ],
        &[],
    );
    output.assert_success();
    output.assert_stderr_contains(&format!(
        "borg-gate: status: policy \"nobody\" ({nobody}) reaches no repository"
    ));
    let objects = parse_json_lines(&output);
    assert_eq!(paths_of(&objects), [a.clone(), b.clone()]);
    // The tenant's forced quota replaces the repository's for its clients.
    assert_eq!(objects[&a]["policies"], serde_json::json!(["tenant"]));
    assert_eq!(objects[&a]["quota_bytes"], 50_000_000);
    assert_eq!(objects[&a]["append_only"], true);
    // The admin key may delete in b, so b is not append-only; the tenant's quota is the tightest.
    assert_eq!(
        objects[&b]["policies"],
        serde_json::json!(["tenant", "admin"])
    );
    assert_eq!(objects[&b]["quota_bytes"], 50_000_000);
    assert_eq!(objects[&b]["append_only"], false);
    let tenant_only = status_json(&["--policy", tenant], &[]);
    assert_eq!(tenant_only[&b]["append_only"], true);

    // A policy without a repository fails the dead man's switch; the others pass it.
    let checked = status(
        &[
            "-q",
            "--max-age",
            "1h",
            "--policy",
            tenant,
            "--policy",
            nobody,
        ],
        &[],
    );
    assert_eq!(checked.code(), Some(1), "{checked}");
    assert_eq!(checked.stdout_text(), "");
    checked.assert_stderr_contains("policy \"nobody\"");
    assert_eq!(
        checked
            .stderr_text()
            .matches("reaches no repository")
            .count(),
        1,
        "said once: {checked}"
    );
    let checked = status(
        &[
            "-q",
            "--max-age",
            "1h",
            "--policy",
            tenant,
            "--policy",
            admin,
        ],
        &[],
    );
    assert_eq!(checked.code(), Some(0), "{checked}");
    assert_eq!(checked.stderr_text(), "");
}

/// `borg with-lock REPO` holding the lock while the test looks: started in its own process
/// group, it prints `locked` once the lock is taken and then waits for stdin to close.
struct WithLock {
    child: std::process::Child,
}

impl WithLock {
    fn start(client: &BorgClient, repo: &Path) -> WithLock {
        let mut command = client.command(
            client.base_dir(),
            &[
                "with-lock",
                repo.to_str().unwrap(),
                "sh",
                "-c",
                "echo locked; exec cat >/dev/null",
            ],
            &[("BORG_HOST_ID", HOST_ID)],
            Some(PASSPHRASE),
        );
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "locked\n", "borg with-lock did not take the lock");
        WithLock { child }
    }

    fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }

    /// SIGKILL to the whole group, as a crash or the OOM killer would; then reaped, so that
    /// the pid is really gone.
    fn kill(mut self) {
        killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL).unwrap();
        self.child.wait().unwrap();
    }
}

#[test]
fn a_lock_held_by_a_running_borg_and_a_stale_one_are_told_apart() {
    let client = support::require!(borg14_or_skip());
    let site = Site::new("status-locks", &["--restrict-to-path", "{repos}"]);
    let engine_rsh = site.env()[0].1.to_owned();
    make_repository(&site, &engine_rsh, &client, &site.url("repo"), &[]);
    make_repository(&site, &engine_rsh, &client, &site.url("other"), &[]);
    let repo = site.repo("repo");
    let repos = site.path("repos");
    let env = [("BORG_HOST_ID", HOST_ID)];

    let holder = WithLock::start(&client, &repo);
    let pid = holder.pid();
    let objects = status_json(&[repos.to_str().unwrap()], &env);
    assert_eq!(
        objects[&repo.display().to_string()]["lock"],
        serde_json::json!({"state": "held", "holders": [{"mode": "exclusive", "host": HOST_ID, "pid": pid, "alive": true}]})
    );
    let other = &objects[&site.repo("other").display().to_string()]["lock"];
    assert_eq!(other["state"], "free");
    let line = status(&[repo.to_str().unwrap()], &env);
    line.assert_stdout_contains(&format!(
        ", lock held (exclusive by {HOST_ID}:{pid}, running), "
    ));

    holder.kill();
    let objects = status_json(&[repos.to_str().unwrap()], &env);
    assert_eq!(
        objects[&repo.display().to_string()]["lock"],
        serde_json::json!({"state": "stale", "holders": [{"mode": "exclusive", "host": HOST_ID, "pid": pid, "alive": false}]})
    );
    // A policy whose engine locks with that host id makes it this host's, whatever status's
    // own host id is.
    let policies = site.path("policies");
    fs::create_dir(&policies).unwrap();
    let policy = write_policy(
        &policies,
        "hosting",
        &format!(
            "restrict_to_paths = [\"{}\"]\n[engine]\nenv = {{ BORG_HOST_ID = \"{HOST_ID}\" }}",
            repos.display()
        ),
    );
    let objects = status_json(
        &["--policy", policy.to_str().unwrap()],
        &[("BORG_HOST_ID", "some-other-host@2")],
    );
    assert_eq!(
        objects[&repo.display().to_string()]["lock"]["holders"][0]["alive"],
        false
    );
    // Held by the same pid on another host: status cannot tell, so it is held.
    let objects = status_json(
        &[repos.to_str().unwrap()],
        &[("BORG_HOST_ID", "some-other-host@2")],
    );
    assert_eq!(
        objects[&repo.display().to_string()]["lock"],
        serde_json::json!({"state": "held", "holders": [{"mode": "exclusive", "host": HOST_ID, "pid": pid, "alive": null}]})
    );
    // status took no lock and wrote nothing: borg breaks the stale lock as usual and reads.
    client
        .run(&["list", repo.to_str().unwrap()], &env, Some(PASSPHRASE))
        .assert_success();
    let objects = status_json(&[repos.to_str().unwrap()], &env);
    assert_eq!(
        objects[&repo.display().to_string()]["lock"]["state"],
        "free"
    );
}

#[test]
fn a_last_segment_without_a_valid_commit_leaves_the_previous_commit_reported() {
    let python = support::require!(borg14_or_skip());
    let site = Site::new("status-uncommitted", &["--restrict-to-path", "{repos}"]);
    let engine_rsh = site.env()[0].1.to_owned();
    make_repository(&site, &engine_rsh, &python, &site.url("repo"), &[]);
    let repo = site.repo("repo");
    let path = repo.display().to_string();
    let before = status_json(&[&path], &[])[&path].clone();
    let committed = before["transaction_id"].as_u64().unwrap();

    // A client in the middle of a backup: a megabyte written to a new segment, no commit,
    // then the engine dies with the lock held.
    let restrict = format!("--restrict-to-path={}", site.path("repos").display());
    let mut session = RawSession::start(&[restrict.as_str()], &site.path("engine.log"));
    assert!(matches!(
        session.open(&repo, false, true, 5),
        Reply::Result(_)
    ));
    assert_eq!(
        session.put(object_id(200), &vec![0x42; 1 << 20]),
        Reply::Result(Value::Nil)
    );
    let newest = lifecycle::segment_numbers(&repo).into_iter().max().unwrap();
    assert!(
        u64::from(newest) > committed,
        "the put wrote no new segment"
    );
    let engine = session.pid();
    kill_and_reap(&mut session, engine);

    let borg = borg_reads(&python, &[&path]);
    assert_eq!(borg[&path]["transaction_id"], committed);
    let after = status_json(&[&path], &[])[&path].clone();
    assert_agrees_with_borg(&after, &borg[&path]);
    assert_eq!(after["last_commit"], before["last_commit"]);
    assert_eq!(after["lock"]["state"], "stale");
    assert_eq!(after["lock"]["holders"][0]["pid"], engine);
    assert!(after["segments"].as_u64().unwrap() > before["segments"].as_u64().unwrap());
}

/// SIGKILL, then reaped (the engine is our child), so that its pid is really gone.
fn kill_and_reap(session: &mut RawSession, pid: i32) {
    nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    assert!(session.wait_exit(Duration::from_secs(10)).is_some());
}

/// Sets the mtime of every file of `repo`'s data to `age` ago.
fn backdate(repo: &Path, age: Duration) {
    let when = SystemTime::now() - age;
    for dir in fs::read_dir(repo.join("data")).unwrap() {
        for file in fs::read_dir(dir.unwrap().path()).unwrap() {
            fs::File::options()
                .write(true)
                .open(file.unwrap().path())
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
    }
}

#[test]
fn max_age_fails_on_an_old_or_missing_commit_and_passes_otherwise() {
    let client = support::require!(borg14_or_skip());
    let site = Site::new("status-max-age", &["--restrict-to-path", "{repos}"]);
    let engine_rsh = site.env()[0].1.to_owned();
    make_repository(&site, &engine_rsh, &client, &site.url("fresh"), &[]);
    make_repository(&site, &engine_rsh, &client, &site.url("old"), &[]);
    let repos = site.path("repos");
    let root = repos.to_str().unwrap();

    let fresh = status(&["--max-age", "26h", root], &[]);
    assert_eq!(fresh.code(), Some(0), "{fresh}");
    assert_eq!(fresh.stderr_text(), "");

    backdate(&site.repo("old"), Duration::from_secs(3 * 86_400));
    let stale = status(&["--max-age", "26h", root], &[]);
    assert_eq!(stale.code(), Some(1), "{stale}");
    let old = site.repo("old").display().to_string();
    assert_eq!(
        stale.stderr_text(),
        format!(
            "borg-gate: status: 1 of 2 repositories have no commit in the last 1day 2h: {old}\n"
        )
    );
    stale.assert_stdout_contains(&format!("{old}: last commit "));
    stale.assert_stdout_contains(" (3d ago), ");
    assert_eq!(status(&["--max-age", "4days", root], &[]).code(), Some(0));
    assert_eq!(
        status(&["-q", "--max-age", "26h", root], &[]).stdout_text(),
        ""
    );

    // A repository with no commit at all fails, whatever the age.
    let empty = site.path("repos/empty");
    fs::create_dir_all(empty.join("data/0")).unwrap();
    fs::copy(site.repo("fresh").join("config"), empty.join("config")).unwrap();
    let none = status(&["--max-age", "1000days", root], &[]);
    assert_eq!(none.code(), Some(1), "{none}");
    none.assert_stderr_contains("have no commit in the last");
    none.assert_stdout_contains(&format!("{}: no commit, ", real(&empty)));

    // Nothing found at all is no success either.
    let nothing = site.path("nothing");
    fs::create_dir(&nothing).unwrap();
    let output = status(&["--max-age", "26h", nothing.to_str().unwrap()], &[]);
    assert_eq!(output.code(), Some(1), "{output}");
    assert_eq!(
        output.stderr_text(),
        "borg-gate: status: no repository found\n"
    );
    assert_eq!(status(&[nothing.to_str().unwrap()], &[]).code(), Some(0));
}

#[test]
fn nested_directories_are_searched_but_repositories_and_symlinks_are_not_entered() {
    let client = support::require!(borg14_or_skip());
    let site = Site::new("status-nested", &["--restrict-to-path", "{repos}"]);
    let engine_rsh = site.env()[0].1.to_owned();
    make_repository(&site, &engine_rsh, &client, &site.url("template"), &[]);
    let template = site.repo("template");
    let root = site.path("root");
    for place in [
        "customers/a/host1",
        "customers/a/host2",
        "customers/b/x/y/z",
    ] {
        fs::create_dir_all(root.join(place).parent().unwrap()).unwrap();
        lifecycle::copy_tree(&template, &root.join(place));
    }
    // A repository inside a repository, as an admin's stray copy: not reported.
    lifecycle::copy_tree(&template, &root.join("customers/a/host1/copy-inside"));
    // An application directory with its own config is searched below.
    fs::create_dir_all(root.join("app")).unwrap();
    fs::write(root.join("app/config"), "[server]\nport = 8080\n").unwrap();
    lifecycle::copy_tree(&template, &root.join("app/backup"));
    // Symlinks to a repository and to a tree elsewhere: never followed.
    symlink(&template, root.join("customers/link-to-repository")).unwrap();
    symlink(site.path("repos"), root.join("link-to-tree")).unwrap();

    let objects = status_json(&[root.to_str().unwrap()], &[]);
    let root = real(&root);
    assert_eq!(
        paths_of(&objects),
        [
            "app/backup",
            "customers/a/host1",
            "customers/a/host2",
            "customers/b/x/y/z"
        ]
        .map(|place| format!("{root}/{place}"))
    );
    let host1 = &objects[&format!("{root}/customers/a/host1")];
    assert_eq!(
        host1["size_bytes"].as_u64().unwrap(),
        du(&format!("{root}/customers/a/host1"))
    );
    assert_eq!(host1["problems"], serde_json::json!([]));
    // Given twice, and inside another root: each repository once.
    let nested = format!("{root}/customers");
    let twice = status_json(&[&root, &nested, &root], &[]);
    assert_eq!(paths_of(&twice), paths_of(&objects));
}

/// One sample of the textfile: family, labels, value.
type Sample = (String, Vec<(String, String)>, String);

/// Parses the exposition format as Prometheus does for these lines: `# HELP`/`# TYPE`
/// comments, then `name{label="value",...} value` with `\\`, `\"` and `\n` escapes.
fn parse_textfile(text: &str) -> (Vec<(String, String)>, Vec<Sample>) {
    let mut types = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.push((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (name, rest) = line.split_at(line.find(['{', ' ']).unwrap());
        let mut labels = Vec::new();
        let mut chars = rest.chars().peekable();
        if chars.peek() == Some(&'{') {
            chars.next();
            loop {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                assert_eq!(chars.next(), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars.next().unwrap() {
                        '"' => break,
                        '\\' => match chars.next().unwrap() {
                            'n' => value.push('\n'),
                            other => value.push(other),
                        },
                        other => value.push(other),
                    }
                }
                labels.push((key, value));
                match chars.next() {
                    Some(',') => continue,
                    Some('}') => break,
                    other => panic!("unexpected {other:?} in {line}"),
                }
            }
        }
        let value: String = chars.collect();
        samples.push((name.to_owned(), labels, value.trim().to_owned()));
    }
    (types, samples)
}

#[test]
fn the_textfile_holds_one_gauge_series_per_repository_matching_the_json() {
    let client = support::require!(borg14_or_skip());
    let site = Site::new("status-textfile", &["--restrict-to-path", "{repos}"]);
    let engine_rsh = site.env()[0].1.to_owned();
    init_locally(
        &site,
        &client,
        &site.repo("quota"),
        &["--storage-quota", "30M"],
    );
    create_first(&site, &engine_rsh, &client, &site.url("quota"));
    // A directory name that needs escaping in a label value.
    let weird = site.path("repos/we\"ird\\na\nme");
    lifecycle::copy_tree(&site.repo("quota"), &weird);
    let policies = site.path("policies");
    fs::create_dir(&policies).unwrap();
    let policy = write_policy(
        &policies,
        "all",
        &format!("restrict_to_paths = [\"{}\"]", site.path("repos").display()),
    );
    let metrics = site.path("metrics");
    fs::create_dir(&metrics).unwrap();
    let textfile = metrics.join("borg-gate-status.prom");
    let args = [
        "--policy",
        policy.to_str().unwrap(),
        "--textfile",
        textfile.to_str().unwrap(),
    ];
    let objects = status_json(&args, &[]);
    assert_eq!(objects.len(), 2);
    // Written again: replaced, never appended to.
    let objects = status_json(&args, &[]);
    let text = fs::read_to_string(&textfile).unwrap();
    assert_eq!(
        fs::metadata(&textfile).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let names: Vec<String> = fs::read_dir(&metrics)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|name| name.ends_with(".tmp")),
        "{names:?}"
    );

    let (types, samples) = parse_textfile(&text);
    assert!(types.iter().all(|(_, kind)| kind == "gauge"), "{types:?}");
    let value = |family: &str, path: &str| -> Option<u64> {
        samples
            .iter()
            .find(|(name, labels, _)| {
                name == family && labels == &[("repository".to_owned(), path.to_owned())]
            })
            .map(|(_, _, value)| value.parse().unwrap())
    };
    for (path, object) in &objects {
        let commit = unix_seconds(object["last_commit"].as_str().unwrap());
        assert_eq!(
            value("borg_gate_repository_last_commit_timestamp_seconds", path),
            Some(commit)
        );
        for (family, key) in [
            ("borg_gate_repository_size_bytes", "size_bytes"),
            ("borg_gate_repository_quota_bytes", "quota_bytes"),
            ("borg_gate_repository_quota_used_bytes", "quota_used_bytes"),
            ("borg_gate_repository_segments", "segments"),
            (
                "borg_gate_repository_compactable_bytes",
                "compactable_bytes",
            ),
        ] {
            assert_eq!(value(family, path), object[key].as_u64(), "{family} {path}");
        }
        assert_eq!(
            value("borg_gate_repository_quota_bytes", path),
            Some(30_000_000)
        );
        assert_eq!(value("borg_gate_repository_append_only", path), Some(0));
        assert_eq!(value("borg_gate_repository_lock_held", path), Some(0));
        assert_eq!(value("borg_gate_repository_lock_stale", path), Some(0));
        assert_eq!(value("borg_gate_repository_problems", path), Some(0));
    }
    assert!(objects.contains_key(&real(&weird)));
    // One series per repository and family, and the run's own gauges.
    let per_repository = samples
        .iter()
        .filter(|(_, labels, _)| labels.first().is_some_and(|(key, _)| key == "repository"))
        .count();
    assert_eq!(per_repository, 2 * 10);
    assert!(samples.contains(&(
        "borg_gate_status_policy_repositories".to_owned(),
        vec![("policy".to_owned(), "all".to_owned())],
        "2".to_owned()
    )));
    assert!(samples.contains(&(
        "borg_gate_status_repositories".to_owned(),
        vec![],
        "2".to_owned()
    )));
    assert!(
        samples
            .iter()
            .any(|(name, _, _)| name == "borg_gate_status_timestamp_seconds")
    );
}

#[test]
fn a_damaged_repository_is_reported_on_its_own_line_and_the_others_still_read() {
    let client = support::require!(borg14_or_skip());
    let site = Site::new("status-damaged", &["--restrict-to-path", "{repos}"]);
    let engine_rsh = site.env()[0].1.to_owned();
    make_repository(&site, &engine_rsh, &client, &site.url("good"), &[]);
    for name in ["torn-hints", "bad-config", "garbage-config"] {
        lifecycle::copy_tree(&site.repo("good"), &site.repo(name));
    }
    let hints = fs::read_dir(site.repo("torn-hints"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("hints.")
        })
        .unwrap();
    let bytes = fs::read(&hints).unwrap();
    fs::write(&hints, &bytes[..bytes.len() / 2]).unwrap();
    let config = fs::read_to_string(site.repo("bad-config").join("config")).unwrap();
    fs::write(
        site.repo("bad-config").join("config"),
        config.replace("segments_per_dir = 1000", "segments_per_dir = lots"),
    )
    .unwrap();
    fs::write(
        site.repo("garbage-config").join("config"),
        b"\xff\xfe not a config",
    )
    .unwrap();

    let root = site.path("repos");
    let output = status(&["--json", root.to_str().unwrap()], &[]);
    assert_eq!(output.code(), Some(0), "{output}");
    let objects = parse_json_lines(&output);
    assert_eq!(objects.len(), 4);
    let object = |name: &str| objects[&site.repo(name).display().to_string()].clone();
    assert_eq!(object("good")["problems"], serde_json::json!([]));
    let torn = object("torn-hints");
    assert_eq!(torn["last_commit"], object("good")["last_commit"]);
    assert_eq!(torn["quota_used_bytes"], Json::Null);
    assert!(
        torn["problems"][0]
            .as_str()
            .unwrap()
            .contains("hints file is malformed"),
        "{torn}"
    );
    let bad = object("bad-config");
    assert_eq!(bad["last_commit"], Json::Null);
    assert_eq!(bad["segments"], Json::Null);
    assert_eq!(
        bad["problems"],
        serde_json::json!(["config: invalid literal for int() with base 10: 'lots'"])
    );
    assert_eq!(
        bad["size_bytes"].as_u64().unwrap(),
        du(&site.repo("bad-config").display().to_string())
    );
    let garbage = object("garbage-config");
    assert_eq!(
        garbage["problems"],
        serde_json::json!(["config: config file is not valid UTF-8"])
    );

    let text = status(&["--max-age", "26h", root.to_str().unwrap()], &[]);
    assert_eq!(text.code(), Some(1), "{text}");
    text.assert_stdout_contains(&format!(
        "{}: last commit unknown, ",
        site.repo("bad-config").display()
    ));
    text.assert_stdout_contains(
        "; problems: config: invalid literal for int() with base 10: 'lots'\n",
    );
    text.assert_stderr_contains("2 of 4 repositories have no commit in the last 1day 2h: ");
}

#[test]
fn a_repository_being_written_and_compacted_reads_consistently_throughout() {
    let client = support::require!(borg14_or_skip());
    let site = Site::new("status-concurrent", &["--restrict-to-path", "{repos}"]);
    let engine_rsh = site.env()[0].1.to_owned();
    make_repository(&site, &engine_rsh, &client, &site.url("repo"), &[]);
    let repo = site.repo("repo").display().to_string();
    let done = AtomicBool::new(false);
    let mut runs = 0;
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for round in 0..3u64 {
                lifecycle::write_random(&site.source().join("changing.bin"), round, 8 << 20);
                site.borg(
                    &client,
                    &["create", &site.archive("repo", &format!("r{round}")), "."],
                )
                .assert_success();
                site.borg(&client, &["prune", "--keep-last", "1", &site.url("repo")])
                    .assert_success();
                site.borg(&client, &["compact", "--threshold", "0", &site.url("repo")])
                    .assert_success();
            }
            done.store(true, Ordering::SeqCst);
        });
        let mut newest = 0;
        while !done.load(Ordering::SeqCst) {
            let output = status(&["--json", &repo], &[]);
            assert_eq!(output.code(), Some(0), "{output}");
            let objects = parse_json_lines(&output);
            let object = &objects[&repo];
            assert_eq!(object["problems"], serde_json::json!([]), "{object}");
            let transaction = object["transaction_id"].as_u64().expect("a commit");
            assert!(transaction >= newest, "went back from {newest}: {object}");
            newest = transaction;
            runs += 1;
        }
        writer.join().unwrap();
    });
    assert!(runs > 0);
    let python = support::require!(borg14_or_skip());
    let borg = borg_reads(&python, &[&repo]);
    assert_agrees_with_borg(&status_json(&[&repo], &[])[&repo], &borg[&repo]);
}

#[test]
fn unusable_arguments_exit_2_with_one_line() {
    let dir = support::temp_dir("status-arguments");
    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    let bad_policy = dir.path().join("bad.toml");
    fs::write(&bad_policy, "version = \"one\"\n").unwrap();
    fs::set_permissions(&bad_policy, fs::Permissions::from_mode(0o600)).unwrap();
    let missing = dir.path().join("missing");
    let cases: [(Vec<&str>, String); 5] = [
        (vec![], "borg-gate: status: nothing to search".to_owned()),
        (
            vec![missing.to_str().unwrap()],
            format!(
                "borg-gate: status: {}: No such file or directory",
                missing.display()
            ),
        ),
        (
            vec![file.to_str().unwrap()],
            format!("borg-gate: status: {} is not a directory", file.display()),
        ),
        (
            vec![
                "--policy",
                bad_policy.to_str().unwrap(),
                dir.path().to_str().unwrap(),
            ],
            "borg-gate: status: invalid policy: ".to_owned(),
        ),
        (
            vec!["--max-age", "soon", dir.path().to_str().unwrap()],
            "invalid value 'soon' for '--max-age <DURATION>'".to_owned(),
        ),
    ];
    for (args, message) in cases {
        let output = status(&args, &[]);
        assert_eq!(output.code(), Some(2), "{output}");
        assert_eq!(output.stdout_text(), "", "{output}");
        output.assert_stderr_contains(&message);
    }
}
