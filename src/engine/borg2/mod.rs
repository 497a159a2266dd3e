//! The built-in borg 2 engine: `borg-gate serve --rest --backend FILE:<path>`, a drop-in
//! replacement for borg 2's `borg serve --rest`, which speaks borgstore 0.7.0's REST protocol
//! (HTTP/1.1 over stdin and stdout) and keeps the repository in borgstore's posixfs layout.
//!
//! [`serve_main`] reads like the specification: command line, the client's command
//! (`SSH_ORIGINAL_COMMAND`), the backend and its restrictions, the permissions, then the
//! session, then the release of what a vanished client left locked.
//!
//! | module | owns |
//! |---|---|
//! | `args` | the command line and borg's forced-command rule (pure) |
//! | `backend` | `FILE:<path>` resolution and `check_rest_restrictions` |
//! | `head`, `wire` | HTTP/1.1 framing: heads (httparse), bodies, batched responses |
//! | `route` | which borgstore operation a request is (pure) |
//! | `names`, `range`, `sources`, `permissions`, `quota`, `locks`, `hashing` | pure rules |
//! | `accounting` | how a request reads in the session's record (pure) |
//! | `response` | status lines, headers, listing and quota JSON |
//! | `service` | borgstore's backend semantics: checks, then the store |
//! | `posixfs` | the files: directory handles, temp files, rename, fsync |
//! | `session` | the request loop over the shared transport of `engine/session/` |

pub mod accounting;
pub mod args;
pub mod backend;
pub mod hashing;
pub mod head;
pub mod locks;
pub mod names;
pub mod permissions;
pub mod posixfs;
pub mod quota;
pub mod range;
pub mod response;
pub mod route;
pub mod service;
pub mod session;
pub mod sources;
pub mod wire;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use args::{RestConfig, apply_client_command, effective_permissions, parse_rest_args};
use backend::{BackendRefusal, check_path_is_ours, resolve_backend};
use posixfs::PosixFs;
use service::{Service, ServiceConfig};
use session::Ending;
use wire::{RequestReader, ResponseWriter};

use crate::audit::session_end::End;
use crate::engine::log::{Channel, LogConfig, RemoteLogger};
use crate::engine::paths::PathContext;
use crate::engine::reporting::{NOT_STARTED, Unaudited};
use crate::engine::session::{self as transport, SessionClock, Watch, watch_signals};
use crate::engine::tally::Tally;
use crate::engine::tally::reason::{PATH_NOT_ALLOWED, UNTRUSTED_PATH};
use crate::policy::Protocol;

/// The logger name of the engine's own messages.
pub const LOG: &str = transport::LOG;

/// Exit status for a bad command line or an unusable environment (borg's `EXIT_ERROR`).
const EXIT_ERROR: u8 = 2;

/// Whether `borg-gate serve`'s arguments ask for this engine.
pub fn wants_rest(args: &[OsString]) -> bool {
    let words: Vec<&str> = args.iter().filter_map(|arg| arg.to_str()).collect();
    args::wants_rest(&words)
}

/// `borg-gate serve --rest`: serves one session and returns the process exit status.
pub fn serve_main(args: &[OsString]) -> u8 {
    match serve(args) {
        Ok(status) => status,
        Err(Refusal {
            message, status, ..
        }) => {
            let _ = writeln!(std::io::stderr(), "{message}");
            transport::linger_for_client();
            status
        }
    }
}

/// A session that does not start: the line for stderr, the exit status, and for its record
/// the exception class and, when the engine refused the repository, why.
struct Refusal {
    message: String,
    status: u8,
    class: &'static str,
    refused: Option<&'static str>,
}

impl Refusal {
    fn error(message: impl std::fmt::Display) -> Refusal {
        Refusal {
            message: format!("borg-gate: serve --rest: {message}"),
            status: EXIT_ERROR,
            class: NOT_STARTED,
            refused: None,
        }
    }
}

fn serve(args: &[OsString]) -> Result<u8, Refusal> {
    let mut config = command_line(args)?;
    if config.help {
        print!("{USAGE}");
        return Ok(0);
    }
    // The session begins: however it ends from here on, it is recorded once.
    let (reporter, unaudited) = std::mem::take(&mut config.reporting).begin();
    let mut unstarted = Tally::new(false, "all");
    if let Some(unaudited) = unaudited {
        let end = End::Error(Unaudited::CLASS.to_owned());
        reporter.report(&unstarted, Protocol::Borg2, &end);
        return Err(Refusal::error(unaudited));
    }
    let mut service = match open_service(&config) {
        Ok(service) => service,
        Err(refusal) => {
            if let Some(reason) = refusal.refused {
                unstarted.refused("open", reason);
            }
            let end = End::Error(refusal.class.to_owned());
            reporter.report(&unstarted, Protocol::Borg2, &end);
            return Err(refusal);
        }
    };
    let ending = match run_session(&mut service, &config) {
        Ok(ending) => ending,
        Err(refusal) => {
            service.finish();
            let end = End::Error(refusal.class.to_owned());
            reporter.report(service.tally(), Protocol::Borg2, &end);
            return Err(refusal);
        }
    };
    let released = service.finish();
    report(&ending, &released);
    let end = session::end_of(&ending, service.tally().client_end());
    reporter.report(service.tally(), Protocol::Borg2, &end);
    Ok(ending.exit_code())
}

/// The store the session serves, with the key's permissions, after borg's checks.
fn open_service(config: &RestConfig) -> Result<Service, Refusal> {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(config.umask));
    let mode = effective_permissions(
        config,
        std::env::var("BORG_REPO_PERMISSIONS").ok().as_deref(),
    )
    .map_err(|message| Refusal {
        message,
        status: EXIT_ERROR,
        class: NOT_STARTED,
        refused: None,
    })?;
    let log = RemoteLogger::stderr(&LogConfig {
        level: config.log_level,
        debug_topics: config.debug_topics.clone(),
    })
    .install()
    .map_err(|e| Refusal::error(format!("cannot install the logger: {e}")))?;
    log.open(Channel::Text);
    let store = store_directory(config)?;
    log::debug!(target: LOG, "serving {} with permissions {}", store.display(), mode.name());
    let mut service = Service::new(
        PosixFs::new(store.clone(), config.fsync),
        ServiceConfig {
            mode,
            quota_limit: config.storage_quota,
            release: config.lock_release,
            fence: config.lock_fence,
        },
    );
    service.opened(&store);
    Ok(service)
}

/// The forced command's arguments, merged with the client's command as borg merges them.
fn command_line(args: &[OsString]) -> Result<RestConfig, Refusal> {
    let words = args
        .iter()
        .map(|arg| {
            arg.to_str()
                .ok_or_else(|| Refusal::error(format!("argument {arg:?} is not UTF-8")))
        })
        .collect::<Result<Vec<&str>, Refusal>>()?;
    let mut config = parse_rest_args(&words).map_err(Refusal::error)?;
    if let Some(command) = std::env::var_os("SSH_ORIGINAL_COMMAND") {
        let command = command
            .to_str()
            .ok_or_else(|| Refusal::error("SSH_ORIGINAL_COMMAND is not UTF-8"))?;
        apply_client_command(&mut config, command).map_err(Refusal::error)?;
    }
    Ok(config)
}

/// The store's directory, after borg's restriction check.
fn store_directory(config: &RestConfig) -> Result<PathBuf, Refusal> {
    let legacy = std::env::var("BORG_EXIT_CODES").is_ok_and(|v| v == "legacy");
    let refuse = |refusal: BackendRefusal, reason: &'static str| Refusal {
        status: refusal.exit_code(legacy),
        message: refusal.to_string(),
        class: match refusal {
            BackendRefusal::NotAllowed(_) => "PathNotAllowed",
            BackendRefusal::Missing | BackendRefusal::NotFile(_) => NOT_STARTED,
        },
        refused: matches!(refusal, BackendRefusal::NotAllowed(_)).then_some(reason),
    };
    let context = rest_path_context();
    let store = resolve_backend(
        config.backend.as_deref(),
        &context,
        &config.restrict_to_paths,
        &config.restrict_to_repositories,
    )
    .map_err(|refusal| refuse(refusal, PATH_NOT_ALLOWED))?;
    let restricted =
        !config.restrict_to_paths.is_empty() || !config.restrict_to_repositories.is_empty();
    if restricted {
        if let Err(reason) = check_path_is_ours(&store, nix::unistd::geteuid().as_raw()) {
            log::warn!(target: LOG, "Refusing {}: {reason}", store.display());
            return Err(refuse(
                BackendRefusal::NotAllowed(store.display().to_string()),
                UNTRUSTED_PATH,
            ));
        }
    }
    Ok(store)
}

/// Python's `expanduser`: `~` is `$HOME` (else the account's home), `~user` from the
/// password database; relative paths from the working directory.
fn rest_path_context() -> PathContext<'static> {
    let mut context = PathContext::of_this_process();
    if let Some(home) = std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        context.base_dir = PathBuf::from(home);
    }
    context
}

/// Runs the session on stdin and stdout.
fn run_session(service: &mut Service, config: &RestConfig) -> Result<Ending, Refusal> {
    let cannot = |e: std::io::Error| Refusal::error(format!("cannot use stdin and stdout: {e}"));
    let stdin = transport::raw_stdin().map_err(cannot)?;
    let stdout = transport::raw_stdout().map_err(cannot)?;
    transport::enlarge_pipe(&stdin);
    transport::enlarge_pipe(&stdout);
    let clock = SessionClock::new(
        config.idle_timeout,
        config.request_timeout,
        config.session_limit,
    );
    let mut watch = Watch::new(stdin.try_clone().map_err(cannot)?, watch_signals(), clock);
    let (input, output) = watch.client_pipes(stdin, stdout).map_err(cannot)?;
    let mut reader = RequestReader::new(service.tally().count_input(input));
    let mut writer = ResponseWriter::new(service.tally().count_output(output));
    Ok(session::run(service, &mut watch, &mut reader, &mut writer))
}

/// One line on stderr for endings the client or the administrator should know about.
fn report(ending: &Ending, released: &[String]) {
    match ending {
        Ending::Stopped(stop) => stop.report(),
        Ending::BadFraming(error) => {
            log::error!(target: LOG, "borg-gate: serve --rest: {error}; closing the connection")
        }
        Ending::ClientClosed | Ending::Truncated => {}
    }
    if !released.is_empty() {
        log::warn!(
            target: LOG,
            "released {} lock object(s) the client left behind: {}",
            released.len(),
            released.join(", ")
        );
    }
}

/// `borg-gate serve --rest --help`.
const USAGE: &str = "usage: borg-gate serve --rest --backend FILE:<path>
                       [--restrict-to-path PATH] [--restrict-to-repository PATH]
                       [--permissions all|no-delete|write-only|read-only]
                       [--storage-quota SIZE] [--idle-timeout DURATION]
                       [--request-timeout DURATION] [--session-limit DURATION]
                       [--lock-release release|keep] [--lock-fence DURATION]
                       [--umask M] [--debug | --info | --warning | --error | --critical]
                       [--debug-topic TOPIC] [--lock-wait SECONDS] [--no-fsync]

A drop-in replacement for borg 2's `borg serve --rest`: speaks borgstore's REST protocol
(HTTP/1.1) on stdin/stdout and keeps the repository in borgstore's posixfs layout.
The gate also passes where the end of the session is reported (--session-id,
--policy-name, --audit-file, --audit-syslog, --audit-on-failure, --metrics-textfile).
See borg-gate(1).
";
