//! Helpers of the interop tests that drive quorumkv with the real etcd 3.4 tools
//! (`etcdctl`, `etcd`): finding the tools, processes killed on drop, etcdctl runs with
//! a hard deadline, polling, and certificates made with rcgen.
//!
//! Used as `mod common; mod interop;` from a test crate (ports come from
//! `common::free_port`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one etcdctl command may run before the test calls it a hang. etcdctl's own
/// limits (`--dial-timeout 2s --command-timeout 5s`) end every command well before.
pub const ETCDCTL_DEADLINE: Duration = Duration::from_secs(30);

/// How long a started process may take to print its ready line.
pub const START_DEADLINE: Duration = Duration::from_secs(60);

pub const SKIP_VAR: &str = "QKV_SKIP_ETCD_INTEROP";

/// The etcd tools these tests drive.
pub struct Tools {
    pub etcdctl: PathBuf,
    pub etcd: Option<PathBuf>,
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// The etcd tools, or `None` (after a note) when they are missing and
/// `QKV_SKIP_ETCD_INTEROP=1` is set. Missing tools without that variable fail the test:
/// CI installs them, and a silently skipped interop test proves nothing.
pub fn tools(need_etcd: bool) -> Option<Tools> {
    let etcdctl = find_program("etcdctl");
    let etcd = find_program("etcd");
    let mut missing = Vec::new();
    if etcdctl.is_none() {
        missing.push("etcdctl (Debian package etcd-client)");
    }
    if need_etcd && etcd.is_none() {
        missing.push("etcd (Debian package etcd-server)");
    }
    if missing.is_empty() {
        return Some(Tools { etcdctl: etcdctl.unwrap(), etcd });
    }
    let missing = missing.join(" and ");
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("note: skipping etcd interop test: {missing} not found and {SKIP_VAR}=1");
        return None;
    }
    panic!(
        "{missing} not found on PATH or in /usr/bin: install them (`apt-get install etcd-client etcd-server`), \
         or set {SKIP_VAR}=1 to skip the etcd interop tests"
    );
}

/// `127.0.0.1:PORT` with a free port.
pub fn loopback() -> String {
    format!("127.0.0.1:{}", crate::common::free_port())
}

/// Polls `f` every 100 ms until it returns `Ok`; panics with its last error after `timeout`.
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("timed out after {timeout:?} waiting for {what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A child process that is SIGKILLed when dropped (also when the test fails). Its stdout
/// lines are collected; its stderr goes to a log file shown in failure messages.
pub struct Proc {
    pub label: String,
    child: Option<Child>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr_file: PathBuf,
}

impl Proc {
    /// Starts `cmd`; stderr goes to `LOG_DIR/LABEL.stderr` (appended to across restarts).
    pub fn spawn(label: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        let stderr_file = log_dir.join(format!("{label}.stderr"));
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&stderr_file).unwrap();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({cmd:?}): {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = stdout.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => lines.lock().unwrap().push(l),
                    Err(_) => break,
                }
            }
        });
        Proc { label: label.to_string(), child: Some(child), stdout, stderr_file }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("process was killed").id()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The last lines of its stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits for a stdout line containing `needle` and returns it; panics (with its
    /// stderr) if the process exits first or `timeout` passes.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.stdout.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                // Its last lines may still be in the reader thread.
                std::thread::sleep(Duration::from_millis(200));
                if let Some(l) = self.stdout.lock().unwrap().iter().find(|l| l.contains(needle)) {
                    return l.clone();
                }
                panic!(
                    "{} exited ({status}) before printing {needle:?}\nstdout: {:?}\nstderr:\n{}",
                    self.label,
                    self.stdout_lines(),
                    self.stderr_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} printed no {needle:?} within {timeout:?}\nstdout: {:?}\nstderr:\n{}",
                self.label,
                self.stdout_lines(),
                self.stderr_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// SIGKILL (a crash), and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a quorumkv node with `args` and waits until it serves its client port.
pub fn start_quorumkv(label: &str, args: &[String], log_dir: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quorumkv"));
    cmd.args(args);
    let mut p = Proc::spawn(label, cmd, log_dir);
    p.wait_for_line(") ready, cluster ", START_DEADLINE);
    p.wait_for_line("etcd v3 API on", START_DEADLINE);
    p
}

/// The output of one etcdctl run.
#[derive(Debug)]
pub struct CtlOutput {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CtlOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Stdout of a run that must have succeeded.
    pub fn ok(self) -> String {
        assert!(self.success(), "etcdctl failed: {self}");
        self.stdout
    }

    pub fn check(self) -> Result<String, String> {
        if self.success() {
            Ok(self.stdout)
        } else {
            Err(self.to_string())
        }
    }
}

impl std::fmt::Display for CtlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> {} after {:?}\nstdout: {}\nstderr: {}",
            self.command,
            self.status,
            self.elapsed,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `cmd` to completion with `input` on its stdin, killing it (and failing the test)
/// if it outlives `deadline`.
pub fn run_with_deadline(mut cmd: Command, input: Option<&str>, deadline: Duration) -> CtlOutput {
    let command = format!("{cmd:?}");
    let start = Instant::now();
    let mut child = cmd
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
    if let Some(input) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_string();
        // Dropping stdin at the end closes it.
        std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    }
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command} hung: still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    CtlOutput { command, status, stdout: out.join().unwrap(), stderr: err.join().unwrap(), elapsed: start.elapsed() }
}

/// etcdctl (API v3) with fixed global flags (TLS files and such) added to every command.
#[derive(Clone)]
pub struct Etcdctl {
    pub bin: PathBuf,
    pub global: Vec<String>,
}

impl Etcdctl {
    pub fn new(tools: &Tools) -> Self {
        Etcdctl { bin: tools.etcdctl.clone(), global: Vec::new() }
    }

    /// The same etcdctl with more global flags.
    pub fn with(&self, flags: &[&str]) -> Self {
        let mut c = self.clone();
        c.global.extend(flags.iter().map(|s| s.to_string()));
        c
    }

    pub fn command(&self, endpoints: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("ETCDCTL_API", "3")
            .args(["--dial-timeout", "2s", "--command-timeout", "5s"])
            .args(&self.global)
            .arg(format!("--endpoints={endpoints}"))
            .args(args);
        cmd
    }

    /// Runs one command against `endpoints` (comma-separated).
    pub fn run(&self, endpoints: &str, args: &[&str]) -> CtlOutput {
        run_with_deadline(self.command(endpoints, args), None, ETCDCTL_DEADLINE)
    }

    /// Runs one command with `input` on its stdin (`txn` reads its operations there).
    pub fn run_input(&self, endpoints: &str, args: &[&str], input: &str) -> CtlOutput {
        run_with_deadline(self.command(endpoints, args), Some(input), ETCDCTL_DEADLINE)
    }

    /// A transaction without conditions doing `ops` (etcdctl txn lines: `put K V`, `del K`),
    /// which must succeed.
    pub fn txn(&self, endpoints: &str, ops: &[String]) {
        // Empty conditions, the operations, no failure operations: each list ends with a blank line.
        let input = format!("\n{}\n\n\n", ops.join("\n"));
        let out = self.run_input(endpoints, &["txn"], &input).ok();
        assert!(out.starts_with("SUCCESS"), "txn through {endpoints}: {out}");
    }

    /// `put KEY VALUE`, which must succeed.
    pub fn put(&self, endpoints: &str, key: &str, value: &str) {
        let out = self.run(endpoints, &["put", key, value]).ok();
        assert_eq!(out.trim(), "OK", "put {key} through {endpoints}");
    }

    /// Every key and value under `prefix` (`get --prefix`), linearizable or serializable.
    pub fn get_prefix(
        &self,
        endpoint: &str,
        prefix: &str,
        serializable: bool,
    ) -> Result<std::collections::BTreeMap<String, String>, String> {
        let consistency = if serializable { "--consistency=s" } else { "--consistency=l" };
        let out = self.run(endpoint, &["get", "--prefix", consistency, prefix]).check()?;
        parse_key_values(&out)
    }

    /// The value of `key` (linearizable read), `None` if absent.
    pub fn get(&self, endpoint: &str, key: &str) -> Result<Option<String>, String> {
        let out = self.run(endpoint, &["get", key]).check()?;
        Ok(parse_key_values(&out)?.remove(key))
    }
}

/// etcdctl's simple `get` output: key and value lines, alternating (values here have no
/// newlines).
pub fn parse_key_values(out: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let lines: Vec<&str> = out.lines().collect();
    if !lines.len().is_multiple_of(2) {
        return Err(format!("odd number of lines in get output: {out:?}"));
    }
    Ok(lines.chunks(2).map(|kv| (kv[0].to_string(), kv[1].to_string())).collect())
}

/// A certificate authority writing its certificate and the leaves it signs to a directory.
pub struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
    name: String,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("quorumkv interop {name}"));
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), issuer.pem()).unwrap();
        Ca { issuer, dir: dir.to_path_buf(), name: name.into() }
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// A leaf certificate (for server and client use) with these subject alternative names.
    pub fn leaf(&self, name: &str, sans: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf { cert: self.dir.join(format!("{name}.pem")), key: self.dir.join(format!("{name}-key.pem")) };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}

pub fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}
