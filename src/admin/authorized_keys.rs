//! `authorized_keys` as sshd reads it (sshd(8), AUTHORIZED_KEYS FILE FORMAT), and the rules
//! `borg-gate doctor` applies to keys that run borg-gate or `borg serve`.
//!
//! Pure: the caller passes the file's text. The parser follows OpenSSH's own order: a line
//! that starts with a key has no options; otherwise the options run up to the first space or
//! tab outside double quotes, where `\"` stands for a quote and every other backslash is
//! literal. Option names are case-insensitive, and flags apply in order, so `pty` after
//! `restrict` turns pty allocation back on.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Finding, Place};
use crate::engine::borg1::args::{ArgsError, ServeConfig, parse_serve_args};
use crate::engine::borg2::args::{RestConfig, parse_rest_args, wants_rest};
use crate::gate::command::{program_basename, strip_assignments};
use crate::gate::options::{Dialect, ParseError, ParsedOption, parse_serve_command};

/// Key types sshd accepts in authorized_keys (OpenSSH 9), certificates included.
pub(crate) const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ssh-ed25519@openssh.com",
    "ssh-dss",
    "ssh-xmss@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "ssh-dss-cert-v01@openssh.com",
    "ssh-xmss-cert-v01@openssh.com",
];

/// The no-* options that `restrict` replaced in OpenSSH 7.2.
pub(crate) const LEGACY_RESTRICTIONS: &str =
    "no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,no-user-rc";

/// One meaningful line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Key(KeyLine),
    /// A line sshd skips (no key in it) or refuses (bad options), with the reason.
    Broken {
        line: usize,
        problem: LineProblem,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    /// 1-based.
    pub line: usize,
    pub options: Vec<KeyOption>,
    pub key_type: String,
    /// The decoded key blob: two lines hold the same key when their blobs are equal.
    pub blob: Vec<u8>,
    pub comment: String,
}

/// Why sshd does not use a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineProblem {
    /// The options have an opening quote and no closing one: sshd skips the line.
    UnterminatedQuote,
    /// Neither at the start nor after the options is there a key sshd can read.
    NoKey,
    /// The key is readable but its options are not: sshd refuses the key.
    BadOptions(OptionError),
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineProblem::UnterminatedQuote => f.write_str("the options have an unterminated quote"),
            LineProblem::NoKey => f.write_str("there is no readable public key on the line"),
            LineProblem::BadOptions(error) => error.fmt(f),
        }
    }
}

/// Why sshd refuses an option list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OptionError {
    Unknown(String),
    /// `command=x`: values must be in double quotes.
    MissingStartQuote(String),
    MissingEndQuote(String),
    /// A flag such as `restrict=yes`.
    UnexpectedValue(String),
    /// Text right after a closing quote, e.g. `command="x"y`.
    JunkAfterValue(String),
    /// The list ends with a comma.
    TrailingComma,
    /// A second `command`, `principals` or `tunnel`.
    Repeated(String),
    /// `environment` without `NAME=`.
    BadEnvironment(String),
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::Unknown(name) => write!(f, "unknown key option {name:?}"),
            OptionError::MissingStartQuote(name) => {
                write!(f, "the value of {name} is not in double quotes")
            }
            OptionError::MissingEndQuote(name) => {
                write!(f, "the value of {name} has no closing quote")
            }
            OptionError::UnexpectedValue(name) => write!(f, "option {name} takes no value"),
            OptionError::JunkAfterValue(name) => {
                write!(f, "text follows the closing quote of {name}")
            }
            OptionError::TrailingComma => f.write_str("the option list ends with a comma"),
            OptionError::Repeated(name) => write!(f, "option {name} is given twice"),
            OptionError::BadEnvironment(value) => {
                write!(f, "environment={value:?} is not NAME=value")
            }
        }
    }
}

/// The session features `restrict` turns off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    PortForwarding,
    AgentForwarding,
    X11Forwarding,
    Pty,
    UserRc,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::PortForwarding,
        Permission::AgentForwarding,
        Permission::X11Forwarding,
        Permission::Pty,
        Permission::UserRc,
    ];

    /// The option that turns it on; `no-` plus this turns it off.
    pub fn option(self) -> &'static str {
        match self {
            Permission::PortForwarding => "port-forwarding",
            Permission::AgentForwarding => "agent-forwarding",
            Permission::X11Forwarding => "X11-forwarding",
            Permission::Pty => "pty",
            Permission::UserRc => "user-rc",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Permission::PortForwarding => "port forwarding",
            Permission::AgentForwarding => "agent forwarding",
            Permission::X11Forwarding => "X11 forwarding",
            Permission::Pty => "a terminal (pty)",
            Permission::UserRc => "running ~/.ssh/rc",
        }
    }

    fn from_option(name: &str) -> Option<Permission> {
        Permission::ALL
            .into_iter()
            .find(|p| p.option().eq_ignore_ascii_case(name))
    }
}

/// One key option, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOption {
    Restrict,
    /// `port-forwarding`, `no-pty`, ...
    Permission {
        permission: Permission,
        allowed: bool,
    },
    CertAuthority,
    NoTouchRequired,
    TouchRequired,
    VerifyRequired,
    Command(String),
    Environment(String),
    From(String),
    PermitOpen(String),
    PermitListen(String),
    Principals(String),
    ExpiryTime(String),
    Tunnel(String),
}

/// Parses a whole file. Blank lines and comments are left out.
pub(crate) fn parse_file(text: &str) -> Vec<Entry> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| parse_line(index + 1, line))
        .collect()
}

/// Parses one line; `None` for blank lines and comments.
pub(crate) fn parse_line(line: usize, raw: &str) -> Option<Entry> {
    let text = raw
        .trim_end_matches(['\r', '\n'])
        .trim_start_matches([' ', '\t']);
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    if let Some((key_type, blob, comment)) = read_key(text) {
        return Some(Entry::Key(KeyLine {
            line,
            options: Vec::new(),
            key_type,
            blob,
            comment,
        }));
    }
    let Some(end) = end_of_options(text) else {
        return Some(Entry::Broken {
            line,
            problem: LineProblem::UnterminatedQuote,
        });
    };
    let (options_text, rest) = text.split_at(end);
    let Some((key_type, blob, comment)) = read_key(rest.trim_start_matches([' ', '\t'])) else {
        return Some(Entry::Broken {
            line,
            problem: LineProblem::NoKey,
        });
    };
    match parse_options(options_text) {
        Ok(options) => Some(Entry::Key(KeyLine {
            line,
            options,
            key_type,
            blob,
            comment,
        })),
        Err(error) => Some(Entry::Broken {
            line,
            problem: LineProblem::BadOptions(error),
        }),
    }
}

/// Where the options end: the first space or tab outside double quotes. `None` when a quote
/// is still open at the end of the line.
pub(crate) fn end_of_options(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut quoted = false;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' if bytes.get(index + 1) == Some(&b'"') => index += 1,
            b'"' => quoted = !quoted,
            b' ' | b'\t' if !quoted => return Some(index),
            _ => {}
        }
        index += 1;
    }
    (!quoted).then_some(bytes.len())
}

/// A key type, a base64 blob that decodes to a key of that type, and the rest as comment.
fn read_key(text: &str) -> Option<(String, Vec<u8>, String)> {
    let (key_type, rest) = split_word(text);
    if !KEY_TYPES.contains(&key_type) {
        return None;
    }
    let (encoded, comment) = split_word(rest.trim_start_matches([' ', '\t']));
    let blob = decode_base64(encoded)?;
    (blob_type(&blob)? == key_type.as_bytes()).then(|| {
        (
            key_type.to_owned(),
            blob,
            comment.trim_matches([' ', '\t']).to_owned(),
        )
    })
}

fn split_word(text: &str) -> (&str, &str) {
    match text.find([' ', '\t']) {
        Some(cut) => text.split_at(cut),
        None => (text, ""),
    }
}

/// The key type name that opens an SSH public key blob (a 32-bit length, then the name).
fn blob_type(blob: &[u8]) -> Option<&[u8]> {
    let length = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    blob.get(4..4usize.checked_add(length)?)
}

/// Standard base64 (RFC 4648) with optional padding; `None` for anything else, the empty
/// text included.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    if text.is_empty() {
        return None;
    }
    base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
        .decode(text)
        .ok()
}

/// Parses an option list (the text before the key), as sshd does.
pub(crate) fn parse_options(text: &str) -> Result<Vec<KeyOption>, OptionError> {
    let bytes = text.as_bytes();
    let mut options: Vec<KeyOption> = Vec::new();
    let mut position = 0;
    loop {
        let start = position;
        while position < bytes.len() && !matches!(bytes[position], b',' | b'=') {
            position += 1;
        }
        let name = &text[start..position];
        let value = if bytes.get(position) == Some(&b'=') {
            position += 1;
            Some(dequote(text, &mut position, name)?)
        } else {
            None
        };
        let option = option_from(name, value)?;
        if let Some(repeated) = repeated_name(&options, &option) {
            return Err(OptionError::Repeated(repeated.to_owned()));
        }
        options.push(option);
        match bytes.get(position) {
            None => return Ok(options),
            Some(b',') if position + 1 == bytes.len() => return Err(OptionError::TrailingComma),
            Some(b',') => position += 1,
            Some(_) => return Err(OptionError::JunkAfterValue(name.to_owned())),
        }
    }
}

/// Reads `"..."` at `position`, where `\"` is a quote and other backslashes stay.
fn dequote(text: &str, position: &mut usize, name: &str) -> Result<String, OptionError> {
    let bytes = text.as_bytes();
    if bytes.get(*position) != Some(&b'"') {
        return Err(OptionError::MissingStartQuote(name.to_owned()));
    }
    let mut value = Vec::new();
    let mut index = *position + 1;
    loop {
        match bytes.get(index) {
            None => return Err(OptionError::MissingEndQuote(name.to_owned())),
            Some(b'"') => break,
            Some(b'\\') if bytes.get(index + 1) == Some(&b'"') => {
                value.push(b'"');
                index += 2;
            }
            Some(&byte) => {
                value.push(byte);
                index += 1;
            }
        }
    }
    *position = index + 1;
    Ok(String::from_utf8_lossy(&value).into_owned())
}

fn option_from(name: &str, value: Option<String>) -> Result<KeyOption, OptionError> {
    let lower = name.to_ascii_lowercase();
    let flag = |option: KeyOption| match value {
        None => Ok(option),
        Some(_) => Err(OptionError::UnexpectedValue(name.to_owned())),
    };
    let permission = lower
        .strip_prefix("no-")
        .and_then(Permission::from_option)
        .map(|p| (p, false))
        .or_else(|| Permission::from_option(&lower).map(|p| (p, true)));
    if let Some((permission, allowed)) = permission {
        return flag(KeyOption::Permission {
            permission,
            allowed,
        });
    }
    match lower.as_str() {
        "restrict" => return flag(KeyOption::Restrict),
        "cert-authority" => return flag(KeyOption::CertAuthority),
        "no-touch-required" => return flag(KeyOption::NoTouchRequired),
        "touch-required" => return flag(KeyOption::TouchRequired),
        "verify-required" => return flag(KeyOption::VerifyRequired),
        _ => {}
    }
    let valued: fn(String) -> KeyOption = match lower.as_str() {
        "command" => KeyOption::Command,
        "environment" => KeyOption::Environment,
        "from" => KeyOption::From,
        "permitopen" => KeyOption::PermitOpen,
        "permitlisten" => KeyOption::PermitListen,
        "principals" => KeyOption::Principals,
        "expiry-time" => KeyOption::ExpiryTime,
        "tunnel" => KeyOption::Tunnel,
        _ => return Err(OptionError::Unknown(name.to_owned())),
    };
    let Some(value) = value else {
        return Err(OptionError::MissingStartQuote(name.to_owned()));
    };
    if lower == "environment" {
        let valid = value
            .split_once('=')
            .is_some_and(|(env_name, _)| crate::policy::validate::is_env_name(env_name));
        if !valid {
            return Err(OptionError::BadEnvironment(value));
        }
    }
    Ok(valued(value))
}

/// sshd refuses a second `command`, `principals` or `tunnel`.
fn repeated_name(previous: &[KeyOption], option: &KeyOption) -> Option<&'static str> {
    let name = match option {
        KeyOption::Command(_) => "command",
        KeyOption::Principals(_) => "principals",
        KeyOption::Tunnel(_) => "tunnel",
        _ => return None,
    };
    previous
        .iter()
        .any(|p| std::mem::discriminant(p) == std::mem::discriminant(option))
        .then_some(name)
}

impl KeyLine {
    pub fn command(&self) -> Option<&str> {
        self.options.iter().find_map(|option| match option {
            KeyOption::Command(command) => Some(command.as_str()),
            _ => None,
        })
    }

    /// Whether sshd uses this line only for some clients (`from=`) or for a time
    /// (`expiry-time=`), so that a later line with the same key can still apply.
    pub fn is_conditional(&self) -> bool {
        self.options
            .iter()
            .any(|o| matches!(o, KeyOption::From(_) | KeyOption::ExpiryTime(_)))
    }

    /// The permissions left on after applying the options in order.
    pub fn allowed_permissions(&self) -> Vec<Permission> {
        let mut allowed = Permission::ALL.to_vec();
        for option in &self.options {
            match option {
                KeyOption::Restrict => allowed.clear(),
                KeyOption::Permission {
                    permission,
                    allowed: on,
                } => {
                    allowed.retain(|p| p != permission);
                    if *on {
                        allowed.push(*permission);
                    }
                }
                _ => {}
            }
        }
        allowed.sort();
        allowed
    }
}

/// What a forced command runs, as far as doctor cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ForcedCommand {
    /// `borg-gate --policy FILE [--name NAME]`.
    Gate {
        program: String,
        /// As borg-gate receives it, but for a leading `~` (see `tilde_expanded`).
        policy: PathBuf,
        /// The login shell turns the policy's leading `~` or `~user` into a home directory
        /// (the word is unquoted; `--policy=~/x` is not expanded).
        tilde_expanded: bool,
        /// `--name`, as written (checked by [`command_findings`]).
        name: Option<String>,
    },
    /// `borg serve ...` or `borg-gate serve ...`: an engine with no gate in front.
    Serve {
        program: String,
        config: Result<ServeConfig, ArgsError>,
    },
    /// `borg serve --rest ...` or `borg-gate serve --rest ...`: a borg 2 engine with no gate
    /// in front. The error is the engine's own message.
    ServeRest {
        program: String,
        config: Result<RestConfig, String>,
    },
    /// It runs borg or borg-gate, but not in a form that serves a client or that doctor can
    /// read (shell syntax, another subcommand, bad arguments).
    Unusable { program: String, problem: String },
    /// Another program.
    Other,
}

impl ForcedCommand {
    /// Whether the key is meant for borg: the gate, an engine, or a broken attempt at either.
    pub(crate) fn is_borg(&self) -> bool {
        !matches!(self, ForcedCommand::Other)
    }
}

/// Words a shell treats as control operators or redirections.
const SHELL_OPERATORS: &[&str] = &[";", "&&", "||", "|", "&", ">", ">>", "<", "(", ")"];

/// Reads a forced command the way `$SHELL -c` would split it, then the way borg-gate or borg
/// would read its arguments.
pub(crate) fn classify_command(command: &str) -> ForcedCommand {
    let mentions_borg = |words: &[String]| {
        words
            .iter()
            .any(|w| program_basename(w).starts_with("borg"))
    };
    let Some(words) = shlex::split(command) else {
        return if command.contains("borg") {
            ForcedCommand::Unusable {
                program: "borg".to_owned(),
                problem: "the forced command has an unbalanced quote".to_owned(),
            }
        } else {
            ForcedCommand::Other
        };
    };
    let shell_syntax = words.iter().any(|w| {
        SHELL_OPERATORS.contains(&w.as_str())
            || w.contains('`')
            || w.contains("$(")
            || w.contains("${")
    });
    if shell_syntax {
        return if mentions_borg(&words) {
            ForcedCommand::Unusable {
                program: "borg".to_owned(),
                problem: "the forced command uses shell syntax, which doctor cannot check"
                    .to_owned(),
            }
        } else {
            ForcedCommand::Other
        };
    }
    let (_, rest) = strip_assignments(&words);
    let rest = match rest.split_first() {
        Some((first, tail)) if first == "exec" => tail,
        _ => rest,
    };
    let Some((program, arguments)) = rest.split_first() else {
        return ForcedCommand::Other;
    };
    let base = program_basename(program);
    if base == "borg-gate" {
        classify_borg_gate(command, program, rest)
    } else if base.starts_with("borg") {
        classify_borg(program, arguments)
    } else {
        ForcedCommand::Other
    }
}

fn classify_borg_gate(command: &str, program: &str, words: &[String]) -> ForcedCommand {
    use clap::Parser;

    use crate::cli::{Cli, Command};
    let unusable = |problem: String| ForcedCommand::Unusable {
        program: program.to_owned(),
        problem,
    };
    match Cli::try_parse_from(words) {
        Ok(Cli {
            policy: Some(policy),
            name,
            command: None,
        }) => {
            let text = policy.to_string_lossy();
            let tilde_expanded =
                text.starts_with('~') && command.split([' ', '\t']).any(|word| word == text);
            ForcedCommand::Gate {
                program: program.to_owned(),
                policy,
                tilde_expanded,
                name,
            }
        }
        Ok(Cli {
            command: Some(Command::Serve { args }),
            ..
        }) => {
            let args: Vec<String> = args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            if wants_rest(&args) {
                return ForcedCommand::ServeRest {
                    program: program.to_owned(),
                    config: parse_rest_args(&args).map_err(|e| e.to_string()),
                };
            }
            ForcedCommand::Serve {
                program: program.to_owned(),
                config: parse_serve_args(&args),
            }
        }
        Ok(_) => unusable(
            "the forced command runs a borg-gate subcommand that serves no client".to_owned(),
        ),
        Err(error) => {
            let text = error.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            unusable(format!("borg-gate would not start: {first}"))
        }
    }
}

fn classify_borg(program: &str, arguments: &[String]) -> ForcedCommand {
    let unusable = |problem: String| ForcedCommand::Unusable {
        program: program.to_owned(),
        problem,
    };
    if wants_rest(arguments) {
        return classify_borg2(program, arguments);
    }
    // borg's own parser knows no borg-gate extensions: read with the client's option table.
    let config = match parse_serve_command(arguments, Dialect::Client) {
        Err(ParseError::MissingSubcommand) => {
            return unusable("the forced command runs borg without `serve`".to_owned());
        }
        Err(ParseError::WrongSubcommand(subcommand)) => {
            return unusable(format!(
                "the forced command runs `borg {subcommand}`, not `borg serve`"
            ));
        }
        Err(error) => Err(ArgsError::Parse(error)),
        Ok(parsed) => match parsed.iter().find(|option| option.spec.is_none()) {
            Some(unknown) => Err(ArgsError::Unrecognized(unknown.written.clone())),
            None => parse_serve_args(&rewritten(&parsed)),
        },
    };
    ForcedCommand::Serve {
        program: program.to_owned(),
        config,
    }
}

/// borg 2's `borg [options] serve --rest [options]`, read with the built-in engine's parser
/// (which also knows borg-gate's extensions, so it reads more than Python's borg would).
fn classify_borg2(program: &str, arguments: &[String]) -> ForcedCommand {
    let Some(serve_at) = arguments.iter().position(|word| word == "serve") else {
        return ForcedCommand::Unusable {
            program: program.to_owned(),
            problem: "the forced command runs borg with --rest but without `serve`".to_owned(),
        };
    };
    let options: Vec<&String> = arguments[..serve_at]
        .iter()
        .chain(&arguments[serve_at + 1..])
        .collect();
    ForcedCommand::ServeRest {
        program: program.to_owned(),
        config: parse_rest_args(&options).map_err(|e| e.to_string()),
    }
}

/// The parsed options as words again, for the engine's own reading of them.
fn rewritten(parsed: &[ParsedOption]) -> Vec<String> {
    let mut words = Vec::new();
    for option in parsed {
        words.push(option.written.clone());
        if let (Some(value), false) = (&option.value, option.written.contains('=')) {
            words.push(value.clone());
        }
    }
    words
}

/// A key line with its forced command read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassifiedKey<'a> {
    pub key: &'a KeyLine,
    pub command: Option<ForcedCommand>,
}

/// Reads every key's forced command.
pub(crate) fn classify(entries: &[Entry]) -> Vec<ClassifiedKey<'_>> {
    entries
        .iter()
        .filter_map(|entry| match entry {
            Entry::Key(key) => Some(ClassifiedKey {
                key,
                command: key.command().map(classify_command),
            }),
            Entry::Broken { .. } => None,
        })
        .collect()
}

/// Every rule that needs nothing but the file itself.
pub(crate) fn lint(file: &Path, entries: &[Entry]) -> Vec<Finding> {
    let keys = classify(entries);
    let mut findings = Vec::new();
    for entry in entries {
        if let Entry::Broken { line, problem } = entry {
            findings.push(broken_line(Place::line(file, *line), problem));
        }
    }
    for key in &keys {
        let place = Place::line(file, key.key.line);
        if let Some(command) = key.command.as_ref().filter(|c| c.is_borg()) {
            findings.extend(restriction_findings(&place, key.key));
            findings.extend(command_findings(&place, command));
        }
    }
    findings.extend(unforced_keys(file, &keys));
    findings.extend(duplicate_keys(file, &keys));
    findings.sort_by_key(|f| f.place.line);
    findings
}

fn broken_line(place: Place, problem: &LineProblem) -> Finding {
    match problem {
        LineProblem::BadOptions(error) => Finding::error(
            place,
            format!("sshd refuses this key: {error}"),
            "fix the option list (see AUTHORIZED_KEYS FILE FORMAT in sshd(8))",
        ),
        other => Finding::warning(
            place,
            format!("sshd ignores this line: {other}"),
            "fix the line or remove it",
        ),
    }
}

/// `restrict` missing, partly replaced by no-* options, or undone by later options; and
/// forwarding options that have no place on a backup key.
pub(crate) fn restriction_findings(place: &Place, key: &KeyLine) -> Vec<Finding> {
    let mut findings = Vec::new();
    let allowed = key.allowed_permissions();
    let has_restrict = key.options.contains(&KeyOption::Restrict);
    let names = |permissions: &[Permission]| {
        permissions
            .iter()
            .map(|p| p.describe())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !allowed.is_empty() {
        let reenabled: Vec<&str> = allowed.iter().map(|p| p.option()).collect();
        let any_legacy = key
            .options
            .iter()
            .any(|o| matches!(o, KeyOption::Permission { allowed: false, .. }));
        let finding = if has_restrict {
            Finding::error(
                place.clone(),
                format!(
                    "`{}` after `restrict` turns {} back on for a backup key",
                    reenabled.join("`, `"),
                    names(&allowed)
                ),
                format!("remove `{}`", reenabled.join("`, `")),
            )
        } else if any_legacy {
            let missing: Vec<String> = allowed
                .iter()
                .map(|p| format!("no-{}", p.option()))
                .collect();
            Finding::error(
                place.clone(),
                format!("the key still allows {}", names(&allowed)),
                format!(
                    "add `restrict` (OpenSSH 7.2 and later) or the missing {}",
                    missing.join(",")
                ),
            )
        } else {
            Finding::error(
                place.clone(),
                format!("the key lacks `restrict`, so it allows {}", names(&allowed)),
                format!(
                    "add `restrict` after the command option (before OpenSSH 7.2: {LEGACY_RESTRICTIONS})"
                ),
            )
        };
        findings.push(finding);
    }
    for option in &key.options {
        let (name, value) = match option {
            KeyOption::PermitOpen(value) => ("permitopen", value),
            KeyOption::PermitListen(value) => ("permitlisten", value),
            KeyOption::Tunnel(value) => ("tunnel", value),
            _ => continue,
        };
        findings.push(Finding::warning(
            place.clone(),
            format!(
                "{name}={value:?} has no place on a backup key: it names what the key may forward as soon as forwarding is on"
            ),
            format!("remove {name}"),
        ));
    }
    findings
}

/// The policy file a gate line names, as the login shell and borg-gate will find it: a
/// `~` the shell expands is the home directory of the account (or of `~user`), and a
/// relative path starts at the account's home (sshd's working directory).
pub(crate) fn policy_location(
    policy: &Path,
    tilde_expanded: bool,
    home: &Path,
    home_of: &dyn Fn(&str) -> Option<PathBuf>,
) -> PathBuf {
    let text = policy.to_string_lossy();
    if let (true, Some(tail)) = (tilde_expanded, text.strip_prefix('~')) {
        let (user, rest) = tail.split_once('/').unwrap_or((tail, ""));
        let user_home = match user {
            "" => Some(home.to_path_buf()),
            other => home_of(other),
        };
        if let Some(user_home) = user_home {
            return user_home.join(rest);
        }
    }
    home.join(policy)
}

/// sshd's PATH for forced commands, as Debian builds it: one for root, one for the others.
pub(crate) const SSHD_ROOT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
pub(crate) const SSHD_USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/games";

/// A forced command that runs its program by a relative name: an error when sshd's PATH
/// (`search_path`) has no such program (`found` is where it is, if anywhere), else a
/// warning.
pub(crate) fn relative_program_finding(
    place: &Place,
    program: &str,
    search_path: &str,
    found: Option<&Path>,
) -> Option<Finding> {
    if program.starts_with('/') {
        return None;
    }
    let fix = "write the absolute path, e.g. /usr/local/bin/borg-gate";
    Some(match found {
        Some(found) => Finding::warning(
            place.clone(),
            format!(
                "the forced command runs {program:?} by a relative name, found through the login shell's PATH ({})",
                found.display()
            ),
            fix,
        ),
        None => Finding::error(
            place.clone(),
            format!(
                "the forced command runs {program:?} by a relative name, and sshd's PATH for this account ({search_path}) has no such program, so every session fails with `{program}: not found`"
            ),
            fix,
        ),
    })
}

/// Rules for the forced command itself. (A relative program needs the file system: see
/// [`relative_program_finding`].)
pub(crate) fn command_findings(place: &Place, command: &ForcedCommand) -> Vec<Finding> {
    let mut findings = Vec::new();
    match command {
        ForcedCommand::Gate {
            policy,
            tilde_expanded,
            name,
            ..
        } => {
            if let Some(Err(error)) = name.as_deref().map(crate::policy::KeyName::parse) {
                findings.push(Finding::error(
                    place.clone(),
                    format!(
                        "the gate refuses every session of this key: --name {:?} is not a key name: {error}",
                        name.as_deref().unwrap_or_default()
                    ),
                    crate::policy::key_name::KEY_NAME_RULE,
                ));
            }
            if policy.is_relative() && !tilde_expanded {
                findings.push(Finding::warning(
                    place.clone(),
                    format!(
                        "the policy path {} is relative to the account's home directory",
                        policy.display()
                    ),
                    "write the absolute path, e.g. /etc/borg-gate/NAME.toml",
                ));
            }
        }
        ForcedCommand::Serve { program, config } => match config {
                Err(error) => findings.push(Finding::error(
                    place.clone(),
                    format!("`{program} serve` would refuse to start: {error}"),
                    "fix the option (see borg serve --help)",
                )),
                Ok(config)
                    if config.restrict_to_paths.is_empty()
                        && config.restrict_to_repositories.is_empty() =>
                {
                    findings.push(Finding::error(
                        place.clone(),
                        "`borg serve` without --restrict-to-path or --restrict-to-repository: the key can reach every repository of the account",
                        "add --restrict-to-path DIR, or use `borg-gate --policy FILE` with restrict_to_paths",
                    ))
                }
                Ok(_) => {}
        },
        ForcedCommand::ServeRest { program, config } => match config {
            Err(error) => findings.push(Finding::error(
                place.clone(),
                format!("`{program} serve --rest` would refuse to start: {error}"),
                "fix the option (see borg serve --help)",
            )),
            Ok(config)
                if config.restrict_to_paths.is_empty()
                    && config.restrict_to_repositories.is_empty() =>
            {
                findings.push(Finding::error(
                    place.clone(),
                    "`borg serve --rest` without --restrict-to-path or --restrict-to-repository: the key can reach every repository of the account, and Python's borg serves any borgstore URL the client names (sftp://, s3:, rest://)",
                    "add --restrict-to-repository DIR, or use `borg-gate --policy FILE` with client.protocols = [\"borg2\"] and restrict_to_paths",
                ))
            }
            Ok(_) => {}
        },
        ForcedCommand::Unusable { problem, .. } => findings.push(Finding::error(
            place.clone(),
            problem.clone(),
            "write `command=\"/usr/local/bin/borg-gate --policy /etc/borg-gate/NAME.toml\",restrict`",
        )),
        ForcedCommand::Other => {}
    }
    findings
}

/// Keys without a forced command in a file that also holds borg keys.
pub(crate) fn unforced_keys(file: &Path, keys: &[ClassifiedKey<'_>]) -> Vec<Finding> {
    let has_borg_keys = keys
        .iter()
        .any(|k| k.command.as_ref().is_some_and(ForcedCommand::is_borg));
    if !has_borg_keys {
        return Vec::new();
    }
    keys.iter()
        .filter(|k| k.command.is_none())
        .map(|k| {
            Finding::error(
                Place::line(file, k.key.line),
                "this key has no forced command: it gets a shell on the account that holds the repositories, past every borg-gate policy",
                "add command=\"/usr/local/bin/borg-gate --policy FILE\",restrict, or move the key to another account",
            )
        })
        .collect()
}

/// The same key twice: sshd uses the first line whose conditions hold, so an unconditional
/// first line hides every later one.
pub(crate) fn duplicate_keys(file: &Path, keys: &[ClassifiedKey<'_>]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (index, later) in keys.iter().enumerate() {
        let Some(first) = keys[..index]
            .iter()
            .find(|k| k.key.blob == later.key.blob && !k.key.is_conditional())
        else {
            continue;
        };
        if later.key.is_conditional() {
            continue;
        }
        let place = Place::line(file, later.key.line);
        let first_line = first.key.line;
        let both_borg = [first, later].iter().all(|k| {
            k.key.command().is_some() && k.command.as_ref().is_some_and(ForcedCommand::is_borg)
        });
        if both_borg && first.key.command() != later.key.command() {
            findings.push(Finding::error(
                place,
                format!(
                    "this key is also on line {first_line} with another forced command ({}); sshd always uses line {first_line}, so this line's command never runs",
                    describe_command(first.command.as_ref())
                ),
                "give each policy its own key and remove one of the lines",
            ));
        } else {
            findings.push(Finding::warning(
                place,
                format!("this key repeats the key on line {first_line}; sshd uses line {first_line} and never this one"),
                "remove this line",
            ));
        }
    }
    findings
}

fn describe_command(command: Option<&ForcedCommand>) -> String {
    match command {
        Some(ForcedCommand::Gate { policy, .. }) => format!("policy {}", policy.display()),
        Some(ForcedCommand::Serve { program, .. }) => format!("{program} serve"),
        Some(ForcedCommand::ServeRest { program, .. }) => format!("{program} serve --rest"),
        Some(ForcedCommand::Unusable { program, .. }) => program.clone(),
        Some(ForcedCommand::Other) | None => "another program".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::borg2::permissions::Mode;

    /// A real ed25519 public key (generated with ssh-keygen for these tests).
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDvoPSbZwlcGhmUgC1ycT88UyNeOXQD8AU7m+J59iR4I";
    const OTHER_ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINUNIH1taSZ74L2ixhuu3E1xrMnRlkQnBUi7WCl7x7hP";

    fn key(line: &str) -> KeyLine {
        match parse_line(1, line) {
            Some(Entry::Key(key)) => key,
            other => panic!("not a key line: {other:?}"),
        }
    }

    fn problem(line: &str) -> LineProblem {
        match parse_line(1, line) {
            Some(Entry::Broken { problem, .. }) => problem,
            other => panic!("not broken: {other:?}"),
        }
    }

    #[test]
    fn blank_lines_and_comments_are_skipped() {
        for line in ["", "   ", "\t", "# comment", "  # indented comment", "\r"] {
            assert_eq!(parse_line(1, line), None, "{line:?}");
        }
    }

    #[test]
    fn a_bare_key_has_no_options_and_keeps_its_comment() {
        let key = key(&format!("{ED25519} alice@laptop  with spaces"));
        assert!(key.options.is_empty());
        assert_eq!(key.key_type, "ssh-ed25519");
        assert_eq!(key.comment, "alice@laptop  with spaces");
        assert_eq!(blob_type(&key.blob), Some(&b"ssh-ed25519"[..]));
    }

    #[test]
    fn options_end_at_the_first_unquoted_space() {
        let key = key(&format!(
            "command=\"borg-gate --policy /etc/p.toml\",restrict {ED25519} c"
        ));
        assert_eq!(
            key.options,
            [
                KeyOption::Command("borg-gate --policy /etc/p.toml".into()),
                KeyOption::Restrict
            ]
        );
    }

    #[test]
    fn backslash_quote_is_a_quote_and_other_backslashes_stay() {
        let key = key(&format!(r#"command="echo \"a b\" c\\d \n" {ED25519}"#));
        assert_eq!(key.command(), Some(r#"echo "a b" c\\d \n"#));
    }

    #[test]
    fn a_backslash_before_the_closing_quote_escapes_it_as_in_sshd() {
        assert_eq!(
            problem(&format!(r#"command="echo \" {ED25519}"#)),
            LineProblem::UnterminatedQuote
        );
    }

    #[test]
    fn tabs_separate_options_from_the_key() {
        let key = key(&format!("restrict\t{}", ED25519.replace(' ', "\t")));
        assert_eq!(key.options, [KeyOption::Restrict]);
    }

    #[test]
    fn option_names_are_case_insensitive() {
        let key = key(&format!(
            "RESTRICT,Command=\"x\",NO-PTY,X11-Forwarding {ED25519}"
        ));
        assert_eq!(
            key.options,
            [
                KeyOption::Restrict,
                KeyOption::Command("x".into()),
                KeyOption::Permission {
                    permission: Permission::Pty,
                    allowed: false
                },
                KeyOption::Permission {
                    permission: Permission::X11Forwarding,
                    allowed: true
                },
            ]
        );
    }

    #[test]
    fn every_option_sshd_knows_is_parsed() {
        let options = parse_options(
            "restrict,cert-authority,no-touch-required,touch-required,verify-required,\
             command=\"c\",environment=\"A=b\",from=\"10.0.0.0/8\",permitopen=\"h:1\",\
             permitlisten=\"2\",principals=\"p\",expiry-time=\"20300101\",tunnel=\"0\",\
             port-forwarding,no-port-forwarding,agent-forwarding,no-agent-forwarding,\
             x11-forwarding,no-x11-forwarding,pty,no-pty,user-rc,no-user-rc",
        )
        .unwrap();
        assert_eq!(options.len(), 23);
        assert_eq!(options[6], KeyOption::Environment("A=b".into()));
        assert_eq!(options[12], KeyOption::Tunnel("0".into()));
    }

    #[test]
    fn sshd_refuses_bad_option_lists() {
        let cases: &[(&str, OptionError)] = &[
            ("restrickt", OptionError::Unknown("restrickt".into())),
            ("no-restrict", OptionError::Unknown("no-restrict".into())),
            ("restrict,,pty", OptionError::Unknown("".into())),
            (
                "command=x",
                OptionError::MissingStartQuote("command".into()),
            ),
            ("command", OptionError::MissingStartQuote("command".into())),
            (
                "restrict=\"yes\"",
                OptionError::UnexpectedValue("restrict".into()),
            ),
            ("pty=\"1\"", OptionError::UnexpectedValue("pty".into())),
            (
                "command=\"x\"y",
                OptionError::JunkAfterValue("command".into()),
            ),
            ("restrict,", OptionError::TrailingComma),
            (
                "command=\"a\",command=\"b\"",
                OptionError::Repeated("command".into()),
            ),
            (
                "principals=\"a\",principals=\"b\"",
                OptionError::Repeated("principals".into()),
            ),
            (
                "tunnel=\"1\",tunnel=\"2\"",
                OptionError::Repeated("tunnel".into()),
            ),
            (
                "environment=\"NOVALUE\"",
                OptionError::BadEnvironment("NOVALUE".into()),
            ),
            (
                "environment=\"1X=a\"",
                OptionError::BadEnvironment("1X=a".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_options(text).as_ref(), Err(expected), "{text}");
        }
        assert_eq!(
            parse_options("command=\"x").unwrap_err(),
            OptionError::MissingEndQuote("command".into())
        );
    }

    #[test]
    fn a_line_with_bad_options_is_refused_and_one_without_a_key_is_skipped() {
        assert_eq!(
            problem(&format!("restrickt {ED25519}")),
            LineProblem::BadOptions(OptionError::Unknown("restrickt".into()))
        );
        assert_eq!(
            problem("command=\"unterminated ssh-ed25519 AAAA"),
            LineProblem::UnterminatedQuote
        );
        assert_eq!(problem("restrict"), LineProblem::NoKey);
        assert_eq!(problem("restrict ssh-ed25519"), LineProblem::NoKey);
        assert_eq!(problem("restrict ssh-ed25519 !!!!"), LineProblem::NoKey);
        assert_eq!(problem("ssh-foo AAAA"), LineProblem::NoKey);
        // The blob names another key type than the line.
        let mismatched = ED25519.replace("ssh-ed25519 ", "ssh-rsa ");
        assert_eq!(problem(&mismatched), LineProblem::NoKey);
    }

    #[test]
    fn end_of_options_respects_quotes_and_escaped_quotes() {
        assert_eq!(end_of_options("a,b c"), Some(3));
        assert_eq!(end_of_options("command=\"a b\" k"), Some(13));
        assert_eq!(end_of_options(r#"command="a \" b" k"#), Some(16));
        assert_eq!(end_of_options("command=\"a b"), None);
        assert_eq!(end_of_options("abc"), Some(3));
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGVsbA=="), Some(b"hell".to_vec()));
        assert_eq!(decode_base64("aGVs"), Some(b"hel".to_vec()));
        assert_eq!(decode_base64(""), None);
        assert_eq!(decode_base64("a"), None);
        assert_eq!(decode_base64("aGVsbG8=="), None);
        assert_eq!(decode_base64("aGV*"), None);
        assert_eq!(decode_base64("a==="), None);
    }

    #[test]
    fn permissions_apply_in_order() {
        let allowed = |options: &str| key(&format!("{options} {ED25519}")).allowed_permissions();
        assert_eq!(allowed("restrict"), []);
        assert_eq!(allowed("restrict,pty"), [Permission::Pty]);
        assert_eq!(allowed("pty,restrict"), []);
        assert_eq!(
            allowed("restrict,port-forwarding,user-rc"),
            [Permission::PortForwarding, Permission::UserRc]
        );
        assert_eq!(allowed(LEGACY_RESTRICTIONS), []);
        assert_eq!(
            allowed("no-port-forwarding,no-pty"),
            [
                Permission::AgentForwarding,
                Permission::X11Forwarding,
                Permission::UserRc
            ]
        );
        assert_eq!(key(ED25519).allowed_permissions(), Permission::ALL);
    }

    fn gate(policy: &str) -> ForcedCommand {
        ForcedCommand::Gate {
            program: "/usr/local/bin/borg-gate".into(),
            policy: policy.into(),
            tilde_expanded: false,
            name: None,
        }
    }

    #[test]
    fn borg_gate_commands_are_read_with_borg_gates_own_parser() {
        assert_eq!(
            classify_command("/usr/local/bin/borg-gate --policy /etc/p.toml"),
            gate("/etc/p.toml")
        );
        assert_eq!(
            classify_command("/usr/local/bin/borg-gate --policy=/etc/p.toml"),
            gate("/etc/p.toml")
        );
        assert_eq!(
            classify_command("exec /usr/local/bin/borg-gate --policy '/etc/a b.toml'"),
            gate("/etc/a b.toml")
        );
        assert!(matches!(
            classify_command("borg-gate --polcy /etc/p.toml"),
            ForcedCommand::Unusable { problem, .. } if problem.starts_with("borg-gate would not start: unexpected argument")
        ));
        assert!(matches!(
            classify_command("borg-gate check-policy /etc/p.toml"),
            ForcedCommand::Unusable { problem, .. } if problem.contains("serves no client")
        ));
        assert!(matches!(
            classify_command("borg-gate"),
            ForcedCommand::Unusable { .. }
        ));
    }

    #[test]
    fn serve_commands_are_read_with_the_engine_parser() {
        let ForcedCommand::Serve { program, config } =
            classify_command("BORG_X=1 borg serve --restrict-to-path /srv/a --append-only")
        else {
            panic!("not serve")
        };
        assert_eq!(program, "borg");
        let config = config.unwrap();
        assert_eq!(config.restrict_to_paths, [PathBuf::from("/srv/a")]);
        assert!(config.append_only);

        let ForcedCommand::Serve { config, .. } =
            classify_command("/usr/bin/borg --umask 077 serve --restrict-to-repository=/r")
        else {
            panic!("not serve")
        };
        assert_eq!(
            config.unwrap().restrict_to_repositories,
            [PathBuf::from("/r")]
        );

        let ForcedCommand::Serve { config, .. } =
            classify_command("borg-gate serve --restrict-to-path /srv --permissions read-only")
        else {
            panic!("not serve")
        };
        assert!(config.is_ok());
    }

    #[test]
    fn borg2_serve_commands_are_read_with_the_borg2_engine_parser() {
        for command in [
            "borg-gate serve --rest --restrict-to-repository /srv/r --permissions no-delete",
            "/opt/borg2/bin/borg serve --rest --restrict-to-repository=/srv/r --permissions no-delete",
            "BORG_X=1 borg --umask 077 serve --rest --restrict-to-repository /srv/r --permissions no-delete",
        ] {
            let ForcedCommand::ServeRest { config, .. } = classify_command(command) else {
                panic!("{command}: not serve --rest")
            };
            let config = config.unwrap();
            assert_eq!(config.restrict_to_repositories, [PathBuf::from("/srv/r")]);
            assert_eq!(config.permissions, Some(Mode::NoDelete));
        }
        match classify_command("borg-gate serve --rest --permissions sometimes") {
            ForcedCommand::ServeRest { config: Err(e), .. } => {
                assert!(e.contains("--permissions"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let findings = command_findings(
            &Place::line(Path::new("/ak"), 1),
            &classify_command("/opt/borg2/bin/borg serve --rest"),
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0]
                .problem
                .starts_with("`borg serve --rest` without --restrict-to-path"),
            "{findings:?}"
        );
    }

    #[test]
    fn borg_serve_errors_are_the_ones_borg_would_report() {
        let error = |command: &str| match classify_command(command) {
            ForcedCommand::Serve { config: Err(e), .. } => e.to_string(),
            other => panic!("{command}: {other:?}"),
        };
        assert_eq!(
            error("borg serve --storage-quota lots"),
            "invalid value \"lots\" for --storage-quota: expected a size such as 50G"
        );
        assert_eq!(
            error("borg serve --storage-quota 1M"),
            "invalid value \"1M\" for --storage-quota: expected at least 10M (or 0)"
        );
        // borg itself has no --permissions; only borg-gate serve does.
        assert_eq!(
            error("borg serve --restrict-to-path /x --permissions=read-only"),
            "unrecognized argument --permissions=read-only"
        );
        assert_eq!(
            error("borg serve /srv"),
            "unexpected argument \"/srv\" in the serve command"
        );
    }

    #[test]
    fn other_commands_and_shell_syntax_are_told_apart() {
        assert_eq!(
            classify_command("rsync --server -e.LsfxC . /x"),
            ForcedCommand::Other
        );
        assert_eq!(classify_command("echo hi; ls"), ForcedCommand::Other);
        assert_eq!(classify_command("'unbalanced"), ForcedCommand::Other);
        for command in [
            "cd /srv && borg serve --restrict-to-path /srv",
            "borg serve --restrict-to-path $(cat /x)",
            "'borg serve",
        ] {
            assert!(
                matches!(classify_command(command), ForcedCommand::Unusable { .. }),
                "{command}"
            );
        }
        assert!(matches!(
            classify_command("borg list /srv"),
            ForcedCommand::Unusable { problem, .. } if problem.contains("`borg list`")
        ));
        assert!(matches!(
            classify_command("borg --info"),
            ForcedCommand::Unusable { .. }
        ));
    }

    fn lint_text(text: &str) -> Vec<String> {
        lint(Path::new("/ak"), &parse_file(text))
            .iter()
            .map(|f| f.to_string())
            .collect()
    }

    #[test]
    fn a_restricted_gate_key_is_clean() {
        let text = format!(
            "# backup keys\ncommand=\"/usr/local/bin/borg-gate --policy /etc/borg-gate/a.toml\",restrict {ED25519} a\n"
        );
        assert_eq!(lint_text(&text), Vec::<String>::new());
        let legacy = format!(
            "command=\"/usr/local/bin/borg-gate --policy /etc/borg-gate/a.toml\",{LEGACY_RESTRICTIONS} {ED25519}\n"
        );
        assert_eq!(lint_text(&legacy), Vec::<String>::new());
    }

    #[test]
    fn restriction_problems_name_what_is_allowed_and_the_fix() {
        let gate_command = "command=\"/usr/local/bin/borg-gate --policy /etc/p.toml\"";
        assert_eq!(
            lint_text(&format!("{gate_command} {ED25519}")),
            [format!(
                "error: /ak:1: the key lacks `restrict`, so it allows port forwarding, agent forwarding, X11 forwarding, a terminal (pty), running ~/.ssh/rc; add `restrict` after the command option (before OpenSSH 7.2: {LEGACY_RESTRICTIONS})"
            )]
        );
        assert_eq!(
            lint_text(&format!(
                "{gate_command},restrict,pty,port-forwarding {ED25519}"
            )),
            [
                "error: /ak:1: `port-forwarding`, `pty` after `restrict` turns port forwarding, a terminal (pty) back on for a backup key; remove `port-forwarding`, `pty`"
            ]
        );
        assert_eq!(
            lint_text(&format!(
                "{gate_command},no-pty,no-port-forwarding {ED25519}"
            )),
            [
                "error: /ak:1: the key still allows agent forwarding, X11 forwarding, running ~/.ssh/rc; add `restrict` (OpenSSH 7.2 and later) or the missing no-agent-forwarding,no-X11-forwarding,no-user-rc"
            ]
        );
        assert_eq!(
            lint_text(&format!(
                "{gate_command},restrict,permitopen=\"db:5432\" {ED25519}"
            )),
            [
                "warning: /ak:1: permitopen=\"db:5432\" has no place on a backup key: it names what the key may forward as soon as forwarding is on; remove permitopen"
            ]
        );
    }

    #[test]
    fn keys_for_other_programs_are_not_judged() {
        let text = format!("command=\"rsync --server\" {ED25519}\n{OTHER_ED25519}\n");
        assert_eq!(lint_text(&text), Vec::<String>::new());
    }

    #[test]
    fn a_key_without_a_forced_command_next_to_gate_keys_is_an_error() {
        let text = format!(
            "command=\"/usr/local/bin/borg-gate --policy /etc/p.toml\",restrict {ED25519}\n{OTHER_ED25519} admin\n"
        );
        let findings = lint_text(&text);
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].starts_with("error: /ak:2: this key has no forced command"),
            "{findings:?}"
        );
    }

    #[test]
    fn borg_serve_without_restrictions_is_an_error() {
        let text = format!("command=\"/usr/bin/borg serve --append-only\",restrict {ED25519}\n");
        assert_eq!(
            lint_text(&text),
            [
                "error: /ak:1: `borg serve` without --restrict-to-path or --restrict-to-repository: the key can reach every repository of the account; add --restrict-to-path DIR, or use `borg-gate --policy FILE` with restrict_to_paths"
            ]
        );
        let restricted = format!(
            "command=\"/usr/bin/borg serve --restrict-to-path /srv/a\",restrict {ED25519}\n"
        );
        assert_eq!(lint_text(&restricted), Vec::<String>::new());
    }

    #[test]
    fn relative_policies_are_warnings_unless_the_shell_expands_a_tilde() {
        let text = format!("command=\"borg-gate --policy p.toml\",restrict {ED25519}\n");
        let findings = lint_text(&text);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("the policy path p.toml is relative"));
        let tilde = format!("command=\"borg-gate --policy ~/p.toml\",restrict {ED25519}\n");
        assert_eq!(lint_text(&tilde), Vec::<String>::new());
    }

    #[test]
    fn a_relative_program_missing_from_sshds_path_is_an_error() {
        let place = Place::line(Path::new("/ak"), 1);
        assert_eq!(
            relative_program_finding(&place, "borg-gate", SSHD_USER_PATH, None)
                .unwrap()
                .to_string(),
            "error: /ak:1: the forced command runs \"borg-gate\" by a relative name, and sshd's PATH for this account (/usr/local/bin:/usr/bin:/bin:/usr/games) has no such program, so every session fails with `borg-gate: not found`; write the absolute path, e.g. /usr/local/bin/borg-gate"
        );
        let found = relative_program_finding(
            &place,
            "borg-gate",
            SSHD_USER_PATH,
            Some(Path::new("/usr/local/bin/borg-gate")),
        )
        .unwrap();
        assert_eq!(found.severity, crate::admin::Severity::Warning);
        assert!(found.problem.ends_with("PATH (/usr/local/bin/borg-gate)"));
        assert_eq!(
            relative_program_finding(&place, "/usr/bin/borg-gate", SSHD_USER_PATH, None),
            None
        );
    }

    #[test]
    fn the_shell_expands_a_leading_tilde_only_in_an_unquoted_word() {
        let read = |command: &str| match classify_command(command) {
            ForcedCommand::Gate {
                policy,
                tilde_expanded,
                ..
            } => (policy.display().to_string(), tilde_expanded),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            read("borg-gate --policy ~/x.toml"),
            ("~/x.toml".into(), true)
        );
        assert_eq!(
            read("borg-gate --policy ~borg/x.toml"),
            ("~borg/x.toml".into(), true)
        );
        assert_eq!(
            read("borg-gate --policy=~/x.toml"),
            ("~/x.toml".into(), false)
        );
        assert_eq!(
            read("borg-gate --policy '~/x.toml'"),
            ("~/x.toml".into(), false)
        );
        let homes = |user: &str| (user == "alice").then(|| PathBuf::from("/home/alice"));
        let home = Path::new("/var/lib/borg");
        assert_eq!(
            policy_location(Path::new("~/x.toml"), true, home, &homes),
            PathBuf::from("/var/lib/borg/x.toml")
        );
        assert_eq!(
            policy_location(Path::new("~alice/x.toml"), true, home, &homes),
            PathBuf::from("/home/alice/x.toml")
        );
        assert_eq!(
            policy_location(Path::new("~/x.toml"), false, home, &homes),
            PathBuf::from("/var/lib/borg/~/x.toml")
        );
        assert_eq!(
            policy_location(Path::new("/etc/x.toml"), false, home, &homes),
            PathBuf::from("/etc/x.toml")
        );
    }

    #[test]
    fn a_bad_key_name_in_the_forced_command_is_an_error() {
        let text = format!(
            "command=\"/usr/local/bin/borg-gate --policy /etc/p.toml --name a/b\",restrict {ED25519}\n"
        );
        assert_eq!(
            lint_text(&text),
            [
                "error: /ak:1: the gate refuses every session of this key: --name \"a/b\" is not a key name: it contains '/'; use 1-64 letters, digits, '-', '_', '.' or '@', not starting with '.' or '-' and without \"..\""
            ]
        );
        match classify_command("/usr/local/bin/borg-gate --policy /etc/p.toml --name alice") {
            ForcedCommand::Gate { name, .. } => assert_eq!(name.as_deref(), Some("alice")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn duplicate_keys_are_reported_and_conflicting_policies_are_errors() {
        let line = |policy: &str, key: &str| {
            format!("command=\"/usr/local/bin/borg-gate --policy {policy}\",restrict {key}\n")
        };
        let same = format!(
            "{}{}",
            line("/etc/a.toml", ED25519),
            line("/etc/a.toml", ED25519)
        );
        assert_eq!(
            lint_text(&same),
            [
                "warning: /ak:2: this key repeats the key on line 1; sshd uses line 1 and never this one; remove this line"
            ]
        );
        let conflicting = format!(
            "{}{}{}",
            line("/etc/a.toml", ED25519),
            line("/etc/b.toml", OTHER_ED25519),
            line("/etc/b.toml", ED25519)
        );
        assert_eq!(
            lint_text(&conflicting),
            [
                "error: /ak:3: this key is also on line 1 with another forced command (policy /etc/a.toml); sshd always uses line 1, so this line's command never runs; give each policy its own key and remove one of the lines"
            ]
        );
    }

    #[test]
    fn duplicates_guarded_by_from_are_legitimate() {
        let text = format!(
            "from=\"192.0.2.1\",command=\"/usr/local/bin/borg-gate --policy /etc/a.toml\",restrict {ED25519}\n\
             command=\"/usr/local/bin/borg-gate --policy /etc/b.toml\",restrict {ED25519}\n"
        );
        assert_eq!(lint_text(&text), Vec::<String>::new());
    }

    #[test]
    fn broken_lines_are_reported_with_their_severity() {
        let text = format!(
            "restrickt,command=\"/usr/local/bin/borg-gate --policy /p\" {ED25519}\nnot a key\n"
        );
        assert_eq!(
            lint_text(&text),
            [
                "error: /ak:1: sshd refuses this key: unknown key option \"restrickt\"; fix the option list (see AUTHORIZED_KEYS FILE FORMAT in sshd(8))",
                "warning: /ak:2: sshd ignores this line: there is no readable public key on the line; fix the line or remove it",
            ]
        );
    }

    #[test]
    fn unusable_borg_commands_are_errors() {
        let text = format!("command=\"cd /srv && borg serve\",restrict {ED25519}\n");
        assert_eq!(
            lint_text(&text),
            [
                "error: /ak:1: the forced command uses shell syntax, which doctor cannot check; write `command=\"/usr/local/bin/borg-gate --policy /etc/borg-gate/NAME.toml\",restrict`"
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_and_linting_never_panic(text in "\\PC{0,120}") {
            let entries = parse_file(&text);
            let _ = lint(Path::new("/ak"), &entries);
            let _ = parse_options(&text);
            let _ = classify_command(&text);
            let _ = decode_base64(&text);
        }

        #[test]
        fn a_quoted_command_round_trips(command in "[ -~]{0,60}[ -\\[\\]-~]") {
            // authorized_keys escapes only the double quote, so a command cannot end in a
            // backslash: `\\"` would read as an escaped quote (sshd has the same limit).
            let line = format!(
                "command=\"{}\",restrict {ED25519}",
                command.replace('"', "\\\"")
            );
            let parsed = key(&line);
            proptest::prop_assert_eq!(parsed.command(), Some(command.as_str()));
            proptest::prop_assert!(parsed.options.contains(&KeyOption::Restrict));
        }
    }
}
