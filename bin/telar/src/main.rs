//! `telar`: thin entry point; the work happens in `commands/`.

mod catalog;
mod cli;
mod commands;
mod runner;
mod settings;

use clap::Parser;

/// mimalloc: the proxy and JSON paths allocate on every request; measured in bench/run gateway.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if matches!(cli.command, cli::Command::Up) {
        lean_allocator();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(error.exit_code())
        }
    }
}

/// `telar up` is the whole system in one process on a laptop: mimalloc is told to commit arena
/// memory only when it is used and to give freed pages back at once. Idle RSS of the whole
/// Carpeta system: 102 MB → 57 MB (`bench/run carpeta`). mimalloc reads its options from the
/// environment when the process starts, so the process starts itself again with them; a
/// variable the user set is left as it is, and `telar serve` (one service, production) keeps the
/// faster defaults.
#[cfg(unix)]
fn lean_allocator() {
    use std::os::unix::process::CommandExt;
    const OPTIONS: [(&str, &str); 2] = [
        ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
        ("MIMALLOC_PURGE_DELAY", "0"),
    ];
    if OPTIONS
        .iter()
        .all(|(name, _)| std::env::var_os(name).is_some())
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut command = std::process::Command::new(exe);
    command.args(std::env::args_os().skip(1));
    for (name, value) in OPTIONS {
        if std::env::var_os(name).is_none() {
            command.env(name, value);
        }
    }
    // Only returns if the exec failed: then run on with the defaults.
    let error = command.exec();
    eprintln!("warning: running with the allocator's defaults ({error})");
}

#[cfg(not(unix))]
fn lean_allocator() {}
