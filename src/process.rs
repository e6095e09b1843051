//! Starting a service as a child process and learning its address from its log.
//!
//! Children start from an empty environment (see [`command`]): a `TOLLGATE_*`, `EVENT_*`,
//! `IDENTITY_*` or `RUST_LOG` in the shell that runs the tests must not change what a test
//! starts. And a child is killed when its handle is dropped, so that a failing test leaves no
//! process behind.

/// A command for `program` with an empty environment but `PATH` (which `taskset` and `kill`
/// are found on): whatever the child needs, the caller sets.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
}

/// A service process (a test's or the benchmark's), with its log collected on a thread; killed
/// if still running when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    /// The child process.
    pub child: std::process::Child,
    /// The address it announced.
    pub addr: std::net::SocketAddr,
    log: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts `command` (made with [`command`]) with JSON logs and waits for the log line whose
    /// `message` is
    /// `listening_message`, whose `addr` field is the bound address. The service binds before it
    /// logs that line, so the address is connectable when this returns. If the process exits
    /// first, the error holds its log.
    pub fn start(
        mut command: std::process::Command,
        listening_message: &str,
    ) -> Result<Self, String> {
        use std::io::{BufRead, BufReader};
        let mut child = command
            .env("TOLLGATE_LOG_FORMAT", "json")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let wanted = listening_message.to_owned();
        let log = std::thread::spawn(move || {
            let mut log = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["message"] == wanted.as_str() {
                        if let Some(addr) = v["addr"].as_str().and_then(|a| a.parse().ok()) {
                            let _ = addr_tx.send(addr);
                        }
                    }
                }
                log.push(line);
            }
            log
        });
        let Ok(addr) = addr_rx.recv() else {
            let status = child.wait();
            let log = log.join().unwrap_or_default().join("\n");
            return Err(format!(
                "the service exited ({status:?}) before listening:\n{log}"
            ));
        };
        Ok(Self {
            child,
            addr,
            log: Some(log),
        })
    }

    /// The resident memory of the process, in bytes (Linux), if it can be read.
    pub fn resident_bytes(&self) -> Option<u64> {
        self.status_kib("VmRSS:").map(|kib| kib * 1024)
    }

    /// The most resident memory the process has had so far, in bytes (Linux).
    pub fn peak_resident_bytes(&self) -> Option<u64> {
        self.status_kib("VmHWM:").map(|kib| kib * 1024)
    }

    /// CPU time the process's threads have used so far (Linux).
    pub fn cpu_time(&self) -> Option<std::time::Duration> {
        cpu_time(self.child.id())
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    /// Asks the process to stop (SIGTERM) without waiting.
    pub fn terminate(&self) -> std::io::Result<()> {
        self.signal("TERM")
    }

    /// Sends the signal named `name` (`TERM`, `STOP`, `CONT`, …) without waiting.
    pub fn signal(&self, name: &str) -> std::io::Result<()> {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill -{name} failed")))
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(|_| ())
    }

    /// Waits for the process to exit and returns its exit status and every log line.
    pub fn wait(mut self) -> std::io::Result<(std::process::ExitStatus, Vec<String>)> {
        let status = self.child.wait()?;
        let log = self
            .log
            .take()
            .and_then(|l| l.join().ok())
            .unwrap_or_default();
        Ok((status, log))
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // Still running: the test that started it failed (or forgot it).
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU time all threads of process `pid` have used so far, summed from each thread's
/// `schedstat` (nanoseconds, unlike `stat`'s clock ticks) (Linux).
pub fn cpu_time(pid: u32) -> Option<std::time::Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut nanos = 0u64;
    for task in tasks.flatten() {
        let line = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        nanos += line
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(std::time::Duration::from_nanos(nanos))
}
