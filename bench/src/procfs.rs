//! What the kernel says a process costs: CPU time from `/proc/<pid>/stat`, peak and
//! current resident memory from `/proc/<pid>/status`.

use std::fs;

/// CPU seconds a process has used so far, split as the kernel accounts them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct CpuTime {
    pub(crate) user_s: f64,
    pub(crate) sys_s: f64,
}

impl CpuTime {
    pub(crate) fn total(&self) -> f64 {
        self.user_s + self.sys_s
    }

    pub(crate) fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user_s: self.user_s - earlier.user_s,
            sys_s: self.sys_s - earlier.sys_s,
        }
    }
}

impl std::ops::Add for CpuTime {
    type Output = CpuTime;
    fn add(self, o: CpuTime) -> CpuTime {
        CpuTime {
            user_s: self.user_s + o.user_s,
            sys_s: self.sys_s + o.sys_s,
        }
    }
}

/// The kernel's clock ticks per second, the unit of utime and stime.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// `pid`'s CPU time; None once the process is gone.
pub(crate) fn cpu(pid: u32) -> Option<CpuTime> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat, clock_ticks())
}

/// utime and stime are fields 14 and 15; the command name (field 2) may hold spaces
/// and parentheses, so fields are counted from its closing parenthesis.
fn parse_stat(stat: &str, ticks: f64) -> Option<CpuTime> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some(CpuTime {
        user_s: utime / ticks,
        sys_s: stime / ticks,
    })
}

/// CPU time summed over `pids`; None when there are none or one is gone.
pub(crate) fn cpu_of(pids: &[u32]) -> Option<CpuTime> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .try_fold(CpuTime::default(), |sum, p| cpu(*p).map(|c| sum + c))
}

/// Peak resident memory summed over `pids`, in KiB; None when there are none.
pub(crate) fn rss_peak_kib_of(pids: &[u32]) -> Option<u64> {
    (!pids.is_empty()).then(|| pids.iter().filter_map(|p| rss_peak_kib(*p)).sum())
}

/// `pid`'s peak resident memory (VmHWM) in KiB.
pub(crate) fn rss_peak_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// `pid`'s resident memory now (VmRSS) in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Raises the soft limit on open files to the hard one: a run holds a socket per
/// client, and processes started from here inherit the limit.
pub fn raise_open_files_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "42 (we ird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        let cpu = parse_stat(stat, 100.0).expect("parses");
        assert_eq!(cpu.user_s, 2.5);
        assert_eq!(cpu.sys_s, 0.5);
    }

    #[test]
    fn this_process_is_measurable() {
        let me = std::process::id();
        assert!(cpu(me).is_some());
        assert!(rss_peak_kib(me).is_some_and(|k| k > 0));
        assert!(rss_kib(me).is_some_and(|k| k > 0));
    }
}
