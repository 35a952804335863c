//! `strata completions SHELL` and `strata man DIR`: shell completions and manual pages,
//! generated from the command line's definition so they never describe another version.

use crate::cli::{Cli, Shell};
use crate::failure::{code, Failure};
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

/// Prints the completion script of `shell` (a reader that stops early, such as `head`,
/// is not an error).
pub fn completions(shell: Shell) -> Result<(), Failure> {
    let mut command = Cli::command();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "strata", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::new(
            code::FAILED,
            format!("cannot write the completion script: {e}"),
        )),
        _ => Ok(()),
    }
}

/// Writes `strata.1` and `strata-SUBCOMMAND.1` (nested ones too) into `dir`; returns
/// how many pages it wrote.
pub fn man_pages(dir: &Path) -> Result<usize, Failure> {
    std::fs::create_dir_all(dir).map_err(|e| cannot_write(dir, e))?;
    let mut written = 0;
    write_pages(Cli::command(), "strata", dir, &mut written)?;
    Ok(written)
}

fn write_pages(
    command: clap::Command,
    name: &str,
    dir: &Path,
    written: &mut usize,
) -> Result<(), Failure> {
    // `strata-backup` names the page, `strata backup` the usage line.
    let command = command
        .display_name(name.to_string())
        .bin_name(name.replace('-', " "));
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .map_err(|e| cannot_write(&path, e))?;
    std::fs::write(&path, page).map_err(|e| cannot_write(&path, e))?;
    *written += 1;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        write_pages(sub.clone(), &sub_name, dir, written)?;
    }
    Ok(())
}

fn cannot_write(path: &Path, e: std::io::Error) -> Failure {
    Failure::new(
        code::FAILED,
        format!("cannot write manual page {}: {e}", path.display()),
    )
}
