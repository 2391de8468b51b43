//! The command line: `stock-host serve` with every setting, or `--version` and `--help`. A mistake is
//! one line naming the environment variable (and flag) and what is accepted, instead of clap's usage block.

use clap::Parser;

use crate::config::Cli;
use crate::config::component::default_component;
use crate::runtime::engine::version_of;

/// Why the command line did not yield a configuration: help or version was asked for, or a value is wrong.
pub struct CliExit {
    message: String,
    success: bool,
}

impl CliExit {
    /// Prints the message (help and version to stdout, a mistake as one line on stderr) and gives the exit code.
    pub fn report(self) -> std::process::ExitCode {
        if self.success {
            print!("{}", self.message);
            std::process::ExitCode::SUCCESS
        } else {
            eprintln!("{}", self.message);
            std::process::ExitCode::from(2)
        }
    }
}

/// `stock-host --version`: the version, git commit, wasmtime version and the default component's digest.
pub fn long_version() -> String {
    let component = default_component();
    let digest = std::fs::read(&component).map_or_else(|_| "not found".to_owned(), |b| version_of(&b));
    format!(
        "stock-host {}\ncommit {}\nwasmtime {}\ndefault component {} ({})\n",
        env!("CARGO_PKG_VERSION"),
        env!("STOCK_HOST_COMMIT"),
        env!("STOCK_HOST_WASMTIME"),
        component.display(),
        digest
    )
}

/// Parses the command line; a mistake becomes one line naming the environment variable (and flag)
/// and what is accepted, instead of clap's usage block.
pub fn parse_args<I, T>(args: I) -> Result<Cli, CliExit>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let error = match Cli::try_parse_from(args) {
        Ok(cli) => return Ok(cli),
        Err(error) => error,
    };
    match error.kind() {
        ErrorKind::DisplayVersion => return Err(CliExit { message: long_version(), success: true }),
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            return Err(CliExit { message: error.render().to_string(), success: matches!(error.kind(), ErrorKind::DisplayHelp) });
        }
        _ => {}
    }
    let rendered = error.render().to_string();
    let reason = rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_owned();
    let flag = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.split_whitespace().next().map(|f| f.trim_start_matches('-').to_owned()),
        _ => None,
    };
    let env = flag.as_deref().and_then(|long| {
        let command = <Cli as clap::CommandFactory>::command();
        let serve = command.find_subcommand("serve")?.clone();
        serve.get_arguments().find(|a| a.get_long() == Some(long)).and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
    });
    let message = match (env, flag) {
        (Some(env), Some(flag)) => format!("stock-host: {env} (--{flag}): {reason}"),
        _ => format!("stock-host: {reason}"),
    };
    Err(CliExit { message, success: false })
}
