//! The integration tests of the other engines against real servers: Camunda (fakes), ClickHouse
//! with ZooKeeper, etcd.
//!
//! One test binary per theme (the engine links once for each, not once per file);
//! each module is one file of this directory, its tests named `MODULE::TEST`.

mod camunda;
mod clickhouse;
mod clickhouse_current;
mod common;
mod etcd;
