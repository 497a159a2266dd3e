//! Command-line definitions: gate mode, `serve`, `explain`, `check-policy`, `doctor`, `audit`,
//! `keys`, `completions`, `status`.
//!
//! This layer only describes what the administrator typed; `main` dispatches it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// A forced-command gatekeeper for BorgBackup servers, and a drop-in `borg serve`.
///
/// In ~/.ssh/authorized_keys:
///
///   command="/usr/local/bin/borg-gate --policy /etc/borg-gate/alice.toml",restrict ssh-ed25519 AAAA... alice
#[derive(Debug, Parser)]
#[command(
    name = "borg-gate",
    version,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Gate mode: judge SSH_ORIGINAL_COMMAND against this policy, audit, and exec the engine.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Gate mode: this key's name, for `{name}` in the policy and the audit record (one
    /// policy for many keys). Written in authorized_keys, never chosen by the client.
    #[arg(long, value_name = "NAME", requires = "policy")]
    pub name: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The built-in engines: a drop-in replacement for `borg serve` (borg 1.x protocol) and,
    /// with --rest, for borg 2's `borg serve --rest`.
    ///
    /// Takes the options of borg 1.4's `borg serve` (--restrict-to-path, --restrict-to-repository,
    /// --append-only, --storage-quota, --umask, log levels, --debug-topic, --lock-wait and the
    /// other common options), plus --permissions=all|read-only, --idle-timeout=DURATION,
    /// --request-timeout=DURATION, --session-limit=DURATION, --max-lock-wait=SECONDS and
    /// --allow-lock-bypass. With --rest: --backend FILE:PATH, the restrictions,
    /// --permissions=all|no-delete|write-only|read-only, --storage-quota, --idle-timeout,
    /// --lock-release and --lock-fence (see borg-gate(1)).
    #[command(disable_help_flag = true)]
    Serve {
        /// borg serve options, parsed with borg's own rules.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_name = "OPTIONS")]
        args: Vec<OsString>,
    },

    /// Print the decision gate mode would take for a command, without running anything.
    ///
    /// Exits 0 if the command would be accepted (or is an allowed probe), 1 if refused.
    Explain {
        /// The policy file, as the forced command names it with --policy.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// The key's name, as the forced command gives it with --name.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// The account the key logs in to, for the engine's HOME, USER and LOGNAME, and for
        /// resolving a borg 2 client's repository path. Default: the account running explain.
        #[arg(long, value_name = "ACCOUNT")]
        user: Option<String>,
        /// The client's command, as sshd would put it in SSH_ORIGINAL_COMMAND.
        #[arg(long, value_name = "STRING", allow_hyphen_values = true)]
        command: String,
        /// Print exactly the audit record gate mode would write.
        #[arg(long)]
        json: bool,
    },

    /// Validate policy files; errors name the file, line and column.
    ///
    /// With --user, also check them as that account, the way the gate and the engine will
    /// use them: trust and readability of the policy, every restricted path (the engine's
    /// directory-trust check, and whether the account can create repositories there), the
    /// audit file and syslog. Checking as another account needs root.
    CheckPolicy {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Expand `{name}` with this key name, as `--name` in the forced command does.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// The account the keys log in to (the backup account).
        #[arg(long, value_name = "ACCOUNT")]
        user: Option<String>,
    },

    /// Lint this server's setup: authorized_keys, the policies its keys name, sshd_config and
    /// the backup account.
    ///
    /// Prints one finding per line, `<severity>: <where>: <problem>; <fix>`. Exits 0 when
    /// clean, 1 when there are warnings, 2 when there are errors.
    Doctor {
        /// Default: ~/.ssh/authorized_keys of --user, or of the account running doctor.
        #[arg(long, value_name = "FILE")]
        authorized_keys: Option<PathBuf>,
        #[arg(long, value_name = "FILE", default_value = "/etc/ssh/sshd_config")]
        sshd_config: PathBuf,
        /// The account the keys log in to. Default: the owner of the authorized_keys file.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },

    /// Summarise an audit log: sessions per policy, dropped options, recent refusals.
    Audit {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Only records at or after this time: RFC 3339 (2026-12-06T21:39:32Z, 2026-12-06)
        /// or a duration ago (2h, 7days).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only records at or before this time (same forms as --since).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// How many options to list.
        #[arg(long, value_name = "N", default_value_t = 10)]
        top: usize,
        /// How many recent refusals to show (at most 1000).
        #[arg(long, value_name = "N", default_value_t = 10)]
        recent: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },

    /// Every borg 1.x repository at a glance: last commit, size, quota, segments, compactable
    /// space, append-only, lock, and the policies that reach it.
    ///
    /// Searches the given directories and the restrict_to_paths and restrict_to_repositories
    /// of the given policies, without descending into repositories or following symlinks.
    /// Reads only; never takes a lock. Exits 0, or 1 when --max-age finds a repository without
    /// a recent commit (or cannot vouch for one), 2 for unusable arguments.
    Status {
        /// A policy whose restricted paths to search and whose name to show on the
        /// repositories it reaches (repeatable).
        #[arg(long = "policy", value_name = "FILE")]
        policies: Vec<PathBuf>,
        /// Exit 1 when a repository's last commit is older than this (26h, 2days, 90min),
        /// or it has none.
        #[arg(long, value_name = "DURATION", value_parser = parse_max_age)]
        max_age: Option<Duration>,
        /// One JSON object per repository and line.
        #[arg(long, conflicts_with = "quiet")]
        json: bool,
        /// Write Prometheus gauges to this node_exporter textfile, atomically.
        #[arg(long, value_name = "FILE")]
        textfile: Option<PathBuf>,
        /// Print no repositories (for --max-age and --textfile).
        #[arg(long, short)]
        quiet: bool,
        /// Directories to search.
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },

    /// Provision client keys: a policy from a template, the repository directory, and one
    /// forced-command line in the backup account's authorized_keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },

    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish or powershell).
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// `borg-gate keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a client key: write its policy, create its repository directory, and add its line
    /// to authorized_keys (under a lock, keeping every other line and a backup).
    ///
    /// Refuses a key that is already in the file, a name already used, a key type OpenSSH
    /// would reject, and options in the key text. Run as root.
    Add {
        /// The key's name: its policy is NAME.toml, its line ends in borg-gate:NAME.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The client's public key file (e.g. id_ed25519.pub), or - for standard input.
        #[arg(long, value_name = "PUBKEY_FILE")]
        key: PathBuf,
        /// The directory the key's repositories live in; created if missing (parents root
        /// 0755, the directory owned by the account, 0700).
        #[arg(long, value_name = "DIR")]
        path: PathBuf,
        /// The policy template (the examples in /usr/share/doc/borg-gate/policy-examples).
        #[arg(long, value_enum, default_value_t = TemplateName::AppendOnly)]
        template: TemplateName,
        /// Storage quota, e.g. 500G (borg's sizes; at least 10M).
        #[arg(long, value_name = "SIZE")]
        quota: Option<String>,
        /// Default: ~ACCOUNT/.ssh/authorized_keys.
        #[arg(long, value_name = "FILE")]
        authorized_keys: Option<PathBuf>,
        /// Where the policy goes.
        #[arg(long, value_name = "DIR", default_value = "/etc/borg-gate/keys")]
        policy_dir: PathBuf,
        /// The backup account the key logs in to.
        #[arg(long, value_name = "ACCOUNT", default_value = "borg")]
        user: String,
        /// The audit log of this key. Default: the template's, /var/log/borg-gate/audit.jsonl.
        #[arg(long, value_name = "FILE")]
        audit_log: Option<PathBuf>,
        /// Create the account if it does not exist (useradd --system --create-home --shell /bin/sh).
        #[arg(long)]
        create_user: bool,
        /// Print the policy and the change to authorized_keys; change nothing.
        #[arg(long)]
        dry_run: bool,
    },

    /// List every key of authorized_keys: name, SHA256 fingerprint, policy, protocol,
    /// paths, permissions, quota and last session.
    List {
        /// Default: ~ACCOUNT/.ssh/authorized_keys.
        #[arg(long, value_name = "FILE")]
        authorized_keys: Option<PathBuf>,
        #[arg(long, value_name = "ACCOUNT", default_value = "borg")]
        user: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },

    /// Remove a key's line from authorized_keys (never its repositories).
    Remove {
        /// The key's name (the borg-gate:NAME its line ends in).
        #[arg(
            value_name = "NAME",
            required_unless_present = "key",
            conflicts_with = "key"
        )]
        name: Option<String>,
        /// Remove every line with this key instead, by its fingerprint (SHA256:...).
        #[arg(long, value_name = "FINGERPRINT")]
        key: Option<String>,
        /// Default: ~ACCOUNT/.ssh/authorized_keys.
        #[arg(long, value_name = "FILE")]
        authorized_keys: Option<PathBuf>,
        #[arg(long, value_name = "ACCOUNT", default_value = "borg")]
        user: String,
        /// Also delete the key's policy file, unless another line uses it.
        #[arg(long)]
        purge: bool,
        /// Print the change to authorized_keys; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The policy templates `keys add` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TemplateName {
    /// Add backups, never remove them (append-only-client.toml).
    AppendOnly,
    /// List and restore, never write (restore-read-only.toml).
    ReadOnly,
    /// Every right, prune and compact included (full-access.toml).
    Full,
    /// A hosting customer with a quota and metrics (hosting-tenant-quota.toml).
    Tenant,
}

/// `--max-age`: humantime's durations (`26h`, `2days`, `1h 30m`).
fn parse_max_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|error| format!("{error}; write a duration like 26h, 2days or 90min"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_takes_every_word_raw() {
        let cli = Cli::try_parse_from([
            "borg-gate",
            "serve",
            "--restrict-to-path",
            "/x",
            "--help",
            "-v",
        ])
        .unwrap();
        let Some(Command::Serve { args }) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args, ["--restrict-to-path", "/x", "--help", "-v"]);
    }

    #[test]
    fn gate_mode_and_subcommands_conflict() {
        assert!(
            Cli::try_parse_from(["borg-gate", "--policy", "/p", "check-policy", "/p"]).is_err()
        );
        let cli = Cli::try_parse_from(["borg-gate", "--policy", "/p"]).unwrap();
        assert_eq!(cli.policy, Some(PathBuf::from("/p")));
        assert!(cli.command.is_none());
    }

    #[test]
    fn a_key_name_belongs_to_gate_mode() {
        let cli = Cli::try_parse_from(["borg-gate", "--policy", "/p", "--name", "alice"]).unwrap();
        assert_eq!(cli.name.as_deref(), Some("alice"));
        assert!(Cli::try_parse_from(["borg-gate", "--name", "alice"]).is_err());
        let cli = Cli::try_parse_from([
            "borg-gate",
            "check-policy",
            "--name",
            "alice",
            "--user",
            "borg",
            "/p",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::CheckPolicy { ref name, ref user, .. })
                if name.as_deref() == Some("alice") && user.as_deref() == Some("borg")
        ));
    }

    #[test]
    fn explain_accepts_commands_starting_with_a_dash() {
        let cli =
            Cli::try_parse_from(["borg-gate", "explain", "--policy", "/p", "--command", "--x"])
                .unwrap();
        assert!(
            matches!(cli.command, Some(Command::Explain { ref command, .. }) if command == "--x")
        );
    }

    #[test]
    fn doctor_defaults_to_the_system_sshd_config() {
        let cli = Cli::try_parse_from(["borg-gate", "doctor", "--json"]).unwrap();
        let Some(Command::Doctor {
            authorized_keys,
            sshd_config,
            user,
            json,
        }) = cli.command
        else {
            panic!("not doctor")
        };
        assert_eq!(authorized_keys, None);
        assert_eq!(sshd_config, PathBuf::from("/etc/ssh/sshd_config"));
        assert_eq!(user, None);
        assert!(json);
    }

    #[test]
    fn audit_takes_a_file_and_a_window() {
        let cli = Cli::try_parse_from([
            "borg-gate",
            "audit",
            "/log",
            "--since",
            "2h",
            "--until",
            "now",
            "--top",
            "3",
        ])
        .unwrap();
        let Some(Command::Audit {
            file,
            since,
            until,
            top,
            recent,
            json,
        }) = cli.command
        else {
            panic!("not audit")
        };
        assert_eq!(file, PathBuf::from("/log"));
        assert_eq!(since.as_deref(), Some("2h"));
        assert_eq!(until.as_deref(), Some("now"));
        assert_eq!((top, recent, json), (3, 10, false));
        assert!(Cli::try_parse_from(["borg-gate", "audit"]).is_err());
    }

    #[test]
    fn status_takes_paths_policies_and_a_max_age() {
        let cli = Cli::try_parse_from([
            "borg-gate",
            "status",
            "--policy",
            "/etc/a.toml",
            "/srv/backup",
            "--policy=/etc/b.toml",
            "--max-age",
            "26h",
            "--textfile",
            "/m.prom",
            "/srv/more",
        ])
        .unwrap();
        let Some(Command::Status {
            policies,
            max_age,
            json,
            textfile,
            quiet,
            paths,
        }) = cli.command
        else {
            panic!("not status")
        };
        assert_eq!(policies, ["/etc/a.toml", "/etc/b.toml"].map(PathBuf::from));
        assert_eq!(paths, ["/srv/backup", "/srv/more"].map(PathBuf::from));
        assert_eq!(max_age, Some(Duration::from_secs(26 * 3600)));
        assert_eq!(textfile, Some(PathBuf::from("/m.prom")));
        assert!(!json && !quiet);
    }

    #[test]
    fn status_max_age_reads_humantime_durations_and_refuses_the_rest() {
        for (text, seconds) in [
            ("26h", 93_600),
            ("2days", 172_800),
            ("90min", 5_400),
            ("1h 30m", 5_400),
            ("0s", 0),
        ] {
            assert_eq!(
                parse_max_age(text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
        for bad in ["", "26", "-1h", "yesterday", "26 hours ago"] {
            assert!(parse_max_age(bad).is_err(), "{bad}");
        }
        let error =
            Cli::try_parse_from(["borg-gate", "status", "--max-age", "soon", "/srv"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(Cli::try_parse_from(["borg-gate", "status", "--json", "-q", "/srv"]).is_err());
    }
}
