//! Running a child process under a deadline and capturing its exit status, stdout and stderr.
//!
//! Every child gets its own process group, so a deadline kills the whole group: borg's `ssh`
//! subprocess (or any grandchild that keeps a pipe open) cannot make a test hang.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::wait::wait_exit;

/// How long we wait for the pipes to close once the direct child has exited, before we kill
/// the rest of its process group (a daemonised grandchild that inherited stdout, say).
const PIPE_DRAIN_GRACE: Duration = Duration::from_secs(5);

/// What a finished (or killed) child left behind; its `Display` and `Debug` show everything an
/// assertion message needs.
pub(crate) struct CmdOutput {
    /// The command line, for messages only.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
    /// The deadline passed and the process group was killed.
    pub timed_out: bool,
}

impl CmdOutput {
    pub(crate) fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// The exit code, or `None` when a signal ended the process.
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub(crate) fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Panics with the whole output unless the command exited 0.
    #[track_caller]
    pub(crate) fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed:\n{self}");
        self
    }

    /// Panics with the whole output unless the command exited non-zero (a timeout is no failure
    /// here: it is a hang, and the test must say so).
    #[track_caller]
    pub(crate) fn assert_failure(&self) -> &Self {
        assert!(!self.timed_out, "command hung:\n{self}");
        assert!(
            !self.status.success(),
            "command succeeded but should have failed:\n{self}"
        );
        self
    }

    /// Panics unless stderr contains `needle`.
    #[track_caller]
    pub(crate) fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr_text().contains(needle),
            "stderr does not contain {needle:?}:\n{self}"
        );
        self
    }

    /// Panics unless stdout contains `needle`.
    #[track_caller]
    pub(crate) fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout_text().contains(needle),
            "stdout does not contain {needle:?}:\n{self}"
        );
        self
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        let ending = match (self.timed_out, self.status.code(), self.status.signal()) {
            (true, _, _) => "TIMED OUT, process group killed".to_string(),
            (false, Some(code), _) => format!("exit code {code}"),
            (false, None, Some(signal)) => format!("killed by signal {signal}"),
            (false, None, None) => format!("{}", self.status),
        };
        writeln!(f, "status: {ending} after {:.2?}", self.elapsed)?;
        write_stream(f, "stdout", &self.stdout)?;
        write_stream(f, "stderr", &self.stderr)
    }
}

impl fmt::Debug for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn write_stream(f: &mut fmt::Formatter<'_>, name: &str, bytes: &[u8]) -> fmt::Result {
    // A multi-megabyte stdout (`borg extract --stdout`) would drown the message: show the ends.
    const SHOWN: usize = 8 * 1024;
    writeln!(f, "--- {name} ({} bytes) ---", bytes.len())?;
    if bytes.len() <= 2 * SHOWN {
        write!(f, "{}", String::from_utf8_lossy(bytes))?;
    } else {
        write!(f, "{}", String::from_utf8_lossy(&bytes[..SHOWN]))?;
        write!(f, "\n[... {} bytes elided ...]\n", bytes.len() - 2 * SHOWN)?;
        write!(
            f,
            "{}",
            String::from_utf8_lossy(&bytes[bytes.len() - SHOWN..])
        )?;
    }
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        writeln!(f)?;
    }
    Ok(())
}

/// Describes a command for messages: program and arguments, shell-quoted where needed.
pub(crate) fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words
        .iter()
        .map(|word| shlex::try_quote(word).map_or_else(|_| word.clone(), |q| q.into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` with stdin closed; panics with the captured output if `timeout` passes.
#[track_caller]
pub(crate) fn run_with_timeout(command: Command, timeout: Duration) -> CmdOutput {
    let output = spawn_and_wait(command, None, timeout);
    assert!(!output.timed_out, "command hung:\n{output}");
    output
}

/// Runs `command` with `input` on its stdin; panics with the captured output if `timeout` passes.
#[track_caller]
pub(crate) fn run_with_stdin(command: Command, input: &[u8], timeout: Duration) -> CmdOutput {
    let output = spawn_and_wait(command, Some(input), timeout);
    assert!(!output.timed_out, "command hung:\n{output}");
    output
}

/// Runs `command` in a new process group, feeds `input` (or a closed stdin) and collects both
/// output streams. When `timeout` passes, the whole group gets SIGKILL and the result says
/// `timed_out`; this function never waits longer than `timeout` plus a few seconds.
pub(crate) fn spawn_and_wait(
    mut command: Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> CmdOutput {
    let description = describe(&command);
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {description}: {error}"));
    let group = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));

    let writer = input.map(|bytes| {
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let bytes = bytes.to_vec();
        // A child that exits without reading gives EPIPE; that is its business, not ours.
        thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        })
    });
    let (stdout_done, stdout_rx) = mpsc::channel();
    let (stderr_done, stderr_rx) = mpsc::channel();
    drain_in_thread(child.stdout.take().expect("stdout was piped"), stdout_done);
    drain_in_thread(child.stderr.take().expect("stderr was piped"), stderr_done);

    let left = timeout.saturating_sub(started.elapsed());
    let (status, mut timed_out) = exit_or_kill(&mut child, group, left);
    let stdout = collect(&stdout_rx, group, &mut timed_out);
    let stderr = collect(&stderr_rx, group, &mut timed_out);
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    CmdOutput {
        command: description,
        status,
        stdout,
        stderr,
        elapsed: started.elapsed(),
        timed_out,
    }
}

fn drain_in_thread(mut stream: impl Read + Send + 'static, done: mpsc::Sender<Vec<u8>>) {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        let _ = done.send(bytes);
    });
}

/// The child's status once it exits within `timeout`; otherwise its process group is killed,
/// and the status comes with `true` (it hung).
fn exit_or_kill(child: &mut Child, group: Pid, timeout: Duration) -> (ExitStatus, bool) {
    if let Some(status) = wait_exit(child, timeout) {
        return (status, false);
    }
    let _ = killpg(group, Signal::SIGKILL);
    let status = child.wait().expect("waitpid on our own child");
    (status, true)
}

/// Takes one stream's bytes; if a straggler in the group still holds the pipe open after the
/// grace period, kills the group (which closes the pipe) and marks the run as hung.
fn collect(done: &mpsc::Receiver<Vec<u8>>, group: Pid, timed_out: &mut bool) -> Vec<u8> {
    match done.recv_timeout(PIPE_DRAIN_GRACE) {
        Ok(bytes) => bytes,
        Err(_) => {
            let _ = killpg(group, Signal::SIGKILL);
            *timed_out = true;
            done.recv_timeout(PIPE_DRAIN_GRACE).unwrap_or_default()
        }
    }
}
