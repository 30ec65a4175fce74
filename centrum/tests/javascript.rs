//! The JavaScript side, run under `cargo test` so that one command runs every test:
//! the SDK's own suite (`clients/js`, `node --test`) and the browser end-to-end tests
//! (`tests/browser`, playwright-core driving Debian's chromium). Both start real clusters
//! of this binary themselves; npm packages are installed on first use.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Each suite starts its own cluster; on two cores, one at a time keeps them steady.
static ONE_SUITE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The longest a suite may take, npm install included.
const SUITE_LIMIT: Duration = Duration::from_secs(600);

/// Where the browser tests expect chromium; `.ci/run` installs it (`apt-get install chromium`).
const CHROMIUM: &str = "/usr/bin/chromium";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the centrum crate sits in the workspace")
        .to_path_buf()
}

/// `npm ci` in `dir`, unless node_modules already matches package-lock.json (npm keeps a
/// copy of the lock it installed in node_modules/.package-lock.json; it is newer).
fn npm_ci(dir: &Path) {
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let installed = modified(dir.join("node_modules/.package-lock.json"));
    let wanted = modified(dir.join("package-lock.json"));
    if installed.is_some() && installed >= wanted {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| panic!("npm is needed for the JavaScript tests (Node.js >= 20): {e}"));
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

/// Runs `node --test` in `dir` with the binary under test, echoing its report.
fn node_test(dir: &Path, files: &[&str]) {
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg("--test")
        .arg("--test-concurrency=1")
        .args(files)
        .current_dir(dir)
        .env("CENTRUM_BIN", env!("CARGO_BIN_EXE_centrum"))
        .env("CENTRUM_SCREENSHOTS", repo().join("target/screenshots"))
        .stdin(Stdio::null())
        .spawn()
        .expect("node starts");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if started.elapsed() > SUITE_LIMIT {
            let _ = child.kill();
            panic!("node --test in {} ran over {SUITE_LIMIT:?}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "node --test failed in {} (its report is above)",
        dir.display()
    );
}

#[test]
fn the_javascript_sdk_passes_its_suite_against_a_real_cluster() {
    let _one = ONE_SUITE_AT_A_TIME.lock();
    let sdk = repo().join("clients/js");
    npm_ci(&sdk);
    node_test(&sdk, &["test/"]);
}

#[test]
fn two_browser_tabs_play_the_demo_and_the_dashboard_shows_them() {
    let _one = ONE_SUITE_AT_A_TIME.lock();
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the browser tests need Debian's chromium \
         (`apt-get install chromium`; .ci/run installs it)"
    );
    // The browser tests start clusters with the SDK suite's harness, which needs its
    // packages too.
    npm_ci(&repo().join("clients/js"));
    let browser = repo().join("tests/browser");
    npm_ci(&browser);
    node_test(&browser, &["e2e.test.js"]);
}
