//! `attrib`: run a national node of the attrib network and use it from the command line.
//!
//! Every command except `init`, `roster`, `node run` and `demo` talks to a running node through
//! its local HTTP API; the CLI never opens the store itself.

/// `println!` for the command's output: if the reader has gone away (output piped into `head`),
/// the process ends quietly, as other command-line tools do, instead of panicking.
macro_rules! outln {
    () => {
        $crate::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the command's output, like [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_out(format_args!($($arg)*))
    };
}

/// Writes to stdout; see [`outln!`].
fn write_out(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // As a process killed by SIGPIPE ends (128 + 13): quietly, but not as a success,
            // so a check whose verdict went to a closed pipe does not pass.
            std::process::exit(141);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

mod client;
mod commands;
mod render;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// attrib: a multilateral exchange of signed cyber-attribution claims.
#[derive(Parser)]
#[command(name = "attrib", version, about, propagate_version = true)]
struct Cli {
    /// The node's config file (its API address and token file are read from it).
    #[arg(
        long,
        global = true,
        help_heading = "Node connection",
        env = "ATTRIB_CONFIG",
        default_value = "node.toml"
    )]
    config: PathBuf,
    /// The node's API base URL (overrides the config), e.g. http://127.0.0.1:4711.
    #[arg(
        long,
        global = true,
        help_heading = "Node connection",
        env = "ATTRIB_API"
    )]
    api: Option<String>,
    /// The API token file (overrides the config).
    #[arg(
        long,
        global = true,
        help_heading = "Node connection",
        env = "ATTRIB_TOKEN_FILE"
    )]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a node directory: state key, node key, API token, config.
    Init(commands::InitArgs),
    /// Build or show a roster file.
    #[command(subcommand)]
    Roster(commands::RosterCommand),
    /// Run the node.
    #[command(subcommand)]
    Node(commands::NodeCommand),
    /// Submit claims.
    #[command(subcommand)]
    Claim(commands::ClaimCommand),
    /// Dispute a claim.
    Rebut(commands::RebutArgs),
    /// Take a position on another state's claim.
    Endorse(commands::EndorseArgs),
    /// Retract one of this state's claims (for good).
    Retract(commands::RetractArgs),
    /// Take back this state's endorsement and rebuttal of another state's claim.
    Withdraw(commands::WithdrawArgs),
    /// Show a claim's thread: the claim, its responses, its status.
    Show(commands::ShowArgs),
    /// List or follow the feed.
    Feed(commands::FeedArgs),
    /// Show the node's status.
    Status(commands::StatusArgs),
    /// Export the record as a STIX 2.1 bundle (up to the node's TLP ceiling).
    Export(commands::ExportArgs),
    /// Turn a STIX 2.1 attribution into a claim draft to review and submit.
    Import(commands::ImportArgs),
    /// Verify signed records: an exported STIX bundle, offline (--stix), or the node's whole store (--all).
    Verify(commands::VerifyArgs),
    /// List the fork proofs the node holds (states that signed conflicting records).
    Forks(commands::ForksArgs),
    /// Verify a fork proof offline, against a roster: proves that a state equivocated.
    VerifyProof(commands::VerifyProofArgs),
    /// Run a local demo network in this process and exit.
    Demo(commands::DemoArgs),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match commands::run(cli).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
