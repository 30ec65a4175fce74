//! `up`: the master and every node the config places on this host, each node in a
//! supervised process of this same binary (or all in this process), and a banner
//! saying where everything is. Nodes left running by an `up` that died are taken over,
//! not started again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use centrum_config::{Config, FrontConfig, Secret, SecretError};

use crate::cli::{Cli, bind, channel_list, check_tls, on_signal, say};

pub(crate) async fn up(
    cli: &Cli,
    file: Option<&Path>,
    host: Option<String>,
    in_process: bool,
) -> Result<()> {
    let mut config = cli.load(file)?;
    let host = host.unwrap_or_else(|| config.master.host.clone());
    // A node whose certificate cannot be used would only fail, again and again.
    check_tls(&config, Some(&host))?;
    let shutdown = on_signal();
    let mut tasks = tokio::task::JoinSet::new();

    let mut lines = Vec::new();
    let mut master = None;
    if config.master.host == host {
        // Bound first: while another `up` of this cluster lives, its master holds these
        // ports and this one stops here, before it looks at any node.
        let listeners = centrum_master::MasterListeners {
            http: bind(config.master.http, "master.http").await?,
            nodes: bind(config.master.nodes, "master.nodes").await?,
        };
        let nodes = config.master.nodes_address();
        crate::cli::check_dialable("the master", "master.advertise", &nodes).await?;
        // Where this machine's browser reaches it (the host for a wildcard IP).
        let http = config.master.http_address();
        let web = if config.master.tls.is_some() {
            "https"
        } else {
            "http"
        };
        for page in cli.pages() {
            lines.push(format!("  page     {web}://{http}{}", page.path));
        }
        // Without a page of the game's own at `/`, the demo plays the first arena channel.
        let arena = config
            .backs
            .iter()
            .flat_map(|b| &b.channels)
            .find(|c| c.app == "arena");
        if let (Some(arena), false) = (arena, cli.pages().iter().any(|p| p.path == "/")) {
            let query = match arena.name.as_str() {
                "arena" => String::new(),
                name => format!("?channel={name}"),
            };
            lines.push(format!(
                "  play     {web}://{http}/{query}   (the arena demo: open it in two tabs)"
            ));
        }
        lines.push(format!("  admin    {web}://{http}/admin   (the dashboard)"));
        lines.push(format!(
            "  master   {web}://{http}   gate: /gate?channel=C   status: /status   metrics: /metrics"
        ));
        master = Some(listeners);
    }
    // Owned: `config` gains the secret this run makes, further down.
    // A pool runs one instance here, `<id>-1`: its other instances are for hosts
    // (Kubernetes pods, say) where nothing else binds its port.
    let fronts: Vec<_> = config
        .fronts
        .iter()
        .filter(|f| f.host == host)
        .map(|f| match f.pool {
            true => FrontConfig {
                id: format!("{}-1", f.id),
                ..f.clone()
            },
            false => f.clone(),
        })
        .collect();
    let backs: Vec<_> = config
        .backs
        .iter()
        .filter(|b| b.host == host)
        .cloned()
        .collect();
    for f in &fronts {
        lines.push(format!(
            "  {:<8} {}   (clients connect here)",
            f.id,
            f.client_url()
        ));
        if let Some(ops) = f.ops {
            lines.push(ops_line(&f.host, ops));
        }
    }
    for b in &backs {
        let kept = match config.data_dir(&b.id) {
            Some(dir) => format!(
                "kept in {}",
                std::path::absolute(&dir).unwrap_or(dir).display()
            ),
            None if config.store.kind == centrum_config::StoreKind::Redis => {
                format!("kept in Redis under {}:{{{}}}", config.store.prefix, b.id)
            }
            None => "kept nowhere (store.kind = \"memory\")".into(),
        };
        let bound = match b.link_address() {
            dialed if dialed == b.listen.to_string() => dialed,
            dialed => format!("{dialed} (bound on {})", b.listen),
        };
        lines.push(format!(
            "  {:<8} {bound}   {} Hz   channels: {}   {kept}",
            b.id,
            b.tick_hz,
            channel_list(b)
        ));
        if let Some(ops) = b.ops {
            lines.push(ops_line(&b.host, ops));
        }
    }
    if config.calls.server_key.is_some() {
        lines.push(
            "  calls    POST /v1/channels/{channel}/call on any front (Authorization: Bearer <calls.server_key>)"
                .into(),
        );
    }
    if master.is_none() && fronts.is_empty() && backs.is_empty() {
        let mut hosts: Vec<&str> = std::iter::once(config.master.host.as_str())
            .chain(config.fronts.iter().map(|f| f.host.as_str()))
            .chain(config.backs.iter().map(|b| b.host.as_str()))
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        bail!(
            "--host {host:?}: the config places nothing on that host (it names: {})",
            hosts.join(", ")
        );
    }

    let mut supervisor = None;
    let mut run_dir = None;
    // Without a secret in the config or the environment, this run makes one for its
    // nodes: in memory for one process, else kept in the run dir so that a later `up`
    // adopting the nodes has the same.
    let configured = match config.cluster.secret() {
        Ok(_) => true,
        Err(SecretError::Missing { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    if in_process && !configured {
        config = with_secret(&config, Secret::new(random_secret()?));
    }
    if in_process {
        for b in &backs {
            let listener = bind(b.listen, &config.field_of(&b.id, "listen")).await?;
            let field = config.field_of(&b.id, "advertise");
            crate::cli::check_dialable(&b.id, &field, &b.link_address()).await?;
            let back = centrum_back::Back::start(
                config.clone(),
                cli.apps(),
                &b.id,
                listener,
                shutdown.clone(),
            )?;
            tasks.spawn(async move { back.wait().await.map_err(anyhow::Error::from) });
        }
        for f in &fronts {
            let listener = bind(f.listen, &config.field_of(&f.id, "listen")).await?;
            let front =
                centrum_front::Front::start(config.clone(), &f.id, listener, shutdown.clone())?;
            tasks.spawn(async move { front.wait().await.map_err(anyhow::Error::from) });
        }
    } else {
        // Every node is this same binary, so it hosts the same games.
        let program =
            std::env::current_exe().context("cannot find this executable to start nodes")?;
        let name = program
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "centrum".into());
        let dir = (config.supervision.run_dir(file))
            .unwrap_or_else(|| centrum_master::RunDir::in_temp(&name));
        let run = centrum_master::RunDir::lock(&dir, &host)?;
        lines.push(format!(
            "  logs     {}/<node>.log   (each node writes its own; echoed here)",
            run.logs().display()
        ));
        let mut env = Vec::new();
        if !configured {
            let (secret, path) = run_secret(run.path())?;
            lines.push(format!(
                "  secret   {}   (this run's cluster secret; set cluster.secret_file to choose one)",
                path.display()
            ));
            env.push((config.cluster.secret_env().to_owned(), secret.clone()));
            config = with_secret(&config, secret);
        }
        // A node's command line names it: the same program, role, id and absolute config
        // path is the same node, which a later `up` adopts rather than starts again.
        let config_args: Vec<String> = match file {
            Some(path) => {
                let path = std::fs::canonicalize(path)
                    .with_context(|| format!("cannot resolve {}", path.display()))?;
                vec!["--config".into(), path.display().to_string()]
            }
            None => Vec::new(),
        };
        let mut children = Vec::new();
        for (role, id) in backs
            .iter()
            .map(|b| ("back", &b.id))
            .chain(fronts.iter().map(|f| ("front", &f.id)))
        {
            let mut args = vec![role.to_owned(), "--id".to_owned(), id.clone()];
            args.extend(config_args.iter().cloned());
            children.push(centrum_master::ChildSpec {
                name: id.clone(),
                program: program.clone(),
                args,
                env: env.clone(),
            });
        }
        let options = centrum_master::SupervisorOptions {
            log_dir: Some(run.logs()),
            echo: true,
            adopt: true,
            ..centrum_master::SupervisorOptions::from_config(&config.supervision)
        };
        supervisor = Some(centrum_master::Supervisor::start(
            children,
            options,
            shutdown.clone(),
        ));
        run_dir = Some(run);
    }
    if let Some(listeners) = master {
        let options = centrum_master::MasterOptions {
            supervisor: supervisor.as_ref().map(centrum_master::Supervisor::handle),
            ..cli.master_options()
        };
        let (config, stop) = (config.clone(), shutdown.clone());
        tasks.spawn(async move {
            centrum_master::run_with(config, listeners, options, stop)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    if let Some(supervisor) = supervisor {
        // Runs until shutdown, failed nodes or not: they are retried, not given up.
        tasks.spawn(async move {
            supervisor.wait().await;
            Ok(())
        });
    }

    let source = file
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in config".into());
    let mode = if in_process {
        "one process"
    } else {
        "one process per node"
    };
    // The cluster serves on whether or not anyone reads this banner: a closed stdout
    // is not a reason to stop it.
    let _ = say(format_args!(
        "centrum is up on host {host} ({source}, {mode}):"
    ));
    for line in &lines {
        let _ = say(line);
    }
    let _ = say("Ctrl-C stops the cluster.");

    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(e)) = joined {
            result = Err(e);
            shutdown.cancel();
        }
    }
    // Held until every node is stopped, so that no other `up` takes them over before.
    drop(run_dir);
    result
}

/// `config` with `secret` as its cluster secret (where none was configured).
fn with_secret(config: &Config, secret: Secret) -> Arc<Config> {
    let mut config = config.clone();
    config.cluster.secret = Some(secret);
    Arc::new(config)
}

/// 32 random bytes, hex: a cluster secret no one has to choose.
fn random_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The cluster secret kept in the run dir `dir` (readable by its owner only), made on
/// the first run; and the file's path.
fn run_secret(dir: &Path) -> Result<(Secret, PathBuf)> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join("cluster.secret");
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 16 => return Ok((Secret::new(text.trim()), path)),
        Ok(_) => bail!(
            "{} holds no usable cluster secret; delete it to have a new one made",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let secret = random_secret()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok((Secret::new(secret), path))
}

/// The banner's line for a node's ops port: where this machine reaches it.
fn ops_line(host: &str, ops: std::net::SocketAddr) -> String {
    format!(
        "  {:<8} {}   (ops: /healthz /readyz /metrics)",
        "",
        crate::cli::ops_url(host, ops)
    )
}
