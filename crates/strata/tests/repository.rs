//! The integration tests of backups, restores, verification, retention and garbage collection
//! through the CLI, on a repository attacked, damaged, faulty or shared.
//!
//! One test binary per theme (the engine links once for each, not once per file);
//! each module is one file of this directory, its tests named `MODULE::TEST`.

mod backup_restore;
mod common;
mod completions;
mod damaged_objects;
mod edge_errors;
mod faults;
mod fenced_locks;
mod format_v1;
mod gc_under_load;
mod hostile_backup;
mod hostile_repository;
mod hostile_restore;
mod keys;
mod listing;
mod no_clock_deletes;
mod object_storage;
mod one_way_in;
mod quickstart;
mod retention;
#[path = "../../strata-store/tests/servers.rs"]
mod servers;
mod setid_restore;
mod sigterm;
mod streamed_manifests;
mod surface;
mod unprivileged_restore;
mod verification;
mod whole_files;
