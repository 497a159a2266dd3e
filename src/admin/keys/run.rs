//! `keys add`, `keys list` and `keys remove`, in order: read and check everything, decide,
//! then write, the line in authorized_keys last, so that a key is never usable before its
//! policy, its directory and its audit log exist.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::KeysError;
use super::files::{
    self, Account, AuditLogState, DirectoryState, Owner, Replace, change_locked, inspect_audit_log,
    inspect_repository_dir,
};
use super::lines::{apply, unified_diff};
use super::listing::{self, Row};
use super::plan::{self, Selector};
use super::public_key::{MAX_KEY_TEXT, PublicKey, read_public_key};
use super::sessions::last_sessions;
use super::template::{self, Metrics, Settings, Template};
use crate::admin::authorized_keys::{Entry, ForcedCommand, classify_command, parse_file};
use crate::policy::validate::is_clean_absolute;
use crate::policy::{Policy, load_policy};

/// The account keys log in to unless told otherwise.
pub(crate) const DEFAULT_USER: &str = "borg";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOptions {
    pub name: String,
    /// A public key file, or `-` for standard input.
    pub key: PathBuf,
    pub path: PathBuf,
    pub template: Template,
    pub quota: Option<String>,
    pub authorized_keys: Option<PathBuf>,
    pub policy_dir: PathBuf,
    pub user: String,
    pub audit_log: Option<PathBuf>,
    pub create_user: bool,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveOptions {
    pub selector: Selector,
    pub authorized_keys: Option<PathBuf>,
    pub user: String,
    pub purge: bool,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOptions {
    pub authorized_keys: Option<PathBuf>,
    pub user: String,
    pub json: bool,
}

fn refused(message: impl Into<String>) -> KeysError {
    KeysError::Refused(message.into())
}

fn require_root(command: &str) -> Result<(), KeysError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(refused(format!(
            "keys {command} changes root-owned files and another account's authorized_keys; run it as root (--dry-run shows what it would do)"
        )))
    }
}

fn clean_absolute(what: &str, path: &Path) -> Result<(), KeysError> {
    let plain = path
        .to_str()
        .is_some_and(|text| !text.chars().any(char::is_control));
    if is_clean_absolute(path) && plain && path != Path::new("/") {
        Ok(())
    } else {
        Err(refused(format!(
            "{what} {:?} must be an absolute path without `.`, `..` or control characters",
            path.display().to_string()
        )))
    }
}

/// The account, and whether `keys add` has to create it.
enum Target {
    Existing(Account),
    ToCreate { name: String, home: PathBuf },
}

impl Target {
    fn home(&self) -> &Path {
        match self {
            Target::Existing(account) => &account.home,
            Target::ToCreate { home, .. } => home,
        }
    }
}

fn account_or_refusal(user: &str) -> Result<Account, KeysError> {
    files::find_account(user)?.ok_or_else(|| {
        refused(format!(
            "there is no account named {user:?}; name the backup account with --user, or --authorized-keys FILE"
        ))
    })
}

fn read_key(source: &Path, stdin: &mut dyn Read) -> Result<PublicKey, KeysError> {
    let shown = if source == Path::new("-") {
        "standard input".to_owned()
    } else {
        source.display().to_string()
    };
    let bytes = if source == Path::new("-") {
        let mut bytes = Vec::new();
        stdin
            .take(MAX_KEY_TEXT as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| KeysError::Failed(format!("cannot read standard input: {error}")))?;
        bytes
    } else {
        files::read_bounded(source, MAX_KEY_TEXT as u64 + 1)?
            .ok_or_else(|| refused(format!("the key file {shown} does not exist")))?
    };
    read_public_key(&bytes).map_err(|problem| refused(format!("the key in {shown}: {problem}")))
}

/// The absolute path of this very executable, which the forced command will run.
fn this_program() -> Result<PathBuf, KeysError> {
    let program = std::env::current_exe()
        .map_err(|error| KeysError::Failed(format!("cannot tell where borg-gate is: {error}")))?;
    if program.to_string_lossy().ends_with(" (deleted)") {
        return Err(KeysError::Failed(
            "this borg-gate executable was replaced while it ran; run the new one".to_owned(),
        ));
    }
    Ok(program)
}

/// Each borg-gate policy that authorized_keys names, loaded as the gate would.
fn load_policies(text: &str, home: &Path) -> BTreeMap<PathBuf, Result<Policy, String>> {
    let mut policies = BTreeMap::new();
    for entry in parse_file(text) {
        let Entry::Key(key) = entry else { continue };
        if let Some(ForcedCommand::Gate { policy, .. }) = key.command().map(classify_command) {
            if policies.contains_key(&policy) {
                continue;
            }
            let resolved = if policy.is_relative() {
                home.join(&policy)
            } else {
                policy.clone()
            };
            let loaded = load_policy(&resolved).map_err(|error| error.to_string());
            policies.insert(policy, loaded);
        }
    }
    policies
}

/// `borg-gate keys add`.
pub fn add(
    options: &AddOptions,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<(), KeysError> {
    plan::check_name(&options.name).map_err(refused)?;
    clean_absolute("--path", &options.path)?;
    clean_absolute("--policy-dir", &options.policy_dir)?;
    if let Some(log) = &options.audit_log {
        clean_absolute("--audit-log", log)?;
    }
    if let Some(file) = &options.authorized_keys {
        clean_absolute("--authorized-keys", file)?;
    }
    if !options.dry_run {
        require_root("add")?;
    }
    let key = read_key(&options.key, stdin)?;
    let target = match files::find_account(&options.user)? {
        Some(account) if account.uid == 0 => {
            return Err(refused(format!(
                "{} is root: a backup key must not log in as root; use a dedicated account (--user, default {DEFAULT_USER})",
                options.user
            )));
        }
        Some(account) => Target::Existing(account),
        None if options.create_user => Target::ToCreate {
            name: options.user.clone(),
            home: PathBuf::from("/home").join(&options.user),
        },
        None => {
            return Err(refused(format!(
                "there is no account named {:?}; pass --create-user to create it (useradd --system --create-home --shell /bin/sh), or name another with --user",
                options.user
            )));
        }
    };
    let keys_file = options
        .authorized_keys
        .clone()
        .unwrap_or_else(|| target.home().join(".ssh/authorized_keys"));
    let policy_file = options.policy_dir.join(format!("{}.toml", options.name));
    if policy_file.exists() {
        return Err(refused(format!(
            "{} exists already: the name {:?} is taken; choose another --name, or remove the key first (borg-gate keys remove {} --purge)",
            policy_file.display(),
            options.name,
            options.name
        )));
    }

    // The policy, validated as check-policy validates it.
    let example = options
        .template
        .example()
        .map_err(|e| KeysError::Failed(e.to_string()))?;
    let audit_log = options
        .audit_log
        .clone()
        .or_else(|| example.audit.file.clone());
    let mut notes = Vec::new();
    let metrics = match (&example.metrics.textfile, &target) {
        (None, _) => Metrics::None,
        (Some(textfile), target) => {
            let file = template::metrics_file_for(textfile, &options.name);
            let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
            let usable = matches!(target, Target::Existing(account) if files::metrics_dir_usable(&dir, account));
            if usable {
                Metrics::File(file)
            } else {
                notes.push(format!(
                    "the policy has no [metrics]: the account {} cannot create files in {} (node_exporter's textfile directory); add `[metrics] textfile = \"{}\"` once it can",
                    options.user,
                    dir.display(),
                    file.display()
                ));
                Metrics::Drop
            }
        }
    };
    let settings = Settings {
        name: &options.name,
        path: &options.path,
        quota: options.quota.as_deref(),
        audit_log: options.audit_log.as_deref(),
        metrics,
    };
    let (policy_text, _) =
        template::render(options.template, &settings).map_err(|error| match error {
            template::RenderError::Invalid(_) => refused(error.to_string()),
            template::RenderError::Template(_) => KeysError::Failed(error.to_string()),
        })?;
    let report = crate::check_policy::check_text(&policy_file, &policy_text, Default::default());
    if !report.errors.is_empty() {
        return Err(refused(format!(
            "the policy would be invalid: {}",
            report.errors.join("; ")
        )));
    }

    // authorized_keys as it is now: the key, its name, and the names of other policies.
    let existing = files::read_bounded(&keys_file, files::MAX_AUTHORIZED_KEYS)?.unwrap_or_default();
    let existing_text = String::from_utf8_lossy(&existing);
    for (path, policy) in load_policies(&existing_text, target.home()) {
        if let Ok(policy) = policy {
            if policy.name == options.name {
                return Err(refused(format!(
                    "the policy name {:?} is already used by {}, which a key in {} runs; audit records and metrics could not tell the two apart; choose another --name",
                    options.name,
                    path.display(),
                    keys_file.display()
                )));
            }
            let repository = &policy.repository;
            let shared = repository
                .restrict_to_paths
                .iter()
                .chain(&repository.restrict_to_repositories)
                .find(|theirs| {
                    theirs.starts_with(&options.path) || options.path.starts_with(theirs)
                });
            if let Some(theirs) = shared {
                notes.push(format!(
                    "policy {} ({}) also reaches {}: either key can read the other's backups, and `borg-gate doctor` warns about it; give each key its own --path unless that is meant",
                    policy.name,
                    path.display(),
                    theirs.display()
                ));
            }
        }
    }
    let program = this_program()?;
    let line = plan::forced_line(&program, &policy_file, &key, &options.name)
        .map_err(|r| refused(r.to_string()))?;
    let edit = plan::plan_add(&existing, &key, &options.name, &line)
        .map_err(|r| refused(format!("{}: {r}", keys_file.display())))?;

    // What the account needs: the repository directory and the audit log.
    let (directory, audit) = match &target {
        Target::Existing(account) => (
            Some(inspect_repository_dir(&options.path, account.uid)?),
            match &audit_log {
                Some(log) => Some(inspect_audit_log(log, account)?),
                None => None,
            },
        ),
        Target::ToCreate { .. } => {
            // Before an account exists, trust only root on the way to the directory (stricter
            // than the engine will be), and refuse a log the new account could not write.
            inspect_repository_dir(&options.path, 0)?;
            if let Some(log) = audit_log.as_ref().filter(|log| log.exists()) {
                return Err(refused(format!(
                    "the audit log {} exists already and the account {} does not, so it could not append to it; give this key its own log with --audit-log FILE",
                    log.display(),
                    options.user
                )));
            }
            (None, None)
        }
    };
    if let Some(DirectoryState::Ready { owner }) = &directory {
        if let Target::Existing(account) = &target {
            if *owner != account.uid {
                notes.push(format!(
                    "{} is owned by uid {owner}, not by {}: the key can use the repositories in it but cannot create new ones",
                    options.path.display(),
                    account.name
                ));
            }
        }
    }

    if options.dry_run {
        writeln!(out, "# borg-gate keys add --dry-run: nothing was changed")
            .map_err(output_error)?;
        if let Target::ToCreate { name, .. } = &target {
            writeln!(
                out,
                "# would create the account {name} (useradd --system --create-home --shell /bin/sh)"
            )
            .map_err(output_error)?;
        }
        match &directory {
            Some(DirectoryState::Missing(dirs)) => {
                for dir in dirs {
                    let owner = if Some(dir) == dirs.last() {
                        format!("{}, 0700", options.user)
                    } else {
                        "root, 0755".to_owned()
                    };
                    writeln!(
                        out,
                        "# would create the directory {} ({owner})",
                        dir.display()
                    )
                    .map_err(output_error)?;
                }
            }
            Some(DirectoryState::Ready { .. }) => {}
            None => writeln!(
                out,
                "# would create {} as needed (root 0755 above, {} 0700)",
                options.path.display(),
                options.user
            )
            .map_err(output_error)?,
        }
        if let (Some(AuditLogState::Create { .. }), Some(log)) = (&audit, &audit_log) {
            writeln!(
                out,
                "# would create the audit log {} ({}, 0640)",
                log.display(),
                options.user
            )
            .map_err(output_error)?;
        }
        for note in &notes {
            writeln!(out, "# note: {note}").map_err(output_error)?;
        }
        writeln!(out, "# would write {} (root, 0644):", policy_file.display())
            .map_err(output_error)?;
        out.write_all(policy_text.as_bytes())
            .map_err(output_error)?;
        writeln!(out, "# would change {}:", keys_file.display()).map_err(output_error)?;
        out.write_all(unified_diff(&keys_file.display().to_string(), &existing, &edit).as_bytes())
            .map_err(output_error)?;
        return Ok(());
    }

    // Writes, the key's line last.
    let (account, directory, audit) = match target {
        Target::Existing(account) => (account, directory, audit),
        Target::ToCreate { name, .. } => {
            let account = files::create_account(&name)?;
            let directory = inspect_repository_dir(&options.path, account.uid)?;
            let audit = match &audit_log {
                Some(log) => Some(inspect_audit_log(log, &account)?),
                None => None,
            };
            notes.insert(
                0,
                format!(
                    "created the account {} (uid {}, home {})",
                    account.name,
                    account.uid,
                    account.home.display()
                ),
            );
            (account, Some(directory), audit)
        }
    };
    files::make_dirs(&options.policy_dir, Owner::ROOT_DIR)?;
    if let Some(DirectoryState::Missing(missing)) = &directory {
        files::create_repository_dir(missing, &account)?;
    }
    if let (Some(AuditLogState::Create { missing_dirs }), Some(log)) = (&audit, &audit_log) {
        files::create_audit_log(log, missing_dirs, &account)?;
    }
    files::write_atomically(
        &policy_file,
        policy_text.as_bytes(),
        Owner::ROOT_FILE,
        Replace::No,
    )?;
    let account_file = Owner {
        uid: account.uid,
        gid: account.gid,
        mode: 0o600,
    };
    let account_dir = Owner {
        mode: 0o700,
        ..account_file
    };
    let changed = change_locked(&keys_file, Some((account_file, account_dir)), |current| {
        let edit = plan::plan_add(current, &key, &options.name, &line)
            .map_err(|r| refused(format!("{}: {r}", keys_file.display())))?;
        let line_number = super::lines::split_lines(&apply(current, &edit)).len();
        Ok((apply(current, &edit), line_number))
    });
    let changed = match changed {
        Ok(changed) => changed,
        Err(error) => {
            // Leave no policy behind for a key that was not added.
            let _ = files::remove_file(&policy_file);
            return Err(error);
        }
    };

    for warning in
        crate::check_policy::check_text(&policy_file, &policy_text, Default::default()).warnings
    {
        notes.push(format!("warning: {warning}"));
    }
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "SERVER".to_owned());
    let mut text = format!(
        "borg-gate: added key {:?} ({})\n  authorized_keys  {}, line {}{}\n  policy           {} ({}: {})\n  repositories     {} (owner {})\n",
        options.name,
        key.keygen_line(),
        keys_file.display(),
        changed.value,
        changed
            .backup
            .as_ref()
            .map(|b| format!(" (previous version in {})", b.display()))
            .unwrap_or_default(),
        policy_file.display(),
        options.template.name(),
        options.template.describe(),
        options.path.display(),
        account.name,
    );
    if let Some(log) = &audit_log {
        text.push_str(&format!("  audit log        {}\n", log.display()));
    }
    for note in &notes {
        text.push_str(&format!("  note: {note}\n"));
    }
    text.push_str(&format!(
        "On the client:\n  borg init --encryption=repokey ssh://{}@{host}{}/REPOSITORY\n",
        account.name,
        options.path.display()
    ));
    out.write_all(text.as_bytes()).map_err(output_error)
}

fn output_error(error: std::io::Error) -> KeysError {
    KeysError::Failed(format!("cannot write the output: {error}"))
}

/// `borg-gate keys remove`.
pub fn remove(options: &RemoveOptions, out: &mut dyn Write) -> Result<(), KeysError> {
    if !options.dry_run {
        require_root("remove")?;
    }
    let keys_file = match &options.authorized_keys {
        Some(file) => file.clone(),
        None => account_or_refusal(&options.user)?.authorized_keys(),
    };
    let plan = |current: &[u8]| {
        plan::plan_remove(current, &options.selector)
            .map_err(|r| refused(format!("{}: {r}", keys_file.display())))
    };
    let mut text = String::new();
    let removal = if options.dry_run {
        let current = files::read_bounded(&keys_file, files::MAX_AUTHORIZED_KEYS)?
            .ok_or_else(|| refused(format!("{} does not exist", keys_file.display())))?;
        let removal = plan(&current)?;
        text.push_str("# borg-gate keys remove --dry-run: nothing was changed\n");
        text.push_str(&unified_diff(
            &keys_file.display().to_string(),
            &current,
            &removal.edit,
        ));
        removal
    } else {
        let changed = change_locked(&keys_file, None, |current| {
            let removal = plan(current)?;
            Ok((apply(current, &removal.edit), removal))
        })?;
        for (line, key) in &changed.value.removed {
            text.push_str(&format!(
                "borg-gate: removed line {line} of {}: {key}\n",
                keys_file.display()
            ));
        }
        if let Some(backup) = &changed.backup {
            text.push_str(&format!("  previous version in {}\n", backup.display()));
        }
        changed.value
    };
    let (remove_word, keep_word) = if options.dry_run {
        ("would remove", "would keep")
    } else {
        ("removed", "kept")
    };
    for policy in &removal.orphaned_policies {
        if options.purge {
            if options.dry_run || files::remove_file(policy)? {
                text.push_str(&format!(
                    "  {remove_word} the policy {}\n",
                    policy.display()
                ));
            }
        } else {
            text.push_str(&format!(
                "  {keep_word} the policy {} (--purge removes it)\n",
                policy.display()
            ));
        }
    }
    for policy in &removal.shared_policies {
        text.push_str(&format!(
            "  {keep_word} the policy {}: other keys use it\n",
            policy.display()
        ));
    }
    text.push_str("  repositories are never touched\n");
    out.write_all(text.as_bytes()).map_err(output_error)
}

/// The rows of `keys list` for the file.
pub(crate) fn list_rows(options: &ListOptions) -> Result<(PathBuf, Vec<Row>), KeysError> {
    let (keys_file, home) = match &options.authorized_keys {
        Some(file) => (
            file.clone(),
            files::find_account(&options.user)?
                .map(|a| a.home)
                .unwrap_or_else(|| PathBuf::from("/")),
        ),
        None => {
            let account = account_or_refusal(&options.user)?;
            (account.authorized_keys(), account.home)
        }
    };
    let bytes = files::read_bounded(&keys_file, files::MAX_AUTHORIZED_KEYS)?.ok_or_else(|| {
        refused(format!(
            "{} does not exist; add a key with borg-gate keys add",
            keys_file.display()
        ))
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let policies = load_policies(&text, &home);
    let mut by_log: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (path, policy) in &policies {
        if let Ok(Policy { audit, .. }) = policy {
            if let Some(log) = &audit.file {
                by_log.entry(log.clone()).or_default().insert(path.clone());
            }
        }
    }
    let mut sessions = BTreeMap::new();
    for (log, wanted) in by_log {
        // An audit log that is missing or unreadable only means no session is known.
        if let Ok(found) = last_sessions(&log, &wanted) {
            sessions.extend(found);
        }
    }
    Ok((keys_file, listing::rows(&text, &policies, &sessions)))
}

/// `borg-gate keys list`.
pub fn list(options: &ListOptions, out: &mut dyn Write) -> Result<(), KeysError> {
    let (keys_file, rows) = list_rows(options)?;
    let text = if options.json {
        let report = serde_json::json!({ "authorized_keys": keys_file, "keys": rows });
        format!("{report}\n")
    } else if rows.is_empty() {
        format!("{}: no keys\n", keys_file.display())
    } else {
        listing::render_table(&rows)
    };
    out.write_all(text.as_bytes()).map_err(output_error)
}
