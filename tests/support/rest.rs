//! A raw HTTP-over-stdio client for borg 2's `serve --rest`: it starts a server process (ours
//! or Python's `borg serve --rest`), writes requests exactly as borgstore's REST client frames
//! them, and reads responses with `Content-Length` framing (no body for HEAD), so tests can
//! send what no borg client sends and compare two servers byte for byte.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::borg_paths::Borg;
use super::wait::wait_exit;
use super::{SAFE_PATH, cargo_bin, require_tool};

/// borgstore's `Accept` value.
pub(crate) const ACCEPT: &str = "application/vnd.x.borgstore.rest.v1";
/// The borg 2 executable (b23, see [`Borg::executable`]), or `None` after the skip note (a
/// panic when CI=true).
#[track_caller]
pub(crate) fn borg2_path() -> Option<PathBuf> {
    require_tool(&Borg::Pypi2.executable().to_string_lossy())
}

/// One request, framed as borgstore's client frames it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: &'static str,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// `METHOD target` with `Accept`, `Connection: keep-alive`, and for POST and DELETE a
    /// `Content-Length` (0 without a body), as borgstore's client sends them.
    pub(crate) fn new(method: &'static str, target: impl Into<String>) -> Request {
        Request {
            method,
            target: target.into(),
            headers: vec![("Accept".into(), ACCEPT.into())],
            body: Vec::new(),
        }
    }

    pub(crate) fn get(target: impl Into<String>) -> Request {
        Request::new("GET", target)
    }

    pub(crate) fn head(target: impl Into<String>) -> Request {
        Request::new("HEAD", target)
    }

    pub(crate) fn post(target: impl Into<String>) -> Request {
        Request::new("POST", target)
    }

    pub(crate) fn delete(target: impl Into<String>) -> Request {
        Request::new("DELETE", target)
    }

    /// A store with the sha256 header.
    pub(crate) fn store(name: &str, data: &[u8]) -> Request {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(data);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Request::post(format!("/{name}"))
            .header("X-Content-hash-sha256", &hex)
            .body(data)
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn without_header(mut self, name: &str) -> Request {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub(crate) fn body(mut self, body: &[u8]) -> Request {
        self.body = body.to_vec();
        self
    }

    /// The bytes on the wire.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("Connection: keep-alive\r\n");
        if matches!(self.method, "POST" | "DELETE") || !self.body.is_empty() {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub reason: String,
    /// Header names lowercased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A running server with a pipe on each side.
pub(crate) struct RestServer {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
    pub label: String,
}

impl RestServer {
    /// `borg-gate serve --rest --backend FILE:<store> <extra...>`.
    pub(crate) fn engine(store: &Path, extra: &[&str]) -> RestServer {
        RestServer::spawn(engine_command(store, extra), "borg-gate")
    }

    /// [`RestServer::engine`] with its stderr in the file `log`.
    pub(crate) fn engine_logging_to(store: &Path, extra: &[&str], log: &Path) -> RestServer {
        let log = std::fs::File::create(log).expect("create the engine's log");
        RestServer::spawn_to(engine_command(store, extra), "borg-gate", log.into())
    }

    /// Python's `borg serve --rest --backend FILE:<store>` (borg 2.0.0b23).
    pub(crate) fn python(borg2: &Path, store: &Path, extra: &[&str]) -> RestServer {
        let mut command = Command::new(borg2);
        command
            .arg("serve")
            .arg("--rest")
            .arg("--backend")
            .arg(format!("FILE:{}", store.display()))
            .args(extra);
        RestServer::spawn(command, "borg serve")
    }

    /// Starts `command` with piped stdin/stdout, stderr to `stderr.log` beside nothing (null),
    /// an environment built from empty.
    pub(crate) fn spawn(command: Command, label: &str) -> RestServer {
        RestServer::spawn_to(command, label, Stdio::null())
    }

    fn spawn_to(mut command: Command, label: &str, stderr: Stdio) -> RestServer {
        command
            .env_clear()
            .env("PATH", SAFE_PATH)
            .env("LANG", "C.UTF-8")
            .env("HOME", "/nonexistent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {label}: {error}"));
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        RestServer {
            child,
            input,
            output,
            label: label.to_owned(),
        }
    }

    /// Writes raw bytes (a request, part of one, or garbage).
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        let input = self.input.as_mut().expect("stdin still open");
        input.write_all(bytes).expect("write to the server");
        input.flush().expect("flush");
    }

    /// Sends `request` and reads its response.
    pub(crate) fn request(&mut self, request: &Request) -> Response {
        self.send_raw(&request.bytes());
        self.read_response(request.method == "HEAD")
            .unwrap_or_else(|| panic!("{}: no response to {request:?}", self.label))
    }

    /// Sends `request` and reads its response; `None` once the server is gone.
    pub(crate) fn try_request(&mut self, request: &Request) -> Option<Response> {
        let input = self.input.as_mut()?;
        input.write_all(&request.bytes()).ok()?;
        input.flush().ok()?;
        self.read_response(request.method == "HEAD")
    }

    /// Reads one response; `None` at end of output.
    pub(crate) fn read_response(&mut self, head: bool) -> Option<Response> {
        let mut line = String::new();
        if self.output.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        let mut parts = line.splitn(3, ' ');
        let _version = parts.next()?;
        let status: u16 = parts.next()?.parse().ok()?;
        let reason = parts.next().unwrap_or("").to_owned();
        let mut headers = BTreeMap::new();
        loop {
            let mut header = String::new();
            if self.output.read_line(&mut header).ok()? == 0 {
                return None;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':')?;
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; if head { 0 } else { length }];
        self.output.read_exact(&mut body).ok()?;
        Some(Response {
            status,
            reason,
            headers,
            body,
        })
    }

    /// Closes stdin and waits (bounded) for the exit status.
    pub(crate) fn finish(mut self) -> ExitStatus {
        drop(self.input.take());
        self.wait(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{} did not exit after end of input", self.label))
    }

    /// Waits up to `timeout` for the process to exit.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, timeout)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Takes stdin, for a writer thread; responses are still read with
    /// [`RestServer::read_response`].
    pub(crate) fn take_input(&mut self) -> ChildStdin {
        self.input.take().expect("stdin still open")
    }

    /// Closes only stdin (the server should then exit).
    pub(crate) fn close_input(&mut self) {
        drop(self.input.take());
    }
}

/// `borg-gate serve --rest --backend FILE:<store> <extra...>`.
fn engine_command(store: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(cargo_bin());
    command
        .arg("serve")
        .arg("--rest")
        .arg("--backend")
        .arg(format!("FILE:{}", store.display()))
        .args(extra);
    command
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
