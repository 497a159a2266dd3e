//! Where audit records go: an append-only JSON-lines file, and syslog. The gate's decision
//! ([`write_record`]) and the engine's end of session ([`write_session_end`]) go to the same
//! sinks, the engine's after [`check_sinks`] found them usable when the session began.
//!
//! The file is opened with O_APPEND and each record is one write(2), so records from
//! concurrent sessions never interleave. The write is checked to be complete; a short write
//! is a failure, and the gate then fails closed unless the policy says otherwise.
//!
//! The file stays line-aligned even when the disk fills up: a short write would leave a
//! fragment that the next record is glued to, so that neither line parses. Writers take a
//! brief `flock` on the file, note its length, and on a short write truncate it back to that
//! length (truncating never needs free space). Without the lock (someone holds it longer than
//! [`LOCK_PATIENCE`]: only borg-gate writers take it, for one write each) the fragment is
//! terminated with a newline instead, if that fits. And a writer that finds the file not
//! ending in a newline (a fragment left by an older version, a crash, or the fallback that did
//! not fit) starts its record with one, so that a fragment never takes a record down with it.
//! `borg-gate audit` skips and counts unreadable lines.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use super::record::AuditRecord;
use super::session_end::SessionEnd;
use crate::policy::{AuditSettings, OnAuditFailure};

/// The syslog socket of Linux systems (journald and rsyslog both serve it).
pub const SYSLOG_SOCKET: &str = "/dev/log";

#[derive(Debug)]
pub enum AuditError {
    File { path: PathBuf, error: io::Error },
    Syslog { error: io::Error },
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::File { path, error } => write!(
                f,
                "cannot write the audit log {}: {}",
                path.display(),
                crate::common::text::plain_io_error(error)
            ),
            AuditError::Syslog { error } => {
                write!(
                    f,
                    "cannot write to syslog: {}",
                    crate::common::text::plain_io_error(error)
                )
            }
        }
    }
}

impl std::error::Error for AuditError {}

/// Writes the session's record to every sink the policy names, and returns the first
/// failure. Every sink is tried.
///
/// When a sink fails and the policy refuses unaudited sessions, the session will not run,
/// so the sinks that work must not say `accept`: they get `refusal(&error)` instead. To make
/// that possible before anything is written, syslog is connected first (a missing
/// `/dev/log` fails there), then the file is written (a missing directory, a permission or
/// a full disk fail there), then the datagram is sent. Only a send that fails after its
/// socket connected leaves the file with the original record; a second record, the
/// refusal, then follows it.
pub fn write_record(
    settings: &AuditSettings,
    record: &AuditRecord,
    refusal: &dyn Fn(&AuditError) -> AuditRecord,
) -> Result<(), AuditError> {
    write_record_via(settings, Path::new(SYSLOG_SOCKET), record, refusal)
}

/// [`write_record`] with the syslog socket at `syslog_socket`.
fn write_record_via(
    settings: &AuditSettings,
    syslog_socket: &Path,
    record: &AuditRecord,
    refusal: &dyn Fn(&AuditError) -> AuditRecord,
) -> Result<(), AuditError> {
    let refuses = settings.on_failure == OnAuditFailure::Refuse;
    let mut first_error: Option<AuditError> = None;
    let mut syslog = None;
    if settings.syslog {
        match connect_syslog(syslog_socket) {
            Ok(socket) => syslog = Some(socket),
            Err(error) => first_error = Some(AuditError::Syslog { error }),
        }
    }
    // What the sinks that work are told: the record, or once a sink failed and that refuses
    // the session, the refusal.
    let to_tell = |failure: Option<&AuditError>| match failure {
        Some(error) if refuses => refusal(error),
        _ => record.clone(),
    };
    let mut file_has_the_record = false;
    if let Some(path) = &settings.file {
        let told = to_tell(first_error.as_ref());
        match append_line(path, told.to_line().as_bytes()) {
            Ok(()) => file_has_the_record = first_error.is_none() || !refuses,
            Err(error) => {
                first_error.get_or_insert(AuditError::File {
                    path: path.clone(),
                    error,
                });
            }
        }
    }
    if let Some(socket) = &syslog {
        let told = to_tell(first_error.as_ref());
        if let Err(error) = send_record(socket, &told, &told.to_line()) {
            let error = AuditError::Syslog { error };
            if let (Some(path), true, true) = (&settings.file, file_has_the_record, refuses) {
                let _ = append_line(path, refusal(&error).to_line().as_bytes());
            }
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Whether the sinks can take a record now, without writing one: syslog's socket connects and
/// the file opens for appending (it is created if missing, as the first record would). The
/// engine asks this when its session begins and applies `on_failure` to the answer; the
/// first failure is returned.
pub fn check_sinks(settings: &AuditSettings) -> Result<(), AuditError> {
    check_sinks_via(settings, Path::new(SYSLOG_SOCKET))
}

fn check_sinks_via(settings: &AuditSettings, syslog_socket: &Path) -> Result<(), AuditError> {
    if settings.syslog {
        connect_syslog(syslog_socket).map_err(|error| AuditError::Syslog { error })?;
    }
    if let Some(path) = &settings.file {
        open_for_append(path, false).map_err(|error| AuditError::File {
            path: path.clone(),
            error,
        })?;
    }
    Ok(())
}

/// Writes the engine's record to every sink; returns every failure (each sink is tried). The
/// session is over by now: the caller logs failures, nothing more.
pub fn write_session_end(settings: &AuditSettings, record: &SessionEnd) -> Vec<AuditError> {
    write_session_end_via(settings, Path::new(SYSLOG_SOCKET), record)
}

fn write_session_end_via(
    settings: &AuditSettings,
    syslog_socket: &Path,
    record: &SessionEnd,
) -> Vec<AuditError> {
    let line = record.to_line();
    let mut errors = Vec::new();
    if let Some(path) = &settings.file {
        if let Err(error) = append_line(path, line.as_bytes()) {
            errors.push(AuditError::File {
                path: path.clone(),
                error,
            });
        }
    }
    if settings.syslog {
        // Sessions that ended otherwise than a finished client ends them, or had calls
        // refused, are worth a warning.
        let notable = !record.ended_cleanly() || record.refused_calls > 0;
        let sent = connect_syslog(syslog_socket)
            .and_then(|socket| send_line(&socket, notable, record.pid, &line));
        if let Err(error) = sent {
            errors.push(AuditError::Syslog { error });
        }
    }
    errors
}

/// How long a writer waits for another writer's lock before writing without it.
pub const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Appends `line` (which ends in a newline) with a single write, keeping the file
/// line-aligned (see the module documentation). The file is created 0640 (before the umask)
/// if it does not exist; a symlink is refused.
pub fn append_line(path: &Path, line: &[u8]) -> io::Result<()> {
    // Reading is only needed to see whether the file ends in a newline; an administrator may
    // have made the log append-only for us.
    let (file, readable) = match open_for_append(path, true) {
        Ok(file) => (file, true),
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            (open_for_append(path, false)?, false)
        }
        Err(error) => return Err(error),
    };
    let (file, locked) = lock_briefly(file);
    let start = file.metadata()?.len();
    let mut record = Vec::with_capacity(line.len() + 1);
    if readable && start > 0 && !ends_with_newline(&file, start) {
        record.push(b'\n');
    }
    record.extend_from_slice(line);
    let written = (&*file).write(&record)?;
    if written != record.len() {
        if locked {
            file.set_len(start)?;
        } else if written > 0 {
            // Best effort: on a full disk this may not fit either; the next writer repairs it.
            let _ = (&*file).write(b"\n");
        }
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "short write ({written} of {} bytes; {})",
                record.len(),
                if locked {
                    "the partial record was removed"
                } else {
                    "the partial record was ended with a newline"
                }
            ),
        ));
    }
    Ok(())
}

/// The audit file opened for appending (and reading, with `read`): created 0640 (before the
/// umask) if missing, never through a symlink.
fn open_for_append(path: &Path, read: bool) -> io::Result<File> {
    File::options()
        .read(read)
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NOCTTY)
        .open(path)
}

/// Sends the record to the syslog socket at `socket`.
pub fn send_syslog(socket: &Path, record: &AuditRecord, line: &str) -> io::Result<()> {
    send_record(&connect_syslog(socket)?, record, line)
}

/// A datagram socket connected to syslog at `socket`.
pub fn connect_syslog(socket: &Path) -> io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    sock.connect(socket)?;
    Ok(sock)
}

/// The file under an exclusive `flock`, or without one after [`LOCK_PATIENCE`].
fn lock_briefly(file: File) -> (LockedFile, bool) {
    use nix::fcntl::{Flock, FlockArg};
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return (LockedFile::Locked(locked), true),
            Err((unlocked, nix::errno::Errno::EWOULDBLOCK))
                if std::time::Instant::now() < deadline =>
            {
                file = unlocked;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err((unlocked, _)) => return (LockedFile::Unlocked(unlocked), false),
        }
    }
}

/// The audit file, with or without its lock (released when dropped).
enum LockedFile {
    Locked(nix::fcntl::Flock<File>),
    Unlocked(File),
}

impl std::ops::Deref for LockedFile {
    type Target = File;

    fn deref(&self) -> &File {
        match self {
            LockedFile::Locked(locked) => locked,
            LockedFile::Unlocked(file) => file,
        }
    }
}

/// Whether the byte before `len` is a newline (unreadable counts as yes: nothing to repair).
fn ends_with_newline(file: &File, len: u64) -> bool {
    let mut last = [0u8; 1];
    match file.read_at(&mut last, len - 1) {
        Ok(1) => last[0] == b'\n',
        _ => true,
    }
}

/// Sends the record as one RFC 3164-style datagram: facility auth, severity info for
/// accepted sessions and warning for everything else.
fn send_record(sock: &UnixDatagram, record: &AuditRecord, line: &str) -> io::Result<()> {
    let notable = !(record.decision == "accept" || record.decision == "probe");
    send_line(sock, notable, record.pid, line)
}

/// Sends one record line as an RFC 3164-style datagram: facility auth, severity warning when
/// `notable`, else info.
fn send_line(sock: &UnixDatagram, notable: bool, pid: u32, line: &str) -> io::Result<()> {
    const AUTH: u8 = 4;
    let severity = if notable { 4 } else { 6 };
    let message = format!(
        "<{}>borg-gate[{pid}]: {}",
        AUTH * 8 + severity,
        line.trim_end()
    );
    sock.send(message.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::audit::record::RECORD_VERSION;

    fn record(decision: &str) -> AuditRecord {
        AuditRecord {
            v: RECORD_VERSION,
            time: "2026-01-01T00:00:00.000000Z".into(),
            event: "decision".into(),
            session_id: Some("s1".into()),
            policy_file: "/p.toml".into(),
            policy: Some("p".into()),
            name: None,
            pid: 7,
            ssh_connection: None,
            command: Some("borg serve".into()),
            decision: decision.into(),
            reason: None,
            tokens: vec![],
            dropped_env: vec![],
            options: vec![],
            engine_argv: None,
            protocol: Some("borg1".into()),
            repository: None,
        }
    }

    #[test]
    fn appends_one_line_per_record_and_creates_the_file_0640() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let settings = AuditSettings {
            file: Some(path.clone()),
            syslog: false,
            on_failure: OnAuditFailure::Refuse,
        };
        write_record(&settings, &record("accept"), &|_| record("error")).unwrap();
        write_record(&settings, &record("reject"), &|_| record("error")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains("\"decision\":\"reject\""));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
    }

    /// The refusal the pipeline builds, reduced to what these tests look at.
    fn refusal(error: &AuditError) -> AuditRecord {
        let mut refused = record("error");
        refused.reason = Some(error.to_string());
        refused
    }

    fn decisions_in(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str::<AuditRecord>(line).unwrap().decision)
            .collect()
    }

    #[test]
    fn without_syslog_the_file_records_the_refusal_not_the_decision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let settings = AuditSettings {
            file: Some(path.clone()),
            syslog: true,
            on_failure: OnAuditFailure::Refuse,
        };
        let missing_socket = dir.path().join("no-log");
        let error =
            write_record_via(&settings, &missing_socket, &record("accept"), &refusal).unwrap_err();
        assert!(matches!(error, AuditError::Syslog { .. }));
        assert_eq!(decisions_in(&path), ["error"]);
        // Sessions that may go unaudited run, and the file says so.
        let lenient = AuditSettings {
            on_failure: OnAuditFailure::Continue,
            ..settings
        };
        assert!(write_record_via(&lenient, &missing_socket, &record("accept"), &refusal).is_err());
        assert_eq!(decisions_in(&path), ["error", "accept"]);
    }

    #[test]
    fn without_the_file_syslog_records_the_refusal_not_the_decision() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("log");
        let server = UnixDatagram::bind(&socket).unwrap();
        let settings = AuditSettings {
            file: Some(dir.path().join("missing/audit.jsonl")),
            syslog: true,
            on_failure: OnAuditFailure::Refuse,
        };
        let error = write_record_via(&settings, &socket, &record("accept"), &refusal).unwrap_err();
        assert!(matches!(error, AuditError::File { .. }));
        let mut buf = [0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("<36>borg-gate[7]: {"), "{text}");
        assert!(text.contains("\"decision\":\"error\""), "{text}");
        assert!(text.contains("cannot write the audit log"), "{text}");
    }

    #[test]
    fn a_fragment_at_the_end_of_the_file_gets_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, b"{\"v\":1,\"time\":\"2026-").unwrap();
        append_line(&path, b"{\"whole\":true}\n").unwrap();
        append_line(&path, b"{\"whole\":2}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"v\":1,\"time\":\"2026-\n{\"whole\":true}\n{\"whole\":2}\n"
        );
    }

    #[test]
    fn refuses_a_symlinked_audit_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let link = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(append_line(&link, b"x\n").is_err());
        assert!(!target.exists());
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_file() {
        let settings = AuditSettings {
            file: Some(PathBuf::from("/nonexistent-dir/audit.jsonl")),
            syslog: false,
            on_failure: OnAuditFailure::Refuse,
        };
        let error = write_record(&settings, &record("accept"), &|_| record("error")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot write the audit log /nonexistent-dir/audit.jsonl: No such file or directory"
        );
    }

    fn session_end(end: &crate::audit::session_end::End) -> SessionEnd {
        let id = crate::audit::SessionId::parse("s1").unwrap();
        SessionEnd::new(&id, "borg1", end, std::time::UNIX_EPOCH)
    }

    #[test]
    fn the_session_end_goes_to_the_file_and_to_syslog_and_failures_are_returned() {
        use crate::audit::session_end::End;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("log");
        let server = UnixDatagram::bind(&socket).unwrap();
        let path = dir.path().join("audit.jsonl");
        let settings = AuditSettings {
            file: Some(path.clone()),
            syslog: true,
            on_failure: OnAuditFailure::Refuse,
        };
        let clean = session_end(&End::ClientClosed);
        assert!(write_session_end_via(&settings, &socket, &clean).is_empty());
        let timed_out = session_end(&End::IdleTimeout);
        assert!(write_session_end_via(&settings, &socket, &timed_out).is_empty());
        let text = std::fs::read_to_string(&path).unwrap();
        let ends: Vec<String> = text
            .lines()
            .map(|line| serde_json::from_str::<SessionEnd>(line).unwrap().end)
            .collect();
        assert_eq!(ends, ["client_closed", "idle_timeout"]);
        let mut buf = [0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"<38>borg-gate["),
            "info for a clean end"
        );
        let n = server.recv(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"<36>borg-gate["),
            "warning for a timeout"
        );

        let broken = AuditSettings {
            file: Some(dir.path().join("missing/audit.jsonl")),
            syslog: true,
            on_failure: OnAuditFailure::Refuse,
        };
        let errors = write_session_end_via(&broken, &dir.path().join("no-log"), &clean);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn checking_the_sinks_finds_what_writing_would_find_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("log");
        let _server = UnixDatagram::bind(&socket).unwrap();
        let path = dir.path().join("audit.jsonl");
        let settings = AuditSettings {
            file: Some(path.clone()),
            syslog: true,
            on_failure: OnAuditFailure::Refuse,
        };
        check_sinks_via(&settings, &socket).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        assert!(matches!(
            check_sinks_via(&settings, &dir.path().join("no-log")),
            Err(AuditError::Syslog { .. })
        ));
        let missing = AuditSettings {
            file: Some(dir.path().join("missing/audit.jsonl")),
            syslog: false,
            on_failure: OnAuditFailure::Refuse,
        };
        assert!(matches!(
            check_sinks(&missing),
            Err(AuditError::File { .. })
        ));
    }

    #[test]
    fn syslog_datagram_has_priority_and_tag() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("log");
        let server = UnixDatagram::bind(&socket).unwrap();
        let rec = record("reject");
        send_syslog(&socket, &rec, &rec.to_line()).unwrap();
        let mut buf = [0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("<36>borg-gate[7]: {"), "{text}");
        assert!(!text.ends_with('\n'));
    }
}
