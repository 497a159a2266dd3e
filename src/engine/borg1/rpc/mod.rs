//! borg 1.x msgpack RPC: framing of the byte stream, request decoding and reply encoding.
//!
//! * the codec is the engine's msgpack (`borg1/msgpack/`), shared with the repository files;
//! * [`request`]: [`RequestReader`] frames stdin into [`Request`]s with typed [`Args`];
//! * [`reply`]: [`ReplyWriter`] batches replies for stdout;
//! * [`errors`]: [`RemoteException`]s with borg's class names, arguments and messages.
//!
//! A server loop built on these reads with [`RequestReader::next_request`], answers each
//! request with one `ReplyWriter` call in the request's [`Format`], and calls
//! [`ReplyWriter::flush`] whenever [`RequestReader::has_buffered_request`] is false, that is,
//! just before it would block waiting for the client.

pub(crate) mod errors;
pub(crate) mod reply;
pub(crate) mod request;

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

pub use crate::engine::borg1::msgpack::{DecodeLimits, Value};
pub use errors::{ExcArg, RemoteException, SysInfo};
pub use reply::{MAX_LIST_REPLY_LEN, ReplyWriter};
pub use request::{
    ArgError, Args, ClientData, Format, Method, Request, RequestReader, RpcDecodeError,
};

/// The version this server reports in `negotiate` (borg 1.4.5's: a final release is
/// `[major, minor, patch, -1]`). Clients need at least 1.2.0 to send every parameter.
pub const SERVER_VERSION: [i64; 4] = [1, 4, 5, -1];

/// stdin as an unbuffered `File` (std's `Stdin` adds a buffer the reader does not need).
pub fn raw_stdin() -> io::Result<File> {
    Ok(File::from(io::stdin().as_fd().try_clone_to_owned()?))
}

/// stdout as an unbuffered `File` (std's `Stdout` is line-buffered, which would scan and split
/// binary replies at every newline byte).
pub fn raw_stdout() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Running real borg's Python to check our bytes against borg's own code.

    use crate::test_support::Borg;
    use std::path::PathBuf;
    use std::process::Command;

    /// A Python interpreter that can import a given borg version.
    pub(crate) struct BorgPython {
        pub python: PathBuf,
    }

    impl BorgPython {
        fn find(borg: Borg, version_prefix: &str) -> Option<BorgPython> {
            let python = borg.python();
            let output = Command::new(&python)
                .args(["-c", "import borg; print(borg.__version__)"])
                .output();
            let found = matches!(&output, Ok(out) if out.status.success()
                && String::from_utf8_lossy(&out.stdout).starts_with(version_prefix));
            if found {
                return Some(BorgPython { python });
            }
            crate::test_support::unavailable(&format!(
                "a {} that can import borg {version_prefix}.x",
                python.display()
            ));
            None
        }

        /// borg 1.4.5 in its venv.
        pub(crate) fn borg14() -> Option<BorgPython> {
            Self::find(Borg::Pypi14, "1.4")
        }

        /// Debian's borg 1.2.
        pub(crate) fn borg12() -> Option<BorgPython> {
            Self::find(Borg::Debian12, "1.2")
        }
    }

    /// Run `script` with `stdin`, require success, and return its stdout.
    pub(crate) fn run_python(python: &BorgPython, script: &str, stdin: &[u8]) -> Vec<u8> {
        crate::test_support::run_python(&python.python, script, stdin)
    }
}

#[cfg(test)]
mod tests {
    //! End to end: real borg 1.4 and 1.2 clients talk to a mock server built from this module,
    //! through a `BORG_RSH` script that connects them with named pipes.

    use super::*;
    use crate::engine::log::{LogConfig, LogLevel, RemoteLogger};
    use crate::test_support::Borg;
    use std::fs::OpenOptions;
    use std::io::Read;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    const RSH_SCRIPT: &str = "#!/bin/sh\n\
        cat < \"$MOCK_DIR/s2c\" &\n\
        cat < \"$MOCK_DIR/err\" >&2 &\n\
        exec cat > \"$MOCK_DIR/c2s\"\n";

    /// What the mock server saw: (method, format) of every request.
    type Seen = Vec<(Method, Format)>;

    /// The remote log line the mock server sends while the client waits for its `open` reply.
    const HELLO: &str = "mock server says hello";

    /// The client's stderr as it arrives, for the mock server to wait on.
    #[derive(Default)]
    struct ClientStderr {
        text: Mutex<String>,
        grown: Condvar,
    }

    impl ClientStderr {
        /// Collects `stream` until it ends.
        fn collect(
            self: &Arc<Self>,
            mut stream: impl Read + Send + 'static,
        ) -> std::thread::JoinHandle<()> {
            let this = Arc::clone(self);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(read) = stream.read(&mut buf) {
                    if read == 0 {
                        break;
                    }
                    let mut text = this.text.lock().unwrap();
                    text.push_str(&String::from_utf8_lossy(&buf[..read]));
                    this.grown.notify_all();
                }
            })
        }

        /// Waits until `needle` appears, or a generous deadline passes (the test then fails on
        /// its own assertions with the client's whole stderr).
        fn wait_for(&self, needle: &str) {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut text = self.text.lock().unwrap();
            while !text.contains(needle) {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    return;
                };
                text = self.grown.wait_timeout(text, left).unwrap().0;
            }
        }

        fn text(&self) -> String {
            self.text.lock().unwrap().clone()
        }
    }

    /// Answers the client; a refused `open` first sends [`HELLO`] and waits until the client
    /// has printed it. borg's client prints a remote log line that arrives while it waits for
    /// a reply, but one that arrives together with an error reply may be lost when it exits on
    /// the error first: only the first is borg's promise.
    fn mock_server(dir: &Path, open_reply: RemoteException, client_stderr: &ClientStderr) -> Seen {
        let input = File::open(dir.join("c2s")).unwrap();
        // Opening a FIFO read-write never blocks on Linux.
        let rw = |name: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(dir.join(name))
                .unwrap()
        };
        let mut reader = RequestReader::new(input);
        let mut writer = ReplyWriter::with_sysinfo(rw("s2c"), "Platform: mock\n".into());
        let logger = RemoteLogger::new(Box::new(rw("err")), &LogConfig::default());
        let log = logger.handle();
        let mut seen = Vec::new();
        loop {
            if !reader.has_buffered_request() {
                writer.flush().unwrap();
            }
            let request = match reader.next_request() {
                Ok(Some(request)) => request,
                Ok(None) => break,
                Err(err) => panic!("mock server: {err}"),
            };
            seen.push((request.method.clone(), request.format));
            let (format, msgid) = (request.format, request.msgid);
            match request.method {
                Method::Negotiate => {
                    if let Some(ClientData::Map { .. }) = request.args.client_data() {
                        crate::engine::borg1::remote_log::open_json(&log);
                    }
                    writer
                        .result_negotiate(format, msgid, &SERVER_VERSION)
                        .unwrap();
                }
                Method::Open => {
                    assert!(request.args.bytes("path").unwrap().is_some());
                    log.log(LogLevel::Info, "borg.repository", "info is filtered");
                    log.log(LogLevel::Warning, "borg.repository", HELLO);
                    client_stderr.wait_for(HELLO);
                    writer.exception(format, msgid, &open_reply).unwrap();
                }
                _ => writer.result_nil(format, msgid).unwrap(),
            }
        }
        writer.flush().unwrap();
        seen
    }

    struct ClientRun {
        code: i32,
        stderr: String,
        seen: Seen,
    }

    fn run_client(
        borg: Borg,
        open_reply: RemoteException,
        modern_exit_codes: bool,
    ) -> Option<ClientRun> {
        let borg = crate::test_support::require_borg(borg)?;
        let dir = tempfile::tempdir().unwrap();
        for fifo in ["c2s", "s2c", "err"] {
            nix::unistd::mkfifo(&dir.path().join(fifo), nix::sys::stat::Mode::S_IRWXU).unwrap();
        }
        let rsh = dir.path().join("rsh");
        std::fs::write(&rsh, RSH_SCRIPT).unwrap();
        std::fs::set_permissions(&rsh, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let mut command = Command::new(borg);
        command
            .args(["list", "ssh://mock/./repo"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", dir.path())
            .env("BORG_BASE_DIR", dir.path())
            .env("BORG_RSH", &rsh)
            .env("MOCK_DIR", dir.path())
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if modern_exit_codes {
            command.env("BORG_EXIT_CODES", "modern");
        }
        let mut child = command.spawn().unwrap();
        let client_stderr = Arc::new(ClientStderr::default());
        let stderr_reader = client_stderr.collect(child.stderr.take().unwrap());
        let server_dir: PathBuf = dir.path().to_owned();
        let server_stderr = Arc::clone(&client_stderr);
        let server =
            std::thread::spawn(move || mock_server(&server_dir, open_reply, &server_stderr));
        let deadline = Instant::now() + Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        // If the client never opened its end, unblock the server's open (and give it EOF).
        while !server.is_finished() {
            drop(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(dir.path().join("c2s")),
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let seen = server.join().unwrap();
        stderr_reader.join().unwrap();
        Some(ClientRun {
            code: output.status.code().unwrap_or(-1),
            stderr: client_stderr.text(),
            seen,
        })
    }

    fn assert_negotiated_then_opened(run: &ClientRun) {
        assert_eq!(
            run.seen[0],
            (Method::Negotiate, Format::Tuple),
            "{}",
            run.stderr
        );
        assert_eq!(run.seen[1], (Method::Open, Format::Dict));
    }

    #[test]
    fn borg_1_4_client_rebuilds_does_not_exist_and_exits_13_with_modern_codes() {
        let Some(run) = run_client(
            Borg::Pypi14,
            RemoteException::does_not_exist("/srv/repo"),
            true,
        ) else {
            return;
        };
        assert_negotiated_then_opened(&run);
        assert_eq!(run.code, 13, "{}", run.stderr);
        assert!(
            run.stderr
                .contains("Repository ssh://mock/./repo does not exist."),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("Remote: {HELLO}")),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("info is filtered"));
    }

    #[test]
    fn borg_1_4_client_prints_the_read_only_refusal_cleanly() {
        let Some(run) = run_client(Borg::Pypi14, RemoteException::read_only("put"), true) else {
            return;
        };
        assert_negotiated_then_opened(&run);
        assert_eq!(run.code, 2, "{}", run.stderr);
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|line| !line.starts_with("Remote: "))
            .collect();
        assert_eq!(
            lines,
            vec!["Permission denied: this key is read-only (put is not allowed)."],
            "{}",
            run.stderr
        );
    }

    #[test]
    fn borg_1_4_client_rebuilds_two_argument_classes() {
        let Some(run) = run_client(
            Borg::Pypi14,
            RemoteException::invalid_repository_config("/srv/repo", "no repository id"),
            true,
        ) else {
            return;
        };
        assert_eq!(run.code, 16, "{}", run.stderr);
        assert!(
            run.stderr.contains("Check repo config [no repository id]."),
            "{}",
            run.stderr
        );
        let Some(run) = run_client(
            Borg::Pypi14,
            RemoteException::lock_timeout("/srv/repo/lock"),
            true,
        ) else {
            return;
        };
        assert_eq!(run.code, 73, "{}", run.stderr);
        assert_eq!(
            run.code,
            RemoteException::lock_timeout("x").modern_client_exit_code()
        );
        assert!(
            run.stderr
                .contains("Failed to create/acquire the lock /srv/repo/lock (timeout).")
        );
    }

    #[test]
    fn borg_1_2_client_prints_the_read_only_refusal_and_lock_timeout_cleanly() {
        for (exception, text) in [
            (
                RemoteException::read_only("delete"),
                "Permission denied: this key is read-only (delete is not allowed).",
            ),
            (
                RemoteException::lock_timeout("/srv/repo/lock"),
                "Failed to create/acquire the lock /srv/repo/lock (timeout).",
            ),
        ] {
            let Some(run) = run_client(Borg::Debian12, exception, false) else {
                return;
            };
            assert_negotiated_then_opened(&run);
            assert_eq!(run.code, 2, "{}", run.stderr);
            let lines: Vec<&str> = run
                .stderr
                .lines()
                .filter(|line| !line.starts_with("Remote: "))
                .collect();
            assert_eq!(lines, vec![text], "{}", run.stderr);
        }
    }

    #[test]
    fn borg_1_2_client_rebuilds_does_not_exist() {
        let Some(run) = run_client(
            Borg::Debian12,
            RemoteException::does_not_exist("/srv/repo"),
            false,
        ) else {
            return;
        };
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr
                .contains("Repository ssh://mock/./repo does not exist."),
            "{}",
            run.stderr
        );
    }

    #[test]
    fn modern_exit_codes_match_borg_1_4_classes() {
        use crate::engine::borg1::rpc::test_support::{BorgPython, run_python};
        let Some(python) = BorgPython::borg14() else {
            return;
        };
        let script = r#"
from borg.repository import Repository
from borg.locking import LockFailed, LockTimeout, NotLocked, NotMyLock
from borg.remote import PathNotAllowed, InvalidRPCMethod
from borg.helpers.errors import IntegrityError, Error
classes = [getattr(Repository, n) for n in ('AlreadyExists', 'AtticRepository', 'CheckNeeded',
    'DoesNotExist', 'InsufficientFreeSpaceError', 'InvalidRepository', 'InvalidRepositoryConfig',
    'ObjectNotFound', 'ParentPathDoesNotExist', 'PathAlreadyExists', 'StorageQuotaExceeded',
    'PathPermissionDenied')]
classes += [LockFailed, LockTimeout, NotLocked, NotMyLock, PathNotAllowed, InvalidRPCMethod,
    IntegrityError, Error]
for c in classes:
    print(c.__name__, c.exit_mcode, c.traceback, c.__doc__.strip())
"#;
        let output = String::from_utf8(run_python(&python, script, b"")).unwrap();
        let samples = [
            RemoteException::already_exists("{}"),
            RemoteException::attic_repository("{}"),
            RemoteException::check_needed("{}"),
            RemoteException::does_not_exist("{}"),
            RemoteException::insufficient_free_space("{}", "{}"),
            RemoteException::invalid_repository("{}"),
            RemoteException::invalid_repository_config("{}", "{}"),
            RemoteException::object_not_found("{}", "{}"),
            RemoteException::parent_path_does_not_exist("{}"),
            RemoteException::path_already_exists("{}"),
            RemoteException::storage_quota_exceeded("{}", "{}"),
            RemoteException::path_permission_denied("{}"),
            RemoteException::lock_failed("{}", "{}"),
            RemoteException::lock_timeout("{}"),
            RemoteException::not_locked("{}"),
            RemoteException::not_my_lock("{}"),
            RemoteException::path_not_allowed("{}"),
            RemoteException::invalid_rpc_method("{}"),
            RemoteException::integrity_error("{}"),
            RemoteException::error("{}"),
        ];
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), samples.len());
        for (line, sample) in lines.iter().zip(&samples) {
            let expected_code = sample.modern_client_exit_code();
            let trace = if sample.traceback { "True" } else { "False" };
            assert_eq!(
                *line,
                format!(
                    "{} {} {} {}",
                    sample.class, expected_code, trace, sample.short
                ),
                "class template, code or trace flag differs from borg"
            );
        }
    }
}
