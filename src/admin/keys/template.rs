//! Policy templates for `borg-gate keys add`: the documented examples in `policy-examples/`,
//! built into the binary, with the key's name, directory, quota, audit log and metrics file
//! written into them.
//!
//! Pure. The rendering edits `key = value` lines of the example (keeping its comments and
//! layout), then parses the result with the policy validator and checks that every value it
//! set is the value the policy now holds, so a template that does not fit the editor fails
//! loudly instead of yielding a policy that restricts something else.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

use crate::policy::validate::parse_size;
use crate::policy::{Permissions, Policy, parse_policy};

/// The templates, each one of the examples shipped in `policy-examples/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// Add backups, never destroy them.
    AppendOnly,
    /// Restore only: list, extract, check.
    ReadOnly,
    /// Every right, prune and compact included.
    Full,
    /// A hosting customer: a quota and metrics.
    Tenant,
}

impl Template {
    pub const ALL: [Template; 4] = [
        Template::AppendOnly,
        Template::ReadOnly,
        Template::Full,
        Template::Tenant,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Template::AppendOnly => "append-only",
            Template::ReadOnly => "read-only",
            Template::Full => "full",
            Template::Tenant => "tenant",
        }
    }

    pub fn from_name(name: &str) -> Option<Template> {
        Template::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The example's file name in `policy-examples/` (and in /usr/share/doc/borg-gate/).
    pub fn example_file(self) -> &'static str {
        match self {
            Template::AppendOnly => "append-only-client.toml",
            Template::ReadOnly => "restore-read-only.toml",
            Template::Full => "full-access.toml",
            Template::Tenant => "hosting-tenant-quota.toml",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Template::AppendOnly => {
                include_str!("../../../policy-examples/append-only-client.toml")
            }
            Template::ReadOnly => include_str!("../../../policy-examples/restore-read-only.toml"),
            Template::Full => include_str!("../../../policy-examples/full-access.toml"),
            Template::Tenant => {
                include_str!("../../../policy-examples/hosting-tenant-quota.toml")
            }
        }
    }

    /// The example as it is, validated.
    pub fn example(self) -> Result<Policy, RenderError> {
        parse_policy(self.text(), "example")
            .map_err(|errors| RenderError::Template(format!("{}: {errors}", self.example_file())))
    }

    /// What the key may do, in the words `keys list` uses.
    pub fn describe(self) -> &'static str {
        match self {
            Template::AppendOnly => "add backups, never remove them",
            Template::ReadOnly => "list and restore, never write",
            Template::Full => "every right, prune and compact included",
            Template::Tenant => "every right, within a storage quota",
        }
    }
}

/// What a rendered policy says about metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metrics {
    /// The template has none.
    None,
    /// This textfile.
    File(PathBuf),
    /// The template has a `[metrics]` table, and it goes (its directory is not usable).
    Drop,
}

/// The key's own values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings<'a> {
    pub name: &'a str,
    /// The repository directory: the policy's only restricted path.
    pub path: &'a Path,
    /// `storage_quota`, as the administrator wrote it; `None` keeps the template's.
    pub quota: Option<&'a str>,
    /// `None` keeps the template's audit file.
    pub audit_log: Option<&'a Path>,
    pub metrics: Metrics,
}

/// Why a policy could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// The key's values make an invalid policy (a bad quota, say); rendered messages.
    Invalid(Vec<String>),
    /// The template does not say what the settings asked for: a bug in borg-gate.
    Template(String),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::Invalid(errors) => {
                write!(f, "the policy would be invalid: {}", errors.join("; "))
            }
            RenderError::Template(problem) => {
                write!(
                    f,
                    "the template does not render as intended ({problem}); please report this"
                )
            }
        }
    }
}

impl std::error::Error for RenderError {}

/// The metrics textfile for key `name` in the directory the template uses.
pub fn metrics_file_for(template_file: &Path, name: &str) -> PathBuf {
    template_file
        .parent()
        .unwrap_or(Path::new("/"))
        .join(format!("borg-gate-{name}.prom"))
}

/// The template with the key's values, and the policy it parses to.
pub fn render(
    template: Template,
    settings: &Settings<'_>,
) -> Result<(String, Policy), RenderError> {
    let mut doc = TomlLines::new(template.text());
    doc.replace_header(&[
        format!(
            "# Key {:?}: written by `borg-gate keys add` from the {} template",
            settings.name,
            template.name()
        ),
        format!(
            "# ({} among the policy examples). See borg-gate-policy(5).",
            template.example_file()
        ),
    ]);
    doc.set("", "name", &toml_string(settings.name));
    doc.set(
        "repository",
        "restrict_to_paths",
        &format!("[{}]", toml_string(&settings.path.to_string_lossy())),
    );
    doc.remove("repository", "restrict_to_repositories");
    if let Some(quota) = settings.quota {
        doc.set("repository", "storage_quota", &toml_string(quota));
    }
    if let Some(audit_log) = settings.audit_log {
        doc.set("audit", "file", &toml_string(&audit_log.to_string_lossy()));
    }
    match &settings.metrics {
        Metrics::None => {}
        Metrics::File(file) => {
            doc.set("metrics", "textfile", &toml_string(&file.to_string_lossy()))
        }
        Metrics::Drop => doc.remove_table("metrics"),
    }
    let text = doc.text();
    let policy = parse_policy(&text, settings.name).map_err(|errors| {
        RenderError::Invalid(errors.0.into_iter().map(|e| e.message).collect())
    })?;
    check_rendering(template, settings, &policy)?;
    Ok((text, policy))
}

/// Every value the settings asked for is the one the parsed policy holds.
fn check_rendering(
    template: Template,
    settings: &Settings<'_>,
    policy: &Policy,
) -> Result<(), RenderError> {
    let example = template.example()?;
    let mismatch = |what: &str| Err(RenderError::Template(format!("{} {what}", template.name())));
    let repository = &policy.repository;
    if policy.name != settings.name {
        return mismatch("name");
    }
    if repository.restrict_to_paths != [settings.path.to_path_buf()]
        || !repository.restrict_to_repositories.is_empty()
    {
        return mismatch("restrict_to_paths");
    }
    let quota = match settings.quota {
        Some(text) => parse_size(text),
        None => example.repository.storage_quota,
    };
    if repository.storage_quota != quota {
        return mismatch("storage_quota");
    }
    let audit = settings
        .audit_log
        .map(Path::to_path_buf)
        .or(example.audit.file.clone());
    if policy.audit.file != audit {
        return mismatch("audit file");
    }
    let metrics = match &settings.metrics {
        Metrics::None | Metrics::Drop => None,
        Metrics::File(file) => Some(file.clone()),
    };
    if policy.metrics.textfile != metrics {
        return mismatch("metrics textfile");
    }
    let read_only = repository.permissions == Permissions::ReadOnly;
    if read_only != (template == Template::ReadOnly)
        || repository.append_only != (template == Template::AppendOnly)
    {
        return mismatch("permissions");
    }
    Ok(())
}

/// A TOML string literal.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A TOML file as lines, edited one `key = value` line at a time. Only what our templates
/// use: bare keys, one-line values, `[table]` headers.
struct TomlLines {
    lines: Vec<String>,
}

impl TomlLines {
    fn new(text: &str) -> TomlLines {
        TomlLines {
            lines: text.lines().map(str::to_owned).collect(),
        }
    }

    fn text(&self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }

    fn header_of(line: &str) -> Option<&str> {
        let trimmed = line.trim();
        (trimmed.starts_with('[') && !trimmed.starts_with("[[")).then(|| {
            trimmed
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
        })
    }

    fn key_of(line: &str) -> Option<&str> {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || trimmed.starts_with('[') {
            return None;
        }
        trimmed.split_once('=').map(|(key, _)| key.trim())
    }

    /// The range of line indices that belong to `table` ("" is the top, before any header),
    /// header excluded; `None` when the table is absent.
    fn table_range(&self, table: &str) -> Option<(usize, usize)> {
        let mut current = "";
        let mut start = (table.is_empty()).then_some(0);
        for (index, line) in self.lines.iter().enumerate() {
            if let Some(header) = TomlLines::header_of(line) {
                if start.is_some() && current == table {
                    return start.map(|s| (s, index));
                }
                current = header;
                if header == table {
                    start = Some(index + 1);
                }
            }
        }
        start
            .filter(|_| current == table)
            .map(|s| (s, self.lines.len()))
    }

    fn find(&self, table: &str, key: &str) -> Option<usize> {
        let (start, end) = self.table_range(table)?;
        (start..end).find(|&index| TomlLines::key_of(&self.lines[index]) == Some(key))
    }

    fn set(&mut self, table: &str, key: &str, value: &str) {
        let line = format!("{key} = {value}");
        if let Some(index) = self.find(table, key) {
            self.lines[index] = line;
            return;
        }
        match self.table_range(table) {
            Some((start, end)) => {
                let last_key = (start..end)
                    .rev()
                    .find(|&index| TomlLines::key_of(&self.lines[index]).is_some())
                    .map_or(start, |index| index + 1);
                self.lines.insert(last_key, line);
            }
            None => {
                if self.lines.last().is_some_and(|l| !l.trim().is_empty()) {
                    self.lines.push(String::new());
                }
                self.lines.push(format!("[{table}]"));
                self.lines.push(line);
            }
        }
    }

    fn remove(&mut self, table: &str, key: &str) {
        if let Some(index) = self.find(table, key) {
            self.lines.remove(index);
        }
    }

    fn remove_table(&mut self, table: &str) {
        if let Some((start, mut end)) = self.table_range(table) {
            let mut first = start.saturating_sub(1);
            while end > start && end < self.lines.len() && self.lines[end - 1].trim().is_empty() {
                end -= 1;
            }
            let blank_after = end == self.lines.len() || self.lines[end].trim().is_empty();
            if first > 0 && self.lines[first - 1].trim().is_empty() && blank_after {
                first -= 1;
            }
            self.lines.drain(first..end);
        }
    }

    /// Replaces the comment block above the first setting.
    fn replace_header(&mut self, header: &[String]) {
        let body = self
            .lines
            .iter()
            .position(|line| {
                let trimmed = line.trim();
                !trimmed.is_empty() && !trimmed.starts_with('#')
            })
            .unwrap_or(self.lines.len());
        let summary = self
            .lines
            .first()
            .filter(|line| line.starts_with('#'))
            .cloned();
        let mut lines: Vec<String> = header.to_vec();
        lines.extend(summary);
        lines.extend(self.lines.drain(body..));
        self.lines = lines;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings<'a>(name: &'a str, path: &'a Path) -> Settings<'a> {
        Settings {
            name,
            path,
            quota: None,
            audit_log: None,
            metrics: Metrics::None,
        }
    }

    fn metrics_for(template: Template, name: &str) -> Metrics {
        match template.example().unwrap().metrics.textfile {
            Some(file) => Metrics::File(metrics_file_for(&file, name)),
            None => Metrics::None,
        }
    }

    #[test]
    fn every_template_is_a_valid_example() {
        for template in Template::ALL {
            let example = template.example().unwrap();
            assert_eq!(Template::from_name(template.name()), Some(template));
            assert!(!template.describe().is_empty());
            assert!(
                example.audit.file.is_some(),
                "{}: keys list reads the audit file",
                template.name()
            );
        }
        assert_eq!(Template::from_name("everything"), None);
    }

    #[test]
    fn every_template_renders_each_setting() {
        let path = Path::new("/srv/backup/dir with space/o'neil");
        for template in Template::ALL {
            for name in ["a", "alice-laptop", "x.y_z@host"] {
                let mut wanted = settings(name, path);
                wanted.metrics = metrics_for(template, name);
                let (text, policy) = render(template, &wanted).unwrap();
                assert_eq!(policy.name, name);
                assert_eq!(policy.repository.restrict_to_paths, [path.to_path_buf()]);
                assert!(
                    text.starts_with(&format!(
                        "# Key {name:?}: written by `borg-gate keys add` from the {} template",
                        template.name()
                    )),
                    "{text}"
                );
                assert!(!text.contains("alice/laptop"), "{text}");

                wanted.quota = Some("20G");
                wanted.audit_log = Some(Path::new("/var/log/b g/\"q\".jsonl"));
                let (_, policy) = render(template, &wanted).unwrap();
                assert_eq!(policy.repository.storage_quota, Some(20_000_000_000));
                assert_eq!(
                    policy.audit.file.as_deref(),
                    Some(Path::new("/var/log/b g/\"q\".jsonl"))
                );
            }
        }
    }

    #[test]
    fn the_templates_grant_what_their_names_say() {
        let path = Path::new("/srv/x");
        let policy = |template| render(template, &settings("k", path)).unwrap().1;
        let append = policy(Template::AppendOnly);
        assert!(append.repository.append_only);
        assert_eq!(append.repository.permissions, Permissions::All);
        let read = policy(Template::ReadOnly);
        assert_eq!(read.repository.permissions, Permissions::ReadOnly);
        let full = policy(Template::Full);
        assert!(!full.repository.append_only);
        assert_eq!(full.repository.permissions, Permissions::All);
        let mut tenant_settings = settings("t", path);
        tenant_settings.metrics = metrics_for(Template::Tenant, "t");
        let (_, tenant) = render(Template::Tenant, &tenant_settings).unwrap();
        assert!(tenant.repository.storage_quota.is_some());
        assert_eq!(
            tenant.metrics.textfile.as_deref(),
            Some(Path::new(
                "/var/lib/prometheus/node-exporter/borg-gate-t.prom"
            ))
        );
    }

    #[test]
    fn metrics_can_be_dropped_and_a_table_can_be_added() {
        let path = Path::new("/srv/x");
        let mut wanted = settings("t", path);
        wanted.metrics = Metrics::Drop;
        let (text, policy) = render(Template::Tenant, &wanted).unwrap();
        assert_eq!(policy.metrics.textfile, None);
        assert!(!text.contains("[metrics]"), "{text}");
        let mut wanted = settings("a", path);
        wanted.metrics = Metrics::File(PathBuf::from("/var/lib/m/a.prom"));
        let (text, policy) = render(Template::AppendOnly, &wanted).unwrap();
        assert!(
            text.ends_with("[metrics]\ntextfile = \"/var/lib/m/a.prom\"\n"),
            "{text}"
        );
        assert_eq!(
            policy.metrics.textfile.as_deref(),
            Some(Path::new("/var/lib/m/a.prom"))
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_validators_words() {
        let path = Path::new("/srv/x");
        let mut wanted = settings("k", path);
        wanted.quota = Some("lots");
        let error = render(Template::AppendOnly, &wanted).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("the policy would be invalid: storage_quota \"lots\" is not a size"),
            "{error}"
        );
        wanted.quota = Some("1M");
        assert!(render(Template::AppendOnly, &wanted).is_err());
        let error = render(Template::AppendOnly, &settings("bad name", path)).unwrap_err();
        assert!(
            error.to_string().contains("is not a plain label"),
            "{error}"
        );
    }

    #[test]
    fn the_line_editor_sets_inserts_and_removes() {
        let mut doc =
            TomlLines::new("# head\n\nversion = 1\n[a]\nx = 1\n# note\ny = 2\n\n[b]\nz = 3\n");
        doc.set("a", "x", "10");
        doc.set("a", "w", "4");
        doc.set("", "name", "\"n\"");
        doc.set("c", "v", "5");
        doc.remove("b", "z");
        doc.remove("b", "missing");
        assert_eq!(
            doc.text(),
            "# head\n\nversion = 1\nname = \"n\"\n[a]\nx = 10\n# note\ny = 2\nw = 4\n\n[b]\n\n[c]\nv = 5\n"
        );
        doc.remove_table("b");
        doc.remove_table("missing");
        assert_eq!(
            doc.text(),
            "# head\n\nversion = 1\nname = \"n\"\n[a]\nx = 10\n# note\ny = 2\nw = 4\n\n[c]\nv = 5\n"
        );
    }
}
