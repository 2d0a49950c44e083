//! Planning a reload for pulled sources (`[[source]]`): which sources to start, stop and
//! restart, by stream. Sources added through the admin API are left alone, as API targets
//! are. Carrying the plan out is the relay's job.

use prism_config::SourceConfig;
use std::collections::HashSet;

/// Who started a running source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceOrigin {
    /// `[[source]]` of the config file.
    Config,
    /// The admin API.
    Api,
    /// `[edge]`: pulled from the origin while someone wants the stream.
    Edge,
}

impl SourceOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceOrigin::Config => "config",
            SourceOrigin::Api => "api",
            SourceOrigin::Edge => "edge",
        }
    }
}

/// A running source as the plan sees it.
#[derive(Debug, Clone, Copy)]
pub struct RunningSource<'a> {
    pub spec: &'a SourceConfig,
    pub origin: SourceOrigin,
}

/// What a reload does to sources.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SourcePlan {
    /// Streams with a new source: start.
    pub start: Vec<SourceConfig>,
    /// Configured sources the file no longer has: stop (their streams end).
    pub stop: Vec<String>,
    /// Same stream, another URL or options: stop the old one, then start this.
    pub restart: Vec<SourceConfig>,
    /// Streams the file names but an admin-API (or edge) source pulls: left alone.
    pub conflicts: Vec<String>,
}

impl SourcePlan {
    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
            && self.stop.is_empty()
            && self.restart.is_empty()
            && self.conflicts.is_empty()
    }
}

/// Diffs the running sources against the config's, by stream.
pub fn plan_sources(running: &[RunningSource<'_>], wanted: &[SourceConfig]) -> SourcePlan {
    let mut plan = SourcePlan::default();
    let wanted_streams: HashSet<&str> = wanted.iter().map(|s| s.stream.as_str()).collect();
    for r in running {
        if r.origin == SourceOrigin::Config && !wanted_streams.contains(r.spec.stream.as_str()) {
            plan.stop.push(r.spec.stream.clone());
        }
    }
    for w in wanted {
        match running.iter().find(|r| r.spec.stream == w.stream) {
            None => plan.start.push(w.clone()),
            Some(r) if r.origin != SourceOrigin::Config => plan.conflicts.push(w.stream.clone()),
            Some(r) if r.spec != w => plan.restart.push(w.clone()),
            Some(_) => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(stream: &str, url: &str) -> SourceConfig {
        SourceConfig::new(stream, url, Default::default()).unwrap()
    }

    #[test]
    fn plans_by_stream_and_leaves_api_sources_alone() {
        let a = source("live/a", "rtmp://h/app/a");
        let b = source("live/b", "rtmp://h/app/b");
        let c = source("live/c", "srt://h:9000");
        let d = source("live/d", "rtmp://h/app/d");
        let b2 = source("live/b", "rtmp://other/app/b");
        let d2 = source("live/d", "rtmp://file/app/d");
        let api = source("live/api", "rtmp://h/app/api");
        let running = [
            RunningSource {
                spec: &a,
                origin: SourceOrigin::Config,
            },
            RunningSource {
                spec: &b,
                origin: SourceOrigin::Config,
            },
            RunningSource {
                spec: &d,
                origin: SourceOrigin::Api,
            },
            RunningSource {
                spec: &api,
                origin: SourceOrigin::Api,
            },
        ];
        let plan = plan_sources(&running, &[b2.clone(), c.clone(), d2]);
        assert_eq!(
            plan,
            SourcePlan {
                start: vec![c],
                stop: vec!["live/a".into()],
                restart: vec![b2],
                conflicts: vec!["live/d".into()],
            }
        );
        let same = [RunningSource {
            spec: &a,
            origin: SourceOrigin::Config,
        }];
        assert!(plan_sources(&same, std::slice::from_ref(&a)).is_empty());
    }
}
