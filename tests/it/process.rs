//! The `certgate` binary as operators run it: processes that tests start, watch and kill, and
//! a TCP proxy in front of PostgreSQL that a test can cut.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::Api;

/// How long a process may take to start listening. Far above the usual well under a second:
/// a loaded 2-core CI machine runs a whole test suite beside it.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The log filter every long-running process gets: `info` is where the "listening" lines are.
const LOG_FILTER: &str = "info,sqlx=warn";

/// Where the admin key a process printed is, if it printed one: the first `sk-admin-…` in
/// `text`. The one place that knows what a printed key looks like.
pub fn admin_key_in(text: &str) -> Option<String> {
    let start = text.find("sk-admin-")?;
    Some(
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect(),
    )
}

/// A running `certgate` process. It exists from the moment the child is spawned, so every
/// later wait or assertion that panics still kills it: dropping it kills and reaps the child.
pub struct Process {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Process {
    /// Spawns `certgate` with `args` (and `env`), capturing both output streams.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_certgate"));
        cmd.args(args)
            .env("RUST_LOG", LOG_FILTER)
            .env_remove("CERTGATE_LOG_FORMAT")
            .env_remove("CERTGATE_ADMIN_KEY_FILE")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start certgate");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            capture(child.stdout.take().expect("piped stdout"), &stdout),
            capture(child.stderr.take().expect("piped stderr"), &stderr),
        ];
        Process {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// Starts `certgate serve --listen 127.0.0.1:0` on `db_url` and waits until it says where
    /// it listens.
    pub async fn serve(db_url: &str, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--database", db_url];
        args.extend_from_slice(extra);
        let mut process = Process::spawn(&args, &[]);
        let addr = process.listening("certgate serve listening").await;
        Server { process, addr }
    }

    /// Waits for the log line containing `marker` and returns its `listen=IP:PORT`. Fails,
    /// showing everything the process wrote, if it exits or says nothing within the deadline.
    pub async fn listening(&mut self, marker: &str) -> SocketAddr {
        let started = Instant::now();
        loop {
            if let Some(addr) = self.logged_address(marker) {
                return addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.join_readers();
                panic!(
                    "certgate exited ({status}) before '{marker}':\n{}",
                    self.output()
                );
            }
            assert!(
                started.elapsed() <= START_DEADLINE,
                "no '{marker}' within {START_DEADLINE:?}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `listen=` address of a log line containing `marker` that was already written.
    pub fn logged_address(&self, marker: &str) -> Option<SocketAddr> {
        let line = {
            let stderr = self.stderr.lock().expect("stderr buffer");
            stderr.lines().find(|l| l.contains(marker))?.to_owned()
        };
        let addr = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("listen="))
            .and_then(|v| v.parse().ok());
        Some(addr.unwrap_or_else(|| panic!("no listen=IP:PORT in '{line}':\n{}", self.output())))
    }

    /// What the process wrote on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("stdout buffer").clone()
    }

    /// What the process wrote on stderr (its logs) so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    /// Whether the process has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.try_wait().expect("try_wait")?;
        self.join_readers();
        Some(status)
    }

    /// Everything the process wrote so far: stdout, then stderr.
    pub fn output(&self) -> String {
        format!(
            "--- stdout\n{}--- stderr\n{}",
            self.stdout.lock().expect("stdout buffer"),
            self.stderr.lock().expect("stderr buffer")
        )
    }

    /// The admin key the process printed at bootstrap, on either stream. Complete once the
    /// process has exited ([`Process::terminate_and_wait`], [`Process::kill`]); while it
    /// runs, only what has been read so far.
    pub fn bootstrap_key(&self) -> Option<String> {
        admin_key_in(&self.output())
    }

    /// SIGTERM, then waits: a graceful shutdown exits 0. Afterwards the output is complete.
    /// Returns how long the exit took.
    pub fn terminate_and_wait(&mut self) -> Duration {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        // Open requests are finished first; none are open here, so this is slack for load.
        let sent_at = Instant::now();
        let deadline = sent_at + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let took = sent_at.elapsed();
                self.join_readers();
                assert!(
                    status.success(),
                    "exit after SIGTERM: {status}\n{}",
                    self.output()
                );
                return took;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within 30 s of SIGTERM:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to flush or finish anything. Reaps the child; afterwards the
    /// output is complete.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_readers();
    }

    /// Waits for both output readers to reach end of file (the child has exited).
    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Appends every line read from `pipe` to `sink`, on a thread of its own, until end of file.
fn capture(pipe: impl std::io::Read + Send + 'static, sink: &Arc<Mutex<String>>) -> JoinHandle<()> {
    let sink = sink.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut s = sink.lock().expect("output buffer");
            s.push_str(&line);
            s.push('\n');
        }
    })
}

/// A running `certgate serve` and the address it listens on.
pub struct Server {
    pub process: Process,
    pub addr: SocketAddr,
}

impl Server {
    /// The Admin API of this process, as the holder of `key`.
    pub fn api(&self, key: &str) -> Api {
        Api::new(self.addr, Some(key))
    }
}

/// Runs the `certgate` binary to completion with `args`; returns (success, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (bool, String, String) {
    run_cli_env(args, &[])
}

/// [`run_cli`] with extra environment variables.
pub fn run_cli_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("CERTGATE_ADMIN_KEY_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run certgate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A local port that nobody is given while this lives, and where nothing accepts connections:
/// a socket bound with `SO_REUSEADDR` that never listens. The kernel skips it when handing
/// out port 0 and refuses connections to it, yet a process binding it with `SO_REUSEADDR`
/// (tokio's listeners do) can still take it over. No bind-then-drop race either way.
pub struct ReservedPort {
    socket: tokio::net::TcpSocket,
}

impl ReservedPort {
    pub fn new() -> ReservedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind 127.0.0.1:0");
        ReservedPort { socket }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("bound address")
    }
}

/// A TCP proxy in front of PostgreSQL that a test can cut (severing every connection and
/// refusing new ones), black-hole (every connection, open or new, stays open and no byte
/// passes either way: a network dropping packets, where nothing is refused) and restore,
/// without touching the machine's server.
pub struct CuttableProxy {
    up: Arc<AtomicBool>,
    cuts: Arc<tokio::sync::watch::Sender<u64>>,
    /// False while black-holed.
    flowing: Arc<tokio::sync::watch::Sender<bool>>,
}

impl CuttableProxy {
    /// Starts a proxy to the PostgreSQL server of `db_url`; returns it and the same URL
    /// pointed through it.
    pub async fn in_front_of(db_url: &str) -> (CuttableProxy, String) {
        let target = db_url
            .split('@')
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or("127.0.0.1:5432")
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let up = Arc::new(AtomicBool::new(true));
        let cuts = Arc::new(tokio::sync::watch::channel(0u64).0);
        let flowing = Arc::new(tokio::sync::watch::channel(true).0);
        let (up2, cuts2, flowing2, target2) =
            (up.clone(), cuts.clone(), flowing.clone(), target.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: refused while cut
                }
                let (target, mut cut) = (target2.clone(), cuts2.subscribe());
                let flowing = flowing2.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let (from_client, to_client) = client.into_split();
                    let (from_server, to_server) = server.into_split();
                    tokio::select! {
                        () = pump(from_client, to_server, flowing.clone()) => {}
                        () = pump(from_server, to_client, flowing) => {}
                        _ = cut.changed() => {} // dropping both ends severs the connection
                    }
                });
            }
        });
        let proxied = db_url.replacen(&target, &addr.to_string(), 1);
        (CuttableProxy { up, cuts, flowing }, proxied)
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|g| *g += 1);
    }

    /// From now on no byte passes, either way, on any connection; connections are still
    /// accepted and none is closed.
    pub fn black_hole(&self) {
        self.flowing.send_replace(false);
    }

    /// Accepts connections again and lets bytes pass (what waited in the sockets goes on).
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
        self.flowing.send_replace(true);
    }
}

/// Copies `from` to `to` while `flowing`; while not, reads nothing (what the peer sends waits
/// in the socket buffers) and writes nothing. Ends at end of file or an error.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut flowing: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if flowing.wait_for(|f| *f).await.is_err() {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = flowing.wait_for(|f| !*f) => continue,
        };
        if flowing.wait_for(|f| *f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
