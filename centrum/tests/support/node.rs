//! Running a JavaScript test suite from `cargo test`: `npm ci` where needed, then
//! `node --test` with the binaries under test in its environment. Shared by the
//! centrum crate's suites and the tag example's browser test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a suite may take, npm install included.
const SUITE_LIMIT: Duration = Duration::from_secs(600);

/// Where the browser tests expect chromium; `.ci/run` installs it (`apt-get install chromium`).
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";

/// The repository's root, from a crate `levels` folders below it.
pub(crate) fn repo(manifest_dir: &str, levels: usize) -> PathBuf {
    let mut dir = PathBuf::from(manifest_dir);
    for _ in 0..levels {
        dir.pop();
    }
    dir
}

/// `npm ci` in `dir`, unless node_modules already matches package-lock.json (npm keeps a
/// copy of the lock it installed in node_modules/.package-lock.json; it is newer).
pub(crate) fn npm_ci(dir: &Path) {
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

/// Checks that chromium is where the browser tests look for it.
pub(crate) fn need_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the browser tests need Debian's chromium \
         (`apt-get install chromium`; .ci/run installs it)"
    );
}

/// Runs `node --test` on `files` in `dir` with `env` added, echoing its report, and
/// fails unless every test passes within the limit.
pub(crate) fn node_test(dir: &Path, files: &[&str], env: &[(&str, &Path)]) {
    let started = Instant::now();
    let mut command = Command::new("node");
    command
        .arg("--test")
        .arg("--test-concurrency=1")
        .args(files)
        .current_dir(dir)
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("node starts");
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
