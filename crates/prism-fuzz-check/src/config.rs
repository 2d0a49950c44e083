//! `Config::from_toml_str` on arbitrary UTF-8, and route lookups on what validates.
//!
//! Checks: no panic or overflow anywhere in parsing, validation, error positions
//! (line/column from byte spans) or in expanding a valid config's targets.

use prism_config::Config;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text, "fuzz.toml") {
        Ok(config) => {
            for (app, key) in [("live", "cam1"), ("", ""), ("app", "a/b?c=d")] {
                for t in config.targets_for(app, key) {
                    let _ = format!("{t:?}");
                }
            }
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
