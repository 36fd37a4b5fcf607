//! The subcommands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use attrib_node::config::{FileConfig, node_key_text, write_secret_file};
use attrib_node::localnet::{LocalMember, local_roster, start_local_network};
use attrib_node::{Node, NodeHandle};
use attrib_protocol::{
    Attribution, Body, Claim, Endorsement, Evidence, Incident, Member, MemberSigningKey, Opinion,
    Rebuttal, RecordId, Retraction, Roster, RosterFile, Sha256Digest, Stance, StateCode, Tlp,
    Withdrawal, member_key,
};
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;

use crate::client::Client;
use crate::render;
use crate::{Cli, Command};

pub(crate) async fn run(cli: Cli) -> Result<()> {
    let client = || Client::new(&cli.config, cli.api.clone(), cli.token_file.clone());
    match cli.command {
        Command::Init(a) => init(a),
        Command::Roster(c) => roster(c),
        Command::Node(NodeCommand::Run { verify_store }) => {
            node_run(&cli.config, verify_store).await
        }
        Command::Claim(ClaimCommand::Submit(a)) => claim_submit(&client()?, a).await,
        Command::Rebut(a) => rebut(&client()?, a).await,
        Command::Endorse(a) => endorse(&client()?, a).await,
        Command::Retract(a) => retract(&client()?, a).await,
        Command::Withdraw(a) => withdraw(&client()?, a).await,
        Command::Show(a) => show(&client()?, a).await,
        Command::Feed(a) => feed(&client()?, a).await,
        Command::Status(a) => status(&client()?, a).await,
        Command::Forks(a) => forks(&client()?, a).await,
        Command::Export(a) => export(&client()?, a).await,
        Command::Import(a) => import(a),
        Command::Verify(a) if a.all => verify_all(&client()?).await,
        Command::Verify(a) => verify(a),
        Command::VerifyProof(a) => verify_proof(a),
        Command::Demo(a) => demo(a).await,
    }
}

#[derive(Args)]
pub(crate) struct InitArgs {
    /// The state's ISO 3166-1 alpha-3 code (e.g. FRA). Omit with --observer.
    #[arg(
        long,
        required_unless_present = "observer",
        conflicts_with = "observer",
        value_parser = state_arg
    )]
    state: Option<StateCode>,
    /// The state's display name.
    #[arg(long, default_value = "")]
    name: String,
    /// The directory to create.
    #[arg(long)]
    dir: PathBuf,
    /// Set up a read-only observer node (no state key).
    #[arg(long)]
    observer: bool,
    /// libp2p listen address, a multiaddr such as /ip4/0.0.0.0/tcp/4710.
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/4710", value_parser = listen_multiaddr)]
    listen: String,
    /// Local API address: an IP address and port.
    #[arg(long, default_value = "127.0.0.1:4711", value_parser = api_listen_addr)]
    api_listen: std::net::SocketAddr,
}

/// Reads an `init --api-listen` value, saying what form it takes.
fn api_listen_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|_| {
        format!(
            "{s:?} is not an IP address and port; give one such as 127.0.0.1:4711 (a host name such as localhost is not accepted)"
        )
    })
}

/// Checks an `init --listen` value, so that `node run` does not refuse it later.
fn listen_multiaddr(s: &str) -> Result<String, String> {
    attrib_node::config::parse_addrs("listen", &[s.to_string()])
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn init(a: InitArgs) -> Result<()> {
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    if a.dir.join("node.toml").exists() {
        bail!(
            "{} already holds a node (node.toml exists); choose another --dir",
            a.dir.display()
        );
    }
    let node_key = libp2p_keypair();
    write_secret_file(
        &a.dir.join("node.key"),
        node_key_text(&node_key)?.as_bytes(),
    )?;
    let token: [u8; 32] = rand_bytes();
    write_secret_file(&a.dir.join("api.token"), hex::encode(token).as_bytes())?;
    let metrics_token: [u8; 32] = rand_bytes();
    write_secret_file(
        &a.dir.join("metrics.token"),
        hex::encode(metrics_token).as_bytes(),
    )?;
    let peer_id = node_key.public().to_peer_id().to_string();
    let mut config = format!(
        "# attrib node configuration. Paths are relative to this file.\n\
         # The roster lists every member state and node; build it with `attrib roster build`.\n\
         roster = \"roster.toml\"\n\
         # Where the node keeps the whole record (sled).\n\
         data_dir = \"data\"\n\
         # libp2p identity of this node (keep private, mode 0600).\n\
         node_key = \"node.key\"\n\
         # Bearer token for the local API: writes, and reads unless api_public_reads (mode 0600).\n\
         api_token = \"api.token\"\n\
         # Bearer token that opens GET /metrics only: give this one to Prometheus (mode 0600).\n\
         metrics_token = \"metrics.token\"\n\
         # libp2p listen addresses.\n\
         listen = [\"{}\"]\n\
         # Other members' nodes to dial, e.g. \"/ip4/192.0.2.10/tcp/4710\".\n\
         bootstrap = []\n\
         # Local API (loopback by default).\n\
         api_listen = \"{}\"\n",
        a.listen, a.api_listen
    );
    if let (false, Some(state)) = (a.observer, a.state) {
        let key = MemberSigningKey::from_bytes(&rand_bytes());
        write_secret_file(
            &a.dir.join("state.key"),
            hex::encode(key.to_bytes()).as_bytes(),
        )?;
        // A key made just now has no chain anywhere: the node may sign its first record
        // before a peer can confirm that.
        attrib_node::mark_new_chain(&a.dir.join("data"), &member_key(&key))
            .with_context(|| format!("cannot create {}", a.dir.join("data").display()))?;
        config.push_str(&format!(
            "# The state this node signs for, and its record-signing key (mode 0600).\nstate = \"{state}\"\nstate_key = \"state.key\"\n"
        ));
        let name = if a.name.is_empty() {
            state.to_string()
        } else {
            a.name.clone()
        };
        let entry = toml::to_string(&RosterFile {
            network: String::new(),
            epoch: 0,
            members: vec![Member {
                code: state,
                name,
                key: member_key(&key),
                nodes: vec![peer_id.clone()],
            }],
            observers: vec![],
        })?;
        let entry: String = entry
            .lines()
            .filter(|l| !l.starts_with("network") && !l.starts_with("epoch"))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(a.dir.join("roster-entry.toml"), entry.trim_start())?;
        outln!("Created node directory {} for {state}.", a.dir.display());
        outln!("Send this roster entry (also in roster-entry.toml) to the other members:\n");
        outln!("{}", entry.trim());
    } else {
        let entry = toml::to_string(&RosterFile {
            observers: vec![attrib_protocol::Observer {
                name: if a.name.is_empty() {
                    "Observer".into()
                } else {
                    a.name.clone()
                },
                nodes: vec![peer_id.clone()],
            }],
            ..Default::default()
        })?;
        let entry = entry
            .lines()
            .filter(|l| !l.starts_with("network") && !l.starts_with("epoch"))
            .collect::<Vec<_>>()
            .join("\n");
        let entry = entry.trim_start().to_string() + "\n";
        std::fs::write(a.dir.join("roster-entry.toml"), &entry)?;
        outln!("Created observer node directory {}.", a.dir.display());
        outln!("Send this roster entry (also in roster-entry.toml) to the members:\n\n{entry}");
    }
    std::fs::write(a.dir.join("node.toml"), config)?;
    outln!(
        "\nNext: put the agreed roster at {}/roster.toml, then `attrib node run --config {}/node.toml`.",
        a.dir.display(),
        a.dir.display()
    );
    Ok(())
}

fn rand_bytes() -> [u8; 32] {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

fn libp2p_keypair() -> attrib_node::config::Keypair {
    attrib_node::config::Keypair::generate_ed25519()
}

#[derive(Subcommand)]
pub(crate) enum RosterCommand {
    /// Combine members' roster entries into a roster file and print its network id.
    Build {
        /// The network's name.
        #[arg(long)]
        network: String,
        /// Where to write the roster.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing roster file.
        #[arg(long)]
        force: bool,
        /// Roster entry files (roster-entry.toml from each `attrib init`).
        #[arg(required = true)]
        entries: Vec<PathBuf>,
    },
    /// Check a roster file and show its network id and members.
    Show {
        /// The roster file.
        file: PathBuf,
    },
}

fn roster(c: RosterCommand) -> Result<()> {
    match c {
        RosterCommand::Build {
            network,
            out,
            force,
            entries,
        } => {
            if out.exists() && !force {
                bail!(
                    "{} exists; a new roster changes the network id. Pass --force to overwrite it",
                    out.display()
                );
            }
            let mut file = RosterFile {
                network,
                ..Default::default()
            };
            for path in &entries {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let part: RosterFile = toml::from_str(&format!("network = \"x\"\n{text}"))
                    .with_context(|| format!("{} is not a roster entry", path.display()))?;
                file.members.extend(part.members);
                file.observers.extend(part.observers);
            }
            let roster = Roster::new(file)?;
            std::fs::write(&out, roster.to_toml())
                .with_context(|| format!("cannot write {}", out.display()))?;
            outln!(
                "Wrote {} ({} members, {} observers).",
                out.display(),
                roster.members().len(),
                roster.observers().len()
            );
            outln!("network id: {}", roster.network_id());
            Ok(())
        }
        RosterCommand::Show { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let roster = Roster::from_toml(&text)?;
            outln!(
                "network:    {}\nnetwork id: {}",
                roster.network_name(),
                roster.network_id()
            );
            for m in roster.members() {
                outln!(
                    "  member {} {:<24} key {} nodes {}",
                    m.code,
                    m.name,
                    m.key.short(),
                    m.nodes.len()
                );
            }
            for o in roster.observers() {
                outln!("  observer {:<24} nodes {}", o.name, o.nodes.len());
            }
            Ok(())
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum NodeCommand {
    /// Run the node until Ctrl-C (logs via RUST_LOG, default info).
    Run {
        /// Verify the whole store before serving; refuse to start if it is damaged.
        #[arg(long)]
        verify_store: bool,
    },
}

async fn node_run(config: &Path, verify_store: bool) -> Result<()> {
    init_tracing();
    let (file, mut cfg) = FileConfig::load(config)?;
    cfg.verify_on_start |= verify_store;
    let node = Node::start(cfg).await?;
    tracing::info!(peer_id = %node.handle().peer_id(), state = ?file.state, api = ?node.api_addr(), "node running; Ctrl-C (or SIGTERM) stops it");
    let signal = stop_signal().await?;
    tracing::info!(signal, "stopping");
    node.shutdown().await?;
    Ok(())
}

/// Waits for Ctrl-C (SIGINT) or, on Unix, SIGTERM (what `kill`, container runtimes and
/// most supervisors send); names the one that came.
async fn stop_signal() -> Result<&'static str> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot wait for SIGTERM")?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => {
                interrupted.context("cannot wait for Ctrl-C")?;
                Ok("SIGINT")
            }
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        Ok("Ctrl-C")
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[derive(Subcommand)]
pub(crate) enum ClaimCommand {
    /// Sign and publish a claim (from flags, or from a JSON/TOML file with --file).
    Submit(ClaimArgs),
}

#[derive(Args)]
pub(crate) struct ClaimArgs {
    /// A claim as JSON or TOML (the API's claim format), instead of the claim flags below.
    #[arg(long, conflicts_with_all = ["title", "summary", "from", "to", "accused_state", "actor", "confidence", "tlp", "sector", "tag", "files", "hashes", "evidence_kind", "evidence_note", "evidence_locator", "supersedes"])]
    file: Option<PathBuf>,
    /// Incident title.
    #[arg(long, required_unless_present = "file")]
    title: Option<String>,
    /// What was observed.
    #[arg(long, default_value = "")]
    summary: String,
    /// Start of the observed activity (RFC 3339 e.g. 2026-11-20T08:00:00Z, a date, or ms since 1970); default: --to.
    #[arg(long, value_parser = time_arg)]
    from: Option<u64>,
    /// End of the observed activity (same forms); default: now.
    #[arg(long, value_parser = time_arg)]
    to: Option<u64>,
    /// The state held responsible (ISO alpha-3).
    #[arg(long = "state", value_parser = state_arg)]
    accused_state: Option<StateCode>,
    /// The actor or group held responsible.
    #[arg(long)]
    actor: Option<String>,
    /// Confidence 0-100 (STIX 2.1 scale).
    #[arg(long, required_unless_present = "file", value_parser = clap::value_parser!(u8).range(0..=100), allow_hyphen_values = true)]
    confidence: Option<u8>,
    /// TLP marking.
    #[arg(long, value_enum, ignore_case = true, default_value = "amber")]
    tlp: TlpArg,
    /// Affected sector (repeatable).
    #[arg(long)]
    sector: Vec<String>,
    /// Tag (repeatable).
    #[arg(long)]
    tag: Vec<String>,
    #[command(flatten)]
    evidence: EvidenceArgs,
    /// Id (or unique prefix) of this state's earlier claim that this one revises.
    #[arg(long)]
    supersedes: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct EvidenceArgs {
    /// A local artefact to cite as evidence: its SHA-256 is computed here; the file is never sent (repeatable).
    #[arg(long = "evidence")]
    files: Vec<PathBuf>,
    /// An artefact to cite by its SHA-256 (64 hex digits), when the file is elsewhere, e.g. in a
    /// sandbox or another team's store (repeatable).
    #[arg(long = "evidence-sha256", value_parser = sha256_arg)]
    hashes: Vec<Sha256Digest>,
    /// The kind of the evidence artefacts (default `artefact`).
    #[arg(long)]
    evidence_kind: Option<String>,
    /// What the evidence artefacts show (published with the hash; the file name is not).
    #[arg(long)]
    evidence_note: Option<String>,
    /// Where a member state may request the evidence artefacts (a contact or an address;
    /// published with the hash).
    #[arg(long)]
    evidence_locator: Option<String>,
}

/// The SHA-256 of nothing: an empty artefact's hash proves nothing.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn sha256_arg(text: &str) -> std::result::Result<Sha256Digest, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_prefix("sha256:").unwrap_or(&t);
    if t == EMPTY_SHA256 {
        return Err("that is the SHA-256 of an empty file, which proves nothing".into());
    }
    t.parse()
        .map_err(|_| format!("{text:?} is not a SHA-256: write 64 hex digits"))
}

impl EvidenceArgs {
    fn items(&self) -> Result<Vec<Evidence>> {
        if self.files.is_empty()
            && self.hashes.is_empty()
            && (self.evidence_kind.is_some()
                || self.evidence_note.is_some()
                || self.evidence_locator.is_some())
        {
            bail!(
                "--evidence-kind, --evidence-note and --evidence-locator describe evidence: name it with --evidence FILE or --evidence-sha256 HEX"
            );
        }
        let item = |sha256| Evidence {
            kind: self
                .evidence_kind
                .clone()
                .unwrap_or_else(|| "artefact".into()),
            sha256,
            description: self.evidence_note.clone().unwrap_or_default(),
            locator: self.evidence_locator.clone(),
        };
        let mut items = Vec::new();
        for p in &self.files {
            let bytes = std::fs::read(p)
                .with_context(|| format!("cannot read evidence file {}", p.display()))?;
            if bytes.is_empty() {
                bail!(
                    "evidence file {} is empty: its hash would prove nothing; check the path",
                    p.display()
                );
            }
            items.push(item(Sha256Digest::of(&bytes)));
        }
        items.extend(self.hashes.iter().copied().map(item));
        // One artefact cited twice (as a file and by its hash) is one piece of evidence.
        let mut seen = std::collections::HashSet::new();
        items.retain(|e| seen.insert(e.sha256));
        Ok(items)
    }
}

fn tlp_query(t: TlpArg) -> &'static str {
    match t {
        TlpArg::Clear => "CLEAR",
        TlpArg::Green => "GREEN",
        TlpArg::Amber => "AMBER",
        TlpArg::AmberStrict => "AMBER%2BSTRICT",
        TlpArg::Red => "RED",
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum TlpArg {
    Clear,
    Green,
    Amber,
    #[value(alias = "amber+strict")]
    AmberStrict,
    Red,
}

/// A state code, any case.
fn state_arg(s: &str) -> std::result::Result<StateCode, String> {
    s.to_ascii_uppercase()
        .parse()
        .map_err(|e: attrib_protocol::ParseStateCodeError| e.to_string())
}

/// A time as the README gives them (RFC 3339, a date, or ms since 1970), as ms since 1970.
fn time_arg(s: &str) -> std::result::Result<u64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        // ms since 1970 has 12 digits or more since 1973; fewer is a typo (20261120?).
        if s.len() < 12 {
            return Err(format!(
                "{s:?} is too short for ms since 1970; write 2026-11-20 or 2026-11-20T08:00:00Z"
            ));
        }
        return s
            .parse()
            .map_err(|_| format!("{s:?} is too large for ms since 1970"));
    }
    let full = if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
        format!("{s}T00:00:00Z") // a date: its midnight, UTC
    } else {
        s.to_string()
    };
    let t = attrib_protocol::parse_rfc3339(&full)
        .map_err(|e| format!("{e}, a date (2026-11-20, midnight UTC) or ms since 1970"))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64))
}

/// Replaces every TOML date-time in `value` by its text.
fn datetimes_as_text(value: &mut toml::Value) {
    match value {
        toml::Value::Datetime(d) => *value = toml::Value::String(d.to_string()),
        toml::Value::Array(items) => items.iter_mut().for_each(datetimes_as_text),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| datetimes_as_text(v)),
        _ => {}
    }
}

async fn claim_submit(client: &Client, a: ClaimArgs) -> Result<()> {
    let claim: Claim = if let Some(path) = &a.file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "toml") {
            // TOML's own date-times (observed_from = 2026-11-20T08:00:00Z, unquoted) read as
            // the RFC 3339 text they are.
            let mut value: toml::Value = toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML", path.display()))?;
            datetimes_as_text(&mut value);
            value.try_into().with_context(|| {
                format!("{} is not a valid claim (read as TOML)", path.display())
            })?
        } else {
            serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a valid claim (read as JSON; name a TOML file *.toml)",
                    path.display()
                )
            })?
        }
    } else {
        if a.accused_state.is_none() && a.actor.is_none() {
            bail!("name who is responsible: --state XXX and/or --actor NAME");
        }
        let confidence = a.confidence.context("--confidence 0-100 is required")?;
        let to = a.to.unwrap_or_else(attrib_node::now_ms);
        let from = a.from.unwrap_or(to);
        if a.to.is_none() && from > to {
            bail!(
                "--from is later than now, and --to (when the incident was last observed) defaults to now: give --to, or correct --from"
            );
        }
        Claim {
            incident: Incident {
                title: a.title.clone().unwrap_or_default(),
                summary: a.summary.clone(),
                observed_from: from,
                observed_to: to,
                sectors: a.sector.clone(),
                tags: a.tag.clone(),
            },
            attributed_to: Attribution {
                state: a.accused_state,
                actor: a.actor.clone(),
            },
            confidence,
            evidence: a.evidence.items()?,
            tlp: match a.tlp {
                TlpArg::Clear => Tlp::Clear,
                TlpArg::Green => Tlp::Green,
                TlpArg::Amber => Tlp::Amber,
                TlpArg::AmberStrict => Tlp::AmberStrict,
                TlpArg::Red => Tlp::Red,
            },
            supersedes: match &a.supersedes {
                Some(id) => Some(client.resolve(id).await?),
                None => None,
            },
        }
    };
    submitted(client.post("/v1/claims", &claim).await?, a.json)
}

fn submitted(v: serde_json::Value, json: bool) -> Result<()> {
    if json {
        outln!("{v}");
    } else {
        outln!("{}", v["id"].as_str().unwrap_or_default());
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct RebutArgs {
    /// The claim's id (or a unique prefix of it, at least 8 hex digits).
    id: String,
    /// How the claim is disputed (required: a signed rebuttal cannot be taken back, only
    /// replaced or withdrawn).
    #[arg(long, value_enum)]
    stance: StanceArg,
    /// Reasons.
    #[arg(long)]
    statement: String,
    #[command(flatten)]
    evidence: EvidenceArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum StanceArg {
    Deny,
    DisputeEvidence,
    DisputeAttribution,
    PartiallyAccept,
    RequestInformation,
}

async fn rebut(client: &Client, a: RebutArgs) -> Result<()> {
    let body = Rebuttal {
        target: client.resolve(&a.id).await?,
        stance: match a.stance {
            StanceArg::Deny => Stance::Deny,
            StanceArg::DisputeEvidence => Stance::DisputeEvidence,
            StanceArg::DisputeAttribution => Stance::DisputeAttribution,
            StanceArg::PartiallyAccept => Stance::PartiallyAccept,
            StanceArg::RequestInformation => Stance::RequestInformation,
        },
        statement: a.statement,
        evidence: a.evidence.items()?,
    };
    submitted(client.post("/v1/rebuttals", &body).await?, a.json)
}

#[derive(Args)]
pub(crate) struct EndorseArgs {
    /// The claim's id (or a unique prefix of it, at least 8 hex digits).
    id: String,
    /// Agreement (STIX opinion scale).
    #[arg(long, value_enum)]
    agreement: OpinionArg,
    /// Reasons.
    #[arg(long, default_value = "")]
    statement: String,
    #[command(flatten)]
    evidence: EvidenceArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum OpinionArg {
    StronglyDisagree,
    Disagree,
    Neutral,
    Agree,
    StronglyAgree,
}

async fn endorse(client: &Client, a: EndorseArgs) -> Result<()> {
    let body = Endorsement {
        target: client.resolve(&a.id).await?,
        agreement: match a.agreement {
            OpinionArg::StronglyDisagree => Opinion::StronglyDisagree,
            OpinionArg::Disagree => Opinion::Disagree,
            OpinionArg::Neutral => Opinion::Neutral,
            OpinionArg::Agree => Opinion::Agree,
            OpinionArg::StronglyAgree => Opinion::StronglyAgree,
        },
        statement: a.statement,
        evidence: a.evidence.items()?,
    };
    submitted(client.post("/v1/endorsements", &body).await?, a.json)
}

#[derive(Args)]
pub(crate) struct RetractArgs {
    /// The claim's id, or a unique prefix (one of this state's own claims).
    id: String,
    /// Why.
    #[arg(long)]
    reason: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

async fn retract(client: &Client, a: RetractArgs) -> Result<()> {
    let body = Retraction {
        target: client.resolve(&a.id).await?,
        reason: a.reason,
    };
    submitted(client.post("/v1/retractions", &body).await?, a.json)
}

#[derive(Args)]
pub(crate) struct WithdrawArgs {
    /// The claim's id, or a unique prefix (another state's claim this state endorsed or
    /// rebutted).
    id: String,
    /// Why.
    #[arg(long)]
    reason: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

async fn withdraw(client: &Client, a: WithdrawArgs) -> Result<()> {
    let body = Withdrawal {
        target: client.resolve(&a.id).await?,
        reason: a.reason,
    };
    submitted(client.post("/v1/withdrawals", &body).await?, a.json)
}

#[derive(Args)]
pub(crate) struct ShowArgs {
    /// The claim's (or any record's) id, or a unique prefix of at least 8 hex digits.
    id: String,
    /// Show it even if it is above the node's TLP ceiling (needs the API token).
    #[arg(long)]
    include_red: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

async fn show(client: &Client, a: ShowArgs) -> Result<()> {
    let q = if a.include_red {
        "?include_red=true"
    } else {
        ""
    };
    let record: serde_json::Value = client.get(&format!("/v1/records/{}{q}", a.id)).await?;
    if record["record"]["body"]["kind"] != "claim" {
        if a.json {
            outln!("{record}");
        } else {
            out!("{}", render::entry(&record));
        }
        return Ok(());
    }
    let thread: serde_json::Value = client.get(&format!("/v1/threads/{}{q}", a.id)).await?;
    if a.json {
        outln!("{thread}");
    } else {
        out!("{}", render::thread(&thread));
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct FeedArgs {
    /// Keep streaming new records as they arrive.
    #[arg(long)]
    follow: bool,
    /// Start after this cursor.
    #[arg(long, default_value_t = 0)]
    since: u64,
    /// Only this kind.
    #[arg(long, value_parser = attrib_protocol::KIND_NAMES)]
    kind: Option<String>,
    /// Only records by this state.
    #[arg(long, value_parser = state_arg)]
    author: Option<StateCode>,
    /// Only claims about (attributing to) this state, and responses to them.
    #[arg(long, value_parser = state_arg)]
    about: Option<StateCode>,
    /// Only claims about this node's own state (what a national CERT most needs to see).
    #[arg(long, conflicts_with = "about")]
    about_us: bool,
    /// Only records marked at most this TLP level.
    #[arg(long, value_enum, ignore_case = true)]
    tlp: Option<TlpArg>,
    /// Include records above the node's TLP ceiling (with the default ceiling AMBER: AMBER+STRICT
    /// and RED), for a local reader only (needs the API token).
    #[arg(long)]
    include_red: bool,
    /// At most this many (without --follow; 1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=attrib_node::api::MAX_PAGE as u64))]
    limit: u64,
    /// The feed id of the store the --since cursor came from (printed with it): a node whose
    /// store is another one (its data dir was rebuilt; cursors start again) is refused, or
    /// with --follow read from the start.
    #[arg(long)]
    feed_id: Option<String>,
    /// NDJSON output, one entry per line.
    #[arg(long)]
    json: bool,
}

/// The feed id a feed response names (none from a node older than feed ids).
fn feed_id_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(attrib_node::api::FEED_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn feed(client: &Client, a: FeedArgs) -> Result<()> {
    let mut query = Vec::new();
    if let Some(k) = &a.kind {
        query.push(format!("kind={k}"));
    }
    if let Some(s) = a.author {
        query.push(format!("author={s}"));
    }
    if let Some(s) = a.about {
        query.push(format!("about={s}"));
    }
    if a.about_us {
        query.push("about_us=true".into());
    }
    if let Some(t) = a.tlp {
        query.push(format!("tlp={}", tlp_query(t)));
    }
    if a.include_red {
        query.push("include_red=true".into());
    }
    let print = |e: &serde_json::Value| {
        if a.json {
            outln!("{e}");
        } else {
            out!("{}", render::feed_line(e));
        }
    };
    if !a.follow {
        query.push(format!("since={}", a.since));
        query.push(format!("limit={}", a.limit));
        let resp = client
            .stream(&format!("/v1/feed?{}", query.join("&")))
            .await?;
        let node_feed_id = feed_id_of(&resp);
        if let (Some(want), Some(is)) = (&a.feed_id, &node_feed_id)
            && want != is
        {
            bail!(
                "the node's store (feed id {is}) is not the one cursor {} came from (feed id {want}): the cursor is another node's, or this node's data dir was rebuilt (its cursors start again). Read this node from the start (--since 0, without --feed-id) and skip records you hold, by id",
                a.since
            );
        }
        let page: serde_json::Value = resp.json().await.context("the node sent no feed page")?;
        let entries = page["entries"].as_array().map_or(&[][..], Vec::as_slice);
        for e in entries {
            print(e);
        }
        if page["more"] == true
            && let Some(next) = page["next"].as_u64()
        {
            match node_feed_id {
                Some(id) => eprintln!(
                    "(more may follow: continue with the same options and --since {next} --feed-id {id})"
                ),
                None => {
                    eprintln!(
                        "(more may follow: continue with the same options and --since {next})"
                    )
                }
            }
        }
        return Ok(());
    }
    follow_feed(client, &query, a.since, a.feed_id, print).await
}

/// Streams the feed from after `since` until stopped. When the node goes away after the first
/// connection (it restarts or stops, the connection breaks) it says so on stderr and connects
/// again, waiting 1 s, then longer up to 10 s while nothing comes through, and resumes after
/// the last cursor printed. Records seen before that come again under new cursors after a
/// node crash (BENCHMARKS: cursors are reserved in blocks); they are recognised by id and not
/// printed twice. A node whose data dir was rebuilt meanwhile has another feed id and cursors
/// that start again: the follower then reads it from the start, printing only what it has not
/// printed. `feed_id`, the store `since` came from, is checked at the first connection the
/// same way. A node that cannot be reached at the first try, or that refuses the request, ends
/// it with the reason.
async fn follow_feed(
    client: &Client,
    query: &[String],
    since: u64,
    feed_id: Option<String>,
    print: impl Fn(&serde_json::Value),
) -> Result<()> {
    let mut last = since;
    let mut seen = RecentIds::default();
    let mut wait = FIRST_WAIT;
    // Why the node was lost, once said (so a node that stays away is not reported each try).
    let mut lost: Option<String> = None;
    let mut connected_once = false;
    let mut feed_id = feed_id;
    // Whether a response comes from another store than the cursor (a node that names no feed
    // id, an older version, is taken to be the same).
    let other_store = |resp: &reqwest::Response, feed_id: &mut Option<String>, first: bool| {
        let now = feed_id_of(resp);
        let changed = matches!((&*feed_id, &now), (Some(was), Some(is)) if was != is);
        if now.is_some() {
            *feed_id = now;
        }
        if changed {
            eprintln!(
                "(the node's store is not the one the cursor came from (another node's cursor, or a rebuilt data dir): reading it from the start; {})",
                if first {
                    "records an earlier run printed come again: skip them by id"
                } else {
                    "records already printed are skipped"
                }
            );
        }
        changed
    };
    const PROBE: &str = "/v1/feed?since=0&limit=1";
    loop {
        if connected_once || feed_id.is_some() {
            // Is it still the store the cursor came from? (Asked first: a cursor beyond the
            // new store's last is refused.)
            let probe = if connected_once {
                client.stream_or_unreachable(PROBE).await?
            } else {
                Ok(client.stream(PROBE).await?)
            };
            match probe {
                Ok(resp) => {
                    if other_store(&resp, &mut feed_id, !connected_once) {
                        last = 0;
                    }
                }
                Err(why) => {
                    node_away(why, &mut lost, &mut wait).await;
                    continue;
                }
            }
        }
        let path = format!("/v1/feed/stream?{}&since={last}", query.join("&"));
        let resp = if connected_once {
            match client.stream_or_unreachable(&path).await? {
                // The store may have changed since the question above.
                Ok(resp) if other_store(&resp, &mut feed_id, false) => {
                    last = 0;
                    continue;
                }
                Ok(resp) => resp,
                Err(why) => {
                    node_away(why, &mut lost, &mut wait).await;
                    continue;
                }
            }
        } else {
            let resp = client.stream(&path).await?;
            if other_store(&resp, &mut feed_id, true) {
                last = 0;
                continue;
            }
            resp
        };
        connected_once = true;
        if lost.take().is_some() {
            eprintln!("(connected again; resuming after cursor {last})");
        }
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut broke = false;
        let mut events = 0usize;
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else {
                broke = true;
                break;
            };
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = buf.drain(..end + 2).collect();
                let event = String::from_utf8_lossy(&raw);
                let data: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                let e: serde_json::Value = serde_json::from_str(&data).context("bad feed event")?;
                events += 1;
                last = e["cursor"].as_u64().unwrap_or(last);
                if seen.first_time(e["record"]["id"].as_str()) {
                    print(&e);
                }
            }
        }
        let why = if broke {
            "the connection to the node broke"
        } else {
            "the node closed the feed stream (it is stopping?)"
        };
        // A stream that brought records was healthy: the next try comes soon. One that closed
        // with nothing (a node that keeps ending the stream) waits longer each time.
        if events > 0 {
            wait = FIRST_WAIT;
        }
        eprintln!(
            "({why}; reconnecting in {} s, to resume after cursor {last})",
            wait.as_secs()
        );
        lost = Some(why.to_string());
        tokio::time::sleep(wait).await;
        if events == 0 {
            wait = (wait * 2).min(MAX_WAIT);
        }
    }
}

/// A follower's first wait before connecting again, and its longest.
const FIRST_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(10);

/// Says once that the node cannot be reached (not each try), then waits before the next try,
/// longer each time.
async fn node_away(why: String, lost: &mut Option<String>, wait: &mut Duration) {
    if lost.is_none() {
        eprintln!("({why}; trying again until it is back)");
        *lost = Some(why);
    }
    tokio::time::sleep(*wait).await;
    *wait = (*wait * 2).min(MAX_WAIT);
}

/// The ids of the last records printed by a follower, to print none twice.
#[derive(Default)]
struct RecentIds {
    ids: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
}

impl RecentIds {
    /// Enough for every record a node can show again after a crash (those it had not yet
    /// flushed: well under a second of traffic).
    const KEEP: usize = 100_000;

    /// Whether `id` is new (it is remembered); entries without an id always are.
    fn first_time(&mut self, id: Option<&str>) -> bool {
        let Some(id) = id else { return true };
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > Self::KEEP
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

#[derive(Args)]
pub(crate) struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

async fn status(client: &Client, a: StatusArgs) -> Result<()> {
    let s: serde_json::Value = client.get("/v1/status").await?;
    if a.json {
        outln!("{s}");
    } else {
        out!("{}", render::status(&s));
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// Export as a STIX 2.1 bundle (the only format).
    #[arg(long, required = true)]
    stix: bool,
    /// Start after this feed cursor.
    #[arg(long, default_value_t = 0)]
    since: u64,
    /// At most this many records (1 to 10000; continue with --since for more).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=attrib_node::api::MAX_EXPORT as u64))]
    limit: u64,
    /// Include records above the node's TLP ceiling, up to RED (needs the API token; keep the
    /// result inside your organisation).
    #[arg(long)]
    include_red: bool,
}

async fn export(client: &Client, a: ExportArgs) -> Result<()> {
    let mut path = format!("/v1/stix?since={}&limit={}", a.since, a.limit);
    if a.include_red {
        path.push_str("&include_red=true");
    }
    let resp = client.stream(&path).await?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (more, next) = (header("x-attrib-more"), header("x-attrib-next"));
    let bundle: serde_json::Value = resp.json().await.context("the node sent no STIX bundle")?;
    outln!("{}", serde_json::to_string_pretty(&bundle)?);
    if more.as_deref() == Some("true")
        && let Some(next) = next
    {
        eprintln!("(more records follow: continue with --since {next})");
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// The STIX 2.1 bundle to read an attribution from.
    #[arg(long)]
    stix: PathBuf,
    /// Which attrib claim of the bundle (its record id, or a unique prefix), when it holds
    /// several.
    #[arg(long)]
    id: Option<String>,
}

fn import(a: ImportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.stix)
        .with_context(|| format!("cannot read {}", a.stix.display()))?;
    let bundle: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", a.stix.display()))?;
    let claim =
        attrib_node::stix::claim_from_stix(&bundle, a.id.as_deref()).map_err(anyhow::Error::msg)?;
    outln!("{}", serde_json::to_string_pretty(&claim)?);
    eprintln!(
        "This is a draft: review it (save it as claim.json), then `attrib claim submit --file claim.json`."
    );
    Ok(())
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["all", "stix"])))]
pub(crate) struct VerifyArgs {
    /// Verify the running node's whole store on disk: every signature, every chain link, and that
    /// every record the node holds is still there.
    #[arg(long, conflicts_with = "stix")]
    all: bool,
    /// A STIX bundle exported by attrib, to verify offline.
    #[arg(long, requires = "roster")]
    stix: Option<PathBuf>,
    /// The network's roster file (with --stix).
    #[arg(long)]
    roster: Option<PathBuf>,
}

async fn verify_all(client: &Client) -> Result<()> {
    let report: serde_json::Value = client.post("/v1/verify", &serde_json::json!({})).await?;
    let problems = report["problems"].as_array().cloned().unwrap_or_default();
    for p in &problems {
        eprintln!("damage: {}", p.as_str().unwrap_or(""));
    }
    outln!(
        "{} record(s) checked, {} problem(s)",
        report["records_checked"],
        problems.len()
    );
    if !problems.is_empty() {
        bail!(
            "the store is damaged; stop the node, move its data dir aside and restart it: it rebuilds the record from peers"
        );
    }
    Ok(())
}

struct StixVerify {
    stix: PathBuf,
    roster: PathBuf,
}

fn verify(a: VerifyArgs) -> Result<()> {
    let (Some(stix), Some(roster)) = (a.stix, a.roster) else {
        bail!("give --stix BUNDLE --roster ROSTER, or --all");
    };
    let a = StixVerify { stix, roster };
    let text = std::fs::read_to_string(&a.stix)
        .with_context(|| format!("cannot read {}", a.stix.display()))?;
    let bundle: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", a.stix.display()))?;
    let roster_text = std::fs::read_to_string(&a.roster)
        .with_context(|| format!("cannot read {}", a.roster.display()))?;
    let roster = Roster::from_toml(&roster_text)?;
    let report = attrib_node::stix::verify_bundle(&bundle, &roster);
    for p in &report.problems {
        eprintln!("problem: {p}");
    }
    outln!(
        "{} signed record(s) verified, {} other object(s) checked against them, {} problem(s)",
        report.verified,
        report.unsigned,
        report.problems.len()
    );
    if report.properties_unchecked > 0 {
        outln!(
            "{} object(s) made with records not in this bundle: their signed records verify, their other STIX properties were not compared",
            report.properties_unchecked
        );
    }
    if !report.problems.is_empty() {
        bail!(
            "the bundle does not verify against network {}",
            roster.network_id()
        );
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct ForksArgs {
    /// Also write each proof to DIR/<proof id>.proof (hex), for `attrib verify-proof`.
    #[arg(long)]
    export: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

async fn forks(client: &Client, a: ForksArgs) -> Result<()> {
    // The operator's own node: with the token, proofs whose records are marked above the TLP
    // ceiling come whole too.
    let path = if client.has_token() {
        "/v1/forks?include_red=true"
    } else {
        "/v1/forks"
    };
    let proofs: Vec<serde_json::Value> = client.get(path).await?;
    if a.json {
        outln!("{}", serde_json::Value::Array(proofs.clone()));
    }
    for p in &proofs {
        if !a.json {
            outln!(
                "{} EQUIVOCATED: records {} (seq {}) and {} (seq {}) conflict; proof {}",
                p["author_state"].as_str().unwrap_or("?"),
                p["records"][0]
                    .as_str()
                    .and_then(|s| s.get(..12))
                    .unwrap_or("?"),
                p["seqs"][0],
                p["records"][1]
                    .as_str()
                    .and_then(|s| s.get(..12))
                    .unwrap_or("?"),
                p["seqs"][1],
                p["id"].as_str().unwrap_or(""),
            );
        }
        if let Some(dir) = &a.export {
            // The file is named by the proof id, which must be one (not a path).
            let id: attrib_protocol::RecordId = p["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .context("the node listed a proof without a valid id")?;
            let Some(proof) = p["proof"].as_str() else {
                eprintln!(
                    "proof {id} not exported: {}",
                    p["withheld"].as_str().unwrap_or("the node sent no proof")
                );
                continue;
            };
            std::fs::create_dir_all(dir)?;
            let path = dir.join(format!("{id}.proof"));
            std::fs::write(&path, proof)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    if proofs.is_empty() && !a.json {
        outln!("no forks known: no state has signed conflicting records");
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct VerifyProofArgs {
    /// The proof file (hex, as written by `attrib forks --export`, or raw bytes).
    file: PathBuf,
    /// The network's roster file.
    #[arg(long)]
    roster: PathBuf,
}

fn verify_proof(a: VerifyProofArgs) -> Result<()> {
    let raw =
        std::fs::read(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let bytes = match std::str::from_utf8(&raw)
        .ok()
        .and_then(|t| hex::decode(t.trim()).ok())
    {
        Some(b) => b,
        None => raw,
    };
    let text = std::fs::read_to_string(&a.roster)
        .with_context(|| format!("cannot read {}", a.roster.display()))?;
    let roster = Roster::from_toml(&text)?;
    let proof = attrib_protocol::ForkProof::decode(&bytes)
        .with_context(|| format!("{} is not a fork proof", a.file.display()))?;
    let author = proof.verify(&roster).with_context(|| {
        format!(
            "{} does not prove a fork on network {}",
            a.file.display(),
            roster.network_id()
        )
    })?;
    let state = roster
        .member_by_key(&author)
        .map_or("?".to_string(), |m| m.code.to_string());
    let (x, y) = proof.records();
    outln!(
        "VALID: {state} signed two conflicting records: {} (seq {}) and {} (seq {})",
        x.id(),
        x.seq(),
        y.id(),
        y.seq()
    );
    Ok(())
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// How many national nodes (at least 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(3..=64))]
    nodes: u16,
}

async fn demo(a: DemoArgs) -> Result<()> {
    let timeout = Duration::from_secs(30);
    let members: Vec<LocalMember> = (0..a.nodes as usize)
        .map(|i| LocalMember::new(2026, i))
        .collect();
    let roster = local_roster(&members, &[]);
    outln!(
        "Starting {} national nodes on loopback (network id {}) ...",
        members.len(),
        roster.network_id().short()
    );
    let nodes = start_local_network(&members, &roster, None, None, timeout).await?;
    let handles: Vec<NodeHandle> = nodes.iter().map(Node::handle).collect();
    let (fra, deu, rus) = (&handles[0], &handles[1], &handles[2]);
    let now = attrib_node::now_ms();
    let claim = fra
        .submit(Body::Claim(Claim {
            incident: Incident {
                title: "Wiper attack on grid operator".into(),
                summary: "Destructive malware on SCADA engineering workstations; 40 substations offline for 6 hours.".into(),
                observed_from: now - 3 * 86_400_000,
                observed_to: now - 2 * 86_400_000,
                sectors: vec!["energy".into()],
                tags: vec!["wiper".into(), "ics".into()],
            },
            attributed_to: Attribution { state: Some(members[2].code), actor: Some("APT-DEMO".into()) },
            confidence: 75,
            evidence: vec![Evidence {
                kind: "malware-sample".into(),
                sha256: Sha256Digest::of(b"demo wiper sample"),
                description: "wiper binary recovered from 3 hosts".into(),
                locator: None,
            }],
            tlp: Tlp::Green,
            supersedes: None,
        }))
        .await?;
    outln!("{} submitted claim {}", members[0].code, claim.id.short());
    wait_everywhere(&handles, &claim.id, timeout).await?;
    let rebuttal = rus
        .submit(Body::Rebuttal(Rebuttal {
            target: claim.id,
            stance: Stance::Deny,
            statement: "No agency of ours was involved; the infrastructure cited is a rented VPS."
                .into(),
            evidence: vec![],
        }))
        .await?;
    outln!(
        "{} (the accused) submitted rebuttal {}",
        members[2].code,
        rebuttal.id.short()
    );
    let endorsement = deu
        .submit(Body::Endorsement(Endorsement {
            target: claim.id,
            agreement: Opinion::Agree,
            statement: "Matches loader hashes in our own incident data.".into(),
            evidence: vec![],
        }))
        .await?;
    outln!(
        "{} submitted endorsement {}",
        members[1].code,
        endorsement.id.short()
    );
    wait_everywhere(&handles, &rebuttal.id, timeout).await?;
    wait_everywhere(&handles, &endorsement.id, timeout).await?;
    outln!();
    for (h, m) in handles.iter().zip(&members) {
        let thread = h
            .thread(&claim.id, attrib_protocol::Tlp::Red)?
            .context("claim missing on a node")?;
        outln!(
            "[{} node] {} response(s): {}",
            m.code,
            thread.responses.len(),
            thread.status.headline()
        );
    }
    for node in nodes {
        node.shutdown().await?;
    }
    outln!(
        "\nAll {} nodes hold the same thread. Demo done.",
        members.len()
    );
    Ok(())
}

async fn wait_everywhere(handles: &[NodeHandle], id: &RecordId, timeout: Duration) -> Result<()> {
    for h in handles {
        if !h.wait_for_record(id, timeout).await {
            bail!(
                "record {} did not reach node {} within {timeout:?}",
                id.short(),
                h.peer_id()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_claim_file_may_write_times_as_toml_date_times() {
        let text = r#"
confidence = 70
tlp = "AMBER"
[incident]
title = "Grid outage"
observed_from = 2026-11-20T08:00:00Z
observed_to = "2026-11-20T14:00:00+02:00"
[attributed_to]
state = "RUS"
"#;
        let mut value: toml::Value = toml::from_str(text).unwrap();
        datetimes_as_text(&mut value);
        let claim: Claim = value.try_into().unwrap();
        assert_eq!(claim.incident.observed_from, 1_795_161_600_000);
        assert_eq!(
            claim.incident.observed_to,
            1_795_161_600_000 + 4 * 3_600_000
        );
    }
}
