//! A node restarted on its data dir keeps its records and continues its own chain.

use attrib_protocol::*;
use attrib_tests::{DEADLINE, TestNet, claim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_keeps_records_and_continues_its_chain() {
    // FRA submits two claims and is restarted on the same data dir: it still holds both, its
    // next record is seq 3 linked to seq 2 (no fork), and that record, published after the
    // restart with the same peer id, reaches DEU.
    let mut net = TestNet::start(2, &[]).await.unwrap();
    let first = net.node(0).submit(claim("one")).await.unwrap();
    let second = net.node(0).submit(claim("two")).await.unwrap();
    assert_eq!((first.seq, second.seq), (1, 2));
    assert!(net.node(1).wait_for_record(&second.id, DEADLINE).await);
    net.stop(0).await.unwrap();
    // A roster with one more observer is another network: the node refuses to run it on a
    // data dir whose records were signed for this one (they would all be invalid there).
    let other = attrib_node::localnet::local_roster(
        &net.members,
        &[(attrib_node::localnet::LocalMember::new(7, 9), false)],
    );
    let refused = net
        .restart_configured(0, vec![], |cfg| cfg.roster = other)
        .await
        .expect_err("started on another network's records");
    assert!(
        refused.to_string().contains("holds records of network")
            && refused.to_string().contains("new data dir"),
        "{refused}"
    );
    net.restart(0).await.unwrap();
    let fra = net.node(0);
    assert!(fra.get(&first.id).unwrap().is_some());
    assert!(fra.get(&second.id).unwrap().is_some());
    let status = fra.status().await.unwrap();
    assert_eq!(
        status.own_head,
        Some(ChainHead {
            seq: 2,
            id: second.id
        })
    );
    assert!(
        fra.wait_for_gossip_peers(1, DEADLINE).await,
        "FRA did not rejoin the mesh"
    );
    let third = fra.submit(claim("three")).await.unwrap();
    assert_eq!(third.seq, 3);
    let stored = fra.get(&third.id).unwrap().unwrap();
    assert_eq!(stored.record.prev(), Some(second.id));
    assert!(
        net.node(1).wait_for_record(&third.id, DEADLINE).await,
        "post-restart record did not reach DEU"
    );
    let deu_status = net.node(1).status().await.unwrap();
    assert!(deu_status.equivocators.is_empty());
    assert_eq!(deu_status.counts.forks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_redial_a_bootstrap_peer_that_restarts() {
    // Node 1 bootstraps from node 0, node 2 from nodes 0 and 1. Node 0 restarts at its address
    // with no bootstrap of its own: both must dial it again, node 1 too, though node 2's
    // connection to it keeps node 1 from being alone.
    let mut net = TestNet::start(3, &[]).await.unwrap();
    let addr = net.addrs[0].clone();
    net.stop(0).await.unwrap();
    net.restart_configured(0, vec![], |cfg| cfg.listen = vec![addr])
        .await
        .unwrap();
    assert!(
        net.node(0).wait_for_gossip_peers(2, DEADLINE).await,
        "a node that bootstraps from the restarted one did not dial it again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_named_with_what_to_do() {
    // A data dir whose store file no longer reads back (a disk fault, a truncated copy): the
    // node refuses to start, names the data dir and says to move it aside and rebuild from
    // peers, rather than passing on sled's internals with advice about disk space.
    let mut net = TestNet::start(1, &[]).await.unwrap();
    net.node(0).submit(claim("one")).await.unwrap();
    net.stop(0).await.unwrap();
    // sled reads its newest snapshot file first: a damaged one.
    std::fs::write(net.data_dir(0).join("snap.FFFFFFFFFFFFFFFF"), b"garbage").unwrap();
    let refused = net
        .restart(0)
        .await
        .expect_err("started on a damaged store");
    let text = refused.to_string();
    assert!(
        text.contains("is damaged")
            && text.contains(&net.data_dir(0).display().to_string())
            && text.contains("move the data dir aside"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_lost_from_a_damaged_store_file_are_noticed() {
    // sled recovers what reads back from a damaged file, which can be almost nothing, and
    // opens without an error. The tally the store wrote when it closed says how many records
    // it held: a node started with `--verify-store` refuses to serve the loss.
    let mut net = TestNet::start(1, &[]).await.unwrap();
    for i in 0..3 {
        net.node(0).submit(claim(&format!("c{i}"))).await.unwrap();
    }
    net.stop(0).await.unwrap();
    let tally = net.data_dir(0).join(attrib_node::TALLY_FILE);
    assert_eq!(std::fs::read_to_string(&tally).unwrap().trim(), "3");
    std::fs::OpenOptions::new()
        .write(true)
        .open(net.data_dir(0).join("db"))
        .unwrap()
        .set_len(0)
        .unwrap();
    let refused = net
        .restart_configured(0, vec![], |cfg| cfg.verify_on_start = true)
        .await
        .expect_err("served a store that lost its records");
    let text = refused.to_string();
    assert!(
        text.contains("held 3 when it was last closed")
            && text.contains("are missing or unreadable")
            && text.contains(attrib_node::TALLY_FILE),
        "{text}"
    );
    // Started without the check, the node serves, and its status says how many are missing.
    net.restart(0).await.unwrap();
    let status = net.node(0).status().await.unwrap();
    assert_eq!(status.records_missing, Some(3), "{status:?}");
    net.stop(0).await.unwrap();
    // With no peer to bring them back, the operator accepts the loss by deleting the tally.
    std::fs::remove_file(&tally).unwrap();
    net.restart_configured(0, vec![], |cfg| cfg.verify_on_start = true)
        .await
        .unwrap();
    let status = net.node(0).status().await.unwrap();
    assert_eq!(status.records_missing, None);
}
