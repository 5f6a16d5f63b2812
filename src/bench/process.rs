//! The processes the benchmark starts: the `upline` CLI for seeding, `upline serve` itself (a
//! guard kills it on every exit path), and `perf stat` counting its fsyncs. Also what `/proc`
//! says about a process: CPU time, RSS, I/O.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How often a child is polled while waiting for it.
const POLL: Duration = Duration::from_millis(50);
/// Linux reports `/proc/PID/stat` times in USER_HZ ticks, which the kernel ABI fixes at 100 per
/// second whatever the kernel's own HZ.
const TICKS_PER_SECOND: f64 = 100.0;

/// Runs `binary args...` to completion within `timeout`, its output in `logs`; returns stdout.
pub fn run_cli(binary: &Path, args: &[&str], logs: &Path, timeout: Duration) -> Result<String> {
    let name = args.iter().take(2).copied().collect::<Vec<_>>().join("-");
    let out_path = logs.join(format!("{name}.stdout"));
    let err_path = logs.join(format!("{name}.stderr"));
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(create(&out_path)?)
        .stderr(create(&err_path)?)
        .spawn()
        .with_context(|| format!("cannot start {} {}", binary.display(), args.join(" ")))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for a CLI command")? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`upline {}` did not finish within {timeout:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(POLL);
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        bail!(
            "`upline {}` failed ({status}): {}",
            args.join(" "),
            tail(&stderr, 2_000)
        );
    }
    Ok(stdout)
}

fn create(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

/// The last `max` bytes of `text` (on a character boundary).
pub fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// `upline serve` running as a child process. Dropping it kills the process, so no exit path
/// (an error, a panic, a timeout) leaves a server behind.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `binary serve --config config` and waits until it says where it listens.
    pub fn start(
        binary: &Path,
        config: &Path,
        log: PathBuf,
        timeout: Duration,
    ) -> Result<ServerProcess> {
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {} serve", binary.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("serve's stdout")?;
        // Guarded from here on: any failure below kills the child.
        let mut server = ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid,
            log,
        };
        server.addr = server.listening_address(stdout, timeout)?;
        Ok(server)
    }

    /// Reads serve's stdout on a thread (which keeps draining it afterwards, so the pipe never
    /// fills) until the "upline listening on http://ADDR" line.
    fn listening_address(
        &mut self,
        stdout: std::process::ChildStdout,
        timeout: Duration,
    ) -> Result<SocketAddr> {
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + timeout;
        loop {
            match rx.recv_timeout(POLL) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("upline listening on http://") {
                        return addr
                            .trim()
                            .parse()
                            .with_context(|| format!("serve printed an odd address: {line}"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "serve closed its output before listening: {}",
                        self.log_tail()
                    )
                }
            }
            if let Some(status) = self.child.try_wait().context("waiting for serve")? {
                bail!(
                    "serve exited ({status}) before listening: {}",
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "serve did not listen within {timeout:?}: {}",
                    self.log_tail()
                );
            }
        }
    }

    pub fn log_tail(&self) -> String {
        tail(
            &std::fs::read_to_string(&self.log).unwrap_or_default(),
            2_000,
        )
        .to_string()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM (serve finishes the work in hand and closes its stores), SIGKILL after `grace`.
    pub fn stop(mut self, grace: Duration) -> Result<()> {
        signal(self.pid, "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().context("waiting for serve to stop")? {
                if !status.success() {
                    bail!("serve stopped with {status}: {}", self.log_tail());
                }
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
        // Dropping `self` kills it.
        bail!("serve did not stop within {grace:?} of SIGTERM (killed)")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends a signal with kill(1): no unsafe code for a once-per-run call.
fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What `/proc` says about one process (or thread) at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// utime + stime, seconds.
    pub cpu_seconds: f64,
    pub rss_kb: u64,
    /// The peak RSS since the process started (VmHWM).
    pub peak_rss_kb: u64,
    /// write(2)-family calls and bytes sent to the storage layer (`/proc/PID/io`).
    pub write_syscalls: u64,
    pub write_bytes: u64,
}

impl ProcSample {
    /// Reads `/proc/{path}` (e.g. "1234" or "self/task/5678"); `None` once the process is gone.
    pub fn read(path: &str) -> Option<ProcSample> {
        let cpu_seconds = cpu_seconds(path)?;
        let status = std::fs::read_to_string(format!("/proc/{path}/status")).unwrap_or_default();
        let io = std::fs::read_to_string(format!("/proc/{path}/io")).unwrap_or_default();
        Some(ProcSample {
            cpu_seconds,
            rss_kb: field(&status, "VmRSS:"),
            peak_rss_kb: field(&status, "VmHWM:"),
            write_syscalls: field(&io, "syscw:"),
            write_bytes: field(&io, "write_bytes:"),
        })
    }
}

/// utime + stime of `/proc/{path}/stat`, in seconds.
pub fn cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{path}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis,
    // where field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / TICKS_PER_SECOND)
}

/// The first number after `name` in a `Key: value` file, 0 when absent.
fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `perf stat` counting fsync(2) and fdatasync(2) of a process (all its threads): kernel
/// tracepoint counters, which cost the process nothing, unlike strace stopping it at every
/// syscall. `None` where perf or the tracepoints are unavailable.
pub struct FsyncCounter {
    child: Child,
    output: PathBuf,
}

const FSYNC_EVENTS: &str = "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync";

impl FsyncCounter {
    pub fn start(pid: u32, output: PathBuf) -> Option<FsyncCounter> {
        let file = File::create(&output).ok()?;
        let child = Command::new("perf")
            .args([
                "stat",
                "-x",
                ",",
                "-e",
                FSYNC_EVENTS,
                "-p",
                &pid.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .ok()?;
        // perf needs a moment to attach to every thread; counts before that are lost.
        std::thread::sleep(Duration::from_millis(200));
        let mut counter = FsyncCounter { child, output };
        counter.alive().then_some(counter)
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops counting (SIGINT makes perf print its counts) and returns fsync + fdatasync calls.
    pub fn finish(mut self) -> Option<u64> {
        signal(self.child.id(), "INT");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let text = std::fs::read_to_string(&self.output).ok()?;
        let counts: Vec<u64> = text
            .lines()
            .filter(|l| l.contains("sys_enter_f"))
            .filter_map(|l| l.split(',').next()?.trim().parse().ok())
            .collect();
        (!counts.is_empty()).then(|| counts.iter().sum())
    }
}

impl Drop for FsyncCounter {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
