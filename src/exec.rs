//! The engine's argv and environment, built from empty, and the final execve.
//!
//! [`engine_command`] is pure: the caller hands in the account and a lookup into
//! borg-gate's own environment (used only for the policy's `pass_env` names).
//! [`exec_engine`] prepares the process (umask, signals, descriptors) and replaces it.

use std::convert::Infallible;
use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::gate::ServeArgs;
use crate::policy::{EngineProgram, Policy, Protocol};

/// A fixed PATH: the engine never searches a directory a client could influence.
pub(crate) const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A UTF-8 locale present on every Debian system; borg needs UTF-8 for its protocol.
pub(crate) const LOCALE: &str = "C.UTF-8";

/// How the built-in engine is reached: the running binary itself.
pub(crate) const SELF_EXE: &str = "/proc/self/exe";

/// The account the gate runs as, from the password database (not from the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    pub name: String,
    pub uid: u32,
    pub home: PathBuf,
}

/// Everything execve needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineCommand {
    /// Absolute path passed to execve.
    pub program: PathBuf,
    /// argv, including argv[0].
    pub argv: Vec<String>,
    /// The complete environment, in order.
    pub env: Vec<(String, String)>,
    pub umask: u32,
}

impl EngineCommand {
    /// The built-in engine's command with the gate's session id (`--session-id`), which its
    /// record of the session carries too. An external borg knows no such option and is left
    /// as it is.
    pub fn for_session(mut self, session_id: &crate::audit::SessionId) -> EngineCommand {
        if self.program == Path::new(SELF_EXE) {
            self.argv.push(format!("--session-id={session_id}"));
        }
        self
    }
}

/// Builds the engine's command line and environment: the policy's engine for the protocol
/// (`engine.program` for borg 1, `engine.borg2_program` for borg 2), `serve`, the arguments.
pub(crate) fn engine_command(
    policy: &Policy,
    args: &ServeArgs,
    account: &Account,
    own_env: &dyn Fn(&str) -> Option<String>,
) -> EngineCommand {
    let engine = match args.protocol {
        Protocol::Borg1 => &policy.engine.program,
        Protocol::Borg2 => &policy.engine.borg2_program,
    };
    let (program, argv0) = match engine {
        EngineProgram::Builtin => (PathBuf::from(SELF_EXE), "borg-gate".to_owned()),
        EngineProgram::External(path) => (path.clone(), path.display().to_string()),
    };
    let mut argv = vec![argv0, "serve".to_owned()];
    argv.extend(args.words.iter().cloned());
    EngineCommand {
        program,
        argv,
        env: engine_env(policy, account, own_env),
        umask: policy.repository.umask,
    }
}

/// The engine's environment: PATH, HOME, USER, LOGNAME, LANG; then the policy's `pass_env`
/// names taken from borg-gate's own environment; then the policy's `env` (which wins).
pub(crate) fn engine_env(
    policy: &Policy,
    account: &Account,
    own_env: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), SAFE_PATH.into()),
        ("HOME".into(), account.home.display().to_string()),
        ("USER".into(), account.name.clone()),
        ("LOGNAME".into(), account.name.clone()),
        ("LANG".into(), LOCALE.into()),
    ];
    let mut set = |name: &str, value: String| match env.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name.to_owned(), value)),
    };
    for name in &policy.engine.pass_env {
        if let Some(value) = own_env(name) {
            set(name, value);
        }
    }
    for (name, value) in &policy.engine.env {
        set(name, value.clone());
    }
    env
}

#[derive(Debug)]
pub enum ExecError {
    NotAbsolute(PathBuf),
    Nul,
    Exec { program: PathBuf, error: nix::Error },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::NotAbsolute(path) => {
                write!(f, "engine {} is not an absolute path", path.display())
            }
            ExecError::Nul => {
                f.write_str("the engine's arguments or environment contain a NUL byte")
            }
            ExecError::Exec { program, error } => {
                write!(
                    f,
                    "cannot run the engine {}: {}",
                    program.display(),
                    error.desc()
                )
            }
        }
    }
}

impl std::error::Error for ExecError {}

/// Replaces this process with the engine. Returns only on failure.
pub(crate) fn exec_engine(command: &EngineCommand) -> ExecError {
    match try_exec(command) {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

fn try_exec(command: &EngineCommand) -> Result<Infallible, ExecError> {
    if !command.program.is_absolute() {
        return Err(ExecError::NotAbsolute(command.program.clone()));
    }
    let program = c_string(command.program.as_os_str().as_encoded_bytes())?;
    let argv = command
        .argv
        .iter()
        .map(|a| c_string(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let env = command
        .env
        .iter()
        .map(|(name, value)| c_string(format!("{name}={value}").as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    crate::sys::prepare_for_exec(command.umask);
    nix::unistd::execve(&program, &argv, &env).map_err(|error| ExecError::Exec {
        program: command.program.clone(),
        error,
    })
}

fn c_string(bytes: &[u8]) -> Result<CString, ExecError> {
    CString::new(bytes).map_err(|_| ExecError::Nul)
}

/// The password-database entry of the effective user.
pub(crate) fn current_account() -> Option<Account> {
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()?;
    Some(Account {
        name: user.name,
        uid: user.uid.as_raw(),
        home: user.dir,
    })
}

/// The password-database entry of the account named `name`.
pub(crate) fn account_named(name: &str) -> Option<Account> {
    let user = nix::unistd::User::from_name(name).ok().flatten()?;
    Some(Account {
        name: user.name,
        uid: user.uid.as_raw(),
        home: user.dir,
    })
}

/// The home directory of the account named `name` (for `~user`).
pub(crate) fn home_of(name: &str) -> Option<PathBuf> {
    account_named(name).map(|account| account.home)
}

/// Whether `path` names an executable regular file (for `check-policy`).
pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    fn policy(extra_engine: &str) -> Policy {
        let text = format!(
            "version = 1\n[engine]\n{extra_engine}\n[repository]\nrestrict_to_paths = [\"/srv\"]\n[audit]\nsyslog = true\n"
        );
        parse_policy(&text, "t").unwrap()
    }

    fn account() -> Account {
        Account {
            name: "backup".into(),
            uid: 1000,
            home: PathBuf::from("/home/backup"),
        }
    }

    #[test]
    fn environment_is_built_from_empty() {
        let p = policy("");
        let env = engine_env(&p, &account(), &|_| Some("leaked".into()));
        let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["PATH", "HOME", "USER", "LOGNAME", "LANG"]);
        assert!(env.iter().all(|(_, v)| v != "leaked"));
    }

    #[test]
    fn pass_env_copies_only_named_variables_and_policy_env_wins() {
        let p = policy(
            "env = { BORG_HOST_ID = \"srv1\", HOME = \"/srv/home\" }\npass_env = [\"BORG_X\", \"BORG_MISSING\"]",
        );
        let lookup = |name: &str| (name == "BORG_X").then(|| "1".to_owned());
        let env = engine_env(&p, &account(), &lookup);
        assert!(env.contains(&("BORG_X".into(), "1".into())));
        assert!(env.contains(&("BORG_HOST_ID".into(), "srv1".into())));
        assert!(env.contains(&("HOME".into(), "/srv/home".into())));
        assert!(!env.iter().any(|(n, _)| n == "BORG_MISSING"));
        assert_eq!(env.iter().filter(|(n, _)| n == "HOME").count(), 1);
    }

    #[test]
    fn builtin_engine_is_this_binary() {
        let p = policy("");
        let command = engine_command(
            &p,
            &ServeArgs::borg1(vec!["--info".into()]),
            &account(),
            &|_| None,
        );
        assert_eq!(command.program, PathBuf::from("/proc/self/exe"));
        assert_eq!(command.argv, ["borg-gate", "serve", "--info"]);
        assert_eq!(command.umask, 0o077);
    }

    #[test]
    fn only_the_builtin_engine_learns_the_session_id() {
        let id = crate::audit::SessionId::parse("abc123").unwrap();
        let builtin = engine_command(&policy(""), &ServeArgs::borg1(vec![]), &account(), &|_| {
            None
        });
        assert_eq!(
            builtin.for_session(&id).argv,
            ["borg-gate", "serve", "--session-id=abc123"]
        );
        let external = engine_command(
            &policy("program = \"/usr/bin/borg\""),
            &ServeArgs::borg1(vec![]),
            &account(),
            &|_| None,
        );
        assert_eq!(external.for_session(&id).argv, ["/usr/bin/borg", "serve"]);
    }

    #[test]
    fn external_engine_is_exec_ed_by_absolute_path() {
        let p = policy("program = \"/usr/bin/borg\"");
        let command = engine_command(&p, &ServeArgs::borg1(vec![]), &account(), &|_| None);
        assert_eq!(command.program, PathBuf::from("/usr/bin/borg"));
        assert_eq!(command.argv, ["/usr/bin/borg", "serve"]);
    }

    #[test]
    fn relative_program_is_never_executed() {
        let command = EngineCommand {
            program: PathBuf::from("borg"),
            argv: vec![],
            env: vec![],
            umask: 0o77,
        };
        assert!(matches!(exec_engine(&command), ExecError::NotAbsolute(_)));
    }
}
