//! What the machine itself did while a figure was measured: CPU time its hypervisor took
//! (steal) and what was read from disk (Linux).
//!
//! On a virtual machine both make latency tails that are not the code's: a vCPU the host does
//! not run stalls whatever request it was serving, and a host that reclaims the guest's idle
//! page cache (file pages unused for a minute, on the machines these figures were taken on)
//! sends reads of data loaded minutes earlier to the disk. A read figure's p99 is read beside
//! these two, so a tail from the machine is told from a tail from the code.

use serde_json::{Value, json};

/// The machine-wide counters a window is measured between.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counters {
    /// Clock ticks of every core: stolen, and all of them (`/proc/stat`).
    steal: u64,
    ticks: u64,
    /// KiB read from block devices (`pgpgin` of `/proc/vmstat`).
    read_kib: u64,
}

impl Counters {
    /// The counters now; `None` where `/proc` does not tell them.
    pub(crate) fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        // cpu  user nice system idle iowait irq softirq steal guest guest_nice; guest time is
        // already counted in user, so the total stops at steal.
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let vmstat = std::fs::read_to_string("/proc/vmstat").ok()?;
        let read_kib = vmstat
            .lines()
            .find_map(|line| line.strip_prefix("pgpgin "))?
            .trim()
            .parse()
            .ok()?;
        Some(Self {
            steal: *ticks.get(7)?,
            ticks: ticks.iter().sum(),
            read_kib,
        })
    }
}

/// The machine over one measured window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Conditions {
    /// Share of all cores' time the hypervisor ran something else.
    pub(crate) steal: f64,
    /// MiB read from disk, by any process.
    pub(crate) read_mib: f64,
    /// How long the window was, to weigh it when windows are merged.
    seconds: f64,
}

impl Conditions {
    /// The window between two readings `seconds` apart.
    pub(crate) fn between(before: Counters, after: Counters, seconds: f64) -> Self {
        let ticks = after.ticks.saturating_sub(before.ticks);
        let steal = after.steal.saturating_sub(before.steal);
        Self {
            steal: if ticks > 0 {
                steal as f64 / ticks as f64
            } else {
                0.0
            },
            read_mib: after.read_kib.saturating_sub(before.read_kib) as f64 / 1024.0,
            seconds,
        }
    }

    /// Both windows as one.
    pub(crate) fn merge(self, other: Self) -> Self {
        let seconds = self.seconds + other.seconds;
        let steal = if seconds > 0.0 {
            (self.steal * self.seconds + other.steal * other.seconds) / seconds
        } else {
            0.0
        };
        Self {
            steal,
            read_mib: self.read_mib + other.read_mib,
            seconds,
        }
    }

    pub(crate) fn json(&self) -> Value {
        json!({ "steal_share": self.steal, "disk_read_mib": self.read_mib })
    }

    /// "steal 3.1%, 41 MiB read from disk".
    pub(crate) fn note(&self) -> String {
        format!(
            "steal {:.1}%, {:.0} MiB read from disk",
            self.steal * 100.0,
            self.read_mib
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_the_difference_of_its_readings() {
        let before = Counters {
            steal: 10,
            ticks: 1000,
            read_kib: 2048,
        };
        let after = Counters {
            steal: 60,
            ticks: 2000,
            read_kib: 2048 + 10 * 1024,
        };
        let window = Conditions::between(before, after, 5.0);
        assert_eq!(window.steal, 0.05);
        assert_eq!(window.read_mib, 10.0);
        assert_eq!(window.note(), "steal 5.0%, 10 MiB read from disk");
    }

    #[test]
    fn merged_windows_weigh_steal_by_time_and_add_reads() {
        let a = Conditions {
            steal: 0.10,
            read_mib: 3.0,
            seconds: 1.0,
        };
        let b = Conditions {
            steal: 0.02,
            read_mib: 5.0,
            seconds: 3.0,
        };
        let both = a.merge(b);
        assert!((both.steal - 0.04).abs() < 1e-12, "{}", both.steal);
        assert_eq!(both.read_mib, 8.0);
    }

    #[test]
    fn this_machine_reports_its_counters() {
        // The figures are taken on Linux, which has both files.
        let now = Counters::now().expect("/proc/stat and /proc/vmstat");
        assert!(now.ticks > 0);
        assert!(now.steal <= now.ticks);
    }
}
