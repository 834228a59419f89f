//! Running the built `agent-oauth` binary: one command at a time in a private config
//! directory, and `agent-oauth serve` as a child process whose counters are read over stdin.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_agent-oauth"))
}

/// A private config directory (tokens, keys, config file) for a sequence of commands.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Home {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A command with a clean environment: no `AGENT_OAUTH_*` from the caller, this config dir.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AGENT_OAUTH_") {
                c.env_remove(k);
            }
        }
        c.env("AGENT_OAUTH_CONFIG_DIR", self.path())
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Run to completion.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.output().expect("run agent-oauth"))
    }

    /// Run with `stdin` as standard input.
    pub fn run_with_stdin(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agent-oauth");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        Run::from(child.wait_with_output().expect("wait agent-oauth"))
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Panics unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code {} (wanted {code})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    /// stdout as one JSON value.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// `agent-oauth serve --json` as a child process; killed on drop.
pub struct Serve {
    pub issuer: String,
    pub resource: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Serve {
    pub fn start(flags: &[&str]) -> Serve {
        let mut args = vec!["serve", "--json"];
        args.extend_from_slice(flags);
        let mut child = Command::new(bin())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn agent-oauth serve");
        let stdin = child.stdin.take();
        let lines = reader(child.stdout.take().expect("stdout"));
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("serve printed nothing");
        let facts: Value = serde_json::from_str(&first).expect("serve's first line is JSON");
        Serve {
            issuer: facts["issuer"].as_str().expect("issuer").to_owned(),
            resource: facts["resource"].as_str().expect("resource").to_owned(),
            child,
            stdin,
            lines,
        }
    }

    /// Send one command line and read its JSON answer.
    pub fn ask(&mut self, command: &str) -> Value {
        let stdin = self.stdin.as_mut().expect("serve stdin");
        writeln!(stdin, "{command}").expect("write to serve");
        stdin.flush().expect("flush serve stdin");
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("serve did not answer");
        serde_json::from_str(&line).expect("serve answered JSON")
    }

    /// The server's counters.
    pub fn stats(&mut self) -> Value {
        self.ask("stats")
    }

    /// Close stdin and wait: the server must exit by itself.
    pub fn close_and_wait(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve did not exit after stdin closed");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reader(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A command running in the background whose stderr is read line by line (device and code
/// logins print what the user must do there).
pub struct Background {
    child: Child,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Background {
    pub fn spawn(home: &Home, args: &[&str], env: &[(&str, &str)]) -> Background {
        let mut c = home.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agent-oauth");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            child,
            stderr: rx,
            seen: Vec::new(),
        }
    }

    /// The first stderr line for which `pick` gives a value (waits up to 30 s).
    pub fn wait_for<T>(&mut self, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    let got = pick(&line);
                    self.seen.push(line);
                    if let Some(v) = got {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "expected line not printed; stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Wait for the exit (up to `secs`), with the rest of the output.
    pub fn finish(mut self, secs: u64) -> Run {
        for _ in 0..secs * 10 {
            if self.child.try_wait().expect("try_wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.child.try_wait().expect("try_wait").is_none() {
            let _ = self.child.kill();
        }
        let out = self.child.wait_with_output().expect("wait");
        let mut stderr = self.seen.join("\n");
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            stderr.push('\n');
            stderr.push_str(&line);
        }
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        }
    }
}

/// The user code in a device-login line `... enter the code: CODE`.
pub fn user_code(line: &str) -> Option<String> {
    line.split_once("enter the code: ")
        .map(|(_, c)| c.trim().to_owned())
}

/// The authorization URL a code login prints (indented on its own line).
pub fn authorization_url(line: &str) -> Option<String> {
    line.strip_prefix("  ")
        .filter(|l| l.starts_with("http"))
        .map(str::to_owned)
}

/// The client-credentials flags for the `agent` test client of `serve`.
pub fn agent_flags(issuer: &str) -> Vec<String> {
    vec![
        "--issuer".into(),
        issuer.into(),
        "--client-id".into(),
        "agent".into(),
        "--scope".into(),
        "read".into(),
    ]
}

/// `&[String]` as `&[&str]`.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
