//! The `lock.roster` JSON registry of shared and exclusive holders: borg's `LockRoster`
//! (`locking.py:259-355`).
//!
//! The file is a JSON object such as `{"exclusive": [["vm@3281355014145", 10228, 0]]}`.
//! borg rewrites it in place (no temporary file), and only while holding the mutex.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use super::LockError;
use super::identity::{LockIdentity, process_alive};
use super::mutex::{LOG_TARGET, python_os_error_text};

/// A roster beyond this size is not one borg wrote; it is treated like invalid JSON.
const ROSTER_SIZE_LIMIT: u64 = 4 * 1024 * 1024;

/// The two lists in the roster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RosterKey {
    Shared,
    Exclusive,
}

impl RosterKey {
    /// The JSON key (and the word in borg's log messages).
    pub fn as_str(self) -> &'static str {
        match self {
            RosterKey::Shared => "shared",
            RosterKey::Exclusive => "exclusive",
        }
    }
}

/// How [`LockRoster::modify`] changes one list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RosterChange {
    /// Add our identity (no duplicate if present).
    Add,
    /// Remove our identity (nothing happens if absent, as in borg).
    Remove,
}

/// The roster's content. A key that is absent differs from a key with an empty list only in
/// what is written back, which borg also preserves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RosterData {
    pub shared: Option<Vec<LockIdentity>>,
    pub exclusive: Option<Vec<LockIdentity>>,
    /// Keys this version does not know, kept unchanged as borg keeps them.
    pub other: Map<String, Value>,
}

impl RosterData {
    /// The holders under `key` (empty if the key is absent).
    pub fn holders(&self, key: RosterKey) -> &[LockIdentity] {
        match key {
            RosterKey::Shared => self.shared.as_deref().unwrap_or_default(),
            RosterKey::Exclusive => self.exclusive.as_deref().unwrap_or_default(),
        }
    }

    fn list_mut(&mut self, key: RosterKey) -> &mut Option<Vec<LockIdentity>> {
        match key {
            RosterKey::Shared => &mut self.shared,
            RosterKey::Exclusive => &mut self.exclusive,
        }
    }

    /// Parse roster JSON. `None` where borg would fall back to `{}` (not JSON, or an entry
    /// that is not `[str, int, int]`); borg crashes on some shapes we also reject here.
    /// Duplicate entries are merged, as borg's set does.
    pub fn parse(text: &str) -> Option<RosterData> {
        let Value::Object(mut object) = serde_json::from_str::<Value>(text).ok()? else {
            return None;
        };
        let mut data = RosterData::default();
        for key in [RosterKey::Shared, RosterKey::Exclusive] {
            if let Some(value) = object.remove(key.as_str()) {
                *data.list_mut(key) = Some(parse_holders(&value)?);
            }
        }
        data.other = object;
        Some(data)
    }

    /// The JSON text exactly as Python's `json.dump` writes it (`", "` and `": "`
    /// separators, non-ASCII escaped). Keys come out sorted.
    pub fn to_json(&self) -> String {
        let mut object = self.other.clone();
        for key in [RosterKey::Shared, RosterKey::Exclusive] {
            let list = match key {
                RosterKey::Shared => &self.shared,
                RosterKey::Exclusive => &self.exclusive,
            };
            if let Some(holders) = list {
                let entries = holders
                    .iter()
                    .map(|holder| {
                        Value::Array(vec![
                            Value::from(holder.host_id.clone()),
                            Value::from(holder.pid),
                            Value::from(holder.thread),
                        ])
                    })
                    .collect();
                object.insert(key.as_str().to_owned(), Value::Array(entries));
            }
        }
        let mut output = Vec::new();
        let mut serializer =
            serde_json::Serializer::with_formatter(&mut output, PythonJsonFormatter);
        // Serialising a Value into a Vec cannot fail (no I/O, no non-string keys).
        if Value::Object(object).serialize(&mut serializer).is_err() {
            return "{}".to_owned();
        }
        // The formatter only ever writes ASCII.
        String::from_utf8(output).unwrap_or_else(|_| "{}".to_owned())
    }
}

fn parse_holders(value: &Value) -> Option<Vec<LockIdentity>> {
    let mut holders: Vec<LockIdentity> = Vec::new();
    for entry in value.as_array()? {
        let [host, pid, thread] = entry.as_array()?.as_slice() else {
            return None;
        };
        let holder = LockIdentity {
            host_id: host.as_str()?.to_owned(),
            pid: pid.as_i64()?,
            thread: thread.as_i64()?,
        };
        if !holders.contains(&holder) {
            holders.push(holder);
        }
    }
    Some(holders)
}

/// serde_json formatting that matches Python's `json.dump` defaults byte for byte.
struct PythonJsonFormatter;

impl serde_json::ser::Formatter for PythonJsonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    /// `ensure_ascii=True`: everything outside printable ASCII becomes `\uXXXX`
    /// (serde_json has already escaped quotes, backslashes and control characters).
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for character in fragment.chars() {
            if character.is_ascii() && character != '\u{7f}' {
                let mut buffer = [0u8; 1];
                writer.write_all(character.encode_utf8(&mut buffer).as_bytes())?;
            } else {
                let mut units = [0u16; 2];
                for unit in character.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// borg's `LockRoster` at one path (normally `<repo>/lock.roster`), for one identity.
#[derive(Debug)]
pub struct LockRoster {
    path: PathBuf,
    identity: LockIdentity,
}

impl LockRoster {
    pub fn new(path: PathBuf, identity: LockIdentity) -> Self {
        LockRoster { path, identity }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, error: &io::Error) -> LockError {
        LockError::Io(
            self.path.to_string_lossy().into_owned(),
            python_os_error_text(error, &self.path),
        )
    }

    /// Read the roster; a missing, oversized or invalid file is `{}`. Entries of dead local
    /// processes are dropped with borg's warning (and the file is not rewritten: that
    /// happens at the next [`modify`](Self::modify), as in borg).
    pub fn load(&self) -> Result<RosterData, LockError> {
        let Some(text) = self.read_text()? else {
            return Ok(RosterData::default());
        };
        let Some(mut data) = RosterData::parse(&text) else {
            return Ok(RosterData::default());
        };
        for key in [RosterKey::Shared, RosterKey::Exclusive] {
            if let Some(holders) = data.list_mut(key) {
                holders.retain(|holder| {
                    let alive = process_alive(holder, &self.identity.host_id);
                    if !alive {
                        log::warn!(
                            target: LOG_TARGET,
                            "Removed stale {} roster lock for host {} pid {} thread {}.",
                            key.as_str(),
                            holder.host_id,
                            holder.pid,
                            holder.thread
                        );
                    }
                    alive
                });
            }
        }
        Ok(data)
    }

    /// The file's text, `None` if it is missing, too large or not UTF-8.
    fn read_text(&self) -> Result<Option<String>, LockError> {
        let file = match fs::File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(self.io_error(&error)),
        };
        let mut bytes = Vec::new();
        file.take(ROSTER_SIZE_LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| self.io_error(&error))?;
        if bytes.len() as u64 > ROSTER_SIZE_LIMIT {
            return Ok(None);
        }
        Ok(String::from_utf8(bytes).ok())
    }

    /// Overwrite the roster with `data` (in place, as borg does).
    pub fn save(&self, data: &RosterData) -> Result<(), LockError> {
        fs::write(&self.path, data.to_json()).map_err(|error| self.io_error(&error))
    }

    /// Delete the roster file; a missing file is fine.
    pub fn remove(&self) -> Result<(), LockError> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(self.io_error(&error)),
        }
    }

    /// The live holders under `key`.
    pub fn get(&self, key: RosterKey) -> Result<Vec<LockIdentity>, LockError> {
        Ok(self.load()?.holders(key).to_vec())
    }

    /// Whether every list in `keys` is empty.
    pub fn is_empty(&self, keys: &[RosterKey]) -> Result<bool, LockError> {
        let data = self.load()?;
        Ok(keys.iter().all(|key| data.holders(*key).is_empty()))
    }

    /// Add or remove our identity under `key` and save (borg's `modify`).
    pub fn modify(&self, key: RosterKey, change: RosterChange) -> Result<(), LockError> {
        let mut data = self.load()?;
        let holders = data.list_mut(key).get_or_insert_with(Vec::new);
        match change {
            RosterChange::Add => {
                if !holders.contains(&self.identity) {
                    holders.push(self.identity.clone());
                }
            }
            RosterChange::Remove => holders.retain(|holder| *holder != self.identity),
        }
        self.save(&data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::borg1::lock::tests::{capture_logs, dead_pid, logged, own_identity};

    fn roster_in(dir: &Path, identity: LockIdentity) -> LockRoster {
        LockRoster::new(dir.join("lock.roster"), identity)
    }

    fn holder(host: &str, pid: i64) -> LockIdentity {
        LockIdentity::new(host, pid)
    }

    #[test]
    fn a_missing_roster_loads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let roster = roster_in(dir.path(), holder("h@1", 1));
        assert_eq!(roster.load().unwrap(), RosterData::default());
        assert!(
            roster
                .is_empty(&[RosterKey::Shared, RosterKey::Exclusive])
                .unwrap()
        );
    }

    #[test]
    fn invalid_rosters_load_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let roster = roster_in(dir.path(), holder("h@1", 1));
        for text in [
            "",
            "{",
            "not json",
            "[]",
            "null",
            "{\"shared\": 5}",
            "{\"shared\": [[\"h@2\", 1]]}",
            "{\"shared\": [[\"h@2\", 1, 0, 9]]}",
            "{\"exclusive\": [[\"h@2\", \"1\", 0]]}",
            "{\"exclusive\": [[2, 1, 0]]}",
            "{\"exclusive\": [[\"h@2\", 1.5, 0]]}",
        ] {
            fs::write(roster.path(), text).unwrap();
            assert_eq!(roster.load().unwrap(), RosterData::default(), "{text:?}");
        }
        fs::write(roster.path(), [0xff, 0xfe]).unwrap();
        assert_eq!(roster.load().unwrap(), RosterData::default());
    }

    #[test]
    fn an_oversized_roster_loads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let roster = roster_in(dir.path(), holder("h@1", 1));
        let mut text = String::from("{\"shared\": [");
        while text.len() as u64 <= ROSTER_SIZE_LIMIT {
            text.push_str("[\"elsewhere@1\", 1, 0], ");
        }
        text.push_str("[\"elsewhere@1\", 2, 0]]}");
        fs::write(roster.path(), text).unwrap();
        assert_eq!(roster.load().unwrap(), RosterData::default());
    }

    #[test]
    fn saved_json_is_byte_identical_to_pythons_json_dump() {
        let data = RosterData {
            shared: Some(vec![holder("a@1", 10), holder("b@2", 20)]),
            exclusive: Some(Vec::new()),
            other: Map::new(),
        };
        assert_eq!(
            data.to_json(),
            r#"{"exclusive": [], "shared": [["a@1", 10, 0], ["b@2", 20, 0]]}"#
        );
        let unicode = RosterData {
            exclusive: Some(vec![holder("h\u{e9}st\u{1f600}\"\\\u{7f}\n@3", 7)]),
            ..RosterData::default()
        };
        assert_eq!(
            unicode.to_json(),
            r#"{"exclusive": [["h\u00e9st\ud83d\ude00\"\\\u007f\n@3", 7, 0]]}"#
        );
        assert_eq!(RosterData::default().to_json(), "{}");
    }

    #[test]
    fn parse_round_trips_and_keeps_unknown_keys() {
        let text = r#"{"exclusive": [["vm@3281355014145", 10228, 0]], "future": {"x": [1, 2]}}"#;
        let data = RosterData::parse(text).unwrap();
        assert_eq!(
            data.exclusive,
            Some(vec![holder("vm@3281355014145", 10228)])
        );
        assert_eq!(data.shared, None);
        assert_eq!(data.to_json(), text);
    }

    #[test]
    fn duplicate_entries_are_merged_like_a_python_set() {
        let data = RosterData::parse(r#"{"shared": [["a@1", 1, 0], ["a@1", 1, 0]]}"#).unwrap();
        assert_eq!(data.holders(RosterKey::Shared), [holder("a@1", 1)]);
    }

    #[test]
    fn load_drops_dead_local_entries_with_borgs_warning() {
        capture_logs();
        let dir = tempfile::tempdir().unwrap();
        let me = own_identity();
        let dead = holder(&me.host_id, dead_pid());
        let foreign = holder("elsewhere@1", dead.pid);
        let data = RosterData {
            shared: Some(vec![dead.clone(), me.clone(), foreign.clone()]),
            exclusive: Some(vec![dead.clone()]),
            other: Map::new(),
        };
        let roster = roster_in(dir.path(), me.clone());
        roster.save(&data).unwrap();
        let loaded = roster.load().unwrap();
        assert_eq!(loaded.holders(RosterKey::Shared), [me.clone(), foreign]);
        assert_eq!(loaded.exclusive, Some(Vec::new()));
        for key in ["shared", "exclusive"] {
            let message = format!(
                "Removed stale {key} roster lock for host {} pid {} thread 0.",
                me.host_id, dead.pid
            );
            if let Some(found) = logged(log::Level::Warn, &message) {
                assert!(found, "{message}");
            }
        }
    }

    #[test]
    fn modify_adds_once_and_removes_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let me = holder("h@1", 42);
        let roster = roster_in(dir.path(), me.clone());
        roster.modify(RosterKey::Shared, RosterChange::Add).unwrap();
        roster.modify(RosterKey::Shared, RosterChange::Add).unwrap();
        assert_eq!(
            fs::read_to_string(roster.path()).unwrap(),
            r#"{"shared": [["h@1", 42, 0]]}"#
        );
        roster
            .modify(RosterKey::Exclusive, RosterChange::Remove)
            .unwrap();
        roster
            .modify(RosterKey::Shared, RosterChange::Remove)
            .unwrap();
        assert_eq!(
            fs::read_to_string(roster.path()).unwrap(),
            r#"{"exclusive": [], "shared": []}"#
        );
        assert!(
            roster
                .is_empty(&[RosterKey::Shared, RosterKey::Exclusive])
                .unwrap()
        );
    }

    #[test]
    fn modify_keeps_other_holders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock.roster");
        fs::write(&path, r#"{"shared": [["other@1", 5, 0]]}"#).unwrap();
        let roster = roster_in(dir.path(), holder("h@1", 42));
        roster.modify(RosterKey::Shared, RosterChange::Add).unwrap();
        assert_eq!(
            roster.get(RosterKey::Shared).unwrap(),
            [holder("other@1", 5), holder("h@1", 42)]
        );
        roster
            .modify(RosterKey::Shared, RosterChange::Remove)
            .unwrap();
        assert_eq!(
            roster.get(RosterKey::Shared).unwrap(),
            [holder("other@1", 5)]
        );
    }

    #[test]
    fn remove_ignores_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let roster = roster_in(dir.path(), holder("h@1", 1));
        roster.remove().unwrap();
        fs::write(roster.path(), "{}").unwrap();
        roster.remove().unwrap();
        assert!(!roster.path().exists());
    }

    #[test]
    fn python_reads_our_json_and_we_read_pythons() {
        use crate::test_support::{Borg, require_borg_python};
        let Some(python) = require_borg_python(Borg::Pypi14) else {
            return;
        };
        let data = RosterData {
            shared: Some(vec![holder("h\u{e9}@1", 1), holder("x@2", 2)]),
            exclusive: Some(vec![]),
            other: Map::new(),
        };
        let ours = data.to_json();
        let pythons = crate::test_support::run_python_args(
            &python,
            "import json,sys; d=json.loads(sys.argv[1]); print(json.dumps(dict(sorted(d.items()))))",
            [&ours],
        );
        assert_eq!(pythons.trim_end(), ours);
        assert_eq!(RosterData::parse(pythons.trim_end()), Some(data));
    }
}
