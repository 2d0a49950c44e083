//! The operator's state: destinations added or changed through the admin API (the
//! console), persisted in the `[state] path` JSON file and merged into the running config.
//!
//! A destination is a one-target route: `stream` is a route pattern (`live/main` for one
//! stream, `live/*` for every stream of an app), so it applies to the live streams it
//! matches and to every later publish. Applying one is a config reload with the state
//! merged in (the config file's routes first), so starting, stopping and restarting
//! targets reuse the reload's reconciliation, and SIGHUP re-merges the state with the
//! re-read file.
//!
//! The config file stays the source for what it declares: a destination whose name a
//! configured target also uses is a conflict, refused when added and, when the config
//! file gained the name later, reported (log and API) and not applied until one of them
//! is renamed or removed.
//!
//! Storage: one small JSON file, rewritten whole on every change, atomically (temp file
//! in the same directory, fsync, rename, fsync of the directory) with mode 0600 (stream
//! keys are secrets). A file that does not parse stops start-up naming it: resetting
//! silently would drop an operator's destinations.

use prism_config::{
    redact_url, validate_target_name, validate_target_url, validate_track_id, Config, QueueConfig,
    Route, RouteAccess, RouteOutputs, StreamPattern, TargetConfig, TargetTls, TargetTracks,
};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

const VERSION: u32 = 1;
/// Most destinations kept: the file is rewritten whole on every change.
pub const MAX_DESTINATIONS: usize = 500;
/// Test hook: pause this long half-way through writing the temp file, so a test can
/// `kill -9` in the middle of a save.
const PAUSE_ENV: &str = "PRISM_TEST_STATE_SAVE_PAUSE_MS";

/// One destination as stored (the URL in full: it holds the stream key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub name: String,
    /// Route pattern: `app/key`, `app/*`, `*`.
    pub stream: String,
    pub url: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub queue: QueueJson,
    /// Push this `[[transcode]]` rendition of the stream instead of the source (as a
    /// config target's `rendition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendition: Option<String>,
    /// Enhanced RTMP v2 multitrack: the one video track pushed, as a plain single-track
    /// stream (as a config target's `video_track`); none: every track as it came.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "video_track"
    )]
    pub video_track: Option<i64>,
    /// Likewise for audio (`audio_track`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "audio_track"
    )]
    pub audio_track: Option<i64>,
}

fn yes() -> bool {
    true
}

/// A track id field: an integer (its range is checked by [`Destination::check`]) or null;
/// anything else is refused naming the field (serde's own message would not).
fn track_field<'de, D: serde::Deserializer<'de>>(
    d: D,
    what: &str,
) -> Result<Option<i64>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) if n.is_i64() => Ok(n.as_i64()),
        other => Err(serde::de::Error::custom(format!(
            "{what}: a track id (0 to 255), not {other}"
        ))),
    }
}

fn video_track<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    track_field(d, "video_track")
}

fn audio_track<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    track_field(d, "audio_track")
}

/// The `[[route.target]]` queue keys; absent = the config's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queue_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queue_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overflow_disconnect_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_merge_ms: Option<u32>,
}

impl QueueJson {
    /// Checked as the config checks the same keys.
    pub fn resolve(&self) -> Result<QueueConfig, String> {
        let mut q = QueueConfig::default();
        if let Some(v) = self.max_queue_ms {
            if v == 0 {
                return Err("queue.max_queue_ms: must be > 0".into());
            }
            q.max_queue_ms = v;
        }
        if let Some(v) = self.max_queue_bytes {
            if v == 0 {
                return Err("queue.max_queue_bytes: must be > 0".into());
            }
            q.max_queue_bytes = v;
        }
        if let Some(v) = self.overflow_disconnect_ms {
            q.overflow_disconnect = Duration::from_millis(v);
        }
        if let Some(v) = self.write_merge_ms {
            if v > 1000 {
                return Err("queue.write_merge_ms: must be at most 1000".into());
            }
            q.write_merge = Some(Duration::from_millis(v.into()));
        }
        Ok(q)
    }
}

impl Destination {
    /// Checks name, pattern, URL and queue keys as the config does; `Err` is a message for
    /// the operator (URL redacted).
    pub fn check(&self) -> Result<(), String> {
        validate_target_name(&self.name).map_err(|m| format!("name: {m}"))?;
        // Bounds the state file (it is rewritten whole on every change).
        if self.stream.len() > 256 || self.url.len() > 4096 {
            return Err("stream (256) or url (4096 bytes) too long".into());
        }
        StreamPattern::new(&self.stream).map_err(|m| format!("stream: {m}"))?;
        validate_target_url(&self.url).map_err(|m| format!("url: {m}"))?;
        self.queue.resolve()?;
        self.tracks()?;
        Ok(())
    }

    /// `video_track` / `audio_track`, checked as the config checks them.
    fn tracks(&self) -> Result<TargetTracks, String> {
        let check = |v: Option<i64>, what: &str| {
            v.map(validate_track_id)
                .transpose()
                .map_err(|m| format!("{what}: {m}"))
        };
        Ok(TargetTracks {
            video: check(self.video_track, "video_track")?,
            audio: check(self.audio_track, "audio_track")?,
        })
    }

    /// The `rendition` must name one of the config's `[[transcode.rendition]]`s, as a
    /// config target's must.
    fn check_rendition(&self, base: &Config) -> Result<(), String> {
        match &self.rendition {
            Some(r) if !ladders_have(base, r) => Err(format!(
                "rendition: no [[transcode.rendition]] is named `{r}`"
            )),
            _ => Ok(()),
        }
    }

    fn route(&self) -> Option<Route> {
        Some(Route {
            stream: StreamPattern::new(&self.stream).ok()?,
            targets: vec![TargetConfig {
                name: self.name.clone(),
                url: self.url.clone(),
                audio: Default::default(),
                tracks: self.tracks().ok()?,
                queue: self.queue.resolve().ok()?,
                tls: TargetTls::default(),
                rendition: self.rendition.clone(),
            }],
            access: RouteAccess::default(),
            outputs: RouteOutputs::default(),
        })
    }

    /// What the API shows: the URL redacted, the key's last 4 characters at most.
    pub fn view(&self, conflict: Option<String>, persisted: bool) -> DestinationView {
        let q = self.queue.resolve().unwrap_or_default();
        DestinationView {
            name: self.name.clone(),
            stream: self.stream.clone(),
            url: redact_url(&self.url),
            key_hint: key_hint(&self.url),
            enabled: self.enabled,
            queue: QueueView {
                max_queue_ms: q.max_queue_ms,
                max_queue_bytes: q.max_queue_bytes,
                overflow_disconnect_ms: q.overflow_disconnect.as_millis() as u64,
                write_merge_ms: q.target_write_merge().as_millis() as u64,
            },
            applied: self.enabled && conflict.is_none(),
            conflict,
            persisted,
            rendition: self.rendition.clone(),
            video_track: self.video_track,
            audio_track: self.audio_track,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DestinationView {
    pub name: String,
    pub stream: String,
    pub url: String,
    /// `…abcd`: the last 4 characters of the stream key (none for keys under 12
    /// characters, where 4 would give too much away).
    pub key_hint: Option<String>,
    pub enabled: bool,
    pub queue: QueueView,
    /// Enabled and not in conflict: merged into the running config.
    pub applied: bool,
    pub conflict: Option<String>,
    /// Saved in the `[state]` file (false: in memory only, lost on restart).
    pub persisted: bool,
    /// The `[[transcode]]` rendition pushed instead of the source (none: the source).
    pub rendition: Option<String>,
    /// The multitrack video / audio track pushed (none: every track as it came).
    pub video_track: Option<i64>,
    pub audio_track: Option<i64>,
}

fn ladders_have(base: &Config, rendition: &str) -> bool {
    base.transcode
        .iter()
        .any(|l| l.renditions.iter().any(|x| x.name == rendition))
}

#[derive(Debug, Serialize)]
pub struct QueueView {
    pub max_queue_ms: u32,
    pub max_queue_bytes: usize,
    pub overflow_disconnect_ms: u64,
    pub write_merge_ms: u64,
}

/// The stream key's last 4 characters: the last path segment after an app, or the
/// query (SRT `streamid=`).
fn key_hint(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let secret = match query {
        Some(q) if !q.is_empty() => q.rsplit('=').next().unwrap_or(q),
        _ if segments.len() >= 3 => segments[segments.len() - 1],
        _ => return None,
    };
    let chars: Vec<char> = secret.chars().collect();
    (chars.len() >= 12).then(|| format!("…{}", chars[chars.len() - 4..].iter().collect::<String>()))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    destinations: Vec<Destination>,
}

/// Why a change was refused.
#[derive(Debug)]
pub enum StateError {
    Invalid(String),
    Conflict(String),
    NotFound(String),
    /// The file could not be written; nothing changed.
    Save(String),
}

struct Inner {
    /// The config as the file (or the embedded default) says, without the state.
    base: Config,
    destinations: Vec<Destination>,
}

pub struct StateStore {
    path: Option<PathBuf>,
    pause: Option<Duration>,
    inner: Mutex<Inner>,
}

/// Reads the state file named by `config` (none yet = empty). `Err` names the file.
pub fn read(config: &Config) -> Result<Vec<Destination>, String> {
    let Some(path) = &config.state.path else {
        return Ok(Vec::new());
    };
    let shown = path.display();
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = parent(path);
            if !dir.is_dir() {
                return Err(format!(
                    "state file {shown}: its directory {} does not exist",
                    dir.display()
                ));
            }
            return Ok(Vec::new());
        }
        Err(e) => return Err(format!("state file {shown}: cannot read it: {e}")),
    };
    let file: StateFile = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "state file {shown} is corrupt ({e}); fix or move it away (Prism does not reset it)"
        )
    })?;
    if file.version != VERSION {
        return Err(format!(
            "state file {shown}: version {} is not one this Prism reads ({VERSION})",
            file.version
        ));
    }
    if file.destinations.len() > MAX_DESTINATIONS {
        return Err(format!(
            "state file {shown}: more than {MAX_DESTINATIONS} destinations"
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (i, d) in file.destinations.iter().enumerate() {
        d.check()
            .map_err(|m| format!("state file {shown}: destinations[{i}]: {m}"))?;
        if !names.insert(d.name.as_str()) {
            return Err(format!(
                "state file {shown}: destinations[{i}]: duplicate name `{}`",
                d.name
            ));
        }
    }
    Ok(file.destinations)
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent(path).join(format!(".{name}.tmp"))
}

/// Writes `bytes` to `path` so that a crash at any point leaves either the old file or
/// the new one: temp file (0600) in the same directory, fsync, rename over, fsync the
/// directory (so the rename itself is durable).
fn write_atomic(path: &Path, bytes: &[u8], pause: Option<Duration>) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = tmp_path(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    // `mode` applies only when the file is created.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    match pause {
        Some(p) => {
            let half = bytes.len() / 2;
            f.write_all(&bytes[..half])?;
            f.sync_data()?;
            std::thread::sleep(p);
            f.write_all(&bytes[half..])?;
        }
        None => f.write_all(bytes)?,
    }
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(parent(path))?.sync_all()
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StateStore {
    /// Opens the state of `base` (`[state] path`); `Err` names the file.
    pub fn open(base: Config) -> Result<StateStore, String> {
        let destinations = read(&base)?;
        let path = base.state.path.clone();
        if let Some(p) = &path {
            // A save a crash interrupted: the state file itself is intact.
            let _ = std::fs::remove_file(tmp_path(p));
        }
        let pause = std::env::var(PAUSE_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis);
        Ok(StateStore {
            path,
            pause,
            inner: Mutex::new(Inner { base, destinations }),
        })
    }

    pub fn persisted(&self) -> bool {
        self.path.is_some()
    }

    /// The running config: the base with every applied destination appended as a route.
    pub fn effective(&self) -> Config {
        effective(&lock(&self.inner))
    }

    /// Destinations not applied because the config file names a target the same.
    pub fn conflicts(&self) -> Vec<(String, String)> {
        let inner = lock(&self.inner);
        inner
            .destinations
            .iter()
            .filter_map(|d| conflict(&inner.base, &d.name).map(|c| (d.name.clone(), c)))
            .collect()
    }

    /// A re-read config file (SIGHUP): `apply`s the new effective config under the store's
    /// lock, so it cannot overtake (or be overtaken by) a destination change. The state
    /// file stays the one opened at start; the second value says whether `[state]` changed
    /// (it takes effect on restart).
    pub fn set_base<R>(&self, mut base: Config, apply: impl FnOnce(Config) -> R) -> (R, bool) {
        let mut inner = lock(&self.inner);
        let state_changed = base.state != inner.base.state;
        base.state = inner.base.state.clone();
        inner.base = base;
        (apply(effective(&inner)), state_changed)
    }

    pub fn list(&self) -> Vec<DestinationView> {
        let inner = lock(&self.inner);
        inner
            .destinations
            .iter()
            .map(|d| d.view(conflict(&inner.base, &d.name), self.persisted()))
            .collect()
    }

    /// Whether `name` is an applied destination (its running targets are the state's).
    pub fn is_applied(&self, name: &str) -> bool {
        let inner = lock(&self.inner);
        inner
            .destinations
            .iter()
            .any(|d| d.name == name && d.enabled && conflict(&inner.base, name).is_none())
    }

    /// Adds a destination, saves, then `apply`s the new running config (under the
    /// store's lock, so concurrent changes apply in the order they were saved).
    pub fn add(
        &self,
        d: Destination,
        apply: impl FnOnce(Config),
    ) -> Result<DestinationView, StateError> {
        d.check().map_err(StateError::Invalid)?;
        let mut inner = lock(&self.inner);
        d.check_rendition(&inner.base)
            .map_err(StateError::Invalid)?;
        if inner.destinations.iter().any(|x| x.name == d.name) {
            return Err(StateError::Conflict(format!(
                "a destination named {} exists; change or remove it",
                d.name
            )));
        }
        if let Some(c) = conflict(&inner.base, &d.name) {
            return Err(StateError::Conflict(c));
        }
        if inner.destinations.len() >= MAX_DESTINATIONS {
            return Err(StateError::Conflict(format!(
                "already {MAX_DESTINATIONS} destinations"
            )));
        }
        let view = d.view(None, self.persisted());
        let mut next = inner.destinations.clone();
        next.push(d);
        self.commit(&mut inner, next, apply)?;
        Ok(view)
    }

    /// Changes a destination (`change` edits a copy, checked again), saves, applies.
    pub fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut Destination),
        apply: impl FnOnce(Config),
    ) -> Result<DestinationView, StateError> {
        let mut inner = lock(&self.inner);
        let Some(i) = inner.destinations.iter().position(|d| d.name == name) else {
            return Err(StateError::NotFound(format!("no destination named {name}")));
        };
        let mut next = inner.destinations.clone();
        change(&mut next[i]);
        next[i].name = name.to_owned();
        next[i].check().map_err(StateError::Invalid)?;
        next[i]
            .check_rendition(&inner.base)
            .map_err(StateError::Invalid)?;
        let view = next[i].view(conflict(&inner.base, name), self.persisted());
        self.commit(&mut inner, next, apply)?;
        Ok(view)
    }

    pub fn remove(&self, name: &str, apply: impl FnOnce(Config)) -> Result<(), StateError> {
        let mut inner = lock(&self.inner);
        if !inner.destinations.iter().any(|d| d.name == name) {
            return Err(StateError::NotFound(format!("no destination named {name}")));
        }
        let next = inner
            .destinations
            .iter()
            .filter(|d| d.name != name)
            .cloned()
            .collect();
        self.commit(&mut inner, next, apply)
    }

    /// Saves `next` (nothing changes if that fails), then applies it.
    fn commit(
        &self,
        inner: &mut Inner,
        next: Vec<Destination>,
        apply: impl FnOnce(Config),
    ) -> Result<(), StateError> {
        if let Some(path) = &self.path {
            let file = StateFile {
                version: VERSION,
                destinations: next.clone(),
            };
            let mut bytes = serde_json::to_vec_pretty(&file)
                .map_err(|e| StateError::Save(format!("encoding the state: {e}")))?;
            bytes.push(b'\n');
            write_atomic(path, &bytes, self.pause).map_err(|e| {
                StateError::Save(format!(
                    "saving the state file {}: {e}; nothing changed",
                    path.display()
                ))
            })?;
        }
        inner.destinations = next;
        apply(effective(inner));
        Ok(())
    }
}

/// What `prism check` reports about the state file's destinations against `config`: a
/// name the config file also declares (that destination is not applied), a rendition no
/// ladder has (it pushes nothing). One line each, naming the destination.
pub fn problems(config: &Config, destinations: &[Destination]) -> Vec<String> {
    destinations
        .iter()
        .flat_map(|d| {
            let named = |m: String| format!("destination {}: {m}", d.name);
            conflict(config, &d.name)
                .map(named)
                .into_iter()
                .chain(d.check_rendition(config).err().map(named))
        })
        .collect()
}

fn conflict(base: &Config, name: &str) -> Option<String> {
    base.routes
        .iter()
        .any(|r| r.targets.iter().any(|t| t.name == name))
        .then(|| {
            format!(
                "the config file declares a target named {name}: the config's runs, this \
                 destination is not applied; rename or remove one of them"
            )
        })
}

fn effective(inner: &Inner) -> Config {
    let mut config = inner.base.clone();
    config.routes.extend(
        inner
            .destinations
            .iter()
            .filter(|d| d.enabled && conflict(&inner.base, &d.name).is_none())
            .filter_map(Destination::route),
    );
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(name: &str, stream: &str) -> Destination {
        Destination {
            name: name.into(),
            stream: stream.into(),
            url: "rtmp://127.0.0.1/live/abcdefgh12345678".into(),
            enabled: true,
            queue: QueueJson::default(),
            rendition: None,
            video_track: None,
            audio_track: None,
        }
    }

    fn config(dir: &Path, extra: &str) -> Config {
        let text = format!(
            "[state]\npath = \"{}\"\n{extra}",
            dir.join("state.json").display()
        );
        Config::from_toml_str(&text, "test.toml").unwrap()
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("prism-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn saved_destinations_come_back_and_merge_as_routes() {
        let dir = tempdir("roundtrip");
        let store = StateStore::open(config(&dir, "")).unwrap();
        let mut applied = None;
        store
            .add(dest("yt", "live/main"), |c| applied = Some(c))
            .unwrap();
        let c = applied.unwrap();
        assert_eq!(c.targets_for("live", "main").len(), 1);
        assert!(c.targets_for("live", "other").is_empty());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("state.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Disabled: kept, not applied.
        store.update("yt", |d| d.enabled = false, |_| {}).unwrap();
        let again = StateStore::open(config(&dir, "")).unwrap();
        assert_eq!(again.list().len(), 1);
        assert!(!again.list()[0].enabled);
        assert!(again.effective().targets_for("live", "main").is_empty());
        again.remove("yt", |_| {}).unwrap();
        assert!(StateStore::open(config(&dir, ""))
            .unwrap()
            .list()
            .is_empty());
    }

    #[test]
    fn a_rendition_is_checked_against_the_ladders_and_pushes_that_rendition() {
        let dir = tempdir("rendition");
        let ladder = "[[transcode]]\nstream = \"live/*\"\n[[transcode.rendition]]\nname = \"low\"\n\
                      video = { codec = \"h264\", width = 640, height = 360, bitrate_kbps = 800 }\n";
        let store = StateStore::open(config(&dir, ladder)).unwrap();
        let mut bad = dest("yt", "live/main");
        bad.rendition = Some("nope".into());
        match store.add(bad, |_| {}) {
            Err(StateError::Invalid(m)) => assert!(m.contains("rendition"), "{m}"),
            other => panic!("unknown rendition accepted: {other:?}"),
        }
        let mut d = dest("yt", "live/main");
        d.rendition = Some("low".into());
        let mut applied = None;
        let view = store.add(d, |c| applied = Some(c)).unwrap();
        assert_eq!(view.rendition.as_deref(), Some("low"));
        let c = applied.unwrap();
        // The rendition stream gets it, the source does not.
        assert_eq!(c.targets_for("live", "main_low").len(), 1);
        assert!(c.targets_for("live", "main").is_empty());
        // Saved with it.
        let again = StateStore::open(config(&dir, ladder)).unwrap();
        assert_eq!(again.list()[0].rendition.as_deref(), Some("low"));
        // Back to the source.
        store.update("yt", |d| d.rendition = None, |_| {}).unwrap();
        assert_eq!(store.effective().targets_for("live", "main").len(), 1);
    }

    #[test]
    fn tracks_are_checked_as_the_config_and_applied_to_the_target() {
        let dir = tempdir("tracks");
        // A state file from before tracks existed still loads: every track, as it came.
        std::fs::write(
            dir.join("state.json"),
            br#"{"version":1,"destinations":[{"name":"old","stream":"live/*","url":"rtmp://h/app/k"}]}"#,
        )
        .unwrap();
        let store = StateStore::open(config(&dir, "")).unwrap();
        assert_eq!(store.list()[0].video_track, None);
        assert_eq!(
            store.effective().targets_for("live", "x")[0].tracks,
            TargetTracks::default()
        );
        for (video, audio, says) in [
            (
                Some(256),
                None,
                "video_track: `256` is not a track id: 0 to 255",
            ),
            (
                None,
                Some(-1),
                "audio_track: `-1` is not a track id: 0 to 255",
            ),
        ] {
            let mut bad = dest("yt", "live/main");
            (bad.video_track, bad.audio_track) = (video, audio);
            match store.add(bad, |_| panic!("applied")) {
                Err(StateError::Invalid(m)) => assert_eq!(m, says),
                other => panic!("{video:?}/{audio:?} accepted: {other:?}"),
            }
        }
        let mut d = dest("yt", "live/main");
        (d.video_track, d.audio_track) = (Some(1), Some(0));
        let mut applied = None;
        let view = store.add(d, |c| applied = Some(c)).unwrap();
        assert_eq!((view.video_track, view.audio_track), (Some(1), Some(0)));
        let want = TargetTracks {
            video: Some(1),
            audio: Some(0),
        };
        let yt = |c: &Config| {
            c.targets_for("live", "main")
                .into_iter()
                .find(|t| t.name == "yt")
                .unwrap()
                .tracks
        };
        assert_eq!(yt(&applied.unwrap()), want);
        // Saved with them; an invalid change is refused and changes nothing.
        let again = StateStore::open(config(&dir, "")).unwrap();
        assert_eq!(yt(&again.effective()), want);
        assert!(matches!(
            store.update("yt", |d| d.video_track = Some(1000), |_| panic!("applied")),
            Err(StateError::Invalid(_))
        ));
        assert_eq!(yt(&store.effective()), want);
        // Cleared: every track again.
        store
            .update(
                "yt",
                |d| (d.video_track, d.audio_track) = (None, None),
                |_| {},
            )
            .unwrap();
        assert_eq!(yt(&store.effective()), TargetTracks::default());
        let text = std::fs::read_to_string(dir.join("state.json")).unwrap();
        assert!(!text.contains("_track"), "{text}");
    }

    #[test]
    fn config_names_win_and_conflicts_are_reported() {
        let dir = tempdir("conflict");
        let store = StateStore::open(config(&dir, "")).unwrap();
        store.add(dest("yt", "live/*"), |_| {}).unwrap();
        let with_yt =
            "[[route]]\nstream = \"*\"\n[[route.target]]\nname = \"yt\"\nurl = \"rtmp://h/a/b\"\n";
        let store = StateStore::open(config(&dir, with_yt)).unwrap();
        assert_eq!(store.conflicts().len(), 1);
        let c = store.effective();
        assert_eq!(c.targets_for("live", "x")[0].url, "rtmp://h/a/b");
        assert_eq!(c.routes.len(), 1);
        assert!(matches!(
            store.add(dest("yt", "live/x"), |_| {}),
            Err(StateError::Conflict(_))
        ));
    }

    #[test]
    fn corrupt_or_invalid_files_are_errors_naming_the_file() {
        let dir = tempdir("corrupt");
        let path = dir.join("state.json");
        std::fs::write(&path, b"{\"version\":1,\"destinations\":[").unwrap();
        let e = StateStore::open(config(&dir, "")).err().unwrap();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("corrupt"),
            "{e}"
        );
        std::fs::write(
            &path,
            br#"{"version":1,"destinations":[{"name":"a b","stream":"live/x","url":"rtmp://h/a/k"}]}"#,
        )
        .unwrap();
        let e = StateStore::open(config(&dir, "")).err().unwrap();
        assert!(e.contains("destinations[0]: name"), "{e}");
    }

    #[test]
    fn a_failed_save_changes_nothing() {
        let dir = tempdir("failsave");
        let store = StateStore::open(config(&dir, "")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let r = store.add(dest("yt", "live/main"), |_| panic!("applied"));
        assert!(matches!(r, Err(StateError::Save(_))));
        assert!(store.list().is_empty());
    }

    #[test]
    fn checks_as_the_config() {
        let mut d = dest("yt", "live/main");
        d.queue.write_merge_ms = Some(1001);
        assert!(d.check().unwrap_err().contains("write_merge_ms"));
        let mut d = dest("yt", "nope");
        assert!(d.check().unwrap_err().starts_with("stream:"));
        d.stream = "live/x".into();
        d.url = "http://h/a/b".into();
        assert!(d.check().unwrap_err().starts_with("url:"));
    }

    #[test]
    fn key_hints_show_four_characters_of_long_keys() {
        assert_eq!(
            key_hint("rtmps://a.rtmps.youtube.com:443/live2/abcd-efgh-ijkl-mnop").as_deref(),
            Some("…mnop")
        );
        assert_eq!(key_hint("rtmp://h/app/short"), None);
        assert_eq!(
            key_hint("srt://h:9000?streamid=publish:live/abcdefghijkl1234").as_deref(),
            Some("…1234")
        );
        let v = dest("yt", "live/main").view(None, true);
        assert!(!v.url.contains("abcdefgh"), "{}", v.url);
        assert_eq!(v.key_hint.as_deref(), Some("…5678"));
    }
}
