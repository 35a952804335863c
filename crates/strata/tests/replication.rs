//! The integration tests of PgQ and Londiste against real PostgreSQL and Python Londiste.
//!
//! One test binary per theme (the engine links once for each, not once per file);
//! each module is one file of this directory, its tests named `MODULE::TEST`.

mod common;
mod londiste;
mod londiste_demo;
mod londiste_interop;
mod londiste_probes;
mod londiste_seed;
mod pgq;
