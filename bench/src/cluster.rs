//! A cluster for a benchmark: a config with free loopback ports, and the `centrum`
//! processes that run it (one per role, or all roles in one), stopped on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use centrum_client::{Client, ClientOptions};

use crate::BenchError;

/// How the cluster's roles are laid out in processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The master, each front and each back in its own process, as in production.
    Processes,
    /// Every role in one process (`centrum up --in-process`).
    OneProcess,
}

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The `centrum` executable.
    pub program: PathBuf,
    pub layout: Layout,
    pub fronts: usize,
    pub tick_hz: u32,
    /// The channel to serve with the `bench-arena` application.
    pub channel: String,
    /// Where the config and the processes' logs go.
    pub dir: PathBuf,
    /// Whether the back keeps its channel in a store on disk (the default of every
    /// cluster), under `<dir>/data`, emptied first; or nowhere (`store.kind = "memory"`).
    pub durable: bool,
    /// More channels of the back, each served by `bench-arena` as `channel` is.
    pub more_channels: Vec<String>,
    /// A room type the back offers to the matchmaker; the matchmaker then makes rooms
    /// as fast as it is asked (`creates_per_minute = 0`).
    pub room_type: Option<RoomType>,
}

/// A room type of the `bench-arena` application (`backs[].rooms`).
#[derive(Clone, Debug)]
pub struct RoomType {
    pub kind: String,
    pub max_clients: usize,
    pub max_rooms: usize,
    pub empty_dispose_s: u32,
}

/// A running cluster; its processes are killed when it is dropped.
#[derive(Debug)]
pub struct Cluster {
    children: Vec<(String, Child)>,
    /// ws:// URL of each front.
    pub fronts: Vec<String>,
    /// The master's HTTP address (gate, /status, /metrics).
    pub master_http: SocketAddr,
    pub dir: PathBuf,
}

impl Cluster {
    /// Writes the config, starts the processes and waits (at most 30 s) until a
    /// client can join the channel on every front.
    ///
    /// # Errors
    /// When no free port can be had, a process cannot start or exits, or the
    /// cluster is not serving within the time limit.
    pub async fn start(options: &ClusterOptions) -> Result<Cluster, BenchError> {
        std::fs::create_dir_all(&options.dir).map_err(BenchError::io(format!(
            "cannot create {}",
            options.dir.display()
        )))?;
        let ports = free_ports(3 + options.fronts)?;
        let master_http = ports[0];
        let front_addrs = &ports[3..];
        let data = options.dir.join("data");
        if data.exists() {
            // A run starts from an empty channel, not from the last run's.
            std::fs::remove_dir_all(&data)
                .map_err(BenchError::io(format!("cannot empty {}", data.display())))?;
        }
        let config = config_toml(options, &ports, &data);
        let config_path = options.dir.join("cluster.toml");
        std::fs::write(&config_path, config).map_err(BenchError::io(format!(
            "cannot write {}",
            config_path.display()
        )))?;

        let config_arg = config_path.display().to_string();
        let mut roles: Vec<(String, Vec<String>)> = Vec::new();
        match options.layout {
            Layout::OneProcess => roles.push((
                "cluster".into(),
                vec!["up".into(), config_arg, "--in-process".into()],
            )),
            Layout::Processes => {
                roles.push((
                    "master".into(),
                    vec!["master".into(), "--config".into(), config_arg.clone()],
                ));
                roles.push(("back-1".into(), args("back", "back-1", &config_arg)));
                for i in 1..=options.fronts {
                    let id = format!("front-{i}");
                    roles.push((id.clone(), args("front", &id, &config_arg)));
                }
            }
        }
        let mut cluster = Cluster {
            children: Vec::new(),
            fronts: front_addrs.iter().map(|a| format!("ws://{a}")).collect(),
            master_http,
            dir: options.dir.clone(),
        };
        for (name, args) in roles {
            let child = spawn(
                &options.program,
                &args,
                &options.dir.join(format!("{name}.log")),
            )?;
            cluster.children.push((name, child));
        }
        cluster.wait_ready(&options.channel).await?;
        if let Some(room_type) = &options.room_type {
            cluster.wait_matchmaker(&room_type.kind).await?;
        }
        Ok(cluster)
    }

    /// The process ids of the cluster, for CPU and memory accounting.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|(_, c)| c.id()).collect()
    }

    /// The pid of a front's process, when each role has its own.
    pub fn front_pid(&self, front: usize) -> Option<u32> {
        let name = format!("front-{}", front + 1);
        self.children
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, c)| c.id())
    }

    /// The pid of the back's process, when each role has its own.
    pub fn back_pid(&self) -> Option<u32> {
        self.children
            .iter()
            .find(|(n, _)| n == "back-1")
            .and_then(|(_, c)| c.id())
    }

    /// Joins the channel on every front, retrying until each front is linked to the
    /// back, which is what "serving" means to a client.
    async fn wait_ready(&mut self, channel: &str) -> Result<(), BenchError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for url in self.fronts.clone() {
            loop {
                self.check_alive()?;
                let options = ClientOptions {
                    connect_timeout: Duration::from_secs(2),
                    ..ClientOptions::default()
                };
                let attempt = async {
                    let mut client = Client::connect(&url, options).await?;
                    client.join(channel, &[]).await?;
                    client.close().await
                };
                match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) if Instant::now() > deadline => {
                        return Err(BenchError::Setup(format!(
                            "the cluster did not serve {channel:?} on {url} within 30 s: {e} (logs in {})",
                            self.dir.display()
                        )));
                    }
                    Err(_) if Instant::now() > deadline => {
                        return Err(BenchError::Setup(format!(
                            "the cluster did not answer on {url} within 30 s (logs in {})",
                            self.dir.display()
                        )));
                    }
                    // Not listening or not linked yet: processes are still starting.
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        Ok(())
    }

    /// Waits until the master's matchmaker can place a room of type `kind` and hand
    /// out seats: the back and every front have registered with the master and sent
    /// it a heartbeat. A front serves the back's channels before that, so a cluster
    /// that serves is not yet one that makes rooms (the matchmaker would answer
    /// `no_capacity`, or `unavailable` for want of a live front).
    async fn wait_matchmaker(&mut self, kind: &str) -> Result<(), BenchError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let reported = format!("type=\"{kind}\"");
        let fronts: Vec<String> = (1..=self.fronts.len())
            .map(|i| format!("node=\"front-{i}\""))
            .collect();
        loop {
            self.check_alive()?;
            let metrics = tokio::time::timeout(
                Duration::from_secs(5),
                crate::scrape::get(self.master_http, "/metrics"),
            )
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
            let heard = |prefix: &str, label: &str| {
                metrics
                    .lines()
                    .any(|l| l.starts_with(prefix) && l.contains(label))
            };
            if heard("centrum_back_rooms{", &reported)
                && fronts.iter().all(|f| heard("centrum_front_", f))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BenchError::Setup(format!(
                    "the master did not hear of every front and a back offering room type {kind:?} within 30 s (logs in {})",
                    self.dir.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An error naming the first process that has exited, if any.
    fn check_alive(&mut self) -> Result<(), BenchError> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(BenchError::Setup(format!(
                    "cluster process {name} exited ({status}); see {}",
                    self.dir.join(format!("{name}.log")).display()
                )));
            }
        }
        Ok(())
    }

    /// Stops every process: SIGTERM, then SIGKILL after 5 s.
    pub async fn stop(mut self) {
        for (_, child) in &self.children {
            if let Some(pid) = child.id() {
                // SAFETY: kill only sends a signal to a process this cluster started
                // and has not reaped yet, so the pid is still ours.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        for (_, child) in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        self.children.clear();
    }
}

fn args(role: &str, id: &str, config: &str) -> Vec<String> {
    [role, "--id", id, "--config", config]
        .map(str::to_owned)
        .to_vec()
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Result<Child, BenchError> {
    let log_file = std::fs::File::create(log)
        .map_err(BenchError::io(format!("cannot create {}", log.display())))?;
    let mut command = Command::new(program);
    // A bench stopped by a signal (Ctrl-C, `timeout` in bench/compare.sh) runs no
    // destructor, so `kill_on_drop` cannot stop its cluster: the kernel does instead.
    // The signal follows the thread that spawned the child, not the process: this runs
    // in the future `block_on` drives on the main thread, which lives as long as the
    // bench. (From `spawn_blocking` it would not: an idle blocking thread exits.)
    let bench = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes two
    // async-signal-safe calls.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != bench {
                // the bench died between fork and prctl
                return Err(std::io::Error::other("the bench has exited"));
            }
            Ok(())
        });
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .kill_on_drop(true)
        .spawn()
        .map_err(BenchError::io(format!(
            "cannot start {}",
            program.display()
        )))
}

/// Loopback ports nobody listens on right now. They are released before the cluster
/// binds them; another program could take one in between, which start-up reports.
fn free_ports(n: usize) -> Result<Vec<SocketAddr>, BenchError> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(BenchError::io("cannot find a free port on 127.0.0.1"))?;
    listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<_, _>>()
        .map_err(BenchError::io("cannot read a port"))
}

/// ports: master http, master nodes, back, then one per front.
/// A cluster secret for one run: random, or without a random source (there always is
/// one on the platforms centrum runs on) the clock and the pid, which is enough for a
/// benchmark's processes on loopback.
fn run_secret() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ u128::from(std::process::id())).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn config_toml(options: &ClusterOptions, ports: &[SocketAddr], data: &Path) -> String {
    let channels: Vec<String> = std::iter::once(&options.channel)
        .chain(&options.more_channels)
        .map(|name| format!("{{ name = \"{name}\", app = \"bench-arena\" }}"))
        .collect();
    let mut s = format!(
        "# written by `centrum bench`\n\
         [master]\nhttp = \"{}\"\nnodes = \"{}\"\n\n\
         [[backs]]\nid = \"back-1\"\nlisten = \"{}\"\ntick_hz = {}\n\
         channels = [{}]\n",
        ports[0],
        ports[1],
        ports[2],
        options.tick_hz,
        channels.join(", ")
    );
    if let Some(t) = &options.room_type {
        s.push_str(&format!(
            "rooms = [{{ type = \"{}\", app = \"bench-arena\", max_clients = {}, max_rooms = {}, \
             empty_dispose_s = {} }}]\n\n[matchmaker]\ncreates_per_minute = 0\n",
            t.kind, t.max_clients, t.max_rooms, t.empty_dispose_s
        ));
    }
    // The run's own processes share a secret made for it; the config stays in the
    // run's folder, readable by its owner like any file there.
    s.push_str(&format!("\n[cluster]\nsecret = \"{}\"\n", run_secret()));
    for (i, addr) in ports[3..].iter().enumerate() {
        s.push_str(&format!(
            "\n[[fronts]]\nid = \"front-{}\"\nlisten = \"{addr}\"\n",
            i + 1
        ));
    }
    // Room for the idle-connection measurement and the largest arena runs: thousands of
    // clients from 127.0.0.1 in a burst, idle ones held while the front's memory is read.
    s.push_str(
        "\n[limits]\nmax_connections = 100000\n\
         max_connections_per_ip = 0\nconnections_per_ip_per_s = 0\nclient_idle_ms = 0\n",
    );
    if options.durable {
        s.push_str(&format!(
            "\n[store]\ndir = {:?}\n",
            data.display().to_string()
        ));
    } else {
        s.push_str("\n[store]\nkind = \"memory\"\n");
    }
    s
}
