//! Nothing lost: catch-up after downtime, a wiped data dir, a partition, churn, a lying peer,
//! and forks.

use attrib_node::localnet::LocalMember;
use attrib_protocol::*;
use attrib_tests::{DEADLINE, HarnessPeer, TestNet, claim, wait_converged, wait_for_count};
use rand::{Rng, SeedableRng};

/// `n` claims by `member` starting at `first_seq` after `prev`, signed offline.
fn signed_chain(
    member: &LocalMember,
    network: NetworkId,
    first_seq: u64,
    mut prev: Option<RecordId>,
    n: u64,
) -> Vec<Record> {
    let mut out = Vec::new();
    for seq in first_seq..first_seq + n {
        let content = RecordContent {
            author: member_key(&member.state_key),
            seq,
            prev,
            created_at: attrib_node::now_ms(),
            body: claim(&format!("{} #{seq}", member.code)),
        };
        let r = Record::sign(content, &member.state_key, network);
        prev = Some(r.id());
        out.push(r);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_offline_catches_up_without_operator_action() {
    // DEU is down while FRA and RUS publish 60 claims each by gossip; when DEU restarts it
    // fetches exactly what it missed and ends with the same record set.
    let mut net = TestNet::start(3, &[]).await.unwrap();
    net.stop(1).await.unwrap();
    for i in 0..60 {
        net.node(0)
            .submit(claim(&format!("FRA {i}")))
            .await
            .unwrap();
        net.node(2)
            .submit(claim(&format!("RUS {i}")))
            .await
            .unwrap();
    }
    wait_for_count(&net.node(2), 120, "RUS to hold all 120")
        .await
        .unwrap();
    net.restart(1).await.unwrap();
    wait_converged(&net, 120).await.unwrap();
    let stats = net.node(1).sync_stats();
    assert!(
        stats.records_received >= 120,
        "DEU got its records by sync: {stats:?}"
    );
    assert_eq!(stats.invalid_received, 0);
}

/// `n` claims by FRA (node 0); the last one's submission.
async fn fra_claims(net: &TestNet, n: usize) -> attrib_node::Submitted {
    let mut last = None;
    for i in 0..n {
        last = Some(
            net.node(0)
                .submit(claim(&format!("FRA {i}")))
                .await
                .unwrap(),
        );
    }
    last.expect("n > 0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_rebuilds_the_record_and_continues_its_own_chain() {
    // FRA publishes 5 claims, loses its data dir, restarts empty: it fetches everything back,
    // its own chain included, and its next claim is seq 6, not a fork at seq 1. Its feed has
    // another feed id, so a subscriber knows its old cursors mean nothing there.
    let mut net = TestNet::start(2, &[]).await.unwrap();
    let feed_id = |api: String| async move {
        let resp = attrib_tests::reader()
            .get(format!("{api}/v1/feed?limit=1"))
            .send()
            .await
            .unwrap();
        resp.headers()[attrib_node::api::FEED_ID_HEADER]
            .to_str()
            .unwrap()
            .to_string()
    };
    let before = feed_id(net.api(0)).await;
    let last = fra_claims(&net, 5).await;
    net.node(1).submit(claim("DEU 0")).await.unwrap();
    wait_for_count(&net.node(1), 6, "DEU to hold 6")
        .await
        .unwrap();
    net.stop(0).await.unwrap();
    std::fs::remove_dir_all(net.data_dir(0)).unwrap();
    net.restart(0).await.unwrap();
    let fra = net.node(0);
    assert!(
        fra.wait_for_record(&last.id, DEADLINE).await,
        "FRA did not get its own chain back"
    );
    wait_converged(&net, 6).await.unwrap();
    assert_ne!(feed_id(net.api(0)).await, before);
    let next = fra.submit(claim("FRA after the wipe")).await.unwrap();
    assert_eq!(next.seq, 6);
    assert!(net.node(1).wait_for_record(&next.id, DEADLINE).await);
    assert!(net.node(1).status().await.unwrap().equivocators.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_of_a_partition_converge_on_the_union_after_healing() {
    // Four nodes split {FRA, DEU} | {RUS, USA}; each half publishes; the partition heals and
    // every node ends with the union.
    let net = TestNet::start(4, &[]).await.unwrap();
    let ids: Vec<_> = (0..4).map(|i| net.node(i).peer_id()).collect();
    let (left, right) = ([0usize, 1], [2usize, 3]);
    for l in left {
        for r in right {
            net.node(l).set_peer_blocked(ids[r], true).await.unwrap();
            net.node(r).set_peer_blocked(ids[l], true).await.unwrap();
        }
    }
    for i in 0..20 {
        net.node(0)
            .submit(claim(&format!("left {i}")))
            .await
            .unwrap();
        net.node(3)
            .submit(claim(&format!("right {i}")))
            .await
            .unwrap();
    }
    wait_for_count(&net.node(1), 20, "DEU to see the left half")
        .await
        .unwrap();
    wait_for_count(&net.node(2), 20, "RUS to see the right half")
        .await
        .unwrap();
    assert_eq!(net.node(1).record_count(), 20, "the partition leaked");
    for l in left {
        for r in right {
            net.node(l).set_peer_blocked(ids[r], false).await.unwrap();
            net.node(r).set_peer_blocked(ids[l], false).await.unwrap();
        }
        for r in right {
            net.node(l).dial(net.addrs[r].clone()).await.unwrap();
        }
    }
    wait_converged(&net, 40).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_nodes_converge_after_random_churn() {
    // Eight nodes; four states publish a stream of claims while the other four nodes are
    // stopped and restarted at random (seeded). After the churn, all nodes hold the same set.
    churn(8, 12, 2026).await;
}

/// The soak variant: `cargo test -p attrib-tests --test scenarios soak -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak test: minutes; run explicitly"]
async fn soak_sixteen_nodes_converge_after_long_churn() {
    churn(16, 200, 7).await;
}

async fn churn(nodes: usize, rounds: usize, seed: u64) {
    let mut net = TestNet::start(nodes, &[]).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let publishers: Vec<usize> = (0..nodes / 2).collect();
    let mut published = 0;
    for round in 0..rounds {
        let victim = rng.gen_range(nodes / 2..nodes);
        if net.nodes[victim].is_some() {
            net.stop(victim).await.unwrap();
        } else {
            net.restart(victim).await.unwrap();
        }
        for p in &publishers {
            if rng.gen_bool(0.8) {
                net.node(*p)
                    .submit(claim(&format!("round {round} by {p}")))
                    .await
                    .unwrap();
                published += 1;
            }
        }
    }
    for i in nodes / 2..nodes {
        if net.nodes[i].is_none() {
            net.restart(i).await.unwrap();
        }
    }
    wait_converged(&net, published).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serving_forged_records_is_detected_and_sync_completes_from_honest_peers() {
    // A roster peer (QAA's node) answers catch-up requests with FRA records whose signatures
    // are corrupted. DEU, coming back after FRA published 30 records, rejects the forged ones,
    // stops syncing from the liar, and gets every real record from FRA.
    let mut net = TestNet::start(2, &[(12, true)]).await.unwrap();
    net.stop(1).await.unwrap();
    let mut real = Vec::new();
    for i in 0..30 {
        real.push(
            net.node(0)
                .submit(claim(&format!("real {i}")))
                .await
                .unwrap()
                .id,
        );
    }
    // The liar serves FRA's chain with a flipped bit in every signature.
    let forged: Vec<Vec<u8>> = real
        .iter()
        .map(|id| {
            let mut b = net
                .node(0)
                .get(id)
                .unwrap()
                .unwrap()
                .record
                .as_bytes()
                .to_vec();
            let last = b.len() - 1;
            b[last] ^= 1;
            b
        })
        .collect();
    // DEU comes back connected to the liar only.
    net.restart_with(1, vec![]).await.unwrap();
    let deu = net.node(1);
    let liar = attrib_tests::LyingPeer::start(
        &net.extra[0].0,
        net.roster.network_id(),
        net.addrs[1].clone(),
        forged,
        member_key(&net.members[0].state_key),
    )
    .unwrap();
    let mut stats = deu.sync_updates();
    tokio::time::timeout(DEADLINE, stats.wait_for(|s| s.invalid_received > 0))
        .await
        .expect("DEU never received the forged records")
        .unwrap();
    assert!(liar.served() > 0);
    assert_eq!(deu.record_count(), 0, "a forged record was stored");
    // Now DEU reaches honest FRA too, and completes the catch-up from it.
    deu.dial(net.addrs[0].clone()).await.unwrap();
    wait_converged(&net, 30).await.unwrap();
    for id in &real {
        assert!(deu.get(id).unwrap().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_naming_a_longer_own_chain_without_its_record_does_not_stop_signing() {
    // QAA's node tells FRA that FRA's chain goes on to seq 1,000,000, has no record to show
    // for it, and never answers the fetch. Waiting for that chain would keep FRA from signing
    // for as long as QAA likes; a peer that does hold more of FRA's chain proves it with the
    // head record (the wiped-node tests).
    let net = TestNet::start(2, &[(12, true)]).await.unwrap();
    fra_claims(&net, 2).await;
    let fra = net.node(0);
    let liar = attrib_tests::LyingPeer::claiming(
        &net.extra[0].0,
        net.addrs[0].clone(),
        member_key(&net.members[0].state_key),
        1_000_000,
    )
    .unwrap();
    // FRA asks a peer for heads again only once it has taken in the last answer.
    assert!(
        liar.wait_heads_answered(2).await,
        "FRA did not ask the liar for heads twice"
    );
    let next = fra.submit(claim("FRA goes on")).await.unwrap();
    assert_eq!(next.seq, 3);
    assert_eq!(liar.served(), 0, "FRA fetched a chain nobody proved");
    assert!(net.node(1).wait_for_record(&next.id, DEADLINE).await);
    assert!(net.node(1).status().await.unwrap().equivocators.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_whose_peer_names_its_head_without_proof_still_gets_its_chain_first() {
    // FRA's only peer answers heads as a node of an earlier version did, without FRA's head
    // record. FRA, wiped, must fetch that record (by id: it cannot be forged) and the chain
    // before it signs, or it would sign a second seq 1.
    let mut net = TestNet::start(1, &[(12, true)]).await.unwrap();
    let mut chain = Vec::new();
    for i in 0..3 {
        let s = net
            .node(0)
            .submit(claim(&format!("FRA {i}")))
            .await
            .unwrap();
        chain.push(
            net.node(0)
                .get(&s.id)
                .unwrap()
                .unwrap()
                .record
                .as_bytes()
                .to_vec(),
        );
    }
    net.stop(0).await.unwrap();
    std::fs::remove_dir_all(net.data_dir(0)).unwrap();
    net.restart_with(0, vec![]).await.unwrap();
    let _old_peer = attrib_tests::LyingPeer::start(
        &net.extra[0].0,
        net.roster.network_id(),
        net.addrs[0].clone(),
        chain,
        member_key(&net.members[0].state_key),
    )
    .unwrap();
    let next = net.node(0).submit(claim("FRA back")).await.unwrap();
    assert_eq!(next.seq, 4);
    assert_eq!(net.node(0).record_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_node_that_reaches_the_original_signs_nothing() {
    // An operator starts a second node with FRA's keys (a copied directory), pointed at the
    // original. It is answered with its own identity there: were it to sign, FRA's chain
    // would fork and every node would hold proof that FRA equivocated.
    let net = TestNet::start(2, &[]).await.unwrap();
    fra_claims(&net, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = attrib_node::localnet::local_config(
        &net.members[0],
        &net.roster,
        Some(dir.path().to_path_buf()),
        vec![net.addrs[0].clone()],
        None,
    );
    let copy = attrib_node::Node::start(cfg).await.unwrap();
    let handle = copy.handle();
    let mut report = handle.bootstrap_updates();
    tokio::time::timeout(
        DEADLINE,
        report.wait_for(|r| {
            r.iter()
                .any(|b| b.error.as_deref().is_some_and(|e| e.contains("copy")))
        }),
    )
    .await
    .expect("the copy never noticed the original")
    .unwrap();
    let err = handle.submit(claim("from the copy")).await.unwrap_err();
    assert!(
        matches!(err, attrib_node::SubmitError::CopyRunning),
        "{err}"
    );
    let status = handle.status().await.unwrap();
    assert!(
        status
            .signing_blocked
            .as_deref()
            .is_some_and(|b| b.contains("copy")),
        "{:?}",
        status.signing_blocked
    );
    // The original, which the copy's dials never reach, signs on.
    let next = net.node(0).submit(claim("FRA goes on")).await.unwrap();
    assert_eq!(next.seq, 2);
    copy.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocating_author_is_caught_everywhere_with_a_verifiable_proof() {
    // Member QAA signs two different records with seq 1 and gossips them. Every node keeps
    // both, stores the fork proof, and flags QAA; the proof verifies from the two records alone.
    let net = TestNet::start(3, &[(12, true)]).await.unwrap();
    let qaa = net.extra[0].0.clone();
    let network = net.roster.network_id();
    let mut peer = HarnessPeer::connect(&qaa, network, net.addrs[0].clone()).unwrap();
    peer.wait_for("FRA subscribed", |v| v.subscribed >= 1)
        .await
        .unwrap();
    let a = signed_chain(&qaa, network, 1, None, 1).remove(0);
    let mut content = a.content().clone();
    content.body = claim("the other story");
    let b = Record::sign(content, &qaa.state_key, network);
    peer.publish(a.as_bytes().to_vec()).await.unwrap();
    peer.publish(b.as_bytes().to_vec()).await.unwrap();
    for i in 0..3 {
        let node = net.node(i);
        assert!(
            node.wait_for_record(&a.id(), DEADLINE).await,
            "node {i} lacks the first record"
        );
        assert!(
            node.wait_for_record(&b.id(), DEADLINE).await,
            "node {i} lacks the second record"
        );
        let status = node.status().await.unwrap();
        assert_eq!(
            status.equivocators,
            vec![qaa.code],
            "node {i} did not flag QAA"
        );
        let forks = node.forks().unwrap();
        assert_eq!(forks.len(), 1);
        let proof = ForkProof::decode(&forks[0].encode()).unwrap();
        assert_eq!(
            proof.verify(&net.roster).unwrap(),
            member_key(&qaa.state_key)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_with_no_peer_refuses_to_sign_until_a_peer_tells_it_its_chain() {
    // FRA publishes, loses its data dir and comes back where no peer can reach it. Signing
    // then would make a second seq 1, and every node would hold proof that FRA equivocated.
    let mut net = TestNet::start(2, &[]).await.unwrap();
    let last = fra_claims(&net, 3).await;
    assert!(
        !net.data_dir(0).join(attrib_node::NEW_CHAIN_MARKER).exists(),
        "the new-chain marker outlived the chain's first record"
    );
    wait_for_count(&net.node(1), 3, "DEU to hold FRA's chain")
        .await
        .unwrap();
    net.stop(0).await.unwrap();
    std::fs::remove_dir_all(net.data_dir(0)).unwrap();
    net.restart_with(0, Vec::new()).await.unwrap(); // a new port DEU does not know
    let fra = net.node(0);
    let err = fra.submit(claim("FRA alone")).await.unwrap_err();
    assert!(
        matches!(err, attrib_node::SubmitError::ChainUnknown),
        "{err}"
    );
    assert_eq!(
        fra.status().await.unwrap().signing_blocked,
        Some(err.to_string()),
        "status says why signing is refused"
    );
    assert_eq!(fra.record_count(), 0, "nothing was signed");

    // A peer is back: the submission waits for FRA's own chain, then continues it.
    fra.dial(net.addrs[1].clone()).await.unwrap();
    let next = fra.submit(claim("FRA with a peer")).await.unwrap();
    assert_eq!(next.seq, 4);
    assert!(fra.get(&last.id).unwrap().is_some());
    assert!(net.node(1).wait_for_record(&next.id, DEADLINE).await);
    assert!(net.node(1).status().await.unwrap().equivocators.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_continues_its_chain_from_the_longest_copy_its_peers_hold() {
    // RUS holds only the first two of FRA's three records; DEU holds all three. FRA comes
    // back wiped and reaches both: it must continue at seq 4 (from DEU's copy), not at seq 3
    // (after RUS's), whichever answers first.
    let mut net = TestNet::start(3, &[]).await.unwrap();
    let ids: Vec<_> = (0..3).map(|i| net.node(i).peer_id()).collect();
    fra_claims(&net, 2).await;
    wait_for_count(&net.node(2), 2, "RUS to hold FRA's first two")
        .await
        .unwrap();
    for other in [0, 1] {
        net.node(2)
            .set_peer_blocked(ids[other], true)
            .await
            .unwrap();
        net.node(other)
            .set_peer_blocked(ids[2], true)
            .await
            .unwrap();
    }
    let third = net.node(0).submit(claim("FRA 2")).await.unwrap();
    assert!(net.node(1).wait_for_record(&third.id, DEADLINE).await);
    assert_eq!(net.node(2).record_count(), 2, "RUS was not cut off");

    net.stop(0).await.unwrap();
    std::fs::remove_dir_all(net.data_dir(0)).unwrap();
    net.node(2).set_peer_blocked(ids[0], false).await.unwrap();
    // RUS first: the shorter copy is the first offered.
    net.restart_with(0, vec![net.addrs[2].clone(), net.addrs[1].clone()])
        .await
        .unwrap();
    let next = net.node(0).submit(claim("FRA back")).await.unwrap();
    assert_eq!(next.seq, 4);
    assert!(net.node(1).wait_for_record(&next.id, DEADLINE).await);
    assert!(net.node(1).status().await.unwrap().equivocators.is_empty());
}
