//! The repository `config` file: a Python ConfigParser-compatible INI reader and writer.
//!
//! Reading follows `ConfigParser(interpolation=None)` as borg uses it: `[section]` headers,
//! `name = value` or `name: value` with names lowercased, full-line `#`/`;` comments, and
//! indented continuation lines. Writing produces Python's bytes: `[section]`, `name = value`
//! lines (continuation lines indented by a tab), and an empty line after each section.
//! Unknown sections and options are kept in order.

use std::fmt;

use super::units::parse_file_size;

/// `MAX_SEGMENT_SIZE_LIMIT`: offsets are u32, and an entry may overshoot by one object.
pub const MAX_SEGMENT_SIZE_LIMIT: i64 = (1 << 32) - 20 * 1024 * 1024;

/// A parse or validation problem; `Display` is the reason borg puts in
/// `InvalidRepositoryConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    name: String,
    /// Options in file order; values may span several lines.
    options: Vec<(String, String)>,
}

/// The whole file, with the `[repository]` section as the one borg reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoConfig {
    sections: Vec<Section>,
}

/// The validated `[repository]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySettings {
    pub segments_per_dir: u32,
    pub max_segment_size: u64,
    pub additional_free_space: u64,
    pub append_only: bool,
    pub storage_quota: u64,
    pub id: [u8; 32],
}

const REPOSITORY: &str = "repository";

impl RepoConfig {
    /// The config of a new repository, in borg's option order.
    pub fn new_repository(segments_per_dir: u32, max_segment_size: u64, append_only: bool, storage_quota: u64, id: [u8; 32]) -> RepoConfig {
        let options = vec![
            ("version".to_owned(), "1".to_owned()),
            ("segments_per_dir".to_owned(), segments_per_dir.to_string()),
            ("max_segment_size".to_owned(), max_segment_size.to_string()),
            ("append_only".to_owned(), u8::from(append_only).to_string()),
            ("storage_quota".to_owned(), storage_quota.to_string()),
            ("additional_free_space".to_owned(), "0".to_owned()),
            ("id".to_owned(), hex(&id)),
        ];
        RepoConfig { sections: vec![Section { name: REPOSITORY.to_owned(), options }] }
    }

    /// Parses ConfigParser syntax.
    pub fn parse(text: &str) -> Result<RepoConfig, ConfigError> {
        let mut sections: Vec<Section> = Vec::new();
        // (section index, option index) of the option that continuation lines extend.
        let mut current_option: Option<(usize, usize)> = None;
        let mut indent_level = 0usize;
        for (number, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let stripped = line.trim();
            let is_comment = stripped.starts_with('#') || stripped.starts_with(';');
            if stripped.is_empty() || is_comment {
                if stripped.is_empty() && !is_comment {
                    if let Some((s, o)) = current_option {
                        // Empty lines inside a value are kept; trailing ones are trimmed at the end.
                        sections[s].options[o].1.push('\n');
                    }
                }
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            if let (Some((s, o)), true) = (current_option, indent > indent_level) {
                let value = &mut sections[s].options[o].1;
                value.push('\n');
                value.push_str(stripped);
                continue;
            }
            indent_level = indent;
            if let Some(name) = stripped.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
                if name.is_empty() {
                    return Err(ConfigError(format!("line {}: empty section name", number + 1)));
                }
                if sections.iter().any(|s| s.name == name) {
                    return Err(ConfigError(format!("line {}: section {name:?} already exists", number + 1)));
                }
                sections.push(Section { name: name.to_owned(), options: Vec::new() });
                current_option = None;
                continue;
            }
            let Some(section_index) = sections.len().checked_sub(1) else {
                return Err(ConfigError(format!("line {}: no section header before the first option", number + 1)));
            };
            let Some(split) = stripped.find(['=', ':']) else {
                return Err(ConfigError(format!("line {}: not an option line", number + 1)));
            };
            let name = stripped[..split].trim_end().to_lowercase();
            if name.is_empty() {
                return Err(ConfigError(format!("line {}: option without a name", number + 1)));
            }
            let value = stripped[split + 1..].trim().to_owned();
            let section = &mut sections[section_index];
            if section.options.iter().any(|(n, _)| *n == name) {
                return Err(ConfigError(format!("line {}: option {name:?} already exists", number + 1)));
            }
            section.options.push((name, value));
            current_option = Some((section_index, section.options.len() - 1));
        }
        for section in &mut sections {
            for (_, value) in &mut section.options {
                let trimmed = value.trim_end().len();
                value.truncate(trimmed);
            }
        }
        Ok(RepoConfig { sections })
    }

    fn repository(&self) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == REPOSITORY)
    }

    fn repository_mut(&mut self) -> &mut Section {
        if let Some(position) = self.sections.iter().position(|s| s.name == REPOSITORY) {
            return &mut self.sections[position];
        }
        self.sections.push(Section { name: REPOSITORY.to_owned(), options: Vec::new() });
        let last = self.sections.len() - 1;
        &mut self.sections[last]
    }

    /// An option of `[repository]`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let section = self.repository()?;
        section.options.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Sets an option of `[repository]`, keeping its place if it exists.
    pub fn set(&mut self, name: &str, value: &str) {
        let section = self.repository_mut();
        match section.options.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.to_owned(),
            None => section.options.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Removes an option of `[repository]`; returns whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let Some(section) = self.sections.iter_mut().find(|s| s.name == REPOSITORY) else {
            return false;
        };
        let before = section.options.len();
        section.options.retain(|(n, _)| n != name);
        section.options.len() != before
    }

    /// Python's `ConfigParser.write` output.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for section in &self.sections {
            out.push('[');
            out.push_str(&section.name);
            out.push_str("]\n");
            for (name, value) in &section.options {
                out.push_str(name);
                out.push_str(" = ");
                out.push_str(&value.replace('\n', "\n\t"));
                out.push('\n');
            }
            out.push('\n');
        }
        out
    }

    /// Validates `[repository]` as borg's `Repository.open` does.
    pub fn repository_settings(&self) -> Result<RepositorySettings, ConfigError> {
        if self.repository().is_none() {
            return Err(ConfigError("no repository section found".into()));
        }
        let required = |name: &str| self.get(name).ok_or_else(|| ConfigError(format!("option {name} is missing")));
        let version = python_int(required("version")?).ok_or_else(|| ConfigError("version is not a number".into()))?;
        if version != 1 {
            return Err(ConfigError(format!("repository version {version} is not supported by this borg version")));
        }
        let size = |name: &str, text: &str| {
            parse_file_size(text).map_err(|e| ConfigError(format!("{name}: {e}")))
        };
        let max_segment_size = size("max_segment_size", required("max_segment_size")?)?;
        if max_segment_size >= MAX_SEGMENT_SIZE_LIMIT {
            return Err(ConfigError(format!("max_segment_size >= {MAX_SEGMENT_SIZE_LIMIT}")));
        }
        let segments_per_dir = python_int(required("segments_per_dir")?)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| ConfigError("segments_per_dir is not a positive number".into()))?;
        let additional_free_space = size("additional_free_space", self.get("additional_free_space").unwrap_or("0"))?;
        let append_only = match self.get("append_only") {
            None => false,
            Some(text) => python_bool(text).ok_or_else(|| ConfigError(format!("Not a boolean: {text}")))?,
        };
        let storage_quota = size("storage_quota", self.get("storage_quota").unwrap_or("0"))?;
        let id = parse_hex_id(required("id")?.trim()).ok_or_else(|| ConfigError("id is not 64 hex digits".into()))?;
        Ok(RepositorySettings {
            segments_per_dir,
            max_segment_size: max_segment_size.max(0) as u64,
            additional_free_space: additional_free_space.max(0) as u64,
            append_only,
            storage_quota: storage_quota.max(0) as u64,
            id,
        })
    }
}

/// Python's `int(text)`: surrounding whitespace, a sign, and `_` between digits.
fn python_int(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let cleaned: String = digits.chars().filter(|c| *c != '_').collect();
    if !cleaned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i64 = cleaned.parse().ok()?;
    Some(if negative { -value } else { value })
}

/// ConfigParser's `getboolean`.
fn python_bool(text: &str) -> Option<bool> {
    match text.to_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

fn parse_hex_id(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut id = [0u8; 32];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

fn hex(bytes: &[u8]) -> String {
    crate::engine::rpc::errors::hex_id(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH: &str = "[repository]\nversion = 1\nsegments_per_dir = 1000\nmax_segment_size = 524288000\nappend_only = 0\nstorage_quota = 0\nadditional_free_space = 0\nid = 7ef879e6570d2edf8f100697b85ea6e10e62412b9f3a5de786eff26e6a198bf1\n\n";

    #[test]
    fn a_fresh_config_is_written_byte_for_byte_like_borg() {
        let settings = RepoConfig::parse(FRESH).unwrap().repository_settings().unwrap();
        let written = RepoConfig::new_repository(1000, 524_288_000, false, 0, settings.id).to_text();
        assert_eq!(written, FRESH);
        assert_eq!(written.len(), 216);
    }

    #[test]
    fn settings_are_validated_like_borg() {
        let settings = RepoConfig::parse(FRESH).unwrap().repository_settings().unwrap();
        assert_eq!(settings.segments_per_dir, 1000);
        assert_eq!(settings.max_segment_size, 524_288_000);
        assert!(!settings.append_only);
        let error = |text: &str| RepoConfig::parse(text).unwrap().repository_settings().unwrap_err().0;
        assert_eq!(error("[other]\na = 1\n"), "no repository section found");
        assert_eq!(error(&FRESH.replace("version = 1", "version = 2")), "repository version 2 is not supported by this borg version");
        assert_eq!(error(&FRESH.replace("524288000", "4273995776")), "max_segment_size >= 4273995776");
        assert_eq!(error(&FRESH.replace("id = 7e", "id = zz")), "id is not 64 hex digits");
    }

    #[test]
    fn multi_line_keys_round_trip_with_tab_indentation() {
        let mut config = RepoConfig::parse(FRESH).unwrap();
        config.set("key", "line1\nline2\nline3");
        let text = config.to_text();
        assert!(text.contains("key = line1\n\tline2\n\tline3\n"), "{text}");
        let reparsed = RepoConfig::parse(&text).unwrap();
        assert_eq!(reparsed.get("key"), Some("line1\nline2\nline3"));
        assert_eq!(reparsed, config);
    }

    #[test]
    fn reads_configparser_syntax() {
        let text = "# comment\n[repository]\nVersion: 1\n; another\nSegments_Per_Dir=5\nmax_segment_size = 10M\nid = 7ef879e6570d2edf8f100697b85ea6e10e62412b9f3a5de786eff26e6a198bf1\nappend_only = Yes\nstorage_quota = 1.5G\nextra = a\n  continued\n\n[other]\nx = y\n";
        let config = RepoConfig::parse(text).unwrap();
        let settings = config.repository_settings().unwrap();
        assert_eq!(settings.segments_per_dir, 5);
        assert_eq!(settings.max_segment_size, 10_000_000);
        assert!(settings.append_only);
        assert_eq!(settings.storage_quota, 1_500_000_000);
        assert_eq!(config.get("extra"), Some("a\ncontinued"));
        assert!(config.to_text().ends_with("[other]\nx = y\n\n"));
    }

    #[test]
    fn removing_reports_presence() {
        let mut config = RepoConfig::parse(FRESH).unwrap();
        config.set("last_segment_checked", "7");
        assert!(config.remove("last_segment_checked"));
        assert!(!config.remove("last_segment_checked"));
        assert_eq!(config.to_text(), FRESH);
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        assert!(RepoConfig::parse("version = 1\n").is_err());
        assert!(RepoConfig::parse("[repository]\nno delimiter\n").is_err());
        assert!(RepoConfig::parse("[repository]\na = 1\na = 2\n").is_err());
        assert!(RepoConfig::parse("[repository]\n[repository]\n").is_err());
        assert!(RepoConfig::parse("[]\n").is_err());
        assert!(RepoConfig::parse("\u{0}\u{ffff}").is_err());
    }

    #[test]
    fn python_int_and_bool_rules() {
        assert_eq!(python_int(" 1_000 "), Some(1000));
        assert_eq!(python_int("-5"), Some(-5));
        assert_eq!(python_int("1__0"), None);
        assert_eq!(python_int("0x10"), None);
        assert_eq!(python_bool("ON"), Some(true));
        assert_eq!(python_bool("2"), None);
    }
}
