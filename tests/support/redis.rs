//! A real `redis-server` for the `RedisStore` tests: started on a free loopback port with
//! persistence off (`--save "" --appendonly no`) in a temporary directory, stopped (killed) when
//! dropped, and restartable on the same port to test outages.
//!
//! When `redis-server` is not installed the tests print why and return early, unless `CI` is
//! set: then they fail (`.ci/run` installs Debian's `redis-server`).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Start one; `None` (with a message) when `redis-server` is missing and `CI` is unset.
    pub fn start() -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            if std::env::var_os("CI").is_some() {
                panic!("redis: `redis-server` is not installed but CI is set; the Redis tests must run in CI");
            }
            eprintln!(
                "skipping: `redis-server` is not installed (apt-get install -y redis-server)"
            );
            return None;
        }
        let port = free_port();
        let mut server = RedisServer {
            child: None,
            port,
            _dir: tempfile::tempdir().expect("temp dir"),
        };
        server.restart();
        Some(server)
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kill the server (as an outage would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freeze the server (`SIGSTOP`): connections stay open but nothing answers, as a server
    /// that hangs or a network partition; its data is kept. [`resume`](Self::resume) ends it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Let a [paused](Self::pause) server go on.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// Start it again on the same port (empty: persistence is off), and wait until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self._dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not listen on port {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("-CONT");
        }
        self.stop();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
