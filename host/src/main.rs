//! `stock-host` entry point: parse configuration (one line per mistake), set up logging, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use stock_host::config::telemetry::LogFormat;
use stock_host::config::{Command, PushConfig, ServeConfig};

/// mimalloc instead of glibc's malloc: a request frees many small blocks on other threads than the ones
/// that allocated them, where glibc spent ~10 % of a cached read (`_int_free`, `malloc_consolidate`).
/// Built without transparent huge pages (feature `no_thp`) and told to return freed memory at once
/// ([`return_freed_memory_at_once`]): with mimalloc's defaults the host held ~135 MB instead of ~45 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in the `mi_option_e` enum of the mimalloc that Cargo.lock pins (libmimalloc-sys
/// 0.1.49 vendors mimalloc v3; its `mimalloc.h` numbers the options, the crate names only some of them).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// mimalloc keeps freed pages for a second (ten for whole arenas) before giving them back; what Cranelift's
/// compile at startup freed stayed resident that way. Returning them at once cost no measurable
/// throughput (docs/performance.md).
fn return_freed_memory_at_once() {
    // SAFETY: plain C calls into the linked allocator with an option number of its enum; mimalloc reads
    // options at any time, and an unknown number is ignored.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

fn main() -> ExitCode {
    return_freed_memory_at_once();
    let cli = match stock_host::cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(exit) => return exit.report(),
    };
    let config = match cli.command {
        Command::Serve(config) => config,
        Command::Push(push) => return push_component(&push),
    };
    let format = config.telemetry.log_format.unwrap_or(if std::io::stderr().is_terminal() { LogFormat::Text } else { LogFormat::Json });
    // Events are formatted on the thread that logs them and written (redacted) by a logging thread;
    // nothing is dropped when it falls behind (lossy off): callers wait instead.
    let (writer, flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .finish(stock_host::telemetry::redact::RedactingStderr);
    let builder =
        tracing_subscriber::fmt().with_env_filter(log_filter(&config)).with_writer(writer).with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
        LogFormat::Text => builder.init(),
    }
    let result = serve(*config);
    // Everything logged before the failure goes out first, then the failure as the one line the docs
    // promise (`stock-host: ...`, as for a mistake on the command line), whatever the log format.
    drop(flush_on_exit);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stock-host: {}", stock_host::telemetry::redact::redact(&format!("{error:#}")));
            // A setting the host or the build refuses is a usage error, like one clap refuses.
            ExitCode::from(if stock_host::is_settings_error(&error) { 2 } else { 1 })
        }
    }
}

/// `stock-host push`: the manifest digest on stdout, or one line saying why not.
fn push_component(config: &PushConfig) -> ExitCode {
    let pushed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(stock_host::push(config)));
    match pushed {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("stock-host push: {}", stock_host::telemetry::redact::redact(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}

fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(stock_host::run(config));
    // A file read still blocked in a worker thread (a FIFO as a token file) must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// LOG_LEVEL as a tracing filter (LOG_LEVEL was validated when it was parsed).
fn log_filter(config: &ServeConfig) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_new(config.telemetry.log_level.directives())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" {
        fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    }

    #[test]
    fn mimalloc_takes_the_purge_delay_under_the_number_we_give_it() {
        // 1000 ms is the purge delay's default and no other option's: the number names that option.
        // SAFETY: reads an option of the linked allocator.
        assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, 1000, "mimalloc's default purge delay");
        return_freed_memory_at_once();
        // SAFETY: as above.
        assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, 0);
    }
}
