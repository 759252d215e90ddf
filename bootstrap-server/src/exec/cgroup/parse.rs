//! Where this process's cgroups are: `/proc/self/cgroup` and `/proc/self/mountinfo`,
//! parsed from their text (pure functions; malformed text gives `None`, never a panic).

use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo` (the fields this module needs).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// The mounted directory of the filesystem (for a cgroup mount, the cgroup shown at the
    /// mount point: `/` unless the mount was made inside a cgroup namespace or bound).
    root: String,
    /// Where it is mounted.
    mount_point: PathBuf,
    /// `cgroup`, `cgroup2`, ...
    fstype: String,
    /// The filesystem's own options (a cgroup v1 mount lists its controllers there).
    super_options: String,
}

/// A mountinfo line: `id parent major:minor root mount-point options [optional...] - fstype
/// source super-options`.
fn mount(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let right: Vec<&str> = right.split(' ').collect();
    if left.len() < 6 || right.len() < 3 {
        return None;
    }
    Some(Mount {
        root: unescape(left[3])?,
        mount_point: PathBuf::from(unescape(left[4])?),
        fstype: right[0].to_owned(),
        super_options: right[2].to_owned(),
    })
}

/// mountinfo's escapes (`\040` for a space, `\011`, `\012`, `\134`): three octal digits.
fn unescape(field: &str) -> Option<String> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let digits = b.get(i + 1..i + 4)?;
            let mut v: u32 = 0;
            for d in digits {
                if !(b'0'..=b'7').contains(d) {
                    return None;
                }
                v = v * 8 + u32::from(d - b'0');
            }
            out.push(u8::try_from(v).ok()?);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    (!s.is_empty()).then_some(s)
}

/// The cgroup path of `controller` (v1: `N:memory:/path`, also in a joined list such as
/// `N:cpu,cpuacct:/path`) or of the unified hierarchy (`controller` `None`: `0::/path`).
fn own_path(proc_cgroup: &str, controller: Option<&str>) -> Option<String> {
    for line in proc_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else { continue };
        if id.parse::<u32>().is_err() || !path.starts_with('/') {
            continue;
        }
        let hit = match controller {
            None => id == "0" && controllers.is_empty(),
            Some(c) => controllers.split(',').any(|x| x == c),
        };
        if hit {
            return Some(path.to_owned());
        }
    }
    None
}

/// `path` (a cgroup path as /proc/self/cgroup shows it) under `mount` (whose root is the
/// cgroup shown at its mount point): the directory, or `None` when the mount does not show
/// that cgroup.
fn under(mount: &Mount, path: &str) -> Option<PathBuf> {
    let rel = if mount.root == "/" {
        path
    } else {
        let rest = path.strip_prefix(mount.root.as_str())?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest
    };
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rel.is_empty() { mount.mount_point.clone() } else { mount.mount_point.join(rel) })
}

/// This process's cgroup v1 directory for `controller` (`memory`, `pids`): its line in
/// `/proc/self/cgroup` under the `cgroup` mount that lists the controller.
pub(super) fn v1_dir(proc_cgroup: &str, mountinfo: &str, controller: &str) -> Option<PathBuf> {
    let path = own_path(proc_cgroup, Some(controller))?;
    mountinfo
        .lines()
        .filter_map(mount)
        .filter(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == controller))
        .find_map(|m| under(&m, &path))
}

/// This process's cgroup v2 directory: its `0::/path` line under a `cgroup2` mount
/// (`/sys/fs/cgroup` when it is one, else the first, e.g. `/sys/fs/cgroup/unified` on a
/// hybrid machine).
pub(super) fn v2_dir(proc_cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    let path = own_path(proc_cgroup, None)?;
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(mount).filter(|m| m.fstype == "cgroup2").collect();
    let standard = mounts.iter().find(|m| m.mount_point == Path::new("/sys/fs/cgroup"));
    standard.into_iter().chain(mounts.iter()).find_map(|m| under(m, &path))
}

/// A count from a flat keyed file (`memory.events`, `memory.oom_control`, `pids.events`:
/// lines of `key value`).
pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_CGROUP: &str =
        "9:name=systemd:/\n8:pids:/\n7:blkio:/\n4:memory:/process_api/f64fd5\n2:cpu,cpuacct:/x\n0::/\n";
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_has_v1_memory_and_pids_and_a_v2_mount() {
        let memory = v1_dir(HYBRID_CGROUP, HYBRID_MOUNTS, "memory");
        assert_eq!(memory, Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/f64fd5")));
        assert_eq!(v1_dir(HYBRID_CGROUP, HYBRID_MOUNTS, "pids"), Some(PathBuf::from("/sys/fs/cgroup/pids")));
        assert_eq!(
            v1_dir(HYBRID_CGROUP, HYBRID_MOUNTS, "cpuacct"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/x"))
        );
        assert_eq!(v1_dir(HYBRID_CGROUP, HYBRID_MOUNTS, "freezer"), None);
        assert_eq!(v2_dir(HYBRID_CGROUP, HYBRID_MOUNTS), Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn pure_v2() {
        let cgroup = "0::/system.slice/arena.service\n";
        let mounts = "25 22 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n\
                      26 22 0:23 / /mnt/other rw - cgroup2 cgroup2 rw\n";
        assert_eq!(v2_dir(cgroup, mounts), Some(PathBuf::from("/sys/fs/cgroup/system.slice/arena.service")));
        assert_eq!(v1_dir(cgroup, mounts, "memory"), None);
    }

    #[test]
    fn a_container_whose_mount_shows_only_its_own_subtree() {
        // Without a cgroup namespace: /proc/self/cgroup shows the host's path, the mount's root
        // is the container's cgroup.
        let cgroup = "0::/docker/abc/inner\n";
        let mounts = "100 90 0:40 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(v2_dir(cgroup, mounts), Some(PathBuf::from("/sys/fs/cgroup/inner")));
        // A path outside what the mount shows, or a sibling sharing a prefix: not there.
        assert_eq!(v2_dir("0::/docker/other\n", mounts), None);
        assert_eq!(v2_dir("0::/docker/abcdef\n", mounts), None);
        // Escaped mount points.
        let spaced = "100 90 0:40 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
        assert_eq!(v2_dir("0::/a\n", spaced), Some(PathBuf::from("/mnt/cg two/a")));
    }

    #[test]
    fn bad_input_is_none_never_a_panic() {
        let bad = [
            "",
            "\n\n",
            "garbage",
            "0::",
            "0::relative",
            "x::/a",
            ":::",
            "4:memory",
            "4:memory:",
            "0::/../etc",
            "\u{0}\u{ff}",
            "0:: /a",
        ];
        let mounts = [
            "",
            "garbage",
            " - ",
            "1 2 3 4 5 - cgroup2",
            "1 2 3 / /sys/fs/cgroup rw - cgroup2",
            "1 2 3 / /sys/fs/\\04 rw - cgroup2 cgroup2 rw",
            "1 2 3 / /sys/fs/\\999 rw - cgroup2 cgroup2 rw",
            "1 2 3 / /sys/fs/\\777 rw - cgroup2 cgroup2 rw",
            "1 2 3 / /a\\ rw - cgroup2 cgroup2 rw",
        ];
        for c in bad {
            for m in mounts.iter().chain([&HYBRID_MOUNTS]) {
                assert_eq!(v2_dir(c, m), None, "{c:?} {m:?}");
                assert_eq!(v1_dir(c, m, "memory"), None, "{c:?} {m:?}");
            }
        }
        for m in mounts {
            assert_eq!(v2_dir("0::/\n", m), None, "{m:?}");
            assert_eq!(v1_dir(HYBRID_CGROUP, m, "memory"), None, "{m:?}");
        }
    }

    #[test]
    fn keyed_files() {
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(oom, "oom_kill"), Some(3));
        assert_eq!(keyed("max 12\n", "max"), Some(12));
        assert_eq!(keyed("low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\noom_group_kill 0\n", "oom_kill"), Some(1));
        assert_eq!(keyed("oom_kill x\n", "oom_kill"), None);
        assert_eq!(keyed("", "max"), None);
    }
}
