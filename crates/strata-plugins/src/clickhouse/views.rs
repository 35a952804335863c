//! A materialized view's own storage under the name the restoring server gives it. In an
//! Atomic database (ClickHouse 20.x and later) a view keeps its rows in a table named
//! `.inner_id.<the view's UUID>`, and a view created again gets a new UUID: the record's
//! storage table is found as the storage of the view it belongs to, as this server
//! created it. (`.inner.<view>` of Ordinary databases keeps its name.)

use super::client::{literal, ClickHouseError, Client};
use super::record::{Record, Table};
use serde::Deserialize;

const ATOMIC_INNER: &str = ".inner_id.";

/// `tables` with each Atomic view storage renamed to the storage of its view on the
/// server at `client`, where that view exists already (else it keeps the recorded name:
/// the view is created later, and its storage then found by calling this again).
pub async fn localize(
    client: &Client,
    record: &Record,
    tables: Vec<Table>,
) -> Result<Vec<Table>, ClickHouseError> {
    let mut localized = Vec::with_capacity(tables.len());
    for mut table in tables {
        if let Some(view) = view_of(record, &table) {
            if let Some(uuid) = uuid_on_server(client, &table.database, &view.name).await? {
                table.name = format!("{ATOMIC_INNER}{uuid}");
            }
        }
        localized.push(table);
    }
    Ok(localized)
}

/// The view whose storage `table` is in the backup: the view whose recorded UUID the
/// storage is named after; for records without UUIDs (strata before record version 2),
/// the database's only materialized view.
fn view_of<'r>(record: &'r Record, table: &Table) -> Option<&'r Table> {
    let uuid = table.name.strip_prefix(ATOMIC_INNER)?;
    let views = || {
        record
            .tables
            .iter()
            .filter(|t| t.database == table.database && t.engine == "MaterializedView")
    };
    if let Some(view) = views().find(|v| v.uuid.as_deref() == Some(uuid)) {
        return Some(view);
    }
    let unrecorded = record.tables.iter().all(|t| t.uuid.is_none());
    match (unrecorded, views().count()) {
        (true, 1) => views().next(),
        _ => None,
    }
}

async fn uuid_on_server(
    client: &Client,
    database: &str,
    view: &str,
) -> Result<Option<String>, ClickHouseError> {
    #[derive(Deserialize)]
    struct Row {
        uuid: String,
    }
    let rows = client
        .rows::<Row>(&format!(
            "SELECT toString(uuid) AS uuid FROM system.tables WHERE database = {} AND name = {}",
            literal(database),
            literal(view)
        ))
        .await?;
    Ok(rows.into_iter().next().map(|r| r.uuid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, engine: &str, uuid: Option<&str>) -> Table {
        Table {
            database: "shop".into(),
            name: name.into(),
            engine: engine.into(),
            create: String::new(),
            data: None,
            zookeeper_path: None,
            uuid: uuid.map(str::to_string),
            parts: Vec::new(),
        }
    }

    #[test]
    fn a_storage_belongs_to_the_view_named_by_its_uuid() {
        let record = Record {
            tables: vec![
                table("a", "MaterializedView", Some("u1")),
                table("b", "MaterializedView", Some("u2")),
                table(".inner_id.u2", "SummingMergeTree", Some("u3")),
            ],
            ..Record::default()
        };
        let view = view_of(&record, &record.tables[2]).unwrap();
        assert_eq!(view.name, "b");
        // An unknown UUID belongs to no view: two views, and the record has UUIDs.
        assert!(view_of(&record, &table(".inner_id.u9", "MergeTree", None)).is_none());
        // Ordinary databases' storage keeps its name.
        assert!(view_of(&record, &table(".inner.a", "MergeTree", None)).is_none());
    }

    #[test]
    fn a_record_without_uuids_pairs_only_a_database_s_single_view() {
        let mut record = Record {
            tables: vec![
                table("a", "MaterializedView", None),
                table(".inner_id.u1", "SummingMergeTree", None),
            ],
            ..Record::default()
        };
        assert_eq!(view_of(&record, &record.tables[1]).unwrap().name, "a");
        record.tables.push(table("b", "MaterializedView", None));
        assert!(view_of(&record, &record.tables[1]).is_none());
    }
}
