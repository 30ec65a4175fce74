//! The JavaScript side, run under `cargo test` so that one command runs every test:
//! the SDK's own suite (`clients/js`, `node --test`) and the browser end-to-end tests
//! (`tests/browser`, playwright-core driving Debian's chromium). Both start real clusters
//! of this binary themselves; npm packages are installed on first use.

#[path = "support/node.rs"]
mod node;

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

/// Each suite starts its own cluster; on two cores, one at a time keeps them steady.
static ONE_SUITE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    node::repo(env!("CARGO_MANIFEST_DIR"), 1)
}

/// What every suite is told: the binary under test, and where screenshots go.
fn env() -> [(&'static str, PathBuf); 2] {
    [
        ("CENTRUM_BIN", PathBuf::from(env!("CARGO_BIN_EXE_centrum"))),
        ("CENTRUM_SCREENSHOTS", repo().join("target/screenshots")),
    ]
}

fn run(dir: &Path, files: &[&str]) {
    let env = env();
    let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    node::node_test(dir, files, &env);
}

#[test]
fn the_javascript_sdk_passes_its_suite_against_a_real_cluster() {
    let _one = ONE_SUITE_AT_A_TIME.lock();
    let sdk = repo().join("clients/js");
    node::npm_ci(&sdk);
    run(&sdk, &["test/"]);
}

#[test]
fn two_browser_tabs_play_the_demo_and_the_dashboard_shows_them() {
    let _one = ONE_SUITE_AT_A_TIME.lock();
    node::need_chromium();
    // The browser tests start clusters with the SDK suite's harness, which needs its
    // packages too.
    node::npm_ci(&repo().join("clients/js"));
    let browser = repo().join("tests/browser");
    node::npm_ci(&browser);
    run(&browser, &["e2e.test.js"]);
}
