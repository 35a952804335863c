//! `strata repair index` and `strata repair backups`: parse, call the coordinator's
//! `repair` module (here, or on the server with `--server`), print what it found, did and
//! lost.

use crate::cli::RepairCommand;
use crate::context::{CommandResult, Context};
use crate::output::print_json;
use strata_api::reports::{BackupsRepairReport, IndexRepairReport};

impl Context {
    /// `strata repair`.
    pub(crate) async fn repair(&self, command: RepairCommand) -> CommandResult {
        match command {
            RepairCommand::Index { dry_run } => {
                let report = self.cluster().repair_index(dry_run).await?;
                self.say_index_repair(&report);
            }
            RepairCommand::Backups { dry_run } => {
                let report = self.cluster().repair_backups(dry_run).await?;
                self.say_backups_repair(&report);
            }
        }
        Ok(0)
    }

    fn say_index_repair(&self, r: &IndexRepairReport) {
        if self.global.json {
            return print_json(r);
        }
        let (would, verb_write, verb_delete) = if r.dry_run {
            ("would ", "write", "delete")
        } else {
            ("", "wrote", "deleted")
        };
        for object in &r.damaged_index {
            self.say(format!("damaged index object: {}", object.reason));
        }
        for pack in &r.damaged_packs {
            if pack.blobs_kept > 0 {
                self.say(format!(
                    "damaged pack header: {}; its {} blobs stay indexed from the old index",
                    pack.reason, pack.blobs_kept
                ));
            } else {
                self.say(format!(
                    "damaged pack header: {}; its blobs are lost unless another pack holds them",
                    pack.reason
                ));
            }
        }
        for key in &r.missing_packs {
            self.say(format!(
                "missing pack: {key} was indexed but is not stored; its blobs are lost unless another pack holds them"
            ));
        }
        for key in &r.unlisted_packs {
            self.say(format!(
                "pack {key} was listed by no readable index object: indexed now"
            ));
        }
        for key in &r.stray_objects {
            self.say(format!("not a pack, left alone: {key}"));
        }
        for key in &r.index_objects_deleted {
            self.say(format!("{would}{verb_delete} old index object {key}"));
        }
        self.say(format!(
            "{would}{verb_write} {} index objects for {} packs and {} blobs; {would}{verb_delete} {} old index objects",
            r.index_objects_written,
            r.packs_indexed,
            r.blobs_indexed,
            r.index_objects_deleted.len()
        ));
        if !r.missing_packs.is_empty() || !r.damaged_packs.is_empty() {
            self.say("run `strata repair backups` to mark the backups whose data was lost");
        }
    }

    fn say_backups_repair(&self, r: &BackupsRepairReport) {
        if self.global.json {
            return print_json(r);
        }
        let would = if r.dry_run { "would be " } else { "" };
        for repair in &r.repairs {
            let what = match repair.action.as_str() {
                "rebuilt" => format!("{would}rebuilt from its manifests"),
                "dropped" => format!("{would}dropped"),
                _ => format!("{would}marked"),
            };
            let status = repair
                .status
                .map(|s| format!(" (now {})", s.as_str()))
                .unwrap_or_default();
            self.say(format!("backup {}: {what}{status}", repair.backup));
            for line in &repair.lost {
                self.say(format!("  lost: {line}"));
            }
            for key in &repair.rewritten {
                let verb = if r.dry_run {
                    "would rewrite"
                } else {
                    "rewrote"
                };
                self.say(format!("  {verb} without the lost files: {key}"));
            }
            for key in &repair.deleted {
                let verb = if r.dry_run { "would delete" } else { "deleted" };
                self.say(format!("  {verb}: {key}"));
            }
        }
        self.say(format!(
            "checked {} backups: {} {}repaired, {} intact",
            r.backups,
            r.repairs.len(),
            would,
            (r.backups as usize).saturating_sub(r.repairs.len())
        ));
    }
}
