//! The cluster config on arbitrary text: `Config::parse` answers a config or an error,
//! never a panic. A config that parses writes out (`to_toml`) as text that parses back
//! to the same config, and its secrets never show in its `Debug` form.
#![no_main]

use centrum_config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text) else {
        return;
    };
    let written = config.to_toml();
    match Config::parse(&written) {
        Ok(again) => assert_eq!(again, config, "written as:\n{written}"),
        Err(e) => panic!("a parsed config writes out as one that does not parse: {e}\n{written}"),
    }
    let shown = format!("{config:?}");
    let secrets = [
        &config.master.admin_token,
        &config.calls.server_key,
        &config.cluster.secret,
    ];
    for secret in secrets.into_iter().flatten() {
        let secret = secret.expose();
        // A short secret may be in the Debug text by chance (a field name, a number).
        if secret.len() >= 12 {
            assert!(!shown.contains(secret), "a secret in Debug: {shown}");
        }
    }
});
