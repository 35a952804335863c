//! The `strata` command: parse, configure, call the library, print.

// Every `println!` and `print!` of this binary goes through `output::write_out`, which
// never panics: these definitions shadow the standard ones. A reader that stops early
// (`strata list | head -1`) closes the pipe; the rest of the output then goes nowhere
// and the command ends quietly with its own exit code.
macro_rules! println {
    () => {
        $crate::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[allow(unused_macros)]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!($($arg)*))
    };
}

mod audit_commands;
mod browse_commands;
mod cli;
mod client;
mod cluster_commands;
mod commands;
mod context;
mod data_commands;
mod failure;
mod key_commands;
mod lifecycle_commands;
mod londiste_commands;
mod manual;
mod output;
mod patroni_commands;
mod pgq_commands;
mod probe_command;
mod progress;
mod repair_commands;
mod runtime;
mod tables_commands;
mod wal_commands;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match runtime::for_command(&cli.command) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("strata: error: cannot start the async runtime: {err}");
            return ExitCode::from(failure::code::FAILED);
        }
    };
    let code = match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("strata: error: {}", failure.message);
            failure.code
        }
    };
    // Output that could not be written (a full disk, not a reader that stopped) is a
    // failure of a command that otherwise succeeded.
    match output::finish() {
        Some(err) if code == 0 => {
            eprintln!("strata: error: cannot write the output: {err}");
            ExitCode::from(failure::code::FAILED)
        }
        _ => ExitCode::from(code),
    }
}
