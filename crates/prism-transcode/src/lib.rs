//! ABR ladders: one supervised ffmpeg worker per (live stream, `[[transcode]]` ladder),
//! turning the source into renditions published back into the hub as `{app}/{key}_{name}`.
//!
//! This crate runs processes and moves FLV bytes over pipes; it knows the hub only through
//! prism-relay (a rendition is published like any other stream, a source is subscribed
//! like any player) and the config only as plain structs. No protocol parsing beyond FLV
//! framing; no policy beyond `[limits] max_transcodes`.

mod probe;

pub use probe::check;
