//! LL-HLS, HLS and MPEG-DASH, sans-I/O: a stream's frames become CMAF parts and segments
//! ([`Packager`]) and, for players that read no fMP4, MPEG-TS segments cut alike ([`ts`]),
//! from which the playlists and the DASH manifest are rendered ([`playlist`]), and viewers'
//! URLs are parsed and answered or parked ([`request`]).
//!
//! Times come in as arguments (`now`, the wall clock of an arriving frame); this crate must
//! not know sockets, tokio, HTTP servers or the hub. The driver (prism-transport-hls) feeds
//! it a hub subscription and serves it over hyper.

pub mod check;
pub mod packager;
pub mod playlist;
pub mod request;
pub mod ts;

pub use packager::{
    DiskJob, Located, Packager, PackagerConfig, Part, Pushed, Segment, Storage, Track, TrackKind,
};
pub use request::{BadUrl, Readiness, Request, Resource};
pub use ts::{Container, TsSegment, TsWindow};
