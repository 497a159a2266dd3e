//! The exceptions `borg serve` sends to clients: class names, argument arity and message texts
//! exactly as borg 1.4.5 produces them, plus the `sysinfo` text that accompanies them.
//!
//! Clients rebuild some classes locally from `exception_args` and show the rest as an `RPCError`
//! whose text is `exception_short` (spec 2.6), so every constructor here fills both.
//!
//! Exit codes of a borg 1.4 client under `BORG_EXIT_CODES=modern` (see
//! [`modern_client_exit_code`]): a class the client rebuilds exits with that class's
//! `exit_mcode`; any other class arrives as `RPCError` and exits with 2. Under the default
//! (legacy) codes, and for every 1.2 client, any error exits with 2.

use std::borrow::Cow;
use std::fmt;

use crate::common::python::{python_bytes_repr, python_str_repr};
use crate::common::text::{hex_id, plain_io_error};
use crate::engine::borg1::lock::LockError;
use crate::engine::borg1::repository::error::RepoError;

/// The text of the legacy (tuple format) exception reply.
pub(crate) const TUPLE_EXCEPTION_TEXT: &str = "Remote Exception (see remote log for the traceback)";

/// One element of `exception_args`. Strings and bytes are both sent as msgpack raw strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExcArg {
    Str(String),
    Bytes(Vec<u8>),
    Int(i64),
    Nil,
}

impl From<&str> for ExcArg {
    fn from(text: &str) -> Self {
        ExcArg::Str(text.to_owned())
    }
}

impl From<String> for ExcArg {
    fn from(text: String) -> Self {
        ExcArg::Str(text)
    }
}

impl From<i64> for ExcArg {
    fn from(value: i64) -> Self {
        ExcArg::Int(value)
    }
}

/// An exception reply, independent of the wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteException {
    /// `exception_class`: the unqualified Python class name the client switches on.
    pub class: Cow<'static, str>,
    /// `exception_args`.
    pub args: Vec<ExcArg>,
    /// The single element of `exception_short`: a complete, human-readable message.
    pub short: String,
    /// `exception_trace`: whether the client shows `exception_full` instead of `short`.
    pub traceback: bool,
    /// `exception_full`: lines, each ending with `\n` (the client joins them with `\n`).
    pub full: Vec<String>,
}

impl fmt::Display for RemoteException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.short.trim_end())
    }
}

impl std::error::Error for RemoteException {}

/// Fill a borg docstring template: each `{}` takes the next argument, as `str.format` does.
fn fill_template(template: &str, args: &[&str]) -> String {
    let mut text =
        String::with_capacity(template.len() + args.iter().map(|a| a.len()).sum::<usize>());
    let mut args = args.iter();
    let mut rest = template;
    while let Some(at) = rest.find("{}") {
        text.push_str(&rest[..at]);
        text.push_str(args.next().copied().unwrap_or(""));
        rest = &rest[at + 2..];
    }
    text.push_str(rest);
    text
}

impl RemoteException {
    /// A borg `Error` subclass: `exception_short` is the filled template without a newline.
    fn borg(class: &'static str, traceback: bool, template: &str, args: &[&str]) -> Self {
        let message = fill_template(template, args);
        RemoteException {
            class: Cow::Borrowed(class),
            args: args.iter().map(|&arg| ExcArg::from(arg)).collect(),
            full: vec![format!("{class}: {message}\n")],
            short: message,
            traceback,
        }
    }

    /// A plain Python exception: `exception_short` is `format_exception_only`'s line.
    fn python(class: &'static str, message: &str, args: Vec<ExcArg>) -> Self {
        let line = if message.is_empty() {
            format!("{class}\n")
        } else {
            format!("{class}: {message}\n")
        };
        RemoteException {
            class: Cow::Borrowed(class),
            args,
            short: line.clone(),
            traceback: true,
            full: vec![line],
        }
    }

    pub fn already_exists(path: &str) -> Self {
        Self::borg(
            "AlreadyExists",
            false,
            "A repository already exists at {}.",
            &[path],
        )
    }

    pub fn attic_repository(path: &str) -> Self {
        Self::borg(
            "AtticRepository",
            false,
            "Attic repository detected. Please run \"borg upgrade {}\".",
            &[path],
        )
    }

    pub fn check_needed(path: &str) -> Self {
        Self::borg(
            "CheckNeeded",
            true,
            "Inconsistency detected. Please run \"borg check {}\".",
            &[path],
        )
    }

    pub fn does_not_exist(path: &str) -> Self {
        Self::borg(
            "DoesNotExist",
            false,
            "Repository {} does not exist.",
            &[path],
        )
    }

    /// Both sizes formatted like borg's `format_file_size` (for example "20.00 MB").
    pub fn insufficient_free_space(required: &str, available: &str) -> Self {
        Self::borg(
            "InsufficientFreeSpaceError",
            false,
            "Insufficient free space to complete transaction (required: {}, available: {}).",
            &[required, available],
        )
    }

    pub fn invalid_repository(path: &str) -> Self {
        Self::borg(
            "InvalidRepository",
            false,
            "{} is not a valid repository. Check repo config.",
            &[path],
        )
    }

    /// Clients need both arguments (the 1.4 client reads `args[1]`).
    pub fn invalid_repository_config(path: &str, reason: &str) -> Self {
        Self::borg(
            "InvalidRepositoryConfig",
            false,
            "{} does not have a valid configuration. Check repo config [{}].",
            &[path, reason],
        )
    }

    /// `key_hex` is the id in lower-case hex (see [`hex_id`]); `repo_path` the server's path.
    pub fn object_not_found(key_hex: &str, repo_path: &str) -> Self {
        Self::borg(
            "ObjectNotFound",
            true,
            "Object with key {} not found in repository {}.",
            &[key_hex, repo_path],
        )
    }

    pub fn parent_path_does_not_exist(path: &str) -> Self {
        Self::borg(
            "ParentPathDoesNotExist",
            false,
            "The parent path of the repo directory [{}] does not exist.",
            &[path],
        )
    }

    pub fn path_already_exists(path: &str) -> Self {
        Self::borg(
            "PathAlreadyExists",
            false,
            "There is already something at {}.",
            &[path],
        )
    }

    /// Both sizes formatted like borg's `format_file_size`.
    pub fn storage_quota_exceeded(quota: &str, usage: &str) -> Self {
        Self::borg(
            "StorageQuotaExceeded",
            false,
            "The storage quota ({}) has been exceeded ({}). Try deleting some archives.",
            &[quota, usage],
        )
    }

    pub fn path_permission_denied(path: &str) -> Self {
        Self::borg(
            "PathPermissionDenied",
            false,
            "Permission denied to {}.",
            &[path],
        )
    }

    pub fn path_not_allowed(path: &str) -> Self {
        Self::borg(
            "PathNotAllowed",
            false,
            "Repository path not allowed: {}",
            &[path],
        )
    }

    pub fn invalid_rpc_method(method: &str) -> Self {
        Self::borg(
            "InvalidRPCMethod",
            false,
            "RPC method {} is not valid.",
            &[method],
        )
    }

    /// Keep the text "More than allowed put data" for oversize puts: `borg create` looks for it.
    pub fn integrity_error(message: &str) -> Self {
        Self::borg(
            "IntegrityError",
            true,
            "Data integrity error: {}",
            &[message],
        )
    }

    pub fn lock_timeout(lock_path: &str) -> Self {
        Self::borg(
            "LockTimeout",
            false,
            "Failed to create/acquire the lock {} (timeout).",
            &[lock_path],
        )
    }

    /// Clients need both arguments.
    pub fn lock_failed(lock_path: &str, reason: &str) -> Self {
        Self::borg(
            "LockFailed",
            true,
            "Failed to create/acquire the lock {} ({}).",
            &[lock_path, reason],
        )
    }

    pub fn not_locked(lock_path: &str) -> Self {
        Self::borg(
            "NotLocked",
            true,
            "Failed to release the lock {} (was not locked).",
            &[lock_path],
        )
    }

    pub fn not_my_lock(lock_path: &str) -> Self {
        Self::borg(
            "NotMyLock",
            true,
            "Failed to release the lock {} (was/is locked, but not by me).",
            &[lock_path],
        )
    }

    /// borg's generic `Error` (for example "Repository has an invalid nonce file: ...").
    pub fn error(message: &str) -> Self {
        Self::borg("Error", false, "Error: {}", &[message])
    }

    /// borg's `ErrorWithTraceback`.
    pub fn error_with_traceback(message: &str) -> Self {
        Self::borg("ErrorWithTraceback", true, "Error: {}", &[message])
    }

    /// Refusal of this server's read-only mode. No borg client knows the class, so it arrives
    /// as an `RPCError` that both 1.2 and 1.4 clients print as exactly `message` (no traceback,
    /// because `exception_trace` is false), followed by exit code 2.
    pub fn permission_denied(message: &str) -> Self {
        Self::borg("PermissionDenied", false, "{}", &[message])
    }

    /// The standard read-only refusal for `method`.
    pub fn read_only(method: &str) -> Self {
        Self::permission_denied(&format!(
            "Permission denied: this key is read-only ({method} is not allowed)."
        ))
    }

    pub fn value_error(message: &str) -> Self {
        Self::python("ValueError", message, vec![ExcArg::from(message)])
    }

    /// A Python `KeyError` for a missing bytes key; its text is the key's Python repr.
    pub fn key_error(key: &[u8]) -> Self {
        Self::python(
            "KeyError",
            &python_bytes_repr(key),
            vec![ExcArg::Bytes(key.to_vec())],
        )
    }

    pub fn assertion_error(message: &str) -> Self {
        Self::python("AssertionError", message, vec![ExcArg::from(message)])
    }

    /// Python's bare `Exception` (for example a nonce reservation with mismatched state).
    pub fn exception(message: &str) -> Self {
        Self::python("Exception", message, vec![ExcArg::from(message)])
    }

    pub fn type_error(message: &str) -> Self {
        Self::python("TypeError", message, vec![ExcArg::from(message)])
    }

    /// Python's `OSError` for a file system failure, e.g. a full disk.
    pub fn os_error(message: &str) -> Self {
        Self::python("OSError", message, vec![ExcArg::from(message)])
    }

    pub fn attribute_error(message: &str) -> Self {
        Self::python("AttributeError", message, vec![ExcArg::from(message)])
    }

    /// What `inject_exception("divide")` raises: Python 3.11's `0 // 0` (Debian 12's python,
    /// whose message borg 1.2's transport test compares whole).
    pub fn zero_division_error() -> Self {
        const MESSAGE: &str = "integer division or modulo by zero";
        Self::python("ZeroDivisionError", MESSAGE, vec![ExcArg::from(MESSAGE)])
    }

    /// Exit code of a borg 1.4.1+ client receiving this exception under `BORG_EXIT_CODES=modern`.
    pub fn modern_client_exit_code(&self) -> i32 {
        modern_client_exit_code(&self.class)
    }
}

/// The exception a borg client receives for each repository error: borg's class, arguments
/// and message (the repository itself does not know the wire).
impl From<&RepoError> for RemoteException {
    fn from(error: &RepoError) -> RemoteException {
        match error {
            RepoError::NoRepository(path) => RemoteException::does_not_exist(path),
            RepoError::RepositoryExists(path) => RemoteException::already_exists(path),
            RepoError::NotARepository(path) => RemoteException::invalid_repository(path),
            RepoError::BadConfig(path, reason) => {
                RemoteException::invalid_repository_config(path, reason)
            }
            RepoError::AtticFormat(path) => RemoteException::attic_repository(path),
            RepoError::NoParentDirectory(path) => RemoteException::parent_path_does_not_exist(path),
            RepoError::PathTaken(path) => RemoteException::path_already_exists(path),
            RepoError::PathInaccessible(path) => RemoteException::path_permission_denied(path),
            RepoError::Inconsistent(path) => RemoteException::check_needed(path),
            RepoError::NoSuchObject(id, path) => {
                RemoteException::object_not_found(&hex_id(id), path)
            }
            RepoError::Corrupt(message) => RemoteException::integrity_error(message),
            RepoError::QuotaExceeded { quota, usage } => {
                RemoteException::storage_quota_exceeded(quota, usage)
            }
            RepoError::NotEnoughSpace {
                required,
                available,
            } => RemoteException::insufficient_free_space(required, available),
            RepoError::Lock(error) => RemoteException::from(error),
            RepoError::ReadOnly(operation) => RemoteException::read_only(operation),
            RepoError::NotPermitted(message) => RemoteException::permission_denied(message),
            RepoError::AppendOnly(path) => {
                RemoteException::value_error(&format!("{path} is in append-only mode"))
            }
            RepoError::BadArgument(message) => RemoteException::value_error(message),
            RepoError::UnknownMarker(marker) => RemoteException::key_error(marker),
            RepoError::Precondition(message) => RemoteException::assertion_error(message),
            RepoError::BadNonceFile(message) => RemoteException::error(message),
            RepoError::NonceMismatch => {
                RemoteException::exception("nonce space reservation with mismatched previous state")
            }
            RepoError::Internal(message) => RemoteException::exception(message),
            RepoError::Io { context, error } => {
                RemoteException::os_error(&format!("{context}: {}", plain_io_error(error)))
            }
        }
    }
}

impl From<RepoError> for RemoteException {
    fn from(error: RepoError) -> RemoteException {
        RemoteException::from(&error)
    }
}

/// borg's exceptions for lock failures (`locking.py`, `remote.py:804-823`). A wait the
/// session gave up because its client went away is a `LockTimeout` too; borg lets the raw
/// `OSError` of a lock file escape.
impl From<&LockError> for RemoteException {
    fn from(error: &LockError) -> RemoteException {
        match error {
            LockError::LockTimeout(path) | LockError::Aborted(path) => {
                RemoteException::lock_timeout(path)
            }
            LockError::LockFailed(path, reason) => RemoteException::lock_failed(path, reason),
            LockError::NotLocked(path) => RemoteException::not_locked(path),
            LockError::NotMyLock(path) => RemoteException::not_my_lock(path),
            LockError::Io(path, reason) => RemoteException::os_error(&format!("{reason}: {path}")),
        }
    }
}

/// Exit code of a borg 1.4.1+ client (`BORG_EXIT_CODES=modern`) for an exception class sent by
/// the server: the class's `exit_mcode` if the client rebuilds it (`remote.py:756-831`),
/// otherwise 2 (`RPCError`). 1.4.0 does not rebuild `InvalidRepository`, `PathAlreadyExists`,
/// `InsufficientFreeSpaceError`, `InvalidRepositoryConfig` and `StorageQuotaExceeded` (2 there).
/// Under legacy codes (the default) and on every 1.2 client the exit code is always 2.
pub(crate) fn modern_client_exit_code(class: &str) -> i32 {
    match class {
        "AlreadyExists" => 10,
        "AtticRepository" => 11,
        "CheckNeeded" => 12,
        "DoesNotExist" => 13,
        "InsufficientFreeSpaceError" => 14,
        "InvalidRepository" => 15,
        "InvalidRepositoryConfig" => 16,
        "ObjectNotFound" => 17,
        "ParentPathDoesNotExist" => 18,
        "PathAlreadyExists" => 19,
        "StorageQuotaExceeded" => 20,
        "PathPermissionDenied" => 21,
        "LockError" => 70,
        "LockErrorT" => 71,
        "LockFailed" => 72,
        "LockTimeout" => 73,
        "NotLocked" => 74,
        "NotMyLock" => 75,
        "InvalidRPCMethod" => 82,
        "PathNotAllowed" => 83,
        "IntegrityError" => 90,
        _ => 2,
    }
}

/// The facts shown in `sysinfo` (spec 2.7). Informational only: clients print each line
/// prefixed with `Borg server: ` at DEBUG level.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SysInfo {
    /// For example `Linux host 6.1.0 #1 SMP ... x86_64`.
    pub platform: String,
    /// For example `borg-gate 0.1.0 (borg 1.4.5 protocol)`.
    pub server: String,
    pub pid: u32,
    pub cwd: String,
    /// None leaves the `sys.argv` line out (it can reveal the server's forced command).
    pub argv: Option<Vec<String>>,
    /// None leaves the `SSH_ORIGINAL_COMMAND` line out.
    pub ssh_original_command: Option<Option<String>>,
}

impl SysInfo {
    /// Facts about this process. `argv` and `SSH_ORIGINAL_COMMAND` are left out.
    pub fn of_this_process(server: &str) -> Self {
        let read = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
                .map(|text| text.trim().to_owned())
                .unwrap_or_default()
        };
        let platform = [
            read("ostype"),
            read("hostname"),
            read("osrelease"),
            read("version"),
            std::env::consts::ARCH.to_owned(),
        ]
        .join(" ");
        SysInfo {
            platform,
            server: server.to_owned(),
            pid: std::process::id(),
            cwd: std::env::current_dir()
                .map(|dir| dir.to_string_lossy().into_owned())
                .unwrap_or_default(),
            argv: None,
            ssh_original_command: None,
        }
    }

    /// The `sysinfo` text: lines joined by `\n` ending with an empty line, or the empty string
    /// when sysinfo is switched off (see [`show_sysinfo`]).
    pub fn render(&self, show: bool) -> String {
        if !show {
            return String::new();
        }
        let mut lines = vec![
            format!("Platform: {}", self.platform),
            format!("Borg: {}", self.server),
            format!("PID: {}  CWD: {}", self.pid, self.cwd),
        ];
        if let Some(argv) = &self.argv {
            let items: Vec<String> = argv.iter().map(|arg| python_str_repr(arg)).collect();
            lines.push(format!("sys.argv: [{}]", items.join(", ")));
        }
        if let Some(command) = &self.ssh_original_command {
            let shown = command
                .as_deref()
                .map_or_else(|| "None".to_owned(), python_str_repr);
            lines.push(format!("SSH_ORIGINAL_COMMAND: {shown}"));
        }
        lines.push(String::new());
        lines.join("\n")
    }
}

/// borg's rule for `BORG_SHOW_SYSINFO`: only the value `no` (any case) switches it off.
pub(crate) fn show_sysinfo(env_value: Option<&str>) -> bool {
    env_value.is_none_or(|value| !value.eq_ignore_ascii_case("no"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_repository_error_reaches_the_client_as_its_borg_exception() {
        use std::io;
        let id = [0xab; 32];
        let hex = "ab".repeat(32);
        let cases: Vec<(RepoError, &str, String)> = vec![
            (
                RepoError::NoRepository("/r".into()),
                "DoesNotExist",
                "Repository /r does not exist.".into(),
            ),
            (
                RepoError::RepositoryExists("/r".into()),
                "AlreadyExists",
                "A repository already exists at /r.".into(),
            ),
            (
                RepoError::NotARepository("/r".into()),
                "InvalidRepository",
                "/r is not a valid repository. Check repo config.".into(),
            ),
            (
                RepoError::BadConfig("/r".into(), "no id".into()),
                "InvalidRepositoryConfig",
                "/r does not have a valid configuration. Check repo config [no id].".into(),
            ),
            (
                RepoError::AtticFormat("/r".into()),
                "AtticRepository",
                "Attic repository detected. Please run \"borg upgrade /r\".".into(),
            ),
            (
                RepoError::NoParentDirectory("/r".into()),
                "ParentPathDoesNotExist",
                "The parent path of the repo directory [/r] does not exist.".into(),
            ),
            (
                RepoError::PathTaken("/r".into()),
                "PathAlreadyExists",
                "There is already something at /r.".into(),
            ),
            (
                RepoError::PathInaccessible("/r".into()),
                "PathPermissionDenied",
                "Permission denied to /r.".into(),
            ),
            (
                RepoError::Inconsistent("/r".into()),
                "CheckNeeded",
                "Inconsistency detected. Please run \"borg check /r\".".into(),
            ),
            (
                RepoError::NoSuchObject(id, "/r".into()),
                "ObjectNotFound",
                format!("Object with key {hex} not found in repository /r."),
            ),
            (
                RepoError::Corrupt("bad crc".into()),
                "IntegrityError",
                "Data integrity error: bad crc".into(),
            ),
            (
                RepoError::QuotaExceeded {
                    quota: "1 B".into(),
                    usage: "2 B".into(),
                },
                "StorageQuotaExceeded",
                "The storage quota (1 B) has been exceeded (2 B). Try deleting some archives."
                    .into(),
            ),
            (
                RepoError::NotEnoughSpace {
                    required: "2 B".into(),
                    available: "1 B".into(),
                },
                "InsufficientFreeSpaceError",
                "Insufficient free space to complete transaction (required: 2 B, available: 1 B)."
                    .into(),
            ),
            (
                RepoError::Lock(LockError::NotLocked("/r/lock".into())),
                "NotLocked",
                "Failed to release the lock /r/lock (was not locked).".into(),
            ),
            (
                RepoError::ReadOnly("put"),
                "PermissionDenied",
                "Permission denied: this key is read-only (put is not allowed).".into(),
            ),
            (
                RepoError::NotPermitted("no.".into()),
                "PermissionDenied",
                "no.".into(),
            ),
            (
                RepoError::AppendOnly("/r".into()),
                "ValueError",
                "ValueError: /r is in append-only mode\n".into(),
            ),
            (
                RepoError::BadArgument("please use limit > 0 or limit = None".into()),
                "ValueError",
                "ValueError: please use limit > 0 or limit = None\n".into(),
            ),
            (
                RepoError::UnknownMarker(b"\x01'".to_vec()),
                "KeyError",
                "KeyError: b\"\\x01'\"\n".into(),
            ),
            (
                RepoError::Precondition("a partial check cannot repair".into()),
                "AssertionError",
                "AssertionError: a partial check cannot repair\n".into(),
            ),
            (
                RepoError::BadNonceFile("Repository has an invalid nonce file: x".into()),
                "Error",
                "Error: Repository has an invalid nonce file: x".into(),
            ),
            (
                RepoError::NonceMismatch,
                "Exception",
                "Exception: nonce space reservation with mismatched previous state\n".into(),
            ),
            (
                RepoError::Internal("no index".into()),
                "Exception",
                "Exception: no index\n".into(),
            ),
            (
                RepoError::io("cannot write segment", io::Error::from_raw_os_error(28)),
                "OSError",
                "OSError: cannot write segment: No space left on device\n".into(),
            ),
        ];
        for (error, class, short) in cases {
            let exception = RemoteException::from(&error);
            assert_eq!(
                (exception.class.as_ref(), exception.short.as_str()),
                (class, short.as_str()),
                "{error:?}"
            );
            // borg's own sentences are the storage layer's too.
            if !short.ends_with('\n') && !short.starts_with("Error: ") {
                assert_eq!(error.to_string(), short, "{error:?}");
            }
        }
        // A lock wait given up for a vanished client is a timeout; a lock file's OSError escapes.
        let aborted = RemoteException::from(&LockError::Aborted("/r/lock".into()));
        assert_eq!(aborted.class, "LockTimeout");
        let io = RemoteException::from(&LockError::Io("/r/lock".into(), "[Errno 5] EIO".into()));
        assert_eq!(
            (io.class.as_ref(), io.short.as_str()),
            ("OSError", "OSError: [Errno 5] EIO: /r/lock\n")
        );
    }

    #[test]
    fn borg_errors_have_the_message_as_short_and_their_arguments() {
        let e = RemoteException::object_not_found("00ff", "/srv/repo");
        assert_eq!(e.class, "ObjectNotFound");
        assert_eq!(
            e.short,
            "Object with key 00ff not found in repository /srv/repo."
        );
        assert_eq!(
            e.args,
            vec![ExcArg::from("00ff"), ExcArg::from("/srv/repo")]
        );
        assert!(e.traceback);
        assert_eq!(
            e.full,
            vec!["ObjectNotFound: Object with key 00ff not found in repository /srv/repo.\n"]
        );
    }

    #[test]
    fn two_argument_classes_carry_both_arguments() {
        for e in [
            RemoteException::invalid_repository_config("/r", "no id"),
            RemoteException::lock_failed("/r/lock", "boom"),
            RemoteException::insufficient_free_space("1.00 GB", "2 B"),
            RemoteException::storage_quota_exceeded("20.00 MB", "21.00 MB"),
        ] {
            assert_eq!(e.args.len(), 2, "{}", e.class);
            assert!(!e.short.contains("{}"), "{}", e.short);
        }
        assert_eq!(
            RemoteException::invalid_repository_config("/r", "no id").short,
            "/r does not have a valid configuration. Check repo config [no id]."
        );
    }

    #[test]
    fn trace_flags_follow_the_borg_class_hierarchy() {
        let flags = [
            (RemoteException::already_exists("p"), false),
            (RemoteException::attic_repository("p"), false),
            (RemoteException::check_needed("p"), true),
            (RemoteException::does_not_exist("p"), false),
            (RemoteException::insufficient_free_space("a", "b"), false),
            (RemoteException::invalid_repository("p"), false),
            (RemoteException::invalid_repository_config("p", "r"), false),
            (RemoteException::object_not_found("k", "p"), true),
            (RemoteException::parent_path_does_not_exist("p"), false),
            (RemoteException::path_already_exists("p"), false),
            (RemoteException::storage_quota_exceeded("a", "b"), false),
            (RemoteException::path_permission_denied("p"), false),
            (RemoteException::path_not_allowed("p"), false),
            (RemoteException::invalid_rpc_method("m"), false),
            (RemoteException::integrity_error("x"), true),
            (RemoteException::lock_timeout("p"), false),
            (RemoteException::lock_failed("p", "r"), true),
            (RemoteException::not_locked("p"), true),
            (RemoteException::not_my_lock("p"), true),
            (RemoteException::error("x"), false),
            (RemoteException::error_with_traceback("x"), true),
            (RemoteException::read_only("put"), false),
            (RemoteException::value_error("x"), true),
        ];
        for (e, trace) in flags {
            assert_eq!(e.traceback, trace, "{}", e.class);
            assert!(!e.short.is_empty());
        }
    }

    #[test]
    fn python_exceptions_use_format_exception_only_text() {
        let e = RemoteException::value_error("please use limit > 0 or limit = None");
        assert_eq!(
            e.short,
            "ValueError: please use limit > 0 or limit = None\n"
        );
        assert_eq!(e.class, "ValueError");
        assert_eq!(
            RemoteException::assertion_error("").short,
            "AssertionError\n"
        );
        assert_eq!(
            RemoteException::key_error(b"\x00a'").short,
            "KeyError: b\"\\x00a'\"\n"
        );
    }

    #[test]
    fn read_only_refusal_is_a_plain_message() {
        let e = RemoteException::read_only("put");
        assert_eq!(e.class, "PermissionDenied");
        assert_eq!(
            e.short,
            "Permission denied: this key is read-only (put is not allowed)."
        );
        assert!(!e.traceback);
        assert_eq!(e.modern_client_exit_code(), 2);
    }

    #[test]
    fn templates_take_arguments_in_order_and_keep_braces_in_arguments() {
        assert_eq!(fill_template("{} and {}", &["{}", "b"]), "{} and b");
        assert_eq!(fill_template("none", &[]), "none");
        assert_eq!(fill_template("{} {}", &["a"]), "a ");
    }

    #[test]
    fn sysinfo_ends_with_an_empty_line_or_is_empty_when_switched_off() {
        let info = SysInfo {
            platform: "Linux h 6 #1 x86_64".into(),
            server: "borg-gate 0.1.0".into(),
            pid: 7,
            cwd: "/".into(),
            argv: Some(vec!["borg-gate".into(), "serve".into()]),
            ssh_original_command: Some(None),
        };
        assert_eq!(
            info.render(true),
            "Platform: Linux h 6 #1 x86_64\nBorg: borg-gate 0.1.0\nPID: 7  CWD: /\n\
             sys.argv: ['borg-gate', 'serve']\nSSH_ORIGINAL_COMMAND: None\n"
        );
        assert_eq!(info.render(false), "");
        assert!(show_sysinfo(None));
        assert!(show_sysinfo(Some("yes")));
        assert!(!show_sysinfo(Some("No")));
        let here = SysInfo::of_this_process("x").render(true);
        assert!(here.starts_with("Platform: ") && here.ends_with('\n'));
    }
}
