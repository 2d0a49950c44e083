//! The relay's control plane: who may connect, publish and play (`[limits]`, access rules,
//! the `[auth]` webhook), which streams and push targets are live (the registry behind the
//! admin API), what a config reload changes, and the in-flight tracking a graceful shutdown
//! waits on.
//!
//! It decides; it never moves media. It must not know any protocol (no prism-rtmp, no
//! prism-egress, no transport): starting a push target or a session is the relay's job,
//! which asks here first and applies what this crate plans.

mod access;
mod conn;
mod control;
mod limits;
mod registry;
mod reload;
mod shutdown;
mod sources;

pub use access::{check, Action, Refusal, StreamRequest};
pub use conn::ConnInfo;
pub use control::Control;
pub use limits::{ConnLimiter, ConnPermit, LimitExceeded};
pub use registry::{
    AddTargetError, LiveTargets, Registry, RemoveTargetError, StreamSnapshot, TargetOrigin,
    TargetSnapshot, TargetSpec, TargetState, TargetStatus,
};
pub use reload::{
    plan_targets, ReloadPlan, ReloadReport, Running, StreamChanges, StreamPlan, TargetPlan,
};
pub use shutdown::{InFlight, InFlightGuard, ShutdownReport};
// Pulled sources (issue 14).
pub use sources::{plan_sources, RunningSource, SourceOrigin, SourcePlan};
