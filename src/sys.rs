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
