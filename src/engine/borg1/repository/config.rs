//! The repository `config` file: a Python ConfigParser-compatible INI reader and writer.
//!
//! borg reads and writes `config` with `ConfigParser(interpolation=None)` (section 6.2), so this module
//! reproduces that dialect: `[section]` headers, `name = value` or `name: value` with names lowercased,
//! whole-line `#`/`;` comments, indented continuation lines (blank lines inside a value are kept),
//! a `DEFAULT` section whose options every section inherits, strict duplicate detection, and the
//! writer's exact bytes (multi-line values continue with a TAB, each section ends with a blank line).
//! Unknown options and their order survive a read/write cycle; comments do not, as in Python.
//!
//! It also holds the typed view of the `[repository]` section with borg's validation (section 4.2.5),
//! the layout of a freshly created config, and the `nonce` file codec (section 6.8), which shares the
//! hex parsing rules of the repository id.

use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroU32;

use super::segment::MAX_SEGMENT_SIZE_LIMIT;
use super::units::{FileSizeError, is_python_space, parse_file_size, python_strip};
use crate::common::python::python_str_repr;

/// The section every repository config must have (case-sensitive).
pub const REPOSITORY_SECTION: &str = "repository";
/// ConfigParser's defaults section, inherited by every other section.
pub const DEFAULT_SECTION: &str = "DEFAULT";
/// `segments_per_dir` of a new repository.
pub const DEFAULT_SEGMENTS_PER_DIR: u32 = 1000;
/// `max_segment_size` of a new repository (500 MiB).
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 500 * 1024 * 1024;

/// A parsed INI file in ConfigParser's model: ordered sections of ordered, lowercased options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFile {
    defaults: Vec<(String, String)>,
    sections: Vec<(String, Vec<(String, String)>)>,
}

/// Why a config text was refused (ConfigParser's `read_file` exceptions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSyntaxError {
    NotUtf8,
    /// An option or other text before the first `[section]`.
    MissingSectionHeader {
        line: usize,
        text: String,
    },
    DuplicateSection {
        section: String,
        line: usize,
    },
    DuplicateOption {
        section: String,
        option: String,
        line: usize,
    },
    /// Lines that are neither sections, options, comments nor continuations.
    Parsing {
        lines: Vec<(usize, String)>,
    },
}

impl fmt::Display for ConfigSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => write!(f, "config file is not valid UTF-8"),
            Self::MissingSectionHeader { line, text } => {
                write!(
                    f,
                    "File contains no section headers. line: {line} {}",
                    python_str_repr(text)
                )
            }
            Self::DuplicateSection { section, line } => {
                write!(
                    f,
                    "While reading config [line {line:2}]: section {} already exists",
                    python_str_repr(section)
                )
            }
            Self::DuplicateOption {
                section,
                option,
                line,
            } => write!(
                f,
                "While reading config [line {line:2}]: option {} in section {} already exists",
                python_str_repr(option),
                python_str_repr(section)
            ),
            Self::Parsing { lines } => {
                write!(f, "Source contains parsing errors: config")?;
                for (line, text) in lines {
                    write!(f, "\n\t[line {line:2}]: {}", python_str_repr(text))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigSyntaxError {}

/// An edit that ConfigParser would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigEditError {
    NoSection(String),
    DuplicateSection(String),
}

impl fmt::Display for ConfigEditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSection(section) => write!(f, "No section: {}", python_str_repr(section)),
            Self::DuplicateSection(section) => {
                write!(f, "Section {} already exists", python_str_repr(section))
            }
        }
    }
}

impl std::error::Error for ConfigEditError {}

/// Where the parser is adding options.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Defaults,
    Section(usize),
}

type RawOptions = Vec<(String, Vec<String>)>;

impl ConfigFile {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses config bytes (UTF-8, any of `\n`, `\r\n`, `\r` as line ends).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, ConfigSyntaxError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ConfigSyntaxError::NotUtf8)?;
        Self::parse(text)
    }

    /// Parses config text exactly as `ConfigParser(interpolation=None).read_string` does.
    pub fn parse(text: &str) -> Result<Self, ConfigSyntaxError> {
        let mut defaults: RawOptions = Vec::new();
        let mut sections: Vec<(String, RawOptions)> = Vec::new();
        let mut target: Option<Target> = None;
        // Index of the option that continuation lines extend; `None` also after a section header.
        let mut current_option: Option<usize> = None;
        let mut indent_level = 0usize;
        let mut seen_options: HashSet<(String, String)> = HashSet::new();
        let mut bad_lines = Vec::new();
        for (index, line) in python_lines(text).enumerate() {
            let line_number = index + 1;
            let stripped = python_strip(line);
            let is_comment = stripped.starts_with('#') || stripped.starts_with(';');
            if stripped.is_empty() || is_comment {
                // A blank line may belong to a multi-line value; a comment line never does.
                if !is_comment && let (Some(target), Some(option)) = (target, current_option) {
                    options_mut(&mut defaults, &mut sections, target)[option]
                        .1
                        .push(String::new());
                }
                continue;
            }
            let indent = line.chars().take_while(|&c| is_python_space(c)).count();
            if let (Some(target), Some(option)) = (target, current_option)
                && indent > indent_level
            {
                options_mut(&mut defaults, &mut sections, target)[option]
                    .1
                    .push(stripped.to_owned());
                continue;
            }
            indent_level = indent;
            if let Some(header) = section_header(stripped) {
                if header == DEFAULT_SECTION {
                    target = Some(Target::Defaults);
                } else if sections.iter().any(|(name, _)| name == header) {
                    return Err(ConfigSyntaxError::DuplicateSection {
                        section: header.to_owned(),
                        line: line_number,
                    });
                } else {
                    sections.push((header.to_owned(), Vec::new()));
                    target = Some(Target::Section(sections.len() - 1));
                }
                current_option = None;
                continue;
            }
            let Some(target) = target else {
                return Err(ConfigSyntaxError::MissingSectionHeader {
                    line: line_number,
                    text: line.to_owned(),
                });
            };
            let Some(delimiter) = stripped.find(['=', ':']) else {
                bad_lines.push((line_number, line.to_owned()));
                continue;
            };
            if delimiter == 0 {
                // Python records the error but still stores the value under an empty name.
                bad_lines.push((line_number, line.to_owned()));
            }
            let name = python_strip(&stripped[..delimiter]).to_lowercase();
            let value = python_strip(&stripped[delimiter + 1..]).to_owned();
            let section_name = match target {
                Target::Defaults => DEFAULT_SECTION.to_owned(),
                Target::Section(index) => sections[index].0.clone(),
            };
            if !seen_options.insert((section_name.clone(), name.clone())) {
                return Err(ConfigSyntaxError::DuplicateOption {
                    section: section_name,
                    option: name,
                    line: line_number,
                });
            }
            let options = options_mut(&mut defaults, &mut sections, target);
            options.push((name.clone(), vec![value]));
            // An empty name cannot be continued (Python tests the name's truthiness).
            current_option = (!name.is_empty()).then(|| options.len() - 1);
        }
        if !bad_lines.is_empty() {
            return Err(ConfigSyntaxError::Parsing { lines: bad_lines });
        }
        Ok(Self {
            defaults: join_values(defaults),
            sections: sections
                .into_iter()
                .map(|(name, options)| (name, join_values(options)))
                .collect(),
        })
    }

    /// The file text as `ConfigParser.write` produces it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if !self.defaults.is_empty() {
            write_section(&mut out, DEFAULT_SECTION, &self.defaults);
        }
        for (name, options) in &self.sections {
            write_section(&mut out, name, options);
        }
        out
    }

    /// Section names in file order (without `DEFAULT`), like `ConfigParser.sections()`.
    pub fn sections(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|(name, _)| name.as_str())
    }

    pub fn has_section(&self, section: &str) -> bool {
        self.sections.iter().any(|(name, _)| name == section)
    }

    pub fn add_section(&mut self, section: &str) -> Result<(), ConfigEditError> {
        if section == DEFAULT_SECTION || self.has_section(section) {
            return Err(ConfigEditError::DuplicateSection(section.to_owned()));
        }
        self.sections.push((section.to_owned(), Vec::new()));
        Ok(())
    }

    /// The options of `section` itself (not the inherited defaults), in order.
    pub fn options(&self, section: &str) -> Option<&[(String, String)]> {
        if section == DEFAULT_SECTION {
            return Some(&self.defaults);
        }
        self.sections
            .iter()
            .find(|(name, _)| name == section)
            .map(|(_, options)| options.as_slice())
    }

    /// `config.get(section, option)`: the section's value, else the `DEFAULT` one; `None` if neither
    /// exists or the section does not.
    pub fn get(&self, section: &str, option: &str) -> Option<&str> {
        let option = option.to_lowercase();
        let own = self.options(section)?;
        own.iter()
            .chain(self.defaults.iter())
            .find(|(name, _)| *name == option)
            .map(|(_, value)| value.as_str())
    }

    /// `config.set(section, option, value)`: replaces in place or appends.
    pub fn set(&mut self, section: &str, option: &str, value: &str) -> Result<(), ConfigEditError> {
        let option = option.to_lowercase();
        let options = self.options_of_mut(section)?;
        match options.iter_mut().find(|(name, _)| *name == option) {
            Some((_, existing)) => *existing = value.to_owned(),
            None => options.push((option, value.to_owned())),
        }
        Ok(())
    }

    /// `config.remove_option(section, option)`: whether the option existed in the section itself.
    pub fn remove_option(&mut self, section: &str, option: &str) -> Result<bool, ConfigEditError> {
        let option = option.to_lowercase();
        let options = self.options_of_mut(section)?;
        let before = options.len();
        options.retain(|(name, _)| *name != option);
        Ok(options.len() != before)
    }

    fn options_of_mut(
        &mut self,
        section: &str,
    ) -> Result<&mut Vec<(String, String)>, ConfigEditError> {
        if section == DEFAULT_SECTION {
            return Ok(&mut self.defaults);
        }
        self.sections
            .iter_mut()
            .find(|(name, _)| name == section)
            .map(|(_, options)| options)
            .ok_or_else(|| ConfigEditError::NoSection(section.to_owned()))
    }
}

fn options_mut<'a>(
    defaults: &'a mut RawOptions,
    sections: &'a mut [(String, RawOptions)],
    target: Target,
) -> &'a mut RawOptions {
    match target {
        Target::Defaults => defaults,
        Target::Section(index) => &mut sections[index].1,
    }
}

/// `'\n'.join(lines).rstrip()`, ConfigParser's `_join_multiline_values`.
fn join_values(options: RawOptions) -> Vec<(String, String)> {
    options
        .into_iter()
        .map(|(name, lines)| {
            let joined = lines.join("\n");
            let trimmed = joined.trim_end_matches(is_python_space).to_owned();
            (name, trimmed)
        })
        .collect()
}

fn write_section(out: &mut String, name: &str, options: &[(String, String)]) {
    out.push('[');
    out.push_str(name);
    out.push_str("]\n");
    for (option, value) in options {
        out.push_str(option);
        out.push_str(" = ");
        out.push_str(&value.replace('\n', "\n\t"));
        out.push('\n');
    }
    out.push('\n');
}

/// `\[(?P<header>.+)\]` matched at the start: everything up to the last `]`, at least one character.
fn section_header(stripped: &str) -> Option<&str> {
    let rest = stripped.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    (end > 0).then(|| &rest[..end])
}

/// Lines as Python's text-mode file iteration yields them (universal newlines), without terminators.
fn python_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(['\n', '\r']) {
            Some(end) => {
                let line = &rest[..end];
                let terminator = if rest[end..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = &rest[end + terminator..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------------
// The [repository] section

/// The validated `[repository]` settings borg reads at open (`repository.py:456-504`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryConfig {
    pub segments_per_dir: NonZeroU32,
    /// Negative values (which borg accepts) are clamped to 0; both make every entry start a new
    /// segment, so the behaviour is the same.
    pub max_segment_size: u64,
    pub append_only: bool,
    /// 0 means no quota. Negative values are kept: borg then refuses every write, and so should we.
    pub storage_quota: i64,
    pub additional_free_space: i64,
    pub id: [u8; 32],
}

/// A `[repository]` section borg would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryConfigError {
    /// InvalidRepositoryConfig "no repository section found".
    NoRepositorySection,
    /// InvalidRepositoryConfig "repository version N is not supported by this borg version".
    UnsupportedVersion(String),
    /// InvalidRepositoryConfig "max_segment_size >= 4273995776".
    MaxSegmentSizeTooBig,
    /// NoOptionError: a required option is absent.
    MissingOption(&'static str),
    /// ValueError from `int()`.
    InvalidInteger { option: &'static str, value: String },
    /// ValueError from `getboolean`.
    InvalidBoolean { option: &'static str, value: String },
    /// ValueError from `parse_file_size`.
    InvalidFileSize {
        option: &'static str,
        error: FileSizeError,
    },
    /// ValueError from `hex_to_bin(id, length=32)`.
    InvalidId(String),
    /// `segments_per_dir` outside 1..=2^32-1. borg accepts it and then fails dividing by it (or
    /// computes negative directory names); refusing at open is the safe reading.
    SegmentsPerDirOutOfRange(String),
}

impl RepositoryConfigError {
    /// borg raises these as `InvalidRepositoryConfig(path, <Display text>)`; the others surface as
    /// `ValueError`/`NoOptionError` with the Display text as message.
    pub fn is_invalid_repository_config(&self) -> bool {
        matches!(
            self,
            Self::NoRepositorySection | Self::UnsupportedVersion(_) | Self::MaxSegmentSizeTooBig
        )
    }
}

impl fmt::Display for RepositoryConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRepositorySection => write!(f, "no repository section found"),
            Self::UnsupportedVersion(version) => {
                write!(
                    f,
                    "repository version {version} is not supported by this borg version"
                )
            }
            Self::MaxSegmentSizeTooBig => write!(f, "max_segment_size >= {MAX_SEGMENT_SIZE_LIMIT}"),
            Self::MissingOption(option) => {
                write!(
                    f,
                    "No option {} in section: {}",
                    python_str_repr(option),
                    python_str_repr(REPOSITORY_SECTION)
                )
            }
            Self::InvalidInteger { value, .. } => {
                write!(
                    f,
                    "invalid literal for int() with base 10: {}",
                    python_str_repr(value)
                )
            }
            Self::InvalidBoolean { value, .. } => write!(f, "Not a boolean: {value}"),
            Self::InvalidFileSize { error, .. } => error.fmt(f),
            Self::InvalidId(reason) => f.write_str(reason),
            Self::SegmentsPerDirOutOfRange(value) => {
                write!(
                    f,
                    "segments_per_dir {value} is not a positive 32-bit number"
                )
            }
        }
    }
}

impl std::error::Error for RepositoryConfigError {}

impl RepositoryConfig {
    /// Validates `[repository]` in borg's order. `storage_quota_override` is serve's `--storage-quota`;
    /// when given, the config's value is not even parsed (as in borg).
    pub fn from_config(
        config: &ConfigFile,
        storage_quota_override: Option<i64>,
    ) -> Result<Self, RepositoryConfigError> {
        use RepositoryConfigError as E;
        if !config.has_section(REPOSITORY_SECTION) {
            return Err(E::NoRepositorySection);
        }
        let get = |option: &str| config.get(REPOSITORY_SECTION, option);
        let version = required_python_int(get("version"), "version")?;
        if version != "1" {
            return Err(E::UnsupportedVersion(version));
        }
        let max_segment_size = file_size(
            get("max_segment_size").ok_or(E::MissingOption("max_segment_size"))?,
            "max_segment_size",
        )?;
        if max_segment_size >= MAX_SEGMENT_SIZE_LIMIT as i64 {
            return Err(E::MaxSegmentSizeTooBig);
        }
        let segments_per_dir = required_python_int(get("segments_per_dir"), "segments_per_dir")?;
        let segments_per_dir = segments_per_dir
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or(E::SegmentsPerDirOutOfRange(segments_per_dir))?;
        let additional_free_space = get("additional_free_space")
            .map_or(Ok(0), |v| file_size(v, "additional_free_space"))?;
        let append_only = match get("append_only") {
            None => false,
            Some(value) => parse_boolean(value).ok_or_else(|| E::InvalidBoolean {
                option: "append_only",
                value: value.to_owned(),
            })?,
        };
        let storage_quota = match storage_quota_override {
            Some(quota) => quota,
            None => get("storage_quota").map_or(Ok(0), |v| file_size(v, "storage_quota"))?,
        };
        let id_text = get("id").ok_or(E::MissingOption("id"))?;
        let id: [u8; 32] = hex_to_bin(python_strip(id_text), 32)
            .map_err(E::InvalidId)?
            .try_into()
            .map_err(|_| E::InvalidId("Expected 32 bytes (64 hex digits)".to_owned()))?;
        Ok(Self {
            segments_per_dir,
            max_segment_size: u64::try_from(max_segment_size).unwrap_or(0),
            append_only,
            storage_quota,
            additional_free_space,
            id,
        })
    }
}

fn required_python_int(
    value: Option<&str>,
    option: &'static str,
) -> Result<String, RepositoryConfigError> {
    let value = value.ok_or(RepositoryConfigError::MissingOption(option))?;
    parse_python_int(value).ok_or_else(|| RepositoryConfigError::InvalidInteger {
        option,
        value: value.to_owned(),
    })
}

fn file_size(value: &str, option: &'static str) -> Result<i64, RepositoryConfigError> {
    parse_file_size(value).map_err(|error| RepositoryConfigError::InvalidFileSize { option, error })
}

/// `partial check` progress: `getint('last_segment_checked', fallback=-1)`.
pub fn last_segment_checked(config: &ConfigFile) -> Result<i64, RepositoryConfigError> {
    let Some(value) = config.get(REPOSITORY_SECTION, "last_segment_checked") else {
        return Ok(-1);
    };
    parse_python_int(value)
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| RepositoryConfigError::InvalidInteger {
            option: "last_segment_checked",
            value: value.to_owned(),
        })
}

/// The repokey blob (`load_key`): the `key` option stripped, empty when there is none.
pub fn repository_key(config: &ConfigFile) -> &str {
    config
        .get(REPOSITORY_SECTION, "key")
        .map_or("", python_strip)
}

/// Why key data sent to `save_key` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyDataError {
    NotUtf8,
    /// A character that is not printable ASCII, a space or a `\n` line break, at this byte
    /// offset. A `\r` (or any other line break) would end the option when the
    /// config is read back, letting the key's holder add options of their choosing.
    Forbidden {
        offset: usize,
        character: char,
    },
}

impl fmt::Display for KeyDataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDataError::NotUtf8 => f.write_str("key data must be UTF-8 text"),
            KeyDataError::Forbidden { offset, character } => write!(
                f,
                "key data may hold only printable ASCII, spaces and line breaks (\\n); found {} at byte {offset}",
                character.escape_unicode()
            ),
        }
    }
}

/// The text `save_key` may store: what borg's key blobs are (base64 lines joined with `\n`),
/// and nothing that could change how the config reads back.
pub fn key_text(keydata: &[u8]) -> Result<&str, KeyDataError> {
    let text = std::str::from_utf8(keydata).map_err(|_| KeyDataError::NotUtf8)?;
    match text
        .char_indices()
        .find(|&(_, c)| c != '\n' && !(c == ' ' || c.is_ascii_graphic()))
    {
        Some((offset, character)) => Err(KeyDataError::Forbidden { offset, character }),
        None => Ok(text),
    }
}

/// The config borg writes at `init` (`repository.py:312-323`), in its option order.
pub fn new_repository_config(id: &[u8; 32], append_only: bool, storage_quota: i64) -> ConfigFile {
    let options = [
        ("version", "1".to_owned()),
        ("segments_per_dir", DEFAULT_SEGMENTS_PER_DIR.to_string()),
        ("max_segment_size", DEFAULT_MAX_SEGMENT_SIZE.to_string()),
        ("append_only", u8::from(append_only).to_string()),
        ("storage_quota", storage_quota.to_string()),
        ("additional_free_space", "0".to_owned()),
        ("id", bin_to_hex(id)),
    ];
    ConfigFile {
        defaults: Vec::new(),
        sections: vec![(
            REPOSITORY_SECTION.to_owned(),
            options
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        )],
    }
}

/// ConfigParser's `getboolean` (case-insensitive `1/yes/true/on`, `0/no/false/off`).
pub fn parse_boolean(value: &str) -> Option<bool> {
    match value.to_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Python's `int(text)` for ASCII digits: surrounding whitespace, a sign, `_` between digits. Returns
/// the normalised decimal text (no leading zeros, `-` only for non-zero values), which keeps huge
/// values exact for messages.
pub fn parse_python_int(text: &str) -> Option<String> {
    let body = python_strip(text);
    let (negative, digits) = match body.as_bytes().first() {
        Some(b'-') => (true, &body[1..]),
        Some(b'+') => (false, &body[1..]),
        _ => (false, body),
    };
    let bytes = digits.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.first().is_some_and(u8::is_ascii_digit)
        && bytes.last().is_some_and(u8::is_ascii_digit)
        && bytes.iter().all(|b| b.is_ascii_digit() || *b == b'_')
        && !digits.contains("__");
    if !valid {
        return None;
    }
    let plain: String = digits.chars().filter(char::is_ascii_digit).collect();
    let trimmed = plain.trim_start_matches('0');
    Some(match (trimmed.is_empty(), negative) {
        (true, _) => "0".to_owned(),
        (false, true) => format!("-{trimmed}"),
        (false, false) => trimmed.to_owned(),
    })
}

/// borg's `hex_to_bin(text, length)`: `binascii.unhexlify` plus a length check, with Python's messages.
pub fn hex_to_bin(text: &str, length: usize) -> Result<Vec<u8>, String> {
    if !text.is_ascii() {
        return Err("string argument should contain only ASCII characters".to_owned());
    }
    if text.len() % 2 != 0 {
        return Err("Odd-length string".to_owned());
    }
    let bytes = text
        .as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            Some((high * 16 + low) as u8)
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| "Non-hexadecimal digit found".to_owned())?;
    if bytes.len() != length {
        return Err(format!(
            "Expected {length} bytes ({} hex digits), got {} bytes.",
            2 * length,
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Lowercase hex, as borg's `bin_to_hex`.
pub fn bin_to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------------
// The nonce file

/// A `nonce` file borg would refuse; `Display` is borg's `Error` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceError {
    pub reason: String,
}

impl fmt::Display for NonceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Repository has an invalid nonce file: {}", self.reason)
    }
}

impl std::error::Error for NonceError {}

/// The `nonce` file content: 16 lowercase hex digits of the big-endian u64, no newline.
pub fn encode_nonce(next_unreserved: u64) -> String {
    bin_to_hex(&next_unreserved.to_be_bytes())
}

/// Parses a `nonce` file like 1.4's `get_free_nonce`: UTF-8 text, stripped, exactly 8 bytes of hex
/// (either case).
pub fn parse_nonce(bytes: &[u8]) -> Result<u64, NonceError> {
    let text = std::str::from_utf8(bytes).map_err(|_| NonceError {
        reason: "not UTF-8 text".to_owned(),
    })?;
    let binary = hex_to_bin(python_strip(text), 8).map_err(|reason| NonceError { reason })?;
    let mut value = [0u8; 8];
    value.copy_from_slice(&binary);
    Ok(u64::from_be_bytes(value))
}

#[cfg(test)]
mod tests;
