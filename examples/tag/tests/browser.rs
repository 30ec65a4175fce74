//! docs/GUIDE.md ends with two browser tabs playing tag: this plays it so, in headless
//! chromium (the repository's browser harness, tests/browser/tag.test.js), against this
//! crate's own binary.

#[path = "../../../centrum/tests/support/node.rs"]
mod node;

use std::path::Path;

#[test]
fn two_browser_tabs_play_tag() {
    node::need_chromium();
    let repo = node::repo(env!("CARGO_MANIFEST_DIR"), 2);
    node::npm_ci(&repo.join("clients/js"));
    let browser = repo.join("tests/browser");
    node::npm_ci(&browser);
    let screenshots = repo.join("target/screenshots");
    node::node_test(
        &browser,
        &["tag.test.js"],
        &[
            ("TAG_BIN", Path::new(env!("CARGO_BIN_EXE_tag"))),
            ("CENTRUM_SCREENSHOTS", &screenshots),
        ],
    );
}
