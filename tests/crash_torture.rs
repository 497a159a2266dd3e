//! Crash torture: `borg create` and `borg compact` through the engine, killed with SIGKILL at
//! random moments (the engine, the client, or both), mid-PUT, mid-commit, mid-index write and
//! mid-compaction. After every run real borg 1.4.5 `check` passes, every committed archive is
//! still there (and no deleted one came back), the last archive extracts identically, and the
//! next `borg create` succeeds.
//!
//! `CRASH_RUNS` sets the number of runs (default 30, about a minute and a half);
//! `CRASH_SEED` replays a run sequence (the seed is printed).

mod lifecycle;
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use lifecycle::{Site, process_gone, segment_numbers};
use support::wait_for;
use support::{BorgClient, XorShift64};

const DEFAULT_RUNS: usize = 30;
/// Repositories tortured at once (each run is mostly waiting for Python to start).
const DEFAULT_LANES: u64 = 2;
const REPO: &str = "repo";
/// Archives kept when older ones are deleted before a compaction (which gives it work).
const KEEP_BEFORE_COMPACT: usize = 2;
/// At most this many archives otherwise (borg check reads them all after every run).
const MAX_ARCHIVES: usize = 8;
/// Scenario rolls from this one on kill a compaction.
const FIRST_COMPACT_ROLL: u64 = 13;

/// Whom the SIGKILL hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Engine,
    Client,
    /// Client and engine at once (their process group).
    Both,
}

/// When the SIGKILL comes.
#[derive(Debug, Clone)]
enum Moment {
    /// This long after the engine started.
    After(Duration),
    /// When a segment above the given one appears (the first new PUTs), plus a delay.
    NewSegmentAbove(u32, Duration),
    /// When a temporary index, hints or integrity file appears (the index write of a commit).
    IndexWrite,
    /// When one of the given segments vanishes (compaction deleting a sparse segment), plus a delay.
    SegmentDeleted(Vec<u32>, Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Create,
    Compact,
}

struct Torture<'a> {
    site: Site,
    client: &'a BorgClient,
    lane: usize,
    seed: u64,
    rng: XorShift64,
    /// Committed archives, oldest first, each with a copy of what it archived.
    archives: Vec<(String, PathBuf)>,
    /// How long an engine serving one create lives (for random kill times).
    engine_lifetime: Duration,
    tally: BTreeMap<String, usize>,
}

#[test]
fn killed_creates_and_compactions_never_lose_a_commit() {
    // Fail (in CI) or skip before spawning anything.
    if support::borg14().is_none() {
        return;
    }
    let runs: usize = env_number("CRASH_RUNS").unwrap_or(DEFAULT_RUNS as u64) as usize;
    let lanes = env_number("CRASH_LANES").unwrap_or(DEFAULT_LANES).max(1) as usize;
    let seed = env_number("CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    eprintln!("crash torture: {runs} runs in {lanes} lanes, CRASH_SEED={seed}");
    lifecycle::become_subreaper();
    let started = Instant::now();
    let tallies: Vec<BTreeMap<String, usize>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..lanes)
            .map(|lane| {
                let lane_runs = (lane..runs).step_by(lanes).count();
                scope.spawn(move || torture_lane(lane, lane_runs, seed.wrapping_add(lane as u64)))
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut tally = BTreeMap::new();
    for lane in tallies {
        for (scenario, count) in lane {
            *tally.entry(scenario).or_insert(0) += count;
        }
    }
    eprintln!(
        "crash torture: {runs} runs in {:.1?}, all recovered; {tally:?}",
        started.elapsed()
    );
    assert_eq!(
        tally
            .iter()
            .filter(|(k, _)| k.contains('/'))
            .map(|(_, v)| v)
            .sum::<usize>(),
        runs
    );
}

/// One repository, `runs` crashes; the lane's scenario tally.
fn torture_lane(lane: usize, runs: usize, seed: u64) -> BTreeMap<String, usize> {
    let client = support::borg14().unwrap();
    let site = Site::new(&format!("crash-{lane}"), &["--restrict-to-path", "{repos}"]);
    site.borg(
        &client,
        &["init", "--encryption", "repokey", &site.url(REPO)],
    )
    .assert_success();
    fs::create_dir(site.path("snapshots")).unwrap();
    let mut torture = Torture {
        site,
        client: &client,
        lane,
        seed,
        rng: XorShift64::new(seed),
        archives: Vec::new(),
        engine_lifetime: Duration::from_millis(800),
        tally: BTreeMap::new(),
    };
    for run in 0..runs {
        torture.run(run);
    }
    // The last crash, too, is followed by a create that works.
    torture.create_committed(runs);
    torture.verify(runs, None);
    torture.tally
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

impl Torture<'_> {
    fn run(&mut self, run: usize) {
        let seed = self.seed;
        let run_started = Instant::now();
        self.create_committed(run);
        let roll = self.rng.next_u64() % 20;
        let compacting = roll >= FIRST_COMPACT_ROLL;
        // Before a compaction (it needs work), and when there are too many, delete all but
        // the newest few archives, in one command.
        let keep = if compacting {
            KEEP_BEFORE_COMPACT
        } else {
            MAX_ARCHIVES
        };
        if self.archives.len() > keep {
            let doomed: Vec<(String, PathBuf)> =
                self.archives.drain(..self.archives.len() - keep).collect();
            let mut args = vec!["delete".to_owned(), self.site.archive(REPO, &doomed[0].0)];
            args.extend(doomed[1..].iter().map(|(name, _)| name.clone()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.site.borg(self.client, &args).assert_success();
            for (_, snapshot) in doomed {
                fs::remove_dir_all(snapshot).unwrap();
            }
        }
        let (operation, victim, moment) = self.pick_scenario(roll);
        let label = format!(
            "{operation:?}/{victim:?}/{}",
            match moment {
                Moment::After(_) => "random time",
                Moment::NewSegmentAbove(..) => "first PUTs",
                Moment::IndexWrite => "index write",
                Moment::SegmentDeleted(..) => "segment deletion",
            }
        );
        *self.tally.entry(label.clone()).or_default() += 1;
        let killed_archive = format!("k{run}");
        if operation == Operation::Create {
            self.mutate_source(run * 2 + 1);
        }
        let args: Vec<String> = match operation {
            Operation::Create => vec![
                "create".into(),
                self.site.archive(REPO, &killed_archive),
                ".".into(),
            ],
            Operation::Compact => vec!["compact".into(), self.site.url(REPO)],
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let previous_engine = self.site.engine_pid();
        let mut child = self.site.spawn_borg(self.client, &args);
        let engine = self
            .site
            .wait_for_engine(previous_engine, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("run {run}: no engine started (seed {seed})"));
        let fired = self.wait_for_moment(&moment, engine, &mut child);
        if fired {
            match victim {
                Victim::Engine => {
                    let _ = kill(Pid::from_raw(engine), Signal::SIGKILL);
                }
                Victim::Client => {
                    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                }
                Victim::Both => {
                    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                }
            }
        }
        let client_exit = wait_child(&mut child, Duration::from_secs(60));
        assert!(
            client_exit.is_some(),
            "run {run} ({label}): the client did not exit (seed {seed})"
        );
        // A client killed alone leaves the engine to notice and leave; it must, promptly.
        let engine_left = wait_for(Duration::from_secs(10), || {
            process_gone(engine).then_some(())
        });
        assert!(
            engine_left.is_some(),
            "run {run} ({label}): the engine outlived its client by 10 s (seed {seed})"
        );
        if victim == Victim::Client && fired {
            assert!(
                !lifecycle::exclusive_lock_present(&self.site.repo(REPO)),
                "run {run} ({label}): the engine left its lock behind (seed {seed})"
            );
        }
        // Until the dead engine is reaped, its lock does not look stale (to borg either).
        assert!(
            lifecycle::wait_reaped(engine, Duration::from_secs(30)),
            "run {run}: engine {engine} never reaped"
        );
        let maybe = (operation == Operation::Create).then_some(killed_archive.as_str());
        self.verify(run, maybe);
        eprintln!(
            "lane {} run {run}: {label}, killed: {fired}, {:.1?}",
            self.lane,
            run_started.elapsed()
        );
    }

    /// The scenario for a roll of 0..20 (rolls from [`FIRST_COMPACT_ROLL`] compact).
    fn pick_scenario(&mut self, roll: u64) -> (Operation, Victim, Moment) {
        let random_time = Duration::from_micros(
            self.rng.next_u64() % (self.engine_lifetime.as_micros() as u64).max(1),
        );
        let jitter = Duration::from_micros(self.rng.next_u64() % 30_000);
        let latest = segment_numbers(&self.site.repo(REPO))
            .last()
            .copied()
            .unwrap_or(0);
        match roll {
            0..=4 => (
                Operation::Create,
                Victim::Engine,
                Moment::After(random_time),
            ),
            5..=6 => (
                Operation::Create,
                Victim::Client,
                Moment::After(random_time),
            ),
            7 => (Operation::Create, Victim::Both, Moment::After(random_time)),
            8..=10 => (
                Operation::Create,
                Victim::Engine,
                Moment::NewSegmentAbove(latest, jitter),
            ),
            11..=12 => (Operation::Create, Victim::Engine, Moment::IndexWrite),
            13..=15 => (
                Operation::Compact,
                Victim::Engine,
                Moment::SegmentDeleted(
                    segment_numbers(&self.site.repo(REPO)),
                    Duration::from_micros(jitter.as_micros() as u64 % 3000),
                ),
            ),
            16 => (
                Operation::Compact,
                Victim::Client,
                Moment::SegmentDeleted(segment_numbers(&self.site.repo(REPO)), Duration::ZERO),
            ),
            17 => (Operation::Compact, Victim::Engine, Moment::IndexWrite),
            _ => (
                Operation::Compact,
                Victim::Engine,
                Moment::After(random_time / 2),
            ),
        }
    }

    /// Waits for the moment; false when the operation ended first (nothing to kill).
    fn wait_for_moment(&self, moment: &Moment, engine: i32, child: &mut Child) -> bool {
        let repo = self.site.repo(REPO);
        let ended = |child: &mut Child| child.try_wait().ok().flatten().is_some();
        let until = |child: &mut Child, probe: &mut dyn FnMut() -> bool| -> bool {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if probe() {
                    return true;
                }
                if ended(child) || process_gone(engine) {
                    return false;
                }
                std::thread::sleep(Duration::from_micros(300));
            }
            false
        };
        let started = Instant::now();
        match moment {
            Moment::After(delay) => until(child, &mut || started.elapsed() >= *delay),
            Moment::NewSegmentAbove(latest, delay) => {
                let mut seen: Option<Instant> = None;
                until(child, &mut || {
                    if seen.is_none() && segment_numbers(&repo).last().is_some_and(|s| s > latest) {
                        seen = Some(Instant::now());
                    }
                    seen.is_some_and(|at| at.elapsed() >= *delay)
                })
            }
            Moment::IndexWrite => until(child, &mut || index_write_in_progress(&repo)),
            Moment::SegmentDeleted(before, delay) => {
                let mut seen: Option<Instant> = None;
                until(child, &mut || {
                    if seen.is_none() {
                        let now = segment_numbers(&repo);
                        if before.iter().any(|s| now.binary_search(s).is_err()) {
                            seen = Some(Instant::now());
                        }
                    }
                    seen.is_some_and(|at| at.elapsed() >= *delay)
                })
            }
        }
    }

    /// A create that must succeed; records the archive and what it holds.
    fn create_committed(&mut self, run: usize) {
        self.mutate_source(run * 2);
        let name = format!("a{run}");
        let log = self.site.path("create.log");
        let previous_engine = self.site.engine_pid();
        let mut child = self.site.spawn_borg_logged(
            self.client,
            &["create", &self.site.archive(REPO, &name), "."],
            &log,
        );
        let engine = self
            .site
            .wait_for_engine(previous_engine, Duration::from_secs(60))
            .expect("the create started no engine");
        let engine_started = Instant::now();
        assert!(lifecycle::wait_reaped(engine, Duration::from_secs(120)));
        let lifetime = engine_started.elapsed();
        let status = wait_child(&mut child, Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "run {run}: create {name} failed ({status:?}):\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        self.engine_lifetime = lifetime;
        self.record(&name);
    }

    fn record(&mut self, name: &str) {
        let snapshot = self.site.path(&format!("snapshots/{name}"));
        lifecycle::copy_tree(&self.site.source(), &snapshot);
        self.archives.push((name.to_owned(), snapshot));
    }

    /// Adds a fresh random file (new chunks) and now and then removes an older one.
    fn mutate_source(&mut self, step: usize) {
        let source = self.site.source();
        let len = 200_000 + (self.rng.next_u64() % 1_200_000) as usize;
        lifecycle::write_random(
            &source.join(format!("step-{step}.bin")),
            self.rng.next_u64(),
            len,
        );
        let mut old: Vec<PathBuf> = fs::read_dir(&source)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("step-")
            })
            .collect();
        old.sort();
        if old.len() > 3 {
            fs::remove_file(&old[(self.rng.next_u64() % 2) as usize]).unwrap();
        }
    }

    /// Real borg checks the repository; every committed archive is there, nothing else but
    /// perhaps `maybe` (the killed create, if its commit was durable); the last extracts
    /// identically. Even runs recover through the engine first, odd runs through borg.
    fn verify(&mut self, run: usize, maybe: Option<&str>) {
        let seed = self.seed;
        let repo_path = self.site.repo(REPO);
        let repo_text = repo_path.to_str().unwrap().to_owned();
        let context = format!("lane {} run {run} (lane seed {seed})", self.lane);
        let listed: Vec<String> = if run % 2 == 0 {
            let list = self
                .site
                .borg(self.client, &["list", "--short", &self.site.url(REPO)]);
            list.assert_success();
            let listed: Vec<String> = list.stdout_text().lines().map(str::to_owned).collect();
            let check = self
                .site
                .local(self.client, &["check", "--info", &repo_text]);
            assert!(check.success(), "{context}: borg check failed:\n{check}");
            assert_eq!(
                lifecycle::analyzed_archives(&check),
                listed,
                "{context}: borg and the engine list different archives"
            );
            listed
        } else {
            let check = self
                .site
                .local(self.client, &["check", "--info", &repo_text]);
            assert!(check.success(), "{context}: borg check failed:\n{check}");
            lifecycle::analyzed_archives(&check)
        };
        let committed: Vec<&str> = self.archives.iter().map(|(n, _)| n.as_str()).collect();
        for name in &committed {
            assert!(
                listed.iter().any(|l| l == name),
                "{context}: committed archive {name} is gone; listed {listed:?}"
            );
        }
        for name in &listed {
            assert!(
                committed.contains(&name.as_str()) || Some(name.as_str()) == maybe,
                "{context}: archive {name} should not exist; committed {committed:?}"
            );
        }
        if let Some(killed) = maybe {
            if listed.iter().any(|l| l == killed) {
                self.record(killed);
                *self
                    .tally
                    .entry("commit survived the kill".into())
                    .or_default() += 1;
            }
        }
        let (last, snapshot) = self.archives.last().unwrap().clone();
        self.site
            .assert_extracts(self.client, REPO, &last, &snapshot);
    }
}

/// Whether a commit is writing its index, hints or integrity file right now.
fn index_write_in_progress(repo: &std::path::Path) -> bool {
    fs::read_dir(repo).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".tmp")
                && (name.starts_with("index.")
                    || name.starts_with("hints.")
                    || name.starts_with("integrity."))
        })
    })
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let status = support::wait_exit(child, timeout);
    if status.is_none() {
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.wait();
    }
    status
}
