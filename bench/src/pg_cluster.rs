//! A PostgreSQL cluster of a run's own: `initdb` into a temporary folder, served on a free
//! loopback port, stopped (and deleted) when dropped. A fault run stops and starts it at will, a
//! scale run sets the server's configuration; the shared server other tests use is never touched.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run::BoxError;

/// A private cluster, running between [`Cluster::start`] and [`Cluster::stop`].
#[derive(Debug)]
pub(crate) struct Cluster {
    /// Holds the data folder, the socket and the server's log.
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Server settings (`name=value`) given to every start.
    settings: Vec<String>,
    /// PostgreSQL refuses to run as root: when we are root, its programs run as `postgres`.
    as_postgres: bool,
}

/// How the server is shut down (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shutdown {
    /// Disconnects clients, then checkpoints: a planned restart.
    Fast,
    /// Aborts without a checkpoint; the next start recovers from the WAL: a crash.
    Immediate,
}

impl Shutdown {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Shutdown::Fast => "fast",
            Shutdown::Immediate => "immediate",
        }
    }
}

impl Cluster {
    /// Creates a cluster with `bin`'s `initdb` (trust authentication on loopback, user
    /// `postgres`) and starts it with `settings` (each `name=value`, see [`parse_setting`]).
    pub(crate) fn create(bin: &Path, settings: &[String]) -> Result<Self, BoxError> {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-bench-pg")
            .tempdir()?;
        let as_postgres = running_as_root()?;
        if as_postgres {
            run(Command::new("chown").args(["postgres:"]).arg(dir.path()))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cluster = Self {
            dir,
            bin: bin.to_owned(),
            port,
            settings: settings.to_vec(),
            as_postgres,
        };
        let mut initdb = cluster.program("initdb");
        initdb
            .arg("-D")
            .arg(cluster.data())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"]);
        run(&mut initdb)?;
        cluster.start()?;
        Ok(cluster)
    }

    /// The server's URL (database `postgres`).
    pub(crate) fn url(&self) -> Result<url::Url, BoxError> {
        Ok(format!("postgres://postgres@127.0.0.1:{}/postgres", self.port).parse()?)
    }

    /// Starts the server and returns once it accepts connections. The server may run on every
    /// core, as a shared one does, though this process may be pinned to one.
    pub(crate) fn start(&self) -> Result<(), BoxError> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        for setting in &self.settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        let mut pg_ctl = on_every_core(self.program("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(self.dir.path().join("server.log"))
            .arg("start");
        run(&mut pg_ctl)
    }

    /// Stops the server in `mode` and returns once it is down.
    pub(crate) fn stop(&self, mode: Shutdown) -> Result<(), BoxError> {
        let mut pg_ctl = self.program("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "60", "-m", mode.name(), "stop"]);
        run(&mut pg_ctl)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn program(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stopped already if a fault left it down; the folder goes with `dir`.
        let _ = self.stop(Shutdown::Immediate);
    }
}

/// A server setting as `name=value`: one word each side, since `pg_ctl` splits its options
/// on white space.
pub(crate) fn parse_setting(setting: &str) -> Result<String, String> {
    let (name, value) = setting
        .split_once('=')
        .ok_or_else(|| format!("{setting:?} is not name=value"))?;
    let word = |s: &str| {
        !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"')
    };
    if word(name)
        && word(value)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        Ok(setting.to_owned())
    } else {
        Err(format!(
            "{setting:?} is not name=value with a plain name and a value without spaces or quotes"
        ))
    }
}

/// `command` run by `taskset` on every core when `taskset` is there (the server it starts
/// inherits that), so that the pinning of this process does not reach the server.
///
/// The cores are the machine's online ones, as the kernel lists them (`0-1`, the form `taskset
/// -c` takes), not this process's: a scale run pins itself to core 0 before it creates the
/// cluster, and `available_parallelism` then counts that one core.
fn on_every_core(command: Command) -> Command {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online");
    let Ok(online) = online.as_ref().map(|s| s.trim()) else {
        return command;
    };
    if online.is_empty() || !crate::run::taskset_available() {
        return command;
    }
    let mut taskset = Command::new("taskset");
    taskset
        .args(["-c", online])
        .arg(command.get_program())
        .args(command.get_args());
    taskset
}

fn running_as_root() -> Result<bool, BoxError> {
    let out = Command::new("id").arg("-u").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs `command` to the end; its output becomes the error if it fails.
fn run(command: &mut Command) -> Result<(), BoxError> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed ({}): {}{}",
            command,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_setting;

    #[test]
    fn a_setting_is_one_plain_name_and_one_word() {
        for good in [
            "shared_buffers=2GB",
            "checkpoint_timeout=15min",
            "auto_explain.log_min_duration=0",
        ] {
            assert_eq!(parse_setting(good).as_deref(), Ok(good));
        }
        // Each of these would reach `pg_ctl -o` split or quoted differently from what was meant.
        for bad in [
            "shared_buffers",
            "shared_buffers = 2GB",
            "=2GB",
            "shared_buffers=",
            "work_mem=4MB -c fsync=off",
            "search_path='a'",
            "shared-buffers=2GB",
        ] {
            assert!(parse_setting(bad).is_err(), "{bad} was accepted");
        }
    }
}
