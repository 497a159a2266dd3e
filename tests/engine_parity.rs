//! The engine beside Python `borg serve` on identical copies of a repository, through real
//! borg 1.2 and 1.4.5 clients, comparing everything the client shows (issue 10): a damaged
//! newest commit followed by reads, check, repair and the next backup; `borg init`
//! interrupted at the passphrase prompt; `borg delete` of an append-only repository.
//!
//! The reference server is borg 1.4.5's, the version the engine's server side follows; a
//! 1.2 client talks to it as it would to any 1.4 server.

mod lifecycle;
mod support;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifecycle::{PASSPHRASE, Site, copy_tree, segment_numbers};
use support::wait_for;
use support::{BorgClient, CmdOutput, require};

const ENGINE: &[&str] = &["--restrict-to-path", "{repos}"];

/// One client talking to Python `borg serve` in one site and to the engine in another, each
/// side with its own client base dir (copies of a repository share its id, and so its cache).
struct Sides {
    engine: Site,
    engine_client: BorgClient,
    python: Site,
    python_client: BorgClient,
    python_rsh: String,
    python_serve: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Python,
    Engine,
}

impl Sides {
    /// `serve_args` go to both servers (Python's after `borg serve`, the engine's after
    /// its restriction).
    fn new(label: &str, client: &BorgClient, reference: &BorgClient, serve_args: &[&str]) -> Sides {
        let mut forced = ENGINE.to_vec();
        forced.extend_from_slice(serve_args);
        let engine = Site::new(&format!("{label}-engine"), &forced);
        let python = Site::new(&format!("{label}-python"), ENGINE);
        let rsh = python.path("python-serve.sh");
        let extra = shlex::try_join(serve_args.iter().copied()).unwrap();
        fs::write(&rsh, format!("#!/bin/sh\nshift\nexec \"$@\" {extra}\n")).unwrap();
        fs::set_permissions(&rsh, fs::Permissions::from_mode(0o755)).unwrap();
        Sides {
            engine,
            engine_client: BorgClient::new(&client.path, "engine-side"),
            python,
            python_client: BorgClient::new(&client.path, "python-side"),
            python_rsh: rsh.to_str().unwrap().to_owned(),
            python_serve: reference.path.clone(),
        }
    }

    fn site(&self, side: Side) -> &Site {
        match side {
            Side::Python => &self.python,
            Side::Engine => &self.engine,
        }
    }

    fn client(&self, side: Side) -> &BorgClient {
        match side {
            Side::Python => &self.python_client,
            Side::Engine => &self.engine_client,
        }
    }

    /// The client's command against `side`, `{url}` in `args` standing for repository `r`.
    fn command(&self, side: Side, args: &[&str], env: &[(&str, &str)]) -> Command {
        let site = self.site(side);
        let url = site.url("r");
        let args: Vec<String> = args.iter().map(|a| a.replace("{url}", &url)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let serve = self.python_serve.to_str().unwrap();
        let mut full_env = match side {
            Side::Python => vec![
                ("BORG_RSH", self.python_rsh.as_str()),
                ("BORG_REMOTE_PATH", serve),
            ],
            Side::Engine => site.env(),
        };
        full_env.extend_from_slice(env);
        self.client(side)
            .command(&site.source(), &args, &full_env, Some(PASSPHRASE))
    }

    #[track_caller]
    fn run(&self, side: Side, args: &[&str], env: &[(&str, &str)]) -> CmdOutput {
        support::run_with_timeout(self.command(side, args, env), support::BORG_TIMEOUT)
    }

    /// What a user sees of `output`, with the two sites' paths and process ids made equal.
    fn seen(&self, output: &CmdOutput) -> String {
        self.normalized(output.code(), &output.stdout_text(), &output.stderr_text())
    }

    fn normalized(&self, code: Option<i32>, stdout: &str, stderr: &str) -> String {
        let mut text = format!("exit {code:?}\n{stdout}{stderr}");
        for site in [&self.engine, &self.python] {
            text = text.replace(site.dir.path().to_str().unwrap(), "SITE");
        }
        text.lines()
            .filter(|line| !line.starts_with("PID: "))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// Runs `args` on both sides and asserts the client showed the same; returns that.
    #[track_caller]
    fn same(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let python = self.seen(&self.run(Side::Python, args, env));
        let engine = self.seen(&self.run(Side::Engine, args, env));
        assert_eq!(
            engine, python,
            "{args:?}: the engine (left) and Python borg serve (right) differ"
        );
        let files = |side| repository_state(&self.site(side).repo("r"));
        assert_eq!(
            files(Side::Engine),
            files(Side::Python),
            "{args:?}: repository files differ"
        );
        engine
    }
}

/// The generation files and segment numbers of a repository (what check and repair change).
fn repository_state(repo: &Path) -> (Vec<String>, Vec<u32>) {
    let mut generations: Vec<String> = fs::read_dir(repo)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| lifecycle::is_index_file(n))
                .collect()
        })
        .unwrap_or_default();
    generations.sort();
    (generations, segment_numbers(repo))
}

// ---------------------------------------------------------------------------------------
// A damaged newest commit

#[derive(Debug, Clone, Copy)]
enum Damage {
    LastByte,
    Truncated,
    Removed,
    CrcBit,
}

fn damage_newest_commit(repo: &Path, damage: Damage) {
    let newest = *segment_numbers(repo).last().unwrap();
    let path = repo
        .join("data")
        .join((newest / 1000).to_string())
        .join(newest.to_string());
    let bytes = fs::read(&path).unwrap();
    let len = bytes.len() as u64;
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    match damage {
        Damage::LastByte => file.write_all_at(b"X", len - 1).unwrap(),
        Damage::Truncated => file.set_len(len - 3).unwrap(),
        Damage::Removed => file.set_len(len - 9).unwrap(),
        Damage::CrcBit => file
            .write_all_at(&[bytes[len as usize - 9] ^ 0x01], len - 9)
            .unwrap(),
    }
}

/// One repository per client, made by the client itself (`init` only, whose commit is then
/// the only one, or two backups after it), copied to both sides and damaged the same way;
/// then the reads, checks, repair and next backup a user would run.
fn damaged_commit_is_served_as_python_borg_serve_does(damage: Damage, offset: usize) {
    let reference = require!(support::borg14());
    for (n, client) in support::borg_clients().iter().enumerate() {
        let several = (n + offset) % 2 == 0;
        let sides = Sides::new("damaged-commit", client, &reference, &[]);
        let orig = sides.engine.path("orig");
        let orig_text = orig.to_str().unwrap();
        let local = |args: &[&str]| {
            sides
                .engine_client
                .run_in(&sides.engine.source(), args, &[], Some(PASSPHRASE))
                .assert_success();
        };
        local(&["init", "--encryption", "repokey", orig_text]);
        let last = if several {
            local(&["create", &format!("{orig_text}::a1"), "."]);
            fs::write(sides.engine.source().join("later.txt"), b"later\n").unwrap();
            local(&["create", &format!("{orig_text}::a2"), "."]);
            "a2"
        } else {
            "a0"
        };
        // The python side's client starts with the same cache and security dir (its base
        // dir is still empty: `cp -a` would copy into it rather than over it).
        fs::remove_dir(sides.python_client.base_dir()).unwrap();
        copy_tree(
            sides.engine_client.base_dir(),
            sides.python_client.base_dir(),
        );
        if several {
            fs::write(sides.python.source().join("later.txt"), b"later\n").unwrap();
        }
        for side in [Side::Python, Side::Engine] {
            copy_tree(&orig, &sides.site(side).repo("r"));
            damage_newest_commit(&sides.site(side).repo("r"), damage);
        }
        let label = format!("{} {damage:?} several={several}", client.label);
        let archive = format!("{{url}}::{last}");
        let repair = [("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES")];
        let mut transcript = String::new();
        for (args, env) in [
            (vec!["list", "--format", "{archive}{NL}", "{url}"], &[][..]),
            (vec!["list", &archive], &[]),
            (vec!["extract", "--dry-run", &archive], &[]),
            (vec!["check", "{url}"], &[]),
            (vec!["check", "--repair", "{url}"], &repair),
            (vec!["check", "{url}"], &[]),
            (vec!["create", "{url}::next", "."], &[]),
            (vec!["list", "--format", "{archive}{NL}", "{url}"], &[]),
            (vec!["check", "{url}"], &[]),
        ] {
            transcript += &format!("$ borg {}\n{}", args.join(" "), sides.same(&args, env));
        }
        // What borg does here, in the words the user reads.
        if several {
            assert!(
                transcript.contains("Replaying segments"),
                "{label}:\n{transcript}"
            );
        } else {
            assert!(
                transcript.contains("Inconsistency detected"),
                "{label}:\n{transcript}"
            );
        }
        assert!(
            transcript.trim_end().ends_with("exit Some(0)"),
            "{label}: the repository is not usable after the repair:\n{transcript}"
        );
    }
}

#[test]
fn a_commit_with_its_last_byte_overwritten_is_served_as_python_borg_serve_does() {
    damaged_commit_is_served_as_python_borg_serve_does(Damage::LastByte, 0);
}

#[test]
fn a_truncated_commit_is_served_as_python_borg_serve_does() {
    damaged_commit_is_served_as_python_borg_serve_does(Damage::Truncated, 1);
}

#[test]
fn a_removed_commit_is_served_as_python_borg_serve_does() {
    damaged_commit_is_served_as_python_borg_serve_does(Damage::Removed, 0);
}

#[test]
fn a_commit_with_a_flipped_crc_bit_is_served_as_python_borg_serve_does() {
    damaged_commit_is_served_as_python_borg_serve_does(Damage::CrcBit, 1);
}

// ---------------------------------------------------------------------------------------
// Calls after destroy

/// `borg init` interrupted at the passphrase prompt: borg ignores the first SIGINT within
/// 20 ms of another and handles a second one as Ctrl-C, which destroys the new repository
/// (1.4.5 then raises "Cancelled by user" and rolls back on the connection).
fn interrupt_init(sides: &Sides, side: Side) -> String {
    let mut command = sides.command(side, &["init", "--encryption", "repokey", "{url}"], &[]);
    command.env_remove("BORG_PASSPHRASE");
    // No controlling terminal: getpass reads the (held open) stdin and prompts on stderr.
    let mut setsid = Command::new("setsid");
    setsid.arg(command.get_program()).args(command.get_args());
    setsid.env_clear();
    for (name, value) in command.get_envs() {
        if let Some(value) = value {
            setsid.env(name, value);
        }
    }
    setsid.current_dir(command.get_current_dir().unwrap());
    setsid
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = setsid.spawn().unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("passphrase: ") {
        let read = stderr.read(&mut buf).unwrap();
        assert!(
            read > 0,
            "no passphrase prompt: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..read]);
    }
    for _ in 0..2 {
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        // Handled once it is no longer pending and borg sleeps in its read again.
        wait_for(Duration::from_secs(60), || {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or("")
                    .to_owned()
            };
            let pending = |mask: String| u64::from_str_radix(&mask, 16).unwrap_or(0) & 0b10 != 0;
            let idle = field("State:").starts_with('S');
            (!pending(field("SigPnd:")) && !pending(field("ShdPnd:")) && idle).then_some(())
        });
        // borg ignores a SIGINT less than 20 ms after the one before (debounce).
        let handled = Instant::now();
        while handled.elapsed() < Duration::from_millis(25) {
            std::thread::yield_now();
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
    }
    let mut rest = Vec::new();
    stderr.read_to_end(&mut rest).unwrap();
    seen.extend_from_slice(&rest);
    let status = child.wait().unwrap();
    drop(child.stdin.take());
    sides.normalized(status.code(), "", &String::from_utf8_lossy(&seen))
}

#[test]
fn init_interrupted_at_the_passphrase_prompt_ends_as_with_python_borg_serve() {
    let reference = require!(support::borg14());
    for client in support::borg_clients() {
        let sides = Sides::new("init-interrupt", &client, &reference, &[]);
        let python = interrupt_init(&sides, Side::Python);
        let engine = interrupt_init(&sides, Side::Engine);
        assert_eq!(
            engine, python,
            "{}: engine (left), Python (right)",
            client.label
        );
        for side in [Side::Python, Side::Engine] {
            assert!(!sides.site(side).repo("r").exists(), "{side:?}: {engine}");
        }
        if client.major_minor() >= (1, 4) {
            assert!(engine.contains("Cancelled by user."), "{engine}");
            assert!(!engine.contains("AttributeError"), "{engine}");
        }
    }
}

#[test]
fn deleting_an_append_only_repository_is_refused_with_borgs_message() {
    let reference = require!(support::borg14());
    for client in support::borg_clients() {
        let sides = Sides::new(
            "append-only-delete",
            &client,
            &reference,
            &["--append-only"],
        );
        let init = sides.same(&["init", "--encryption", "none", "{url}"], &[]);
        assert!(init.starts_with("exit Some(0)"), "{init}");
        sides.same(&["create", "{url}::a1", "."], &[]);
        // The exit status and borg's message; Python's server adds its traceback and
        // system information (`Borg server:` lines), which the engine has no equivalent of.
        let delete = |side| {
            let args = ["delete", "--force", "{url}"];
            let env = [("BORG_DELETE_I_KNOW_WHAT_I_AM_DOING", "YES")];
            let seen = sides.seen(&sides.run(side, &args, &env));
            let lines = seen.lines().filter(|line| {
                line.starts_with("exit ")
                    || line.starts_with("ValueError")
                    || line.contains("AttributeError")
            });
            lines.map(|line| format!("{line}\n")).collect::<String>()
        };
        let python = delete(Side::Python);
        assert_eq!(delete(Side::Engine), python, "{}", client.label);
        assert_eq!(
            python, "exit Some(2)\nValueError: SITE/repos/r is in append-only mode\n",
            "{}",
            client.label
        );
        let list = sides.same(&["list", "--format", "{archive}{NL}", "{url}"], &[]);
        assert_eq!(list, "exit Some(0)\na1\n");
    }
}
