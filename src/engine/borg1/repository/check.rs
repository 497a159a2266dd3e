//! Repository check and repair (the server side of `borg check`): crc verification of every
//! entry, salvage of damaged segments, index rebuild and comparison, and partial checks
//! bounded by time with their continuation point in the config.

use std::time::{Duration, Instant};

use super::error::RepoError;
use super::repo::{LOG, Repository};
use super::segment::SegmentError;
use crate::engine::borg1::remote_log::ProgressPercent;

impl Repository {
    /// borg's `Repository.check`. Returns `!error_found || repair`.
    pub fn check(&mut self, repair: bool, max_duration: u64) -> Result<bool, RepoError> {
        if self.append_only && repair {
            return Err(RepoError::AppendOnly(self.display_path()));
        }
        self.require_exclusive()?;
        let mut errors = 0usize;
        let mut report = |message: String| {
            errors += 1;
            log::error!(target: LOG, "{message}");
        };
        log::info!(target: LOG, "Starting repository check");
        if self.active_txn {
            self.rollback();
        }
        let committed = self
            .get_transaction_id()
            .and_then(|tid| Ok((tid, self.open_index(tid, true)?)));
        let (mut transaction_id, current_index) = match committed {
            Ok((tid, index)) => (tid, Some(index)),
            Err(error) => {
                log::debug!(target: LOG, "Failed to read committed index ({error})");
                (self.segments_transaction_id()?, None)
            }
        };
        if transaction_id.is_none() {
            transaction_id = self.index_transaction_id()?;
        }
        if transaction_id.is_none() {
            transaction_id = self
                .io
                .latest_segment()
                .map_err(|e| RepoError::io("cannot list segments", e))?;
        }
        let Some(transaction_id) = transaction_id else {
            report("This repository contains no valid data.".into());
            return Ok(false);
        };
        if repair {
            self.io
                .cleanup(Some(transaction_id))
                .map_err(|e| RepoError::io("cannot clean up segments", e))?;
        }
        let segments_transaction_id = self.segments_transaction_id()?;
        self.prepare_txn(None, false)?;
        let partial = max_duration > 0;
        if repair && partial {
            return Err(RepoError::Precondition(
                "a partial check cannot repair".into(),
            ));
        }
        let last_checked: i64 = if partial {
            let last = super::config::last_segment_checked(&self.config).unwrap_or(-1);
            log::info!(target: LOG, "skipping to segments >= {}", last + 1);
            last
        } else {
            self.forget_check_progress()?;
            -1
        };
        let started = Instant::now();
        let budget = Duration::from_secs(max_duration);
        let segments = self
            .io
            .list()
            .map_err(|e| RepoError::io("cannot list segments", e))?;
        let mut progress = ProgressPercent::new(
            "repository.check",
            "Checking segments",
            1,
            0.1,
            segments.len() as u64,
        );
        let mut finished = true;
        let mut last_segment = -1i64;
        for (position, file) in segments.iter().enumerate() {
            progress.show(Some(position as u64));
            last_segment = i64::from(file.segment);
            if i64::from(file.segment) <= last_checked || file.segment > transaction_id {
                continue;
            }
            log::debug!(target: LOG, "checking segment file {}...", file.path.display());
            let entries = match self.read_segment_entries(file.segment) {
                Ok(entries) => entries,
                Err(SegmentError::Integrity(error)) => {
                    // `str()` of borg's IntegrityError carries its class message.
                    report(format!("Data integrity error: {error}"));
                    if repair {
                        self.recover_segment(file.segment, &file.path)?;
                        self.read_segment_entries(file.segment).unwrap_or_default()
                    } else {
                        Vec::new()
                    }
                }
                Err(SegmentError::Io(error)) => {
                    return Err(RepoError::io(
                        format!("cannot read {}", file.path.display()),
                        error,
                    ));
                }
            };
            if !partial {
                if let Err(error) = self.update_index(file.segment, &entries) {
                    report(error.to_string());
                }
            }
            if partial && started.elapsed() > budget {
                log::info!(target: LOG, "finished partial segment check, last segment checked is {}", file.segment);
                self.record_check_progress(file.segment)?;
                finished = false;
                break;
            }
        }
        if finished {
            log::info!(target: LOG, "finished segment check at segment {last_segment}");
            self.forget_check_progress()?;
        }
        progress.finish();
        if repair && segments_transaction_id.is_none() {
            report(format!("Adding commit tag to segment {transaction_id}"));
            self.io.set_next_segment(transaction_id + 1);
            self.io
                .write_commit(false)
                .map_err(|e| RepoError::io("cannot write the commit", e))?;
        }
        if !partial {
            log::info!(target: LOG, "Starting repository index check");
            let rebuilt = self
                .index
                .as_ref()
                .ok_or_else(|| RepoError::Internal("no index".into()))?;
            if let (Some(current), false) = (&current_index, repair) {
                if current.len() != rebuilt.len() {
                    report("Index object count mismatch.".into());
                    report(format!("committed index: {} objects", current.len()));
                    report(format!("rebuilt index:   {} objects", rebuilt.len()));
                } else {
                    log::info!(target: LOG, "Index object count match.");
                }
                for (key, segment, offset) in rebuilt.iter() {
                    let committed = current.get(key);
                    if committed != Some((segment, offset)) {
                        report(mismatch_line(key, Some((segment, offset)), committed));
                    }
                }
                for (key, segment, offset) in current.iter() {
                    if !rebuilt.contains(key) {
                        report(mismatch_line(key, None, Some((segment, offset))));
                    }
                }
            }
            if repair {
                self.write_index()?;
            }
        }
        self.rollback();
        let mode = if partial { "partial" } else { "full" };
        if errors > 0 {
            if repair {
                log::info!(target: LOG, "Finished {mode} repository check, errors found and repaired.");
            } else {
                log::error!(target: LOG, "Finished {mode} repository check, errors found.");
            }
        } else {
            log::info!(target: LOG, "Finished {mode} repository check, no problems found.");
        }
        Ok(errors == 0 || repair)
    }

    /// Remembers where a partial check stopped, in the config, as borg does. A read-only key
    /// never writes the config (which also holds the repokey): its partial checks start where
    /// the last recorded one stopped and record nothing.
    fn record_check_progress(&mut self, segment: u32) -> Result<(), RepoError> {
        if self.read_only {
            log::info!(target: LOG, "a read-only key does not record where a partial check stopped");
            return Ok(());
        }
        self.set_option("last_segment_checked", &segment.to_string())?;
        self.save_config()
    }

    /// Forgets a recorded partial check (after a full check, or one that reached the end).
    fn forget_check_progress(&mut self) -> Result<(), RepoError> {
        if !self.read_only && self.remove_option("last_segment_checked") {
            self.save_config()?;
        }
        Ok(())
    }

    /// Rewrites a damaged segment with only its valid entries (borg's `recover_segment`).
    fn recover_segment(&mut self, number: u32, path: &std::path::Path) -> Result<(), RepoError> {
        log::info!(target: LOG, "attempting to recover {}", path.display());
        self.io
            .recover_segment(number)
            .map_err(|e| RepoError::io(format!("cannot recover {}", path.display()), e))
    }
}

/// borg's `'ID: %-64s rebuilt index: %-16s committed index: %-16s'` line.
fn mismatch_line(
    key: &[u8; 32],
    rebuilt: Option<(u32, u32)>,
    committed: Option<(u32, u32)>,
) -> String {
    let show = |value: Option<(u32, u32)>| match value {
        Some((segment, offset)) => format!("({segment}, {offset})"),
        None => "<not found>".to_owned(),
    };
    format!(
        "ID: {:<64} rebuilt index: {:<16} committed index: {:<16}",
        crate::common::text::hex_id(key),
        show(rebuilt),
        show(committed)
    )
}
