//! Who holds a lock: borg's `(hostid, pid, thread)` tuple, the `hostid` computation
//! (`platform/base.py:258-304`) and the liveness test (`platform/posix.pyx:37-77`).
//!
//! # Matching Python's hostid
//!
//! Stale-lock removal only works between processes that compute the *same* hostid: a lock
//! whose hostid differs from ours is treated as held by another machine and is never removed
//! (that is the safe direction; the cost is a stale lock that needs `borg break-lock`).
//! Python computes `<fqdn>@<uuid.getnode()>`; we reproduce both halves without `unsafe`:
//!
//! * **fqdn**: Python takes the first non-empty `ai_canonname` of
//!   `getaddrinfo(gethostname(), None, 0, SOCK_DGRAM, 0, AI_CANONNAME)`; we make the same
//!   call in-process (`crate::sys::canonical_host_name`, the one place with the FFI), so it
//!   goes through the same NSS modules. A DNS lookup may hang (Python just hangs); we give up
//!   after [`CANONICAL_NAME_TIMEOUT`] and use the plain hostname, as Python does when the
//!   lookup fails.
//! * **node**: CPython uses libuuid's time-based UUID first. libuuid takes the hardware
//!   address of the first interface, in kernel order, that has an IPv4 address and a non-zero
//!   address (`SIOCGIFCONF` + `SIOCGIFHWADDR`). Without ioctls we read `/sys/class/net/*`
//!   (ordered by `ifindex`) and take "has an IPv4 address" to mean "has an IPv4 route in
//!   `/proc/net/route`", which holds for every interface that is up with a normal prefix. If no
//!   interface qualifies, libuuid (and so Python) picks a random node per process; so do we.
//!
//! When the two cannot match (a Python built without libuuid, which then parses `ip link`;
//! an address-less host; an interface that is down but addressed; a DNS timeout), set
//! `BORG_HOST_ID` to the same non-empty value for `borg-gate` (for example in the forced
//! command's environment) and for every borg on this host (shell profile, cron and systemd
//! units). Never give two machines that share a repository the same `BORG_HOST_ID`: each
//! would then take the other's live locks for stale ones.

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::ffi::OsStr;
use std::fs;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// How long the canonical host name lookup may take before we fall back to the hostname.
pub(crate) const CANONICAL_NAME_TIMEOUT: Duration = Duration::from_secs(10);
/// The environment variable that overrides the computed hostid (borg's name).
pub(crate) const HOST_ID_VARIABLE: &str = "BORG_HOST_ID";

const SYS_CLASS_NET: &str = "/sys/class/net";
const PROC_NET_ROUTE: &str = "/proc/net/route";
const NODE_BITS_MASK: u64 = (1 << 48) - 1;
/// RFC 4122 section 4.5: a random node has the multicast bit set.
const MULTICAST_BIT: u64 = 1 << 40;

/// One lock holder: borg's `(hostid, pid, thread)`; `thread` is always 0 for borg 1.x.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LockIdentity {
    pub host_id: String,
    pub pid: i64,
    pub thread: i64,
}

impl LockIdentity {
    /// A holder on `host_id` with process id `pid` (thread 0).
    pub fn new(host_id: impl Into<String>, pid: i64) -> Self {
        LockIdentity {
            host_id: host_id.into(),
            pid,
            thread: 0,
        }
    }

    /// This process, as borg would name it: hostid from [`host_id_from_environment`].
    pub fn for_current_process() -> Self {
        LockIdentity::new(host_id_from_environment(), i64::from(std::process::id()))
    }

    /// The file name inside `lock.exclusive/`: Python's `"%s.%d-%x" % (host, pid, thread)`.
    pub fn unique_name(&self) -> String {
        format!("{}.{}-{}", self.host_id, self.pid, python_hex(self.thread))
    }

    /// Parse a name made by [`unique_name`](Self::unique_name), the way borg does: the thread
    /// after the last `-` (hex), the pid after the last `.` before it (decimal).
    /// `None` for a name borg would call malformed.
    pub fn parse_unique_name(name: &str) -> Option<LockIdentity> {
        let (host_and_pid, thread) = name.rsplit_once('-')?;
        let (host, pid) = host_and_pid.rsplit_once('.')?;
        Some(LockIdentity {
            host_id: host.to_owned(),
            pid: parse_python_int(pid, 10)?,
            thread: parse_python_int(thread, 16)?,
        })
    }
}

/// Python's `"%x"` formatting: a minus sign, not two's complement, for negative numbers.
fn python_hex(value: i64) -> String {
    if value < 0 {
        format!("-{:x}", value.unsigned_abs())
    } else {
        format!("{value:x}")
    }
}

/// Python's `int(text, radix)` for ASCII input (radix 10 or 16): surrounding whitespace,
/// a sign, a `0x` prefix in base 16, and single underscores between digits are allowed.
/// Values beyond `i64` are rejected (no process id or thread id is that large).
pub(crate) fn parse_python_int(text: &str, radix: u32) -> Option<i64> {
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let (negative, unsigned) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let mut digits = unsigned;
    let mut underscore_allowed = false;
    if radix == 16 {
        if let Some(rest) = digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            digits = rest;
            // Python accepts "0x_1f": an underscore may follow the base prefix.
            underscore_allowed = true;
        }
    }
    if digits.is_empty() {
        return None;
    }
    let mut magnitude: i128 = 0;
    let mut previous_was_digit = false;
    for (index, character) in digits.chars().enumerate() {
        if character == '_' {
            let allowed = if index == 0 {
                underscore_allowed
            } else {
                previous_was_digit
            };
            if !allowed {
                return None;
            }
            previous_was_digit = false;
            continue;
        }
        let digit = character.to_digit(radix)?;
        magnitude = magnitude
            .checked_mul(i128::from(radix))?
            .checked_add(i128::from(digit))?;
        if magnitude > i128::from(i64::MAX) + 1 {
            return None;
        }
        previous_was_digit = true;
    }
    if !previous_was_digit {
        return None;
    }
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).ok()
}

/// borg's `process_alive`: a holder on another host, or with a thread id, is assumed alive;
/// a local one is dead only if `kill(pid, 0)` fails with `ESRCH`.
pub fn process_alive(holder: &LockIdentity, own_host_id: &str) -> bool {
    if holder.host_id != own_host_id {
        return true;
    }
    if holder.thread != 0 {
        return true;
    }
    local_pid_alive(holder.pid)
}

/// `kill(pid, 0)`: `ESRCH` means dead, anything else alive.
///
/// Python would also probe 0 and negative numbers (process groups). A real lock never names
/// them, so we call them alive rather than signal a group: an odd entry is never removed.
pub(crate) fn local_pid_alive(pid: i64) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return true;
    };
    if raw <= 0 {
        return true;
    }
    !matches!(kill(Pid::from_raw(raw), None), Err(Errno::ESRCH))
}

/// borg's hostid: `BORG_HOST_ID` if set and non-empty, else [`computed_host_id`].
pub fn host_id_from_environment() -> String {
    host_id_with_override(std::env::var_os(HOST_ID_VARIABLE).as_deref())
}

/// The hostid given the value of `BORG_HOST_ID` (`None` when unset): an empty value counts
/// as unset, as in borg.
pub(crate) fn host_id_with_override(borg_host_id: Option<&OsStr>) -> String {
    match borg_host_id {
        Some(value) if !value.is_empty() => value.to_string_lossy().into_owned(),
        _ => computed_host_id(),
    }
}

/// `<fqdn>@<node>` as Python computes it, worked out once per process (as Python does).
pub fn computed_host_id() -> String {
    static HOST_ID: OnceLock<String> = OnceLock::new();
    HOST_ID
        .get_or_init(|| {
            let hostname = nix::unistd::gethostname()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("{}@{}", python_fqdn(&hostname), python_uuid_node())
        })
        .clone()
}

/// Python's patched `getfqdn(hostname)`: the canonical name, else the hostname itself.
pub(crate) fn python_fqdn(hostname: &str) -> String {
    if hostname.is_empty() {
        // getaddrinfo("") fails, so Python keeps the empty name.
        return String::new();
    }
    canonical_name(hostname, CANONICAL_NAME_TIMEOUT).unwrap_or_else(|| hostname.to_owned())
}

/// getaddrinfo in a helper thread, so that a hanging DNS lookup costs at most `timeout`.
fn canonical_name(hostname: &str, timeout: Duration) -> Option<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let host = hostname.to_owned();
    thread::spawn(move || {
        let _ = sender.send(crate::sys::canonical_host_name(&host));
    });
    match receiver.recv_timeout(timeout) {
        Ok(name) => name,
        Err(_) => {
            log::warn!(
                "looking up the canonical name of host {hostname:?} took longer than {timeout:?}; \
                 using the plain hostname in the lock id (set {HOST_ID_VARIABLE} to match borg)"
            );
            None
        }
    }
}

/// One network interface as sysfs shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NetworkInterface {
    pub name: String,
    pub ifindex: u64,
    /// The first six bytes of the hardware address, zero-padded (what `SIOCGIFHWADDR` gives).
    pub hardware_address: [u8; 6],
}

/// Python's `uuid.getnode()` on Linux with libuuid; random (multicast bit set) if no
/// interface qualifies, exactly like libuuid.
pub(crate) fn python_uuid_node() -> u64 {
    let interfaces = read_network_interfaces(Path::new(SYS_CLASS_NET));
    let routed = fs::read_to_string(PROC_NET_ROUTE)
        .ok()
        .map(|text| parse_route_interfaces(&text));
    match select_libuuid_node(&interfaces, routed.as_ref()) {
        Some(node) => node,
        None => {
            log::warn!(
                "no network interface with an IPv4 address and a hardware address: the lock id \
                 is random for this process, so stale locks cannot be matched with borg's \
                 (set {HOST_ID_VARIABLE})"
            );
            random_node()
        }
    }
}

/// libuuid's choice: in interface order, the first interface that has an IPv4 address
/// (`ipv4_interfaces`; `None` = unknown, consider all) and a non-zero hardware address.
pub(crate) fn select_libuuid_node(
    interfaces: &[NetworkInterface],
    ipv4_interfaces: Option<&BTreeSet<String>>,
) -> Option<u64> {
    let mut ordered: Vec<&NetworkInterface> = interfaces.iter().collect();
    ordered.sort_by_key(|interface| interface.ifindex);
    ordered
        .into_iter()
        .filter(|interface| ipv4_interfaces.is_none_or(|names| names.contains(&interface.name)))
        .find(|interface| interface.hardware_address != [0; 6])
        .map(|interface| {
            interface
                .hardware_address
                .iter()
                .fold(0u64, |node, byte| (node << 8) | u64::from(*byte))
        })
}

/// The interfaces under `/sys/class/net` (unreadable entries are skipped).
pub(crate) fn read_network_interfaces(sys_class_net: &Path) -> Vec<NetworkInterface> {
    let Ok(entries) = fs::read_dir(sys_class_net) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let directory = entry.path();
            let ifindex = fs::read_to_string(directory.join("ifindex"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let address = fs::read_to_string(directory.join("address")).unwrap_or_default();
            Some(NetworkInterface {
                name: entry.file_name().to_string_lossy().into_owned(),
                ifindex,
                hardware_address: parse_hardware_address(&address),
            })
        })
        .collect()
}

/// `"02:fc:00:00:00:01\n"` to bytes; anything unparsable counts as no address (zeros).
pub(crate) fn parse_hardware_address(text: &str) -> [u8; 6] {
    let mut bytes = [0u8; 6];
    let text = text.trim();
    if text.is_empty() {
        return bytes;
    }
    for (index, part) in text.split(':').enumerate() {
        let Ok(byte) = u8::from_str_radix(part, 16) else {
            return [0; 6];
        };
        if let Some(slot) = bytes.get_mut(index) {
            *slot = byte;
        }
    }
    bytes
}

/// The interface names in `/proc/net/route` (first column, header line skipped).
pub(crate) fn parse_route_interfaces(text: &str) -> BTreeSet<String> {
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_ascii_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn random_node() -> u64 {
    let random = RandomState::new().hash_one((std::process::id(), Instant::now()));
    (random & NODE_BITS_MASK) | MULTICAST_BIT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::borg1::lock::tests::dead_pid;
    use crate::test_support::Borg;

    fn interface(name: &str, ifindex: u64, address: &str) -> NetworkInterface {
        NetworkInterface {
            name: name.to_owned(),
            ifindex,
            hardware_address: parse_hardware_address(address),
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn unique_name_is_python_percent_format() {
        let identity = LockIdentity::new("vm@3281355014145", 10228);
        assert_eq!(identity.unique_name(), "vm@3281355014145.10228-0");
        let threaded = LockIdentity {
            thread: 255,
            ..identity.clone()
        };
        assert_eq!(threaded.unique_name(), "vm@3281355014145.10228-ff");
        let negative = LockIdentity {
            thread: -26,
            ..identity
        };
        assert_eq!(negative.unique_name(), "vm@3281355014145.10228--1a");
    }

    #[test]
    fn unique_name_round_trips_through_the_parser() {
        for identity in [
            LockIdentity::new("vm@3281355014145", 10228),
            LockIdentity::new("host.example.com@1", 1),
            LockIdentity::new("a-b.c-d@e.f", 77),
            LockIdentity {
                host_id: "weird-host.".to_owned(),
                pid: 4_194_304,
                thread: 0x7fff_ffff,
            },
            LockIdentity::new("", 5),
        ] {
            assert_eq!(
                LockIdentity::parse_unique_name(&identity.unique_name()),
                Some(identity)
            );
        }
    }

    #[test]
    fn parser_splits_at_the_last_dash_and_the_last_dot_before_it() {
        assert_eq!(
            LockIdentity::parse_unique_name("my-host.lan@12.345-a"),
            Some(LockIdentity {
                host_id: "my-host.lan@12".to_owned(),
                pid: 345,
                thread: 10
            })
        );
    }

    #[test]
    fn parser_rejects_names_borg_calls_malformed() {
        for name in [
            "",
            "nodash",
            "nodot-0",
            "host.pid-0",
            "host.12-zz",
            "host.12-",
            "host.-0",
            "lock.exclusive.tmp",
            "host.1_-0",
            "host.99999999999999999999-0",
        ] {
            assert_eq!(LockIdentity::parse_unique_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn python_int_accepts_what_python_accepts() {
        assert_eq!(parse_python_int("42", 10), Some(42));
        assert_eq!(parse_python_int(" 42\n", 10), Some(42));
        assert_eq!(parse_python_int("+42", 10), Some(42));
        assert_eq!(parse_python_int("-42", 10), Some(-42));
        assert_eq!(parse_python_int("4_2", 10), Some(42));
        assert_eq!(parse_python_int("0042", 10), Some(42));
        assert_eq!(parse_python_int("ff", 16), Some(255));
        assert_eq!(parse_python_int("FF", 16), Some(255));
        assert_eq!(parse_python_int("0xff", 16), Some(255));
        assert_eq!(parse_python_int("0X_f_f", 16), Some(255));
        assert_eq!(parse_python_int("-0x1", 16), Some(-1));
        assert_eq!(parse_python_int("9223372036854775807", 10), Some(i64::MAX));
        assert_eq!(parse_python_int("-9223372036854775808", 10), Some(i64::MIN));
    }

    #[test]
    fn python_int_rejects_what_python_rejects_or_we_cannot_hold() {
        for (text, radix) in [
            ("", 10),
            ("-", 10),
            ("_1", 10),
            ("1_", 10),
            ("1__2", 10),
            ("0x10", 10),
            ("0x", 16),
            ("1 2", 10),
            ("1.0", 10),
            ("g", 16),
            ("--1", 10),
            ("9223372036854775808", 10),
            ("١٢", 10),
        ] {
            assert_eq!(parse_python_int(text, radix), None, "{text:?} base {radix}");
        }
    }

    #[test]
    fn borg_host_id_overrides_unless_empty() {
        assert_eq!(
            host_id_with_override(Some(OsStr::new("backup-host-7"))),
            "backup-host-7"
        );
        assert_eq!(
            host_id_with_override(Some(OsStr::new(""))),
            computed_host_id()
        );
        assert_eq!(host_id_with_override(None), computed_host_id());
    }

    #[test]
    fn a_foreign_host_is_always_alive() {
        let holder = LockIdentity::new("elsewhere@1", i64::from(i32::MAX));
        assert!(process_alive(&holder, "here@2"));
    }

    #[test]
    fn a_nonzero_thread_is_always_alive() {
        let dead = dead_pid();
        let holder = LockIdentity {
            thread: 1,
            ..LockIdentity::new("here@2", dead)
        };
        assert!(process_alive(&holder, "here@2"));
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_dead() {
        let own_host = "here@2";
        let me = LockIdentity::new(own_host, i64::from(std::process::id()));
        assert!(process_alive(&me, own_host));
        let gone = LockIdentity::new(own_host, dead_pid());
        assert!(!process_alive(&gone, own_host));
    }

    #[test]
    fn unsignallable_pids_count_as_alive() {
        for pid in [0, -1, -12345, i64::from(i32::MAX) + 1, i64::MAX] {
            assert!(local_pid_alive(pid), "{pid}");
        }
    }

    #[test]
    fn hardware_addresses_parse_like_the_ioctl_returns_them() {
        assert_eq!(
            parse_hardware_address("02:fc:00:00:00:01\n"),
            [0x02, 0xfc, 0, 0, 0, 1]
        );
        assert_eq!(parse_hardware_address("c0:00:02:01"), [0xc0, 0, 2, 1, 0, 0]);
        assert_eq!(
            parse_hardware_address("80:00:00:48:fe:80:00:00:00:00:00:00"),
            [0x80, 0, 0, 0x48, 0xfe, 0x80]
        );
        assert_eq!(parse_hardware_address(""), [0; 6]);
        assert_eq!(parse_hardware_address("zz:00"), [0; 6]);
    }

    #[test]
    fn route_table_lists_interfaces_with_ipv4() {
        let text = "Iface\tDestination\tGateway \tFlags\n\
                    eth0\t00000000\t010200C0\t0003\n\
                    eth0\t000200C0\t00000000\t0001\n\
                    docker0\t000011AC\t00000000\t0001\n";
        assert_eq!(parse_route_interfaces(text), names(&["docker0", "eth0"]));
        assert!(parse_route_interfaces("").is_empty());
    }

    #[test]
    fn libuuid_node_skips_interfaces_without_ipv4_and_zero_addresses() {
        // The layout of the machine this was written on: two ifb devices without addresses
        // come before eth0 in ifindex order, and Python picks eth0.
        let interfaces = [
            interface("ifb1", 3, "e2:f4:e5:00:f8:a5"),
            interface("eth0", 4, "02:fc:00:00:00:01"),
            interface("lo", 1, "00:00:00:00:00:00"),
            interface("ifb0", 2, "be:d7:a9:ef:83:31"),
        ];
        let routed = names(&["eth0", "lo"]);
        assert_eq!(
            select_libuuid_node(&interfaces, Some(&routed)),
            Some(3_281_355_014_145)
        );
    }

    #[test]
    fn libuuid_node_takes_the_lowest_ifindex_among_candidates() {
        let interfaces = [
            interface("eth1", 5, "00:00:00:00:00:05"),
            interface("eth0", 3, "00:00:00:00:00:03"),
        ];
        let routed = names(&["eth0", "eth1"]);
        assert_eq!(select_libuuid_node(&interfaces, Some(&routed)), Some(3));
        assert_eq!(select_libuuid_node(&interfaces, None), Some(3));
    }

    #[test]
    fn libuuid_node_is_none_when_nothing_qualifies() {
        let interfaces = [
            interface("lo", 1, "00:00:00:00:00:00"),
            interface("ifb0", 2, "be:d7:a9:ef:83:31"),
        ];
        assert_eq!(
            select_libuuid_node(&interfaces, Some(&names(&["lo"]))),
            None
        );
        assert_eq!(select_libuuid_node(&[], None), None);
    }

    #[test]
    fn random_node_is_48_bits_with_the_multicast_bit() {
        let node = random_node();
        assert_eq!(node & !NODE_BITS_MASK, 0);
        assert_ne!(node & MULTICAST_BIT, 0);
    }

    #[test]
    fn fqdn_of_an_empty_hostname_is_empty() {
        assert_eq!(python_fqdn(""), "");
    }

    #[test]
    fn fqdn_of_an_unresolvable_name_is_the_name() {
        assert_eq!(python_fqdn("no-such-host.invalid"), "no-such-host.invalid");
    }

    /// What `code` prints when the Python of `borg` runs it.
    fn python_value(borg: Borg, code: &str) -> Option<String> {
        let python = crate::test_support::require_borg_python(borg)?;
        let output = std::process::Command::new(python)
            .args(["-c", code])
            .env_remove(HOST_ID_VARIABLE)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        Some(String::from_utf8(output.stdout).unwrap().trim().to_owned())
    }

    #[test]
    fn uuid_node_matches_python_on_this_machine() {
        for borg in [Borg::Pypi14, Borg::Debian12] {
            if let Some(node) = python_value(borg, "import uuid; print(uuid.getnode())") {
                assert_eq!(python_uuid_node().to_string(), node, "{borg:?}");
            }
        }
    }

    #[test]
    fn fqdn_matches_python_on_this_machine() {
        let hostname = nix::unistd::gethostname().unwrap();
        let hostname = hostname.to_str().unwrap();
        if let Some(fqdn) = python_value(
            Borg::Pypi14,
            "from borg.platform.base import fqdn; print(fqdn)",
        ) {
            assert_eq!(python_fqdn(hostname), fqdn);
        }
    }

    #[test]
    fn computed_host_id_matches_borg_on_this_machine() {
        for borg in [Borg::Pypi14, Borg::Debian12] {
            if let Some(host_id) =
                python_value(borg, "from borg.platform import hostid; print(hostid)")
            {
                assert_eq!(computed_host_id(), host_id, "{borg:?}");
            }
        }
    }
}
