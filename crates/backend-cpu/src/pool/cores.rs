//! How many threads a pool gets by default: one per physical core the process may use.

use std::collections::BTreeSet;
use std::thread;

/// Physical cores this process may run on: unique `core_cpus_list` (or `thread_siblings_list`)
/// sets of the CPUs in its affinity mask, capped by `available_parallelism` (which honours cgroup
/// CPU quotas); `available_parallelism` alone where sysfs is not readable.
pub fn physical_cores() -> usize {
    let logical = thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    sysfs_physical_cores().map_or(logical, |p| p.clamp(1, logical))
}

fn sysfs_physical_cores() -> Option<usize> {
    let allowed = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(|v| v.trim().to_owned())))
        .and_then(|list| parse_cpu_list(&list));
    let cpus = match allowed {
        Some(cpus) => cpus,
        None => {
            let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
            parse_cpu_list(online.trim())?
        }
    };
    let mut cores = BTreeSet::new();
    for cpu in cpus {
        let topo = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        let siblings = std::fs::read_to_string(format!("{topo}/core_cpus_list"))
            .or_else(|_| std::fs::read_to_string(format!("{topo}/thread_siblings_list")))
            .ok()?;
        cores.insert(siblings.trim().to_owned());
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?);
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list("x"), None);
        assert!(physical_cores() >= 1);
        assert!(physical_cores() <= thread::available_parallelism().unwrap().get());
    }
}
