//! The `attrib` binary end to end: init two national nodes, build the roster, run both node
//! processes, submit a claim with a hashed evidence file on one, follow the feed and show the
//! thread on the other, rebut, and check the errors a person sees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

fn attrib(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attrib"))
        .args(args)
        .env_remove("ATTRIB_CONFIG")
        .output()
        .expect("attrib runs")
}

fn ok(args: &[&str]) -> String {
    let out = attrib(args);
    assert!(
        out.status.success(),
        "attrib {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop.
struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a child's stream, delivered over a channel so waits can have a deadline.
fn lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + DEADLINE;
    let mut seen: Vec<String> = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "timed out waiting for {what}; the last lines were:\n{}",
                seen[seen.len().saturating_sub(8)..].join("\n")
            ),
        }
    }
}

/// `attrib feed --follow --json` with `args`, running until dropped; returns it with its
/// output lines and its notes (stderr) lines.
fn follow_feed(args: &[&str]) -> (Running, mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let mut follow = Command::new(env!("CARGO_BIN_EXE_attrib"))
        .args(["feed", "--follow", "--json"])
        .args(args)
        .env_remove("ATTRIB_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let feed = lines(follow.stdout.take().unwrap());
    let notes = lines(follow.stderr.take().unwrap());
    (Running(follow), feed, notes)
}

/// `attrib init` of a FRA node in `dir`/fra, alone in the roster of network `network`;
/// returns its config file.
fn one_node_network(dir: &Path, network: &str) -> String {
    let d = |p: &str| dir.join(p).to_str().unwrap().to_string();
    ok(&[
        "init",
        "--state",
        "FRA",
        "--dir",
        &d("fra"),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api-listen",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    ok(&[
        "roster",
        "build",
        "--network",
        network,
        "--out",
        &d("fra/roster.toml"),
        &d("fra/roster-entry.toml"),
    ]);
    d("fra/node.toml")
}

/// `attrib claim submit` of a claim titled `title` against an actor, through the node of
/// config `cfg`.
fn submit_claim(cfg: &str, title: &str) -> String {
    ok(&[
        "claim",
        "submit",
        "--config",
        cfg,
        "--title",
        title,
        "--actor",
        "APT-X",
        "--confidence",
        "40",
    ])
}

/// [`run_node`], returning once the node's API listens.
fn run_node_until_api(config: &Path) -> (Running, mpsc::Receiver<String>) {
    let (node, log) = run_node(config);
    wait_line(&log, "the API to listen", |l| {
        l.contains("local API listening")
    });
    (node, log)
}

fn run_node(config: &Path) -> (Running, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_attrib"))
        .args(["node", "run", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = lines(child.stderr.take().unwrap());
    (Running(child), log)
}

#[test]
fn two_national_nodes_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
    let (api_fra, api_rus) = (free_port(), free_port());
    ok(&[
        "init",
        "--state",
        "FRA",
        "--name",
        "France",
        "--dir",
        &d("fra"),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api-listen",
        &format!("127.0.0.1:{api_fra}"),
    ]);
    let rus_out = ok(&[
        "init",
        "--state",
        "RUS",
        "--name",
        "Russia",
        "--dir",
        &d("rus"),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api-listen",
        &format!("127.0.0.1:{api_rus}"),
    ]);
    assert!(
        rus_out.contains("[[member]]") && rus_out.contains("code = \"RUS\""),
        "{rus_out}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [
            "fra/state.key",
            "fra/node.key",
            "fra/api.token",
            "fra/metrics.token",
        ] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f} must be owner-only");
        }
    }
    let built = ok(&[
        "roster",
        "build",
        "--network",
        "cli-test",
        "--out",
        &d("roster.toml"),
        &d("fra/roster-entry.toml"),
        &d("rus/roster-entry.toml"),
    ]);
    assert!(built.contains("network id:"), "{built}");
    for node in ["fra", "rus"] {
        std::fs::copy(
            dir.path().join("roster.toml"),
            dir.path().join(node).join("roster.toml"),
        )
        .unwrap();
    }
    let (fra_cfg, rus_cfg) = (d("fra/node.toml"), d("rus/node.toml"));
    let (_fra, fra_log) = run_node(Path::new(&fra_cfg));
    // FRA listens on a port of the system's choosing; RUS dials what FRA says it is.
    let (mut fra_addr, mut fra_api) = (None, false);
    while fra_addr.is_none() || !fra_api {
        let line = wait_line(&fra_log, "FRA's API and FRA to listen", |l| {
            l.contains("listening")
        });
        if line.contains("local API listening") {
            fra_api = true;
        } else if let Some(a) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("address="))
        {
            fra_addr = Some(a.to_string());
        }
    }
    let fra_addr = fra_addr.unwrap_or_default();
    let text = std::fs::read_to_string(&rus_cfg).unwrap().replace(
        "bootstrap = []",
        &format!("bootstrap = [\"{fra_addr}\"]\nheartbeat_ms = 100"),
    );
    std::fs::write(&rus_cfg, text).unwrap();
    let (_rus, rus_log) = run_node_until_api(Path::new(&rus_cfg));

    // Wait until RUS sees FRA on the record topic (gossip would otherwise find no peer; catch-up
    // sync would still deliver, but this test is about the live path).
    wait_line(&rus_log, "RUS to see FRA join the record topic", |l| {
        l.contains("peer joined the record topic")
    });

    let (_follow, feed, _notes) = follow_feed(&["--about", "RUS", "--config", &rus_cfg]);

    let evidence = dir.path().join("sample.bin");
    std::fs::write(&evidence, b"wiper sample bytes").unwrap();
    let id = ok(&[
        "claim",
        "submit",
        "--config",
        &fra_cfg,
        "--title",
        "Grid outage",
        "--summary",
        "Wiper on SCADA",
        "--state",
        "RUS",
        "--actor",
        "APT-X",
        "--confidence",
        "80",
        "--tlp",
        "green",
        "--from",
        "2026-11-20T08:00:00Z",
        "--to",
        "2026-11-20T14:00:00Z",
        "--evidence",
        evidence.to_str().unwrap(),
        "--evidence-kind",
        "malware-sample",
    ])
    .trim()
    .to_string();
    assert_eq!(id.len(), 64, "claim submit prints the record id: {id}");

    let line = wait_line(&feed, "the claim in RUS's followed feed", |l| {
        l.contains(&id)
    });
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["author_state"], "FRA");
    // The evidence hash is the artefact's SHA-256; the artefact itself never travels.
    let expected = attrib_protocol::Sha256Digest::of(b"wiper sample bytes").to_hex();
    assert_eq!(
        entry["record"]["body"]["evidence"][0]["sha256"],
        expected.as_str()
    );
    assert!(!line.contains("wiper sample bytes"));

    let rebuttal = ok(&[
        "rebut",
        &id,
        "--config",
        &rus_cfg,
        "--stance",
        "dispute-evidence",
        "--statement",
        "Public tool.",
    ]);
    assert_eq!(rebuttal.trim().len(), 64);
    let shown = ok(&["show", &id, "--config", &rus_cfg]);
    assert!(shown.contains("Grid outage"), "{shown}");
    assert!(
        shown.contains("attributed to RUS (APT-X), confidence 80"),
        "{shown}"
    );
    assert!(
        shown.contains("rebutted by RUS, the accused (dispute-evidence)"),
        "{shown}"
    );
    let status = ok(&["status", "--config", &fra_cfg]);
    assert!(status.contains("state FRA"), "{status}");
    let listed = ok(&["feed", "--config", &rus_cfg]);
    assert!(
        listed.contains("FRA -> RUS (80%, TLP:GREEN): Grid outage"),
        "{listed}"
    );
    // A feed cut at --limit says where to go on.
    let out = attrib(&["feed", "--limit", "1", "--config", &rus_cfg]);
    let hint = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        hint.contains("continue with the same options and --since 1 --feed-id "),
        "{hint}"
    );
    // The cursor goes on with the store it came from, and not with another one.
    let feed_id = hint
        .split("--feed-id ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap()
        .to_string();
    ok(&[
        "feed",
        "--since",
        "1",
        "--feed-id",
        &feed_id,
        "--config",
        &rus_cfg,
    ]);
    let out = attrib(&[
        "feed",
        "--since",
        "1",
        "--feed-id",
        "0123abcd",
        "--config",
        &rus_cfg,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("is not the one cursor 1 came from (feed id 0123abcd)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // STIX out, verified offline, and back in as a claim draft.
    let bundle = ok(&["export", "--stix", "--config", &rus_cfg]);
    std::fs::write(dir.path().join("bundle.json"), &bundle).unwrap();
    let verified = ok(&[
        "verify",
        "--stix",
        &d("bundle.json"),
        "--roster",
        &d("roster.toml"),
    ]);
    assert!(
        verified.contains("2 signed record(s) verified") && verified.contains("0 problem(s)"),
        "{verified}"
    );
    let draft = ok(&["import", "--stix", &d("bundle.json")]);
    let draft: serde_json::Value = serde_json::from_str(&draft).unwrap();
    assert_eq!(draft["confidence"], 80);
    assert_eq!(draft["attributed_to"]["actor"], "APT-X");

    // Errors a person sees.
    let out = attrib(&[
        "show",
        &id,
        "--api",
        "http://127.0.0.1:1",
        "--token-file",
        &d("fra/api.token"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is it running"));
    // A command that fails, saying `what` on stderr.
    let fails_saying = |args: &[&str], what: &str| {
        let out = attrib(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(what),
            "{args:?}: {err}"
        );
        out
    };
    // The libp2p port given as the API: something answers, and the error says what to check.
    let libp2p_port = fra_addr.rsplit('/').next().unwrap_or_default();
    fails_saying(
        &[
            "status",
            "--api",
            &format!("http://127.0.0.1:{libp2p_port}"),
            "--token-file",
            &d("fra/api.token"),
        ],
        "not the node's API",
    );
    let out = attrib(&[
        "claim",
        "submit",
        "--config",
        &fra_cfg,
        "--title",
        "x",
        "--state",
        "RUS",
        "--confidence",
        "150",
    ]);
    assert_eq!(out.status.code(), Some(2), "bad CLI args exit 2");
    let out = fails_saying(
        &["status", "--api", "htp://127.0.0.1:1"],
        "the scheme must be http, not \"htp\"",
    );
    assert_eq!(out.status.code(), Some(1));
    // A rebuttal's stance is said, never assumed: a signed rebuttal cannot be taken back.
    let out = fails_saying(
        &[
            "rebut",
            &id,
            "--config",
            &rus_cfg,
            "--statement",
            "no stance",
        ],
        "--stance",
    );
    assert_eq!(out.status.code(), Some(2), "rebut without --stance");
    let out = attrib(&["init", "--state", "FRA", "--observer", "--dir", &d("both")]);
    assert_eq!(out.status.code(), Some(2), "init --state with --observer");
    fails_saying(
        &[
            "show",
            &id,
            "--api",
            "http://127.0.0.1:1",
            "--token-file",
            &d("no-such-token"),
        ],
        "the API token file",
    );
    let out = attrib(&["feed", "--limit", "0", "--config", &fra_cfg]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "feed --limit 0 is a bad argument"
    );
    let out = attrib(&["show", "nothex", "--config", &fra_cfg]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("64 hex digits"));
    let out = attrib(&["retract", &id, "--config", &rus_cfg, "--reason", "not mine"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only the author"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // RUS takes its rebuttal back: the thread no longer counts it, and says who withdrew.
    let out = attrib(&["withdraw", &id, "--config", &fra_cfg, "--reason", "mine"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retract or revise it instead"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let withdrawn = ok(&[
        "withdraw",
        &id[..12],
        "--config",
        &rus_cfg,
        "--reason",
        "Settled bilaterally.",
    ]);
    assert_eq!(withdrawn.trim().len(), 64, "{withdrawn}");
    let shown = ok(&["show", &id, "--config", &rus_cfg]);
    assert!(!shown.contains("rebutted by RUS"), "{shown}");
    assert!(shown.contains("RUS withdrew its rebuttal"), "{shown}");
    assert!(
        shown.contains("[no longer counts: replaced or withdrawn]"),
        "{shown}"
    );
    assert!(shown.contains("withdraws its position on claim"), "{shown}");
    let out = attrib(&["withdraw", &id, "--config", &rus_cfg, "--reason", "again"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no standing endorsement or rebuttal"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A revision: the revised claim's thread names the claim that replaced it.
    let revised = ok(&[
        "claim",
        "submit",
        "--config",
        &fra_cfg,
        "--title",
        "Grid outage (revised)",
        "--state",
        "RUS",
        "--confidence",
        "90",
        "--tlp",
        "green",
        "--supersedes",
        &id[..12],
    ]);
    let revised = revised.trim();
    assert_eq!(revised.len(), 64, "{revised}");
    let shown = ok(&["show", &id, "--config", &fra_cfg]);
    assert!(
        shown.contains(&format!("superseded by revised claim {revised}")),
        "{shown}"
    );
}

#[test]
fn kill_9_during_a_burst_of_submissions_loses_no_acknowledged_record() {
    // Four analysts submit claims in a loop; the node process is killed with SIGKILL mid-burst.
    // After a restart on the same data dir every claim whose submission was acknowledged
    // (an id printed) is there, and the state's chain continues.
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_node_network(dir.path(), "kill-test");
    let (node, _log) = run_node_until_api(Path::new(&cfg));

    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let submitters: Vec<_> = (0..4)
        .map(|t| {
            let acked = acked.clone();
            let cfg = cfg.clone();
            let ack_tx = ack_tx.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let out = attrib(&[
                        "claim",
                        "submit",
                        "--config",
                        &cfg,
                        "--title",
                        &format!("burst {t}-{i}"),
                        "--actor",
                        "APT-X",
                        "--confidence",
                        "40",
                    ]);
                    if !out.status.success() {
                        break;
                    }
                    acked
                        .lock()
                        .unwrap()
                        .push(String::from_utf8(out.stdout).unwrap().trim().to_string());
                    let _ = ack_tx.send(());
                }
            })
        })
        .collect();
    for _ in 0..40 {
        ack_rx
            .recv_timeout(DEADLINE)
            .expect("40 acknowledged submissions before the kill");
    }
    drop(node); // SIGKILL mid-burst, then reap
    for s in submitters {
        s.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let (_node, _log) = run_node_until_api(Path::new(&cfg));
    for id in &acked {
        let out = attrib(&["show", id, "--json", "--config", &cfg]);
        assert!(
            out.status.success(),
            "acknowledged record {id} lost: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--json", "--config", &cfg])).unwrap();
    let head = status["own_head"]["seq"].as_u64().unwrap();
    assert!(
        head >= acked.len() as u64,
        "chain head {head} behind {} acknowledged",
        acked.len()
    );
    let next = ok(&[
        "claim",
        "submit",
        "--config",
        &cfg,
        "--title",
        "after the kill",
        "--actor",
        "APT-X",
        "--confidence",
        "40",
        "--json",
    ]);
    let next: serde_json::Value = serde_json::from_str(&next).unwrap();
    assert_eq!(next["seq"].as_u64(), Some(head + 1));
}

#[test]
fn verify_proof_checks_a_fork_offline() {
    // A state's key signs two different records with seq 1; `attrib verify-proof` proves the
    // equivocation from the proof file and the roster alone, and refuses a tampered proof.
    use attrib_protocol::*;
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
    ok(&["init", "--state", "FRA", "--dir", &d("fra")]);
    ok(&[
        "roster",
        "build",
        "--network",
        "proof-test",
        "--out",
        &d("roster.toml"),
        &d("fra/roster-entry.toml"),
    ]);
    let roster = Roster::from_toml(&std::fs::read_to_string(d("roster.toml")).unwrap()).unwrap();
    let hex_key = std::fs::read_to_string(d("fra/state.key")).unwrap();
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut key).unwrap();
    let key = MemberSigningKey::from_bytes(&key);
    let record = |title: &str| {
        let content = RecordContent {
            author: member_key(&key),
            seq: 1,
            prev: None,
            created_at: 1_800_000_000_000,
            body: Body::Retraction(Retraction {
                target: RecordId([7; 32]),
                reason: title.into(),
            }),
        };
        Record::sign(content, &key, roster.network_id())
    };
    let proof = ForkProof::new(record("one"), record("two")).unwrap();
    std::fs::write(d("fork.proof"), hex::encode(proof.encode())).unwrap();
    let out = ok(&[
        "verify-proof",
        &d("fork.proof"),
        "--roster",
        &d("roster.toml"),
    ]);
    assert!(
        out.contains("VALID: FRA signed two conflicting records"),
        "{out}"
    );

    let mut tampered = proof.encode();
    let n = tampered.len();
    tampered[n - 1] ^= 1;
    std::fs::write(d("bad.proof"), hex::encode(tampered)).unwrap();
    let out = attrib(&[
        "verify-proof",
        &d("bad.proof"),
        "--roster",
        &d("roster.toml"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fork proof") || err.contains("does not prove a fork"),
        "{err}"
    );
}

#[test]
fn node_refuses_unsafe_setups_and_verifies_its_store() {
    // A key file others can read, or an API on a public address without opting in, stops the
    // node with an error saying what to do; a healthy store passes `attrib verify --all`.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
    let api = free_port();
    // A host name for the API is refused at init, saying what form the address takes.
    let out = attrib(&[
        "init",
        "--state",
        "FRA",
        "--dir",
        &d("fra"),
        "--api-listen",
        "localhost:4711",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.0.0.1:4711") && err.contains("localhost"),
        "{err}"
    );
    ok(&[
        "init",
        "--state",
        "FRA",
        "--dir",
        &d("fra"),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api-listen",
        &format!("127.0.0.1:{api}"),
    ]);
    ok(&[
        "roster",
        "build",
        "--network",
        "safety",
        "--out",
        &d("fra/roster.toml"),
        &d("fra/roster-entry.toml"),
    ]);
    let cfg = d("fra/node.toml");

    std::fs::set_permissions(d("fra/state.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = attrib(&["node", "run", "--config", &cfg]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("readable by other users") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(d("fra/state.key"), std::fs::Permissions::from_mode(0o600)).unwrap();

    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(&format!("127.0.0.1:{api}"), &format!("0.0.0.0:{api}")),
    )
    .unwrap();
    let out = attrib(&["node", "run", "--config", &cfg]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("api_allow_remote"),
        "{err}"
    );
    // Settings the node could not run with are refused at start, by name.
    for (extra, says) in [
        ("heartbeat_ms = 0\n", "heartbeat_ms = 0"),
        (
            "[[webhook]]\nname = \"siem\"\nurl = \"https://siem.example/hook\"\n",
            "TLS-terminating forwarder",
        ),
        (
            "[[webhook]]\nname = \"siem\"\nurl = \"http://127.0.0.1:9/hook\"\nkind = \"claims\"\n",
            "not a record kind",
        ),
    ] {
        // Top-level keys go before the first table; tables go at the end.
        let edited = if extra.starts_with('[') {
            format!("{text}\n{extra}")
        } else {
            format!("{extra}{text}")
        };
        std::fs::write(&cfg, edited).unwrap();
        let out = attrib(&["node", "run", "--config", &cfg]);
        assert!(!out.status.success(), "{extra}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{extra}: {err}");
    }
    std::fs::write(&cfg, text).unwrap();

    let (_node, _log) = run_node_until_api(Path::new(&cfg));
    let mode = std::fs::metadata(d("fra/data"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the data dir holds RED records too: owner only"
    );
    ok(&[
        "claim",
        "submit",
        "--config",
        &cfg,
        "--title",
        "t",
        "--actor",
        "APT-X",
        "--confidence",
        "5",
    ]);
    let verified = ok(&["verify", "--all", "--config", &cfg]);
    assert!(
        verified.contains("1 record(s) checked, 0 problem(s)"),
        "{verified}"
    );
    // Reads need the token: without it the API refuses.
    let out = attrib(&["status", "--api", &format!("http://127.0.0.1:{api}")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_node_cleanly() {
    // `kill` (SIGTERM, what supervisors and container runtimes send) stops the node as Ctrl-C
    // does: it says so, exits 0, and the next start continues the feed's cursors (a crash
    // would jump them past the reserved block).
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_node_network(dir.path(), "term-test");
    let submit = |title: &str| submit_claim(&cfg, title);
    let (mut node, log) = run_node_until_api(Path::new(&cfg));
    submit("before the stop");
    let sent = Command::new("kill")
        .args(["-TERM", &node.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    wait_line(&log, "the node to say it stops", |l| {
        l.contains("stopping") && l.contains("SIGTERM")
    });
    let exit = node.0.wait().unwrap();
    assert!(exit.success(), "{exit:?}");

    let (_node, _log) = run_node_until_api(Path::new(&cfg));
    submit("after the stop");
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--json", "--config", &cfg])).unwrap();
    assert_eq!(status["last_cursor"], 2, "{status}");
}

#[test]
fn a_followed_feed_resumes_after_the_node_restarts() {
    // `feed --follow` outlives a restart of the node (an upgrade, a supervisor's restart): it
    // says the node went away, connects again once it is back, and goes on after the last
    // record it printed.
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_node_network(dir.path(), "follow-test");
    let submit = |title: &str| submit_claim(&cfg, title);
    let (mut node, _log) = run_node_until_api(Path::new(&cfg));
    let (_follow, feed, notes) = follow_feed(&["--config", &cfg]);
    submit("before the restart");
    wait_line(&feed, "the first claim", |l| {
        l.contains("before the restart")
    });

    let sent = Command::new("kill")
        .args(["-TERM", &node.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert!(node.0.wait().unwrap().success());
    wait_line(&notes, "the follower to notice", |l| {
        l.contains("reconnecting")
    });

    let (_node, _log) = run_node_until_api(Path::new(&cfg));
    submit("after the restart");
    let line = wait_line(&feed, "the second claim", |l| l.contains("restart"));
    // The next line printed is the new claim, not the first one again.
    assert!(line.contains("after the restart"), "{line}");
    wait_line(&notes, "the follower to say it is back", |l| {
        l.contains("connected again")
    });
}

#[test]
fn a_followed_feed_from_another_stores_cursor_starts_again() {
    // A cursor kept from another store (the node's data dir was rebuilt since, and its cursors
    // start again) is not trusted: named with its feed id, the follower says so and reads the
    // node from the start, so no record is skipped.
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_node_network(dir.path(), "feed-id-test");
    let (_node, _log) = run_node_until_api(Path::new(&cfg));
    submit_claim(&cfg, "held before the cursor");
    let (_follow, feed, notes) =
        follow_feed(&["--since", "1", "--feed-id", "0123abcd", "--config", &cfg]);
    wait_line(&notes, "the follower to notice the other store", |l| {
        l.contains("reading it from the start")
    });
    wait_line(&feed, "the claim before the cursor", |l| {
        l.contains("held before the cursor")
    });
}

#[test]
fn evidence_is_cited_by_hash_with_where_to_request_it() {
    // An analyst cites artefacts held elsewhere by their SHA-256, says where members may ask
    // for them, and the thread shows both; a malformed or empty-file hash, or a note about no
    // evidence, is refused before anything is signed.
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_node_network(dir.path(), "evidence-test");
    let (_node, _log) = run_node_until_api(Path::new(&cfg));
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let base = [
        "claim",
        "submit",
        "--config",
        &cfg,
        "--title",
        "Loader",
        "--actor",
        "APT-X",
        "--confidence",
        "40",
    ];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }
    let id = ok(&with(
        &base,
        &[
            "--evidence-sha256",
            &format!("sha256:{}", hash.to_uppercase()),
            "--evidence-kind",
            "malware-sample",
            "--evidence-note",
            "loader seen on 3 hosts",
            "--evidence-locator",
            "cert@example.gov, ref 77",
        ],
    ));
    let shown = ok(&["show", id.trim(), "--config", &cfg]);
    assert!(
        shown.contains(&format!(
            "evidence [malware-sample] sha256:{hash} loader seen on 3 hosts (request it at: cert@example.gov, ref 77)"
        )),
        "{shown}"
    );
    let out = attrib(&with(&base, &["--evidence-sha256", "abc"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("write 64 hex digits"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let out = attrib(&with(&base, &["--evidence-sha256", empty]));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("empty file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = attrib(&with(&base, &["--evidence-note", "what?"]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("name it with --evidence FILE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
