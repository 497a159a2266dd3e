//! A minimal borg 1.4 RPC client speaking msgpack to `borg-gate serve` over pipes, for the
//! situations a real client cannot be made to produce on cue: a request cut in half, a client
//! that stops reading, an exact moment to close the connection.

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use rmpv::Value;

use crate::support;

/// An engine process and our end of its stdin and stdout.
pub(crate) struct RawSession {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
    next_msgid: u64,
}

/// One reply: the result, or the exception class the engine raised.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    Result(Value),
    Exception(String),
}

impl RawSession {
    /// Starts `borg-gate serve <args>` with stderr going to `stderr_log`.
    pub(crate) fn start(args: &[&str], stderr_log: &Path) -> RawSession {
        let mut command = Command::new(support::cargo_bin());
        command
            .arg("serve")
            .args(args)
            .env_clear()
            .env("PATH", support::SAFE_PATH)
            .env("LANG", "C.UTF-8");
        RawSession::start_command(command, stderr_log)
    }

    /// Starts `command` (an engine, or the gate that becomes one) with piped stdin and
    /// stdout and stderr going to `stderr_log`, and negotiates.
    pub(crate) fn start_command(mut command: Command, stderr_log: &Path) -> RawSession {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr_log).unwrap())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = Some(BufReader::new(child.stdout.take().unwrap()));
        let mut session = RawSession {
            child,
            stdin,
            stdout,
            next_msgid: 1,
        };
        let version = session.call("negotiate", vec![("client_data", client_data())]);
        assert!(
            matches!(version, Reply::Result(_)),
            "negotiate: {version:?}"
        );
        session
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The bytes of one request in borg 1.4's dict format.
    pub(crate) fn encode(&mut self, method: &str, args: Vec<(&str, Value)>) -> Vec<u8> {
        let msgid = self.next_msgid;
        self.next_msgid += 1;
        let request = Value::Map(vec![
            (Value::from("i"), Value::from(msgid)),
            (Value::from("m"), Value::from(method)),
            (
                Value::from("a"),
                Value::Map(
                    args.into_iter()
                        .map(|(name, value)| (Value::from(name), value))
                        .collect(),
                ),
            ),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &request).unwrap();
        bytes
    }

    /// Writes raw bytes to the engine's stdin; false once the engine has gone.
    pub(crate) fn send_bytes(&mut self, bytes: &[u8]) -> bool {
        let Some(stdin) = self.stdin.as_mut() else {
            return false;
        };
        stdin.write_all(bytes).and_then(|()| stdin.flush()).is_ok()
    }

    pub(crate) fn send(&mut self, method: &str, args: Vec<(&str, Value)>) {
        let bytes = self.encode(method, args);
        assert!(self.send_bytes(&bytes), "the engine is gone");
    }

    /// Reads one reply.
    pub(crate) fn reply(&mut self) -> Reply {
        let stdout = self.stdout.as_mut().expect("stdout is open");
        let message = rmpv::decode::read_value(stdout).expect("a reply");
        let field = |name: &str| {
            message.as_map().and_then(|map| {
                map.iter()
                    .find(|(key, _)| key.as_str() == Some(name))
                    .map(|(_, value)| value.clone())
            })
        };
        if let Some(result) = field("r") {
            return Reply::Result(result);
        }
        match field("exception_class") {
            Some(class) => Reply::Exception(class.as_str().unwrap_or("?").to_owned()),
            None => panic!("not a reply: {message}"),
        }
    }

    /// Reads one reply; `None` once the engine has closed its output.
    pub(crate) fn try_reply(&mut self) -> Option<Reply> {
        let stdout = self.stdout.as_mut()?;
        let message = rmpv::decode::read_value(stdout).ok()?;
        let field = |name: &str| {
            message.as_map().and_then(|map| {
                map.iter()
                    .find(|(key, _)| key.as_str() == Some(name))
                    .map(|(_, value)| value.clone())
            })
        };
        match (field("r"), field("exception_class")) {
            (Some(result), _) => Some(Reply::Result(result)),
            (None, Some(class)) => Some(Reply::Exception(class.as_str().unwrap_or("?").to_owned())),
            (None, None) => panic!("not a reply: {message}"),
        }
    }

    /// Our end of the engine's stdin, for a test that writes to it from another thread.
    pub(crate) fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Reads one reply if it arrives within `timeout`; `None` if it does not (the engine is
    /// still busy, or waiting for something).
    pub(crate) fn reply_within(&mut self, timeout: Duration) -> Option<Reply> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let stdout = self.stdout.as_mut().expect("stdout is open");
        if stdout.buffer().is_empty() {
            let mut fds = [PollFd::new(stdout.get_ref().as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
            if poll(&mut fds, timeout).unwrap() == 0 {
                return None;
            }
        }
        Some(self.reply())
    }

    pub(crate) fn call(&mut self, method: &str, args: Vec<(&str, Value)>) -> Reply {
        self.send(method, args);
        self.reply()
    }

    /// `open` as borg 1.4 sends it.
    pub(crate) fn open(
        &mut self,
        repo: &Path,
        create: bool,
        exclusive: bool,
        lock_wait: u64,
    ) -> Reply {
        self.call(
            "open",
            vec![
                ("path", Value::from(repo.to_str().unwrap())),
                ("create", Value::from(create)),
                ("lock_wait", Value::from(lock_wait)),
                ("lock", Value::from(true)),
                ("exclusive", Value::from(exclusive)),
                ("append_only", Value::from(false)),
                ("make_parent_dirs", Value::from(false)),
            ],
        )
    }

    pub(crate) fn put(&mut self, id: [u8; 32], data: &[u8]) -> Reply {
        self.call(
            "put",
            vec![
                ("id", Value::Binary(id.to_vec())),
                ("data", Value::Binary(data.to_vec())),
                ("wait", Value::from(true)),
            ],
        )
    }

    pub(crate) fn commit(&mut self) -> Reply {
        self.call(
            "commit",
            vec![
                ("save_space", Value::from(false)),
                ("compact", Value::from(false)),
            ],
        )
    }

    /// Closes our end of stdin (the engine sees EOF).
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Closes both of our pipe ends, as a killed client's would be.
    pub(crate) fn hang_up(&mut self) {
        self.stdin = None;
        self.stdout = None;
    }

    /// Waits for the engine to exit; `None` on timeout.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        crate::support::wait_exit(&mut self.child, timeout)
    }

    /// Drains whatever the engine still writes (so it is not blocked on a full pipe).
    pub(crate) fn drain_stdout(&mut self) {
        let mut sink = Vec::new();
        if let Some(stdout) = self.stdout.as_mut() {
            let _ = stdout.read_to_end(&mut sink);
        }
    }
}

impl Drop for RawSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `negotiate`'s client data as borg 1.4.5 sends it.
fn client_data() -> Value {
    Value::Map(vec![(
        Value::from("client_version"),
        Value::Array(vec![Value::from(1), Value::from(4), Value::from(5)]),
    )])
}

/// An object id that is not the manifest's.
pub(crate) fn object_id(n: u8) -> [u8; 32] {
    let mut id = [0x5a; 32];
    id[0] = n;
    id
}
