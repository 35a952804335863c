//! Reading the repository: `list`, `show`, `ls`.

use crate::context::{CommandResult, Context};
use crate::output;
use crate::output::print_json;
use strata_api::reports::FileEntry;
use strata_api::reports::Located;
use strata_api::requests::PageQuery;

impl Context {
    pub(crate) async fn list(&self, limit: Option<u32>, cursor: Option<String>) -> CommandResult {
        let query = match limit {
            Some(limit) => PageQuery {
                limit: limit as usize,
                cursor,
            },
            None => PageQuery::all(),
        };
        let mut list = self.cluster().list(query).await?;
        // Oldest first on the screen and in JSON, as always; a page is the newest ones.
        list.backups.reverse();
        let (backups, verified, damaged) = (&list.backups, &list.verified, &list.damaged);
        if self.global.json && limit.is_some() {
            let rows = list_rows(&list);
            print_json(&serde_json::json!({
                "backups": rows,
                "next": list.next,
                "total": list.total,
                "notes": list.notes,
            }));
        } else if self.global.json {
            print_json(&list_rows(&list));
        } else if backups.is_empty() && damaged.is_empty() {
            self.say("no backups yet (run `strata backup`)");
        } else if !backups.is_empty() {
            self.say(output::backups_table(backups, verified));
        }
        // Listing notes are shown even with -q and with --json (on stderr; a page in
        // JSON carries them too): the answer had to read summaries by themselves.
        if !(self.global.json && limit.is_some()) {
            for note in &list.notes {
                eprintln!("strata: note: {note}");
            }
        }
        if !self.global.json {
            if let Some(next) = &list.next {
                self.say(format!(
                    "older backups: strata list --limit {} --cursor {next}",
                    limit.unwrap_or(0)
                ));
            }
            // Damage is shown even with -q: it is what the operator must act on.
            for d in damaged {
                eprintln!(
                    "strata: warning: backup {} (storage {}) is damaged: {} (run `strata repair backups`)",
                    d.object.backup().unwrap_or_default(),
                    d.storage,
                    d.object.reason
                );
            }
        }
        Ok(0)
    }

    pub(crate) async fn show(&self, wanted: &str) -> CommandResult {
        let Located { storage, summary } = self.cluster().show(wanted).await?;

        if self.global.json {
            print_json(&summary);
            return Ok(0);
        }
        self.say(format!("backup    {}", summary.name));
        self.say(format!("status    {}", summary.status.as_str()));
        self.say(format!("storage   {storage}"));
        self.say(format!(
            "started   {} (took {})",
            summary.started,
            output::duration(summary.duration_ms)
        ));
        if let Some(line) = output::host_clock(&summary.started, summary.host_started.as_deref()) {
            self.say(format!("          {line}"));
        }
        self.say(format!(
            "files     {} ({}), stored {}, new data {}",
            summary.total(|n| n.files),
            output::size(summary.total(|n| n.bytes)),
            output::size(summary.total(|n| n.stored_bytes)),
            output::size(summary.total(|n| n.new_bytes)),
        ));
        if let Some(r) = &summary.requests {
            self.say(format!(
                "requests  {} PUT, {} GET, {} LIST, {} DELETE; {} sent, {} received",
                r.put,
                r.get,
                r.list,
                r.delete,
                output::size(r.bytes_sent),
                output::size(r.bytes_received)
            ));
        }
        self.say("");
        self.say(output::nodes_table(&summary.nodes));
        if !self.global.quiet {
            print_node_problems(&summary, 20);
        }
        Ok(0)
    }

    pub(crate) async fn ls(
        &self,
        wanted: &str,
        node: Option<&str>,
        path: Option<&str>,
    ) -> CommandResult {
        let mut entries = Vec::new();
        let (json, quiet) = (self.global.json, self.global.quiet);
        let mut each = |entry: FileEntry| {
            if json {
                entries.push(entry);
            } else if !quiet {
                print_file(&entry);
            }
        };
        self.cluster().files(wanted, node, path, &mut each).await?;
        if json {
            print_json(&entries);
        }
        Ok(0)
    }
}

/// One line of `strata ls`, in the shape of `ls -l`.
fn print_file(entry: &FileEntry) {
    let kind = match entry.kind.as_str() {
        "dir" => 'd',
        "symlink" => 'l',
        "hardlink" => 'h',
        _ => '-',
    };
    let extra = match (&entry.target, kind) {
        (Some(target), 'l') => format!(" -> {target}"),
        (Some(target), _) => format!(" => {target}"),
        (None, _) => String::new(),
    };
    println!(
        "{} {:>5}:{:<5} {:>10}  {}  {}/{}{}",
        output::mode_string(kind, u32::from_str_radix(&entry.mode, 8).unwrap_or(0)),
        entry.uid,
        entry.gid,
        entry.size,
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(entry.mtime_ns.max(0) as u64 / 1_000_000_000)
        ),
        entry.node,
        entry.path,
        extra
    );
}

pub(crate) fn print_node_problems(summary: &strata_api::reports::BackupSummary, per_node: usize) {
    // Components, when the backup has them: each with its status and, when not complete,
    // why (an external system's snapshot too).
    for c in &summary.components {
        let mut line = format!(
            "component {} ({}{}): {}",
            c.name,
            c.plugin,
            if c.optional { ", optional" } else { "" },
            c.status().as_str()
        );
        if let Some(id) = c.external.get("snapshot_id") {
            line.push_str(&format!(", snapshot {id}"));
        }
        if let Some(error) = &c.error {
            line.push_str(&format!(": {error}"));
        }
        println!("{line}");
        // A preset's parts (Camunda's operate, zeebe, ...), each with its state.
        let plain = ["snapshot_id", "state", "backup_id"];
        for (part, state) in c
            .external
            .iter()
            .filter(|(k, _)| !plain.contains(&k.as_str()) && !k.ends_with("_snapshots"))
        {
            println!("component {} part {part}: {state}", c.name);
        }
    }
    for paused in &summary.still_paused {
        println!("STILL PAUSED when the backup ended: {paused}");
    }
    for node in &summary.nodes {
        if let Some(error) = &node.error {
            println!("node {} failed: {error}", node.name);
        }
        for warning in node.warnings.iter().take(per_node) {
            println!("node {}: {warning}", node.name);
        }
        if node.warning_count as usize > per_node.min(node.warnings.len()) {
            println!(
                "node {}: ... {} warnings in all (strata show --json)",
                node.name, node.warning_count
            );
        }
    }
}

/// The JSON rows of `strata list`: each backup's summary with its storage and last
/// verification, then the damaged ones.
fn list_rows(list: &strata_api::BackupList) -> Vec<serde_json::Value> {
    list.backups
        .iter()
        .map(|b| {
            let mut row = serde_json::to_value(&b.summary).expect("summaries serialize");
            row["storage"] = serde_json::Value::String(b.storage.clone());
            if let Some(record) = list
                .verified
                .get(&(b.storage.clone(), b.summary.name.clone()))
            {
                row["verified"] = serde_json::to_value(record).expect("records serialize");
            }
            row
        })
        .chain(list.damaged.iter().map(|d| {
            serde_json::json!({
                "name": d.object.backup(),
                "storage": d.storage,
                "status": "damaged",
                "error": d.object.reason,
            })
        }))
        .collect()
}
