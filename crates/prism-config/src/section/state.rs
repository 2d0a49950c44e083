//! `[state]`: where destinations added through the admin API (the console) are persisted.

use std::path::PathBuf;

section! {
    #[derive(Default)]
    raw RawState;
    /// TOML table `[state]`: the operator's state file.
    define StateConfig {
        /// JSON file holding the destinations added or changed through the admin API (mode 0600: it holds stream keys); relative to the config file; absent = kept in memory only, lost on restart.
        path: String => path: Option<PathBuf> = default(None),
            check |p: String| {
                if p.is_empty() {
                    return Err("must name a file (remove the key to keep state in memory only)".to_string());
                }
                Ok(Some(PathBuf::from(p)))
            };
    }
}
