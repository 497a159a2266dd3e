//! A real OpenSSH server on loopback, with one generated client key per `authorized_keys` line,
//! so tests can drive a forced command exactly as production does.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;

use super::command::{CmdOutput, run_with_timeout, spawn_and_wait};
use super::wait::{wait_exit, wait_for, wait_until};
use super::{SAFE_PATH, cargo_bin, find_tool, temp_dir};

/// sshd must be started by absolute path: it re-executes itself for every connection.
const SSHD: &str = "/usr/sbin/sshd";
/// sshd's privilege separation directory; sshd refuses to start without it, and /run is a tmpfs.
const PRIVSEP_DIR: &str = "/run/sshd";
/// How long sshd may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often we try a fresh port when another process took ours between probe and bind.
const PORT_ATTEMPTS: usize = 8;
/// How long one plain `ssh` command may take.
const SSH_TIMEOUT: Duration = Duration::from_secs(120);
/// An sshd whose test process died without dropping it (SIGKILL) still exits after this long.
const SSHD_MAX_LIFETIME_SECS: u32 = 1800;

/// One line of `authorized_keys`: its options, e.g.
/// `command="/x/borg-gate --policy /p.toml",restrict`. The key itself is generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthorizedKey {
    pub options: String,
}

impl AuthorizedKey {
    /// A key with these options, verbatim (may be empty: an unrestricted key).
    pub(crate) fn new(options: impl Into<String>) -> AuthorizedKey {
        AuthorizedKey {
            options: options.into(),
        }
    }

    /// `command="<command>",restrict`, with `"` escaped as authorized_keys wants (`\"`).
    /// sshd runs the command through the user's shell, with SSH_ORIGINAL_COMMAND set.
    pub(crate) fn forced_command(command: &str) -> AuthorizedKey {
        AuthorizedKey::new(format!(
            "command=\"{}\",restrict",
            command.replace('"', "\\\"")
        ))
    }

    /// The production line: our binary as the forced command, with `--policy <policy>`.
    pub(crate) fn borg_gate(policy: &Path) -> AuthorizedKey {
        let command = shlex::try_join([
            cargo_bin().to_str().expect("UTF-8 binary path"),
            "--policy",
            policy.to_str().expect("UTF-8 policy path"),
        ])
        .expect("no NUL in paths");
        AuthorizedKey::forced_command(&command)
    }
}

/// The sshd_config settings a test may choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SshdOptions {
    /// `PermitUserEnvironment`: "no" (the default), "yes" or a pattern list.
    pub permit_user_environment: String,
    /// `AcceptEnv` patterns; none by default, so the client cannot send any variable.
    pub accept_env: Vec<String>,
    /// Sessions get `HOME=<sshd dir>/home` (sshd's `SetEnv`) instead of the user's home.
    /// On by default: bash sources `~/.bashrc` for ssh sessions even with a forced command, and
    /// root's (pyenv init) costs half a second per connection and rewrites PATH; it also keeps
    /// what a server writes under `~` inside the test's temp dir. The working directory stays
    /// the user's home directory from passwd, as sshd always does.
    pub isolated_home: bool,
    /// Further sshd_config lines, appended verbatim.
    pub extra_config: Vec<String>,
    /// Log in as this account, with the keys of its own `~/.ssh/authorized_keys` (which the
    /// test writes, see [`Sshd::public_key`]) and `StrictModes yes`, as a production server
    /// does. `None`: the account running the tests, with an authorized_keys file the helper
    /// writes from the keys' options.
    pub account: Option<String>,
}

impl Default for SshdOptions {
    fn default() -> SshdOptions {
        SshdOptions {
            permit_user_environment: "no".to_string(),
            accept_env: Vec::new(),
            isolated_home: true,
            extra_config: Vec::new(),
            account: None,
        }
    }
}

/// A running sshd on 127.0.0.1; stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    client_keys: Vec<PathBuf>,
    public_keys: Vec<String>,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Child,
}

impl Sshd {
    /// Starts sshd with the default [`SshdOptions`] and one client key per entry of `keys`.
    /// Callers should check [`super::require_root`] and `require_tool("/usr/sbin/sshd")` first.
    #[track_caller]
    pub(crate) fn start(keys: &[AuthorizedKey]) -> Sshd {
        Sshd::start_with(keys, &SshdOptions::default())
    }

    /// Starts sshd with `options`; panics with the sshd log if it does not listen in time.
    #[track_caller]
    pub(crate) fn start_with(keys: &[AuthorizedKey], options: &SshdOptions) -> Sshd {
        ensure_privsep_dir();
        let dir = temp_dir("sshd");
        let host_key = dir.path().join("ssh_host_ed25519_key");
        generate_key(&host_key, "borg-gate-test-host");
        let mut client_keys = Vec::new();
        let mut public_keys = Vec::new();
        let mut authorized_keys = String::new();
        for (index, key) in keys.iter().enumerate() {
            let private = dir.path().join(format!("client_key_{index}"));
            generate_key(&private, &format!("test-key-{index}"));
            let public = fs::read_to_string(private.with_extension("pub")).expect("read pubkey");
            // "ssh-ed25519 AAAA... comment": keep type and key, put our own comment.
            let mut fields = public.split_whitespace();
            let (kind, blob) = (
                fields.next().expect("key type"),
                fields.next().expect("key"),
            );
            let options = key.options.trim();
            if !options.is_empty() {
                authorized_keys.push_str(options);
                authorized_keys.push(' ');
            }
            authorized_keys.push_str(&format!("{kind} {blob} test-key-{index}\n"));
            public_keys.push(format!("{kind} {blob}"));
            client_keys.push(private);
        }
        let authorized_keys_path = dir.path().join("authorized_keys");
        fs::write(&authorized_keys_path, authorized_keys).expect("write authorized_keys");
        fs::create_dir(dir.path().join("client-home")).expect("create client home");
        let session_home = dir.path().join("home");
        fs::create_dir(&session_home).expect("create session home");

        let config_path = dir.path().join("sshd_config");
        let log_path = dir.path().join("sshd.log");
        let paths = ConfigPaths {
            host_key: &host_key,
            pid_file: &dir.path().join("sshd.pid"),
            authorized_keys: &authorized_keys_path,
            session_home: &session_home,
        };
        let mut penalties_supported = true;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let config = sshd_config(port, &paths, options, penalties_supported);
            fs::write(&config_path, &config).expect("write sshd_config");
            if penalties_supported && !config_is_valid(&config_path) {
                // OpenSSH before 9.8 does not know PerSourcePenalties; it has no penalties to
                // switch off either.
                penalties_supported = false;
                let config = sshd_config(port, &paths, options, penalties_supported);
                fs::write(&config_path, config).expect("write sshd_config");
            }
            assert_config_valid(&config_path);
            fs::write(&log_path, "").expect("truncate sshd log");
            let mut child = spawn_sshd(&config_path, &log_path);
            match wait_until_listening(&mut child, port, &log_path, &config_path) {
                Listening::Ready => {
                    return Sshd {
                        dir,
                        port,
                        user: options.account.clone().unwrap_or_else(current_user),
                        client_keys,
                        public_keys,
                        config_path,
                        log_path,
                        child,
                    };
                }
                Listening::PortTaken => stop(&mut child),
            }
        }
        panic!("sshd: no free loopback port after {PORT_ATTEMPTS} attempts");
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir holding config, keys, log and pid file.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The private key of `authorized_keys` line `key_index`.
    pub(crate) fn client_key(&self, key_index: usize) -> &Path {
        self.client_keys.get(key_index).unwrap_or_else(|| {
            panic!(
                "sshd has {} keys, not key {key_index}",
                self.client_keys.len()
            )
        })
    }

    /// The public half of key `key_index`, `ssh-ed25519 AAAA...`, for a test that writes
    /// the account's own authorized_keys ([`SshdOptions::account`]).
    pub(crate) fn public_key(&self, key_index: usize) -> &str {
        &self.public_keys[key_index]
    }

    /// The HOME of every session when [`SshdOptions::isolated_home`] is on (the default).
    pub(crate) fn session_home(&self) -> PathBuf {
        self.dir().join("home")
    }

    /// The user we log in as (the one running the tests; root in CI).
    pub(crate) fn user(&self) -> &str {
        &self.user
    }

    /// The ssh options (without destination) that log in with key `key_index`.
    pub(crate) fn ssh_options(&self, key_index: usize) -> Vec<String> {
        self.ssh_options_with(self.client_key(key_index))
    }

    /// The ssh options (without destination) that log in with the private key `key`.
    pub(crate) fn ssh_options_with(&self, key: &Path) -> Vec<String> {
        let key = key.to_str().expect("UTF-8 key path");
        [
            "-F",
            "/dev/null",
            "-i",
            key,
            "-p",
            &self.port.to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=20",
        ]
        .iter()
        .map(|word| word.to_string())
        .collect()
    }

    /// A BORG_RSH value that logs in with key `key_index`.
    pub(crate) fn rsh(&self, key_index: usize) -> String {
        self.rsh_with(self.client_key(key_index))
    }

    /// A BORG_RSH value that logs in with the private key `key`.
    pub(crate) fn rsh_with(&self, key: &Path) -> String {
        let mut words = vec!["ssh".to_string()];
        words.extend(self.ssh_options_with(key));
        shlex::try_join(words.iter().map(String::as_str)).expect("no NUL in ssh options")
    }

    /// `ssh://USER@127.0.0.1:PORT/abs/path` (a relative path gets a `/` in front, so
    /// `url("~/x")` is `ssh://...:PORT/~/x`).
    pub(crate) fn url(&self, path: impl AsRef<Path>) -> String {
        let path = path.as_ref().to_str().expect("UTF-8 repository path");
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("ssh://{}@127.0.0.1:{}{slash}{path}", self.user, self.port)
    }

    /// Everything sshd logged so far (LogLevel DEBUG1).
    pub(crate) fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// Waits (bounded) until the sshd log contains `needle`; sshd writes some lines after the
    /// client has gone. Panics with the log when it never shows up.
    #[track_caller]
    pub(crate) fn assert_log_contains(&self, needle: &str) {
        if !wait_until(Duration::from_secs(10), || self.log().contains(needle)) {
            panic!("sshd log never contained {needle:?}:\n{}", self.log());
        }
    }

    /// Runs plain `ssh` with key `key_index` and `remote_command` (one string, sent verbatim,
    /// which is what SSH_ORIGINAL_COMMAND will hold), with stdin closed.
    #[track_caller]
    pub(crate) fn ssh_command(&self, key_index: usize, remote_command: &str) -> CmdOutput {
        self.ssh(key_index, remote_command, &[], None)
    }

    /// Like [`Sshd::ssh_command`], with extra ssh options (e.g. `["-o", "SetEnv=X=1"]`)
    /// and optional bytes on stdin.
    #[track_caller]
    pub(crate) fn ssh(
        &self,
        key_index: usize,
        remote_command: &str,
        extra_options: &[&str],
        stdin: Option<&[u8]>,
    ) -> CmdOutput {
        let mut command = Command::new("ssh");
        command
            .args(self.ssh_options(key_index))
            .args(extra_options)
            .arg("-T")
            .arg("--")
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(remote_command)
            .env_clear()
            .env("PATH", SAFE_PATH)
            .env("HOME", self.dir().join("client-home"))
            .env("LANG", "C.UTF-8");
        let output = spawn_and_wait(command, stdin, SSH_TIMEOUT);
        assert!(
            !output.timed_out,
            "ssh hung:\n{output}\n--- sshd log ---\n{}",
            self.log()
        );
        output
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

enum Listening {
    Ready,
    PortTaken,
}

struct ConfigPaths<'a> {
    host_key: &'a Path,
    session_home: &'a Path,
    pid_file: &'a Path,
    authorized_keys: &'a Path,
}

fn read_log(log_path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(log_path).unwrap_or_default()).into_owned()
}

/// Waits (bounded) for sshd's "Server listening" line, then checks the banner. Stops sshd and
/// panics with its log on any other outcome than ready or a lost port race.
fn wait_until_listening(
    child: &mut Child,
    port: u16,
    log_path: &Path,
    config_path: &Path,
) -> Listening {
    let ready_line = format!("Server listening on 127.0.0.1 port {port}.");
    let outcome = wait_for(START_TIMEOUT, || {
        if let Some(status) = child.try_wait().expect("waitpid on sshd") {
            let log = read_log(log_path);
            if log.contains("Address already in use") {
                return Some(Listening::PortTaken);
            }
            panic!(
                "sshd exited with {status} before listening (config {}):\n{log}",
                config_path.display()
            );
        }
        read_log(log_path)
            .contains(&ready_line)
            .then_some(Listening::Ready)
    });
    match outcome {
        Some(Listening::Ready) => {
            if let Err(problem) = check_banner(port) {
                stop(child);
                panic!("{problem}\n{}", read_log(log_path));
            }
            Listening::Ready
        }
        Some(Listening::PortTaken) => Listening::PortTaken,
        None => {
            stop(child);
            panic!(
                "sshd did not listen within {START_TIMEOUT:?}:\n{}",
                read_log(log_path)
            );
        }
    }
}

/// Proves that what answers on the port is an SSH server (ours: it just said it listens).
fn check_banner(port: u16) -> Result<(), String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .map_err(|error| format!("connect to sshd on port {port}: {error}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|error| format!("set read timeout: {error}"))?;
    let mut banner = [0u8; 8];
    stream
        .read_exact(&mut banner)
        .map_err(|error| format!("read sshd banner: {error}"))?;
    if &banner == b"SSH-2.0-" {
        Ok(())
    } else {
        Err(format!("not an SSH banner on port {port}: {banner:?}"))
    }
}

/// SIGTERM (which `timeout` forwards to sshd), a bounded wait, then SIGKILL to the group.
fn stop(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
    let _ = kill(pid, Signal::SIGTERM);
    if wait_exit(child, Duration::from_secs(5)).is_some() {
        return;
    }
    let _ = killpg(pid, Signal::SIGKILL);
    let _ = child.wait();
}

fn sshd_config(
    port: u16,
    paths: &ConfigPaths<'_>,
    options: &SshdOptions,
    with_penalties_off: bool,
) -> String {
    let mut lines = vec![
        "ListenAddress 127.0.0.1".to_string(),
        format!("Port {port}"),
        format!("HostKey {}", paths.host_key.display()),
        format!("PidFile {}", paths.pid_file.display()),
    ];
    match options.account {
        // The account's own file, checked as sshd checks it in production.
        Some(_) => lines.extend([
            "AuthorizedKeysFile .ssh/authorized_keys".to_string(),
            "StrictModes yes".to_string(),
        ]),
        None => lines.extend([
            format!("AuthorizedKeysFile {}", paths.authorized_keys.display()),
            // The temp dirs live under /tmp, which StrictModes would reject.
            "StrictModes no".to_string(),
        ]),
    }
    lines.extend([
        // Tests run as root; the forced command is what restricts the key.
        "PermitRootLogin yes".to_string(),
        "PubkeyAuthentication yes".to_string(),
        "PasswordAuthentication no".to_string(),
        "KbdInteractiveAuthentication no".to_string(),
        "HostbasedAuthentication no".to_string(),
        // A production Debian sshd uses PAM; it also lets a locked password (useradd's "!")
        // log in with a key, which sshd without PAM refuses.
        format!(
            "UsePAM {}",
            if options.account.is_some() {
                "yes"
            } else {
                "no"
            }
        ),
        format!("PermitUserEnvironment {}", options.permit_user_environment),
        "UseDNS no".to_string(),
        "PrintMotd no".to_string(),
        "PrintLastLog no".to_string(),
        "X11Forwarding no".to_string(),
        // Parallel tests open many connections at once; never drop one.
        "MaxStartups 100".to_string(),
        "LoginGraceTime 60".to_string(),
        "LogLevel DEBUG1".to_string(),
        // The post-quantum default costs this machine a quarter second per connection; the key
        // exchange is no part of what we test.
        "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org".to_string(),
    ]);
    if options.isolated_home {
        lines.push(format!("SetEnv HOME={}", paths.session_home.display()));
    }
    if !options.accept_env.is_empty() {
        lines.push(format!("AcceptEnv {}", options.accept_env.join(" ")));
    }
    if with_penalties_off {
        // OpenSSH 9.8+ would otherwise refuse connections after a test's deliberate failures.
        lines.push("PerSourcePenalties no".to_string());
    }
    lines.extend(options.extra_config.iter().cloned());
    lines.join("\n") + "\n"
}

fn config_is_valid(config: &Path) -> bool {
    sshd_test_mode(config).success()
}

#[track_caller]
fn assert_config_valid(config: &Path) {
    let output = sshd_test_mode(config);
    assert!(
        output.success(),
        "sshd rejects {}:\n{output}\n--- config ---\n{}",
        config.display(),
        fs::read_to_string(config).unwrap_or_default()
    );
}

fn sshd_test_mode(config: &Path) -> CmdOutput {
    let mut command = Command::new(SSHD);
    command
        .arg("-t")
        .arg("-f")
        .arg(config)
        .env_clear()
        .env("PATH", SAFE_PATH);
    run_with_timeout(command, Duration::from_secs(30))
}

fn spawn_sshd(config: &Path, log: &Path) -> Child {
    // `timeout` bounds the life of an sshd whose test was SIGKILLed; it forwards our SIGTERM.
    let mut command = match find_tool("/usr/bin/timeout") {
        Some(timeout) => {
            let mut command = Command::new(timeout);
            command
                .arg("--kill-after=5")
                .arg(SSHD_MAX_LIFETIME_SECS.to_string())
                .arg(SSHD);
            command
        }
        None => Command::new(SSHD),
    };
    command
        .arg("-D")
        .arg("-f")
        .arg(config)
        .arg("-E")
        .arg(log)
        .env_clear()
        .env("PATH", SAFE_PATH)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {SSHD}: {error}"))
}

/// A loopback port that was free a moment ago (sshd may still lose it; we retry then).
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

#[track_caller]
fn generate_key(path: &Path, comment: &str) {
    let mut command = Command::new("ssh-keygen");
    command
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .env_clear()
        .env("PATH", SAFE_PATH);
    run_with_timeout(command, Duration::from_secs(30)).assert_success();
    // ssh and sshd both refuse private keys that others can read.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 600 key");
}

fn ensure_privsep_dir() {
    let dir = Path::new(PRIVSEP_DIR);
    if !dir.is_dir() && nix::unistd::geteuid().is_root() {
        fs::create_dir_all(dir).expect("create /run/sshd");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod /run/sshd");
    }
}

fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map_or_else(|| "root".to_string(), |user| user.name)
}
