//! The only module that may use `unsafe`: thin wrappers around system calls that nix marks
//! unsafe or that need a raw descriptor number.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::IntoRawFd;

use nix::libc;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction, sigprocmask,
};
use nix::sys::stat::{Mode, umask};

/// Makes sure descriptors 0, 1 and 2 are open (on /dev/null if they were closed), so that a
/// file the gate opens later can never become "stderr" by accident.
pub fn ensure_standard_descriptors() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only reads the flags of a descriptor number; it touches no memory.
        let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
        if !open {
            // The lowest free descriptor is `fd`, because the ones below it are open.
            if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
                let _ = null.into_raw_fd();
            }
        }
    }
}

/// Puts the process in the state the engine should start in: the policy's umask, an empty
/// signal mask, default dispositions for signals Rust ignores, and every descriptor above
/// stderr marked close-on-exec.
pub fn prepare_for_exec(mask: u32) {
    umask(Mode::from_bits_truncate(mask & 0o777));
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in [
        Signal::SIGPIPE,
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
    ] {
        // SAFETY: installing SIG_DFL registers no handler code, so no async-signal-safety
        // requirement applies.
        let _ = unsafe { sigaction(signal, &default) };
    }
    close_on_exec_above_stderr();
}

/// Marks every descriptor above 2 close-on-exec, so the engine inherits only stdio.
pub fn close_on_exec_above_stderr() {
    let descriptors: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    for fd in descriptors {
        // SAFETY: F_SETFD only changes the flags of a descriptor number; a number that is
        // not open (like the closed directory handle above) fails with EBADF, ignored.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// The first non-empty canonical name `getaddrinfo(host, NULL, {SOCK_DGRAM, AI_CANONNAME})`
/// reports, exactly the call Python's `socket.getaddrinfo` makes for borg's hostid.
pub fn canonical_host_name(host: &str) -> Option<String> {
    let host = std::ffi::CString::new(host).ok()?;
    // SAFETY: an all-zero addrinfo is a valid "no constraints" hints value.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_DGRAM;
    hints.ai_flags = libc::AI_CANONNAME;
    let mut results: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: `host` is a NUL-terminated string that outlives the call, `hints` is a valid
    // addrinfo, and `results` is a valid out-pointer; on success the list is freed below.
    let status =
        unsafe { libc::getaddrinfo(host.as_ptr(), std::ptr::null(), &hints, &mut results) };
    if status != 0 || results.is_null() {
        return None;
    }
    let mut found = None;
    let mut entry = results;
    while !entry.is_null() && found.is_none() {
        // SAFETY: `entry` is a node of the list getaddrinfo returned, not yet freed.
        let node = unsafe { &*entry };
        if !node.ai_canonname.is_null() {
            // SAFETY: a non-null ai_canonname is a NUL-terminated string owned by the list.
            let name = unsafe { std::ffi::CStr::from_ptr(node.ai_canonname) };
            let name = name.to_string_lossy();
            if !name.is_empty() {
                found = Some(name.into_owned());
            }
        }
        entry = node.ai_next;
    }
    // SAFETY: `results` came from a successful getaddrinfo and is freed exactly once.
    unsafe { libc::freeaddrinfo(results) };
    found
}

/// Asks the kernel to back a large buffer with transparent huge pages, which makes the first
/// touch of a multi-hundred-megabyte index several times cheaper. Advice only: failure
/// changes nothing but speed.
pub fn advise_huge_pages(buffer: &mut [u8]) {
    const HUGE: usize = 2 << 20;
    let start = buffer.as_mut_ptr() as usize;
    let aligned = (start + HUGE - 1) & !(HUGE - 1);
    let end = start + buffer.len();
    if aligned >= end {
        return;
    }
    let length = (end - aligned) & !(HUGE - 1);
    if length == 0 {
        return;
    }
    // SAFETY: [aligned, aligned + length) lies inside `buffer`, which we borrow mutably for
    // the call; MADV_HUGEPAGE changes how the pages are backed, never their contents.
    unsafe { libc::madvise(aligned as *mut libc::c_void, length, libc::MADV_HUGEPAGE) };
}

/// The most a [`run_as`] child may hand back.
const RUN_AS_OUTPUT_LIMIT: u64 = 16 << 20;

/// Runs `work` in a forked child that has become `uid` (with `gid` and the supplementary
/// `groups`, set first), and returns the bytes `work` produced. The parent must be root and
/// single-threaded; the child never returns into the caller's code.
pub fn run_as(
    uid: u32,
    gid: u32,
    groups: &[u32],
    work: &dyn Fn() -> Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};

    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, Gid, Uid, fork, pipe2};

    if !single_threaded() {
        return Err(std::io::Error::other(
            "cannot switch accounts from a process with several threads",
        ));
    }
    let (read_end, write_end) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: the process has a single thread (checked above), so the child cannot inherit a
    // lock held by another thread; the child drops privileges, runs `work` and leaves with
    // _exit, never returning into the caller or running the parent's exit handlers.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(read_end);
            let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
            let dropped = nix::unistd::setgroups(&groups)
                .and_then(|()| nix::unistd::setgid(Gid::from_raw(gid)))
                .and_then(|()| nix::unistd::setuid(Uid::from_raw(uid)))
                .is_ok()
                && nix::unistd::geteuid().as_raw() == uid
                && (uid == 0 || nix::unistd::setuid(Uid::from_raw(0)).is_err());
            let status = if dropped {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
                    Ok(bytes) => i32::from(File::from(write_end).write_all(&bytes).is_err()),
                    Err(_) => 101,
                }
            } else {
                3
            };
            // SAFETY: _exit ends the child at once; it runs no exit handlers and flushes none
            // of the parent's buffers, which the child holds copies of.
            unsafe { libc::_exit(status) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut output = Vec::new();
            let read = File::from(read_end)
                .take(RUN_AS_OUTPUT_LIMIT)
                .read_to_end(&mut output);
            let status = waitpid(child, None)?;
            read?;
            match status {
                WaitStatus::Exited(_, 0) => Ok(output),
                WaitStatus::Exited(_, 3) => Err(std::io::Error::other(format!(
                    "cannot become uid {uid} (gid {gid})"
                ))),
                other => Err(std::io::Error::other(format!(
                    "the check as uid {uid} ended abnormally ({other:?})"
                ))),
            }
        }
    }
}

/// Whether this process has exactly one thread (`/proc/self/task` has one entry).
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1)
}
