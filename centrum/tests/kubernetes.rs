//! The Kubernetes manifests (deploy/kubernetes): the base and the Redis overlay render
//! with `kubectl kustomize`, every object passes Kubernetes 1.30's schemas strictly
//! (kubernetes-validate, from PyPI into a venv under the target directory), the rendered
//! cluster.toml passes `centrum check`, and the manifests agree with that config.
//!
//! Without kubectl or python3 the test says why and passes, unless CI=true.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

/// The Kubernetes version the objects are checked against, and the validator's release
/// that carries its schemas.
const KUBERNETES: &str = "1.30.0";
const VALIDATOR: &str = "kubernetes-validate==1.30.0";

/// Every command but pip's answers in well under this.
const TIMEOUT: Duration = Duration::from_secs(60);
/// pip downloads the validator and its schemas the first time.
const PIP_TIMEOUT: Duration = Duration::from_secs(300);

/// The pods' user, as the image's Dockerfile makes it.
const UID: i64 = 10001;

/// Where each pod finds the config, as the manifests mount it.
const CONFIG: &str = "/etc/centrum/cluster.toml";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Why the test cannot run here: a failure under CI=true, else a printed skip.
fn cannot_run(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the manifests cannot be checked: {why} (.ci/run installs what is missing)");
    }
    eprintln!("skipped: the manifests cannot be checked: {why}");
}

/// Runs `command` to its end within `timeout`; the error says what failed.
async fn run(command: &mut Command, timeout: Duration) -> Result<Output, String> {
    let what = format!("{:?}", command.as_std());
    command
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    match tokio::time::timeout(timeout, command.output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(format!("cannot run {what}: {e}")),
        Err(_) => Err(format!("{what} did not finish within {timeout:?}")),
    }
}

/// Runs `command`; its stdout if it succeeds, else what it said.
async fn stdout(command: &mut Command, timeout: Duration) -> Result<Vec<u8>, String> {
    let what = format!("{:?}", command.as_std());
    let out = run(command, timeout).await?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The tools the test needs, or why they cannot be had.
#[derive(Debug, Clone)]
struct Tools {
    /// The venv's python, with kubernetes-validate and PyYAML.
    python: PathBuf,
    validate: PathBuf,
}

/// kubectl is there, and the validator is installed once per target directory (and
/// once per run of this binary, whichever test comes first).
async fn tools() -> Result<Tools, String> {
    static MADE: tokio::sync::OnceCell<Result<Tools, String>> = tokio::sync::OnceCell::const_new();
    MADE.get_or_init(|| async {
        stdout(
            Command::new("kubectl").args(["version", "--client"]),
            TIMEOUT,
        )
        .await
        .map_err(|e| format!("kubectl is needed: {e}"))?;
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubernetes-validate-venv");
        let tools = Tools {
            python: venv.join("bin/python"),
            validate: venv.join("bin/kubernetes-validate"),
        };
        let ready = venv.join(format!(".ready-{VALIDATOR}"));
        if !ready.exists() {
            stdout(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                TIMEOUT,
            )
            .await
            .map_err(|e| format!("python3 with venv is needed: {e}"))?;
            let pip = ["-m", "pip", "install", "--quiet", VALIDATOR];
            stdout(Command::new(&tools.python).args(pip), PIP_TIMEOUT)
                .await
                .map_err(|e| format!("cannot install {VALIDATOR} from PyPI: {e}"))?;
            std::fs::write(&ready, b"").map_err(|e| format!("cannot mark the venv ready: {e}"))?;
        }
        Ok(tools)
    })
    .await
    .clone()
}

/// The objects `kustomization` renders to, each checked against the schemas.
async fn render(tools: &Tools, kustomization: &str) -> Vec<Value> {
    let dir = repo().join("deploy/kubernetes").join(kustomization);
    let yaml = stdout(Command::new("kubectl").arg("kustomize").arg(&dir), TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{kustomization} does not render: {e}"));
    let file =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kubernetes-{kustomization}.yaml"));
    std::fs::write(&file, &yaml).expect("write the rendered objects");
    let mut validate = Command::new(&tools.validate);
    validate.args(["--kubernetes-version", KUBERNETES, "--strict", "--quiet"]);
    if let Err(e) = stdout(validate.arg(&file), TIMEOUT).await {
        panic!("{kustomization} is not valid for Kubernetes {KUBERNETES}: {e}");
    }
    let to_json = "import json, sys, yaml\n\
                   docs = yaml.safe_load_all(open(sys.argv[1]))\n\
                   json.dump([d for d in docs if d], sys.stdout)";
    let mut python = Command::new(&tools.python);
    let json = stdout(python.args(["-c", to_json]).arg(&file), TIMEOUT)
        .await
        .expect("the rendered YAML reads as JSON");
    serde_json::from_slice(&json).expect("a list of objects")
}

/// `value` at JSON pointer `at`, or a failure naming both.
fn at<'v>(value: &'v Value, at: &str) -> &'v Value {
    value
        .pointer(at)
        .unwrap_or_else(|| panic!("{at} is missing in {}", name(value)))
}

fn str_at<'v>(value: &'v Value, pointer: &str) -> &'v str {
    at(value, pointer)
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} of {} is not a string", name(value)))
}

fn name(object: &Value) -> String {
    let kind = object
        .pointer("/kind")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let name = object.pointer("/metadata/name").and_then(Value::as_str);
    format!("{kind}/{}", name.unwrap_or("?"))
}

/// The one object of `kind` named `name`.
fn object<'v>(objects: &'v [Value], kind: &str, name: &str) -> &'v Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "{kind}/{name} once in the rendered objects");
    found[0]
}

/// The port of `addr` (`0.0.0.0:7320`, `centrum-back-0.centrum-back:7320`).
fn port(addr: &str) -> i64 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} has no port"))
}

fn config_str<'c>(table: &'c toml::Value, key: &str) -> &'c str {
    table
        .get(key)
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| panic!("cluster.toml: {key} is not set in {table}"))
}

/// A workload's one container, with the ports it names.
struct Pod<'v> {
    workload: &'v Value,
    container: &'v Value,
    ports: BTreeMap<&'v str, i64>,
}

impl<'v> Pod<'v> {
    fn of(workload: &'v Value) -> Self {
        let containers = at(workload, "/spec/template/spec/containers");
        assert_eq!(
            containers.as_array().map(Vec::len),
            Some(1),
            "{}: one container",
            name(workload)
        );
        let container = &containers[0];
        let ports = at(container, "/ports")
            .as_array()
            .expect("a list of ports")
            .iter()
            .map(|p| {
                (
                    str_at(p, "/name"),
                    at(p, "/containerPort").as_i64().expect("a number"),
                )
            })
            .collect();
        Pod {
            workload,
            container,
            ports,
        }
    }

    /// The container port `port` names (a number, or a port's name).
    fn resolve(&self, port: &Value) -> i64 {
        match port {
            Value::String(port) => *self
                .ports
                .get(port.as_str())
                .unwrap_or_else(|| panic!("{}: no port named {port}", name(self.workload))),
            other => other.as_i64().expect("a port number"),
        }
    }

    /// Liveness on /healthz and `ready` (readiness) on /readyz, both at `port`.
    fn probes_at(&self, port: i64, ready: &str) {
        for (probe, path) in [("livenessProbe", "/healthz"), (ready, "/readyz")] {
            let get = at(self.container, &format!("/{probe}/httpGet"));
            assert_eq!(
                str_at(get, "/path"),
                path,
                "{}: {probe}",
                name(self.workload)
            );
            assert_eq!(
                self.resolve(at(get, "/port")),
                port,
                "{}: {probe}'s port",
                name(self.workload)
            );
        }
    }

    /// Non-root as the image's user, nothing writable or gained, requests set, the
    /// scrape annotations at `metrics_port`, the cluster secret from Secret centrum, and
    /// the config mounted from `config_map` where `--config` reads it.
    fn is_a_well_kept_pod(&self, metrics_port: i64, config_map: &str) {
        let w = name(self.workload);
        let pod = at(self.workload, "/spec/template/spec");
        assert_eq!(at(pod, "/securityContext/runAsNonRoot"), true, "{w}");
        assert_eq!(at(pod, "/securityContext/runAsUser"), UID, "{w}");
        let c = self.container;
        assert_eq!(
            at(c, "/securityContext/readOnlyRootFilesystem"),
            true,
            "{w}"
        );
        assert_eq!(
            at(c, "/securityContext/allowPrivilegeEscalation"),
            false,
            "{w}"
        );
        assert_eq!(
            at(c, "/securityContext/capabilities/drop"),
            &serde_json::json!(["ALL"]),
            "{w}"
        );
        for resource in ["cpu", "memory"] {
            at(c, &format!("/resources/requests/{resource}"));
        }
        let notes = at(self.workload, "/spec/template/metadata/annotations");
        assert_eq!(str_at(notes, "/prometheus.io~1scrape"), "true", "{w}");
        assert_eq!(str_at(notes, "/prometheus.io~1path"), "/metrics", "{w}");
        assert_eq!(
            str_at(notes, "/prometheus.io~1port"),
            metrics_port.to_string(),
            "{w}"
        );
        assert_eq!(
            self.env("CENTRUM_CLUSTER_SECRET")
                .pointer("/valueFrom/secretKeyRef"),
            Some(&serde_json::json!({"name": "centrum", "key": "cluster-secret"})),
            "{w}: the cluster secret"
        );
        let command = self.command_line();
        assert!(
            command.contains(&format!("--config {CONFIG}")),
            "{w}: {command}"
        );
        let mount = at(c, "/volumeMounts")
            .as_array()
            .expect("a list of mounts")
            .iter()
            .find(|m| Path::new(CONFIG).parent() == Some(Path::new(str_at(m, "/mountPath"))))
            .unwrap_or_else(|| panic!("{w}: nothing mounted where {CONFIG} is read"));
        let volume = at(pod, "/volumes")
            .as_array()
            .expect("a list of volumes")
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("{w}: no volume {}", mount["name"]));
        assert_eq!(
            str_at(volume, "/configMap/name"),
            config_map,
            "{w}: the config's volume"
        );
    }

    /// The container's env entry `var`.
    fn env(&self, var: &str) -> &'v Value {
        at(self.container, "/env")
            .as_array()
            .expect("a list of variables")
            .iter()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("{}: no env {var}", name(self.workload)))
    }

    /// command and args, one line.
    fn command_line(&self) -> String {
        ["/command", "/args"]
            .iter()
            .filter_map(|p| self.container.pointer(p).and_then(Value::as_array))
            .flatten()
            .map(|a| a.as_str().expect("a string argument"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A Service's port numbers by name, each checked to reach the same port of `pod`.
fn service_ports<'v>(service: &'v Value, pod: &Pod<'_>) -> BTreeMap<&'v str, i64> {
    let s = name(service);
    let selector = at(service, "/spec/selector");
    assert_eq!(
        selector,
        at(pod.workload, "/spec/template/metadata/labels"),
        "{s} selects the pods of {}",
        name(pod.workload)
    );
    at(service, "/spec/ports")
        .as_array()
        .expect("a list of ports")
        .iter()
        .map(|p| {
            let number = at(p, "/port").as_i64().expect("a number");
            let target = p.get("targetPort").unwrap_or(&p["port"]);
            assert_eq!(
                pod.resolve(target),
                number,
                "{s}: port {number} reaches the same port of the pod"
            );
            (str_at(p, "/name"), number)
        })
        .collect()
}

/// Checks `kustomization`'s objects against its cluster.toml and runs `centrum check`
/// on it; returns the config.
async fn check(kustomization: &str) -> Option<toml::Value> {
    let tools = match tools().await {
        Ok(tools) => tools,
        Err(why) => {
            cannot_run(&why);
            return None;
        }
    };
    let objects = render(&tools, kustomization).await;

    let config_maps: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .collect();
    assert_eq!(config_maps.len(), 1, "{kustomization}: one ConfigMap");
    let config_map = str_at(config_maps[0], "/metadata/name");
    assert!(
        config_map.starts_with("centrum-config-"),
        "{config_map}: named with its hash"
    );
    let toml_text = str_at(config_maps[0], "/data/cluster.toml");

    // `centrum check` reads the config as a pod does, with the Secret's variables set.
    let file =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kubernetes-{kustomization}.toml"));
    std::fs::write(&file, toml_text).expect("write cluster.toml");
    let mut centrum = Command::new(env!("CARGO_BIN_EXE_centrum"));
    centrum
        .arg("check")
        .arg(&file)
        .env("CENTRUM_CLUSTER_SECRET", "a-cluster-secret-of-the-test")
        .env("CENTRUM_STORE_URL", "redis://centrum-redis:6379/0");
    if let Err(e) = stdout(&mut centrum, TIMEOUT).await {
        panic!("{kustomization}'s cluster.toml does not pass: {e}");
    }
    let config: toml::Value = toml::from_str(toml_text).expect("cluster.toml is TOML");

    // The master: one, reached through its Service at its advertised address.
    let master = &config["master"];
    let deployment = object(&objects, "Deployment", "centrum-master");
    assert_eq!(at(deployment, "/spec/replicas"), 1);
    let pod = Pod::of(deployment);
    assert_eq!(pod.command_line(), format!("master --config {CONFIG}"));
    let http = port(config_str(master, "http"));
    let nodes = port(config_str(master, "nodes"));
    let service = object(&objects, "Service", "centrum-master");
    let ports = service_ports(service, &pod);
    assert_eq!(
        ports.get("http"),
        Some(&http),
        "Service centrum-master: master.http"
    );
    assert_eq!(
        ports.get("nodes"),
        Some(&nodes),
        "Service centrum-master: master.nodes"
    );
    assert_eq!(
        config_str(master, "advertise"),
        format!("centrum-master:{nodes}")
    );
    // The master dials its own advertise before it serves (so before it is ready).
    assert_eq!(at(service, "/spec/publishNotReadyAddresses"), true);
    pod.probes_at(http, "readinessProbe");
    pod.is_a_well_kept_pod(http, config_map);

    // The backs: back-N is pod centrum-back-N, dialed through the headless Service.
    let backs = config["backs"].as_array().expect("backs");
    let set = object(&objects, "StatefulSet", "centrum-back");
    assert_eq!(
        at(set, "/spec/replicas").as_u64(),
        Some(backs.len() as u64),
        "StatefulSet centrum-back has as many replicas as cluster.toml has backs"
    );
    assert_eq!(str_at(set, "/spec/serviceName"), "centrum-back");
    assert_eq!(str_at(set, "/spec/podManagementPolicy"), "Parallel");
    let pod = Pod::of(set);
    assert!(
        pod.command_line()
            .contains(r#"exec centrum back --id "back-${HOSTNAME##*-}""#),
        "the back's id from its ordinal: {}",
        pod.command_line()
    );
    let listen = port(config_str(&backs[0], "listen"));
    let ops = port(config_str(&backs[0], "ops"));
    for (n, back) in backs.iter().enumerate() {
        assert_eq!(config_str(back, "id"), format!("back-{n}"), "backs[{n}].id");
        assert_eq!(
            port(config_str(back, "listen")),
            listen,
            "backs[{n}]: one pod template"
        );
        assert_eq!(
            port(config_str(back, "ops")),
            ops,
            "backs[{n}]: one pod template"
        );
        assert_eq!(
            config_str(back, "advertise"),
            format!("centrum-back-{n}.centrum-back:{listen}"),
            "backs[{n}].advertise"
        );
        assert!(
            back.get("data_dir").is_none(),
            "backs[{n}]: data_dir comes from store.dir"
        );
    }
    let service = object(&objects, "Service", "centrum-back");
    assert_eq!(
        str_at(service, "/spec/clusterIP"),
        "None",
        "a headless Service"
    );
    assert_eq!(at(service, "/spec/publishNotReadyAddresses"), true);
    assert_eq!(service_ports(service, &pod).get("links"), Some(&listen));
    assert_eq!(pod.ports.get("ops"), Some(&ops));
    pod.probes_at(ops, "readinessProbe");
    pod.is_a_well_kept_pod(ops, config_map);
    let store = &config["store"];
    match config_str(store, "kind") {
        "disk" => {
            let dir = config_str(store, "dir");
            let mount = at(pod.container, "/volumeMounts")
                .as_array()
                .expect("mounts")
                .iter()
                .find(|m| m["mountPath"] == dir)
                .unwrap_or_else(|| panic!("no volume at store.dir {dir}"));
            let claims = at(set, "/spec/volumeClaimTemplates")
                .as_array()
                .expect("claims");
            assert!(
                claims
                    .iter()
                    .any(|c| c["metadata"]["name"] == mount["name"]),
                "store.dir {dir} is a volume of each back's own"
            );
        }
        "redis" => {
            assert!(store.get("url").is_none(), "the store's URL is a secret");
            assert_eq!(
                pod.env("CENTRUM_STORE_URL")
                    .pointer("/valueFrom/secretKeyRef"),
                Some(&serde_json::json!({"name": "centrum", "key": "store-url", "optional": true})),
            );
        }
        other => panic!("store.kind {other:?} keeps nothing across a pod's restart"),
    }

    // The fronts: one pool, every pod of the Deployment behind one Service.
    let fronts = config["fronts"].as_array().expect("fronts");
    assert_eq!(fronts.len(), 1, "one pool of fronts");
    let front = &fronts[0];
    assert_eq!(
        front.get("pool").and_then(toml::Value::as_bool),
        Some(true),
        "fronts[0].pool"
    );
    let deployment = object(&objects, "Deployment", "centrum-front");
    let pod = Pod::of(deployment);
    assert_eq!(
        pod.command_line(),
        format!(
            "front --id {}-$(POD_NAME) --config {CONFIG}",
            config_str(front, "id")
        )
    );
    assert_eq!(
        pod.env("POD_NAME").pointer("/valueFrom/fieldRef/fieldPath"),
        Some(&Value::from("metadata.name"))
    );
    let listen = port(config_str(front, "listen"));
    let ops = port(config_str(front, "ops"));
    let service = object(&objects, "Service", "centrum-front");
    assert_eq!(service_ports(service, &pod).get("clients"), Some(&listen));
    assert_eq!(pod.ports.get("ops"), Some(&ops));
    // A front takes players once it has linked every back (its /readyz stays ready
    // when one is away later: front/src/lib.rs).
    pod.probes_at(ops, "readinessProbe");
    pod.is_a_well_kept_pod(ops, config_map);

    let workloads = objects.iter().filter(|o| {
        ["Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"]
            .contains(&o["kind"].as_str().unwrap_or(""))
    });
    assert_eq!(
        workloads.count(),
        3,
        "{kustomization}: the master, the fronts and the backs"
    );
    Some(config)
}

#[tokio::test]
async fn the_base_deploys_the_cluster_its_config_describes_on_local_disks() {
    let Some(config) = check("base").await else {
        return;
    };
    assert_eq!(config["store"]["kind"].as_str(), Some("disk"));
}

#[tokio::test]
async fn the_redis_overlay_keeps_the_channels_on_redis() {
    let Some(config) = check("redis").await else {
        return;
    };
    assert_eq!(config["store"]["kind"].as_str(), Some("redis"));
    // The overlay's config is the base's but for [store].
    let base = std::fs::read_to_string(repo().join("deploy/kubernetes/base/cluster.toml"))
        .expect("the base's cluster.toml");
    let base: toml::Table = toml::from_str(&base).expect("TOML");
    let overlay = config.as_table().expect("a table");
    let keys = base.keys().chain(overlay.keys()).filter(|k| *k != "store");
    for key in keys {
        assert_eq!(
            overlay.get(key),
            base.get(key),
            "redis/cluster.toml differs from base/cluster.toml in {key}"
        );
    }
}

/// The image runs as the pods' user and builds the binary as a release build does.
#[test]
fn the_image_runs_as_the_user_the_pods_require() {
    let dockerfile =
        std::fs::read_to_string(repo().join("deploy/Dockerfile")).expect("deploy/Dockerfile");
    assert!(
        dockerfile.contains(&format!("USER {UID}:{UID}")),
        "USER {UID}:{UID}"
    );
    assert!(dockerfile.contains("cargo build --release -p centrum --locked"));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["centrum"]"#));
}
