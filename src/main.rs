//! The `borg-gate` binary: parse the command line, run, map errors to exit codes.

use std::process::ExitCode;

use borg_gate::admin::keys::{self, KeysError};
use borg_gate::cli::{Cli, Command, KeysCommand, TemplateName};
use borg_gate::pipeline::{self, GateExit};
use clap::Parser;

/// Exit status of a refused command (and of `explain` for one).
const EXIT_REFUSED: u8 = 1;
/// Exit status when borg-gate itself cannot work: bad policy, audit failure, exec failure.
const EXIT_ERROR: u8 = 2;
/// Exit status of a refused repository path, as borg's `PathNotAllowed` (borg 2 clients
/// show it: "stdio server exited with code 83").
const EXIT_PATH_NOT_ALLOWED: u8 = 83;

/// Writes to stdout like `print!`, without its panic when the reader went away.
macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*)) };
}

/// Writes a line to stdout like `println!`, without its panic when the reader went away.
macro_rules! outln {
    ($($arg:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

fn main() -> ExitCode {
    borg_gate::sys::ensure_standard_descriptors();
    let cli = Cli::parse();
    match (cli.policy, cli.command) {
        (Some(policy), None) => gate(&policy, cli.name.as_deref()),
        (None, Some(Command::Serve { args })) => {
            ExitCode::from(borg_gate::engine::serve_main(&args))
        }
        (
            None,
            Some(Command::Explain {
                policy,
                name,
                user,
                command,
                json,
            }),
        ) => explain(
            pipeline::ExplainRequest {
                policy: &policy,
                key_name: name.as_deref(),
                user: user.as_deref(),
                command: &command,
            },
            json,
        ),
        (None, Some(Command::CheckPolicy { files, name, user })) => {
            check_policy(&files, name.as_deref(), user.as_deref())
        }
        (
            None,
            Some(Command::Doctor {
                authorized_keys,
                sshd_config,
                user,
                json,
            }),
        ) => doctor(authorized_keys, sshd_config, user, json),
        (
            None,
            Some(Command::Audit {
                file,
                since,
                until,
                top,
                recent,
                json,
            }),
        ) => audit(&file, since.as_deref(), until.as_deref(), top, recent, json),
        (None, Some(Command::Keys { command })) => keys_command(command),
        (None, Some(Command::Completions { shell })) => {
            use clap::CommandFactory;
            // clap_complete panics when its writer fails: it writes into memory here.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "borg-gate", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            ExitCode::SUCCESS
        }
        (
            None,
            Some(Command::Status {
                policies,
                max_age,
                json,
                textfile,
                quiet,
                paths,
            }),
        ) => status(borg_gate::admin::status::StatusOptions {
            paths,
            policies,
            max_age,
            output: match (json, quiet) {
                (_, true) => borg_gate::admin::status::Output::Quiet,
                (true, false) => borg_gate::admin::status::Output::Json,
                (false, false) => borg_gate::admin::status::Output::Text,
            },
            textfile,
        }),
        _ => {
            eprintln!(
                "borg-gate: give --policy FILE (what authorized_keys runs) or a subcommand; see borg-gate --help"
            );
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Writes formatted text to stdout. A reader that went away (`borg-gate audit | head`) ends
/// the command at once and silently; its output is incomplete, so the status is non-zero, as
/// `status` has it. Any other write error is one line.
fn write_stdout(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("borg-gate: cannot write the output: {error}");
        }
        std::process::exit(i32::from(EXIT_ERROR));
    }
}

fn gate(policy: &std::path::Path, key_name: Option<&str>) -> ExitCode {
    match pipeline::run_gate(policy, key_name) {
        Ok(GateExit::Probe) => ExitCode::SUCCESS,
        Ok(GateExit::Refused(refusal)) => {
            let status = if refusal.is_path_not_allowed() {
                EXIT_PATH_NOT_ALLOWED
            } else {
                EXIT_REFUSED
            };
            tell_client(&format!("borg-gate: refused: {refusal}"), status)
        }
        Err(error) => tell_client(&format!("borg-gate: {error}"), EXIT_ERROR),
    }
}

/// Writes the one-line reason, then lingers a second before closing stdout: a borg client
/// that sees stdout close in the same instant as the stderr line drops the line and only
/// says "Connection closed by remote host".
fn tell_client(line: &str, status: u8) -> ExitCode {
    eprintln!("{line}");
    borg_gate::engine::linger_for_client();
    ExitCode::from(status)
}

fn explain(request: pipeline::ExplainRequest<'_>, json: bool) -> ExitCode {
    match pipeline::explain(request) {
        Ok(explanation) => {
            if json {
                out!("{}", explanation.record.to_line());
            } else {
                out!("{explanation}");
            }
            match explanation.judgement.decision {
                borg_gate::gate::Decision::Reject(_) => ExitCode::from(EXIT_REFUSED),
                _ => ExitCode::SUCCESS,
            }
        }
        Err(error) => {
            eprintln!("borg-gate: {error}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn check_policy(files: &[std::path::PathBuf], name: Option<&str>, user: Option<&str>) -> ExitCode {
    use borg_gate::admin::as_account::Account;
    use borg_gate::check_policy::{CheckOptions, check_file};
    use borg_gate::policy::KeyName;
    use borg_gate::policy::key_name::describe_bad_name;
    let key_name = match name
        .map(|text| KeyName::parse(text).map_err(|e| (text, e)))
        .transpose()
    {
        Ok(key_name) => key_name,
        Err((text, error)) => {
            eprintln!("borg-gate: {}", describe_bad_name(text, &error));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let account = match user
        .map(|name| Account::named(name).ok_or(name))
        .transpose()
    {
        Ok(account) => account,
        Err(name) => {
            eprintln!("borg-gate: there is no account named {name:?}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let options = CheckOptions {
        key_name: key_name.as_ref(),
        account: account.as_ref(),
    };
    let mut failed = false;
    for file in files {
        let report = check_file(file, options);
        for error in &report.errors {
            eprintln!("borg-gate: {error}");
        }
        for warning in &report.warnings {
            eprintln!("borg-gate: warning: {warning}");
        }
        match &report.policy {
            Some(policy) if report.errors.is_empty() => {
                let mut notes = vec![format!("policy {:?}", policy.name)];
                if policy.client.protocols != Default::default() {
                    notes.push(format!("protocols {}", policy.client.protocols.label()));
                }
                match (&key_name, policy.uses_key_name) {
                    (Some(key), _) => notes.push(format!("key name {:?}", key.as_str())),
                    (None, true) => {
                        notes.push("uses {name}: every forced command needs --name".to_owned())
                    }
                    (None, false) => {}
                }
                if let Some(account) = &account {
                    notes.push(format!("checked as {}", account.name));
                }
                outln!("{}: ok ({})", file.display(), notes.join(", "));
            }
            _ => failed = true,
        }
    }
    if !failed && account.is_none() && nix::unistd::geteuid().is_root() {
        eprintln!(
            "borg-gate: note: checked as root; sessions run as the account the keys log in to: add --user ACCOUNT to check as that account"
        );
    }
    if failed {
        ExitCode::from(EXIT_REFUSED)
    } else {
        ExitCode::SUCCESS
    }
}

fn doctor(
    authorized_keys: Option<std::path::PathBuf>,
    sshd_config: std::path::PathBuf,
    user: Option<String>,
    json: bool,
) -> ExitCode {
    use borg_gate::admin::{self, Severity, doctor};
    let authorized_keys = match authorized_keys {
        Some(path) => path,
        None => match doctor::default_authorized_keys(user.as_deref()) {
            Ok(path) => path,
            Err(error) => {
                eprintln!("borg-gate: {error}");
                return ExitCode::from(EXIT_ERROR);
            }
        },
    };
    let options = doctor::DoctorOptions {
        authorized_keys,
        sshd_config,
        user,
    };
    let findings = match doctor::run(&options) {
        Ok(findings) => findings,
        Err(error) => {
            eprintln!("borg-gate: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let count = |severity| findings.iter().filter(|f| f.severity == severity).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    if json {
        let report = serde_json::json!({
            "findings": findings,
            "errors": errors,
            "warnings": warnings,
        });
        outln!("{report}");
    } else {
        for finding in &findings {
            outln!("{finding}");
        }
        eprintln!(
            "borg-gate doctor: {errors} error(s), {warnings} warning(s) in {} and {}",
            options.authorized_keys.display(),
            options.sshd_config.display()
        );
    }
    match admin::worst(&findings) {
        None => ExitCode::SUCCESS,
        Some(Severity::Warning) => ExitCode::from(1),
        Some(Severity::Error) => ExitCode::from(EXIT_ERROR),
    }
}

fn audit(
    file: &std::path::Path,
    since: Option<&str>,
    until: Option<&str>,
    top: usize,
    recent: usize,
    json: bool,
) -> ExitCode {
    use borg_gate::admin::audit_report::{self, ReportOptions};
    let now = std::time::SystemTime::now();
    let bound = |text: Option<&str>| {
        text.map(|t| audit_report::parse_time_bound(t, now))
            .transpose()
    };
    let options = match (bound(since), bound(until)) {
        (Ok(since), Ok(until)) => ReportOptions {
            since,
            until,
            top,
            recent,
        },
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("borg-gate: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match audit_report::summarise_file(file, options) {
        Ok(summary) => {
            if json {
                match serde_json::to_string(&summary) {
                    Ok(text) => outln!("{text}"),
                    Err(error) => {
                        eprintln!("borg-gate: {error}");
                        return ExitCode::from(EXIT_ERROR);
                    }
                }
            } else {
                out!("{summary}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("borg-gate: {error}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn keys_command(command: KeysCommand) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let result = match command {
        KeysCommand::Add {
            name,
            key,
            path,
            template,
            quota,
            authorized_keys,
            policy_dir,
            user,
            audit_log,
            create_user,
            dry_run,
        } => {
            let template = match template {
                TemplateName::AppendOnly => keys::template::Template::AppendOnly,
                TemplateName::ReadOnly => keys::template::Template::ReadOnly,
                TemplateName::Full => keys::template::Template::Full,
                TemplateName::Tenant => keys::template::Template::Tenant,
            };
            let options = keys::AddOptions {
                name,
                key,
                path,
                template,
                quota,
                authorized_keys,
                policy_dir,
                user,
                audit_log,
                create_user,
                dry_run,
            };
            keys::add(&options, &mut std::io::stdin().lock(), &mut stdout)
        }
        KeysCommand::List {
            authorized_keys,
            user,
            json,
        } => keys::list(
            &keys::ListOptions {
                authorized_keys,
                user,
                json,
            },
            &mut stdout,
        ),
        KeysCommand::Remove {
            name,
            key,
            authorized_keys,
            user,
            purge,
            dry_run,
        } => {
            let selector = match (name, key) {
                (_, Some(fingerprint)) => keys::plan::Selector::Fingerprint(fingerprint),
                (Some(name), None) => keys::plan::Selector::Name(name),
                (None, None) => {
                    eprintln!("borg-gate: name the key to remove, or give --key FINGERPRINT");
                    return ExitCode::from(EXIT_ERROR);
                }
            };
            keys::remove(
                &keys::RemoveOptions {
                    selector,
                    authorized_keys,
                    user,
                    purge,
                    dry_run,
                },
                &mut stdout,
            )
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("borg-gate: {error}");
            ExitCode::from(match error {
                KeysError::Refused(_) => EXIT_REFUSED,
                KeysError::Failed(_) => EXIT_ERROR,
            })
        }
    }
}

fn status(options: borg_gate::admin::status::StatusOptions) -> ExitCode {
    use borg_gate::admin::status::{self, StatusError};
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    let mut warn = |message: &str| eprintln!("borg-gate: status: {message}");
    match status::run(&options, &mut out, &mut warn) {
        Ok(summary) => {
            let failures = options
                .max_age
                .map(|max_age| summary.max_age_failures(max_age))
                .unwrap_or_default();
            for failure in &failures {
                eprintln!("borg-gate: status: {failure}");
            }
            if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_REFUSED)
            }
        }
        // `borg-gate status | head`: the reader has all it wanted.
        Err(StatusError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::from(EXIT_ERROR)
        }
        Err(error) => {
            drop(out);
            eprintln!("borg-gate: {error}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
