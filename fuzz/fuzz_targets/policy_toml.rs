//! The policy TOML loader: any text gives a policy or located errors, never a panic; a policy
//! that loads judges commands without panicking.
#![no_main]

use std::path::Path;

use borg_gate::gate::judge;
use borg_gate::policy::parse_policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // The loader refuses non-UTF-8 files before parsing; so does this target.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match parse_policy(text, "fuzz") {
        Ok(policy) => {
            for command in [
                &b"borg serve --info"[..],
                b"true",
                b"borg serve --umask=000",
            ] {
                let _ = judge(&policy, Some(command));
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error list is never empty");
            let lines = errors.render(Path::new("/etc/borg-gate/fuzz.toml"), text);
            assert!(!lines.is_empty());
        }
    }
});
