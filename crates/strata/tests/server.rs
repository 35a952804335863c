//! The integration tests of `strata server`: the API, the dashboard, health, limits, components
//! and hooks, clusters of nodes.
//!
//! One test binary per theme (the engine links once for each, not once per file);
//! each module is one file of this directory, its tests named `MODULE::TEST`.

mod api_fuzz;
mod api_hostile;
mod api_strict;
mod api_version;
mod cluster;
mod common;
mod components;
mod control_plane;
mod dashboard;
mod health;
mod node_hooks;
mod server_limits;
