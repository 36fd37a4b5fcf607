//! Hostile peers: floods of junk, oversized messages, records far beyond the chain, message
//! floods over the rate limit, and fetch requests for huge ranges. The node stays up, stores
//! nothing invalid, keeps its bounded structures bounded, and honest records still reach every
//! honest node.

use attrib_node::localnet::LocalMember;
use attrib_protocol::sync::{FetchRequest, MAX_FETCH_IDS, MAX_FETCH_RECORDS};
use attrib_protocol::*;
use attrib_tests::{DEADLINE, FetchProbe, HarnessPeer, TestNet, claim, wait_for_count};

fn signed(
    member: &LocalMember,
    network: NetworkId,
    seq: u64,
    prev: Option<RecordId>,
    body: Body,
) -> Record {
    let content = RecordContent {
        author: member_key(&member.state_key),
        seq,
        prev,
        created_at: attrib_node::now_ms(),
        body,
    };
    Record::sign(content, &member.state_key, network)
}

/// Checks that honest traffic still flows FRA → DEU and returns the honest record's id.
async fn honest_still_flows(net: &TestNet, title: &str) -> RecordId {
    let id = net.node(0).submit(claim(title)).await.unwrap().id;
    assert!(
        net.node(1).wait_for_record(&id, DEADLINE).await,
        "honest record {title} did not reach DEU"
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_floods_are_refused_and_the_sender_cut_off() {
    // A roster peer sends random bytes, an oversized message, a record with a huge string
    // (over the record limit) and forged signatures, as fast as it can.
    let net = TestNet::start(2, &[(12, true)]).await.unwrap();
    let network = net.roster.network_id();
    let h = net.extra[0].0.clone();
    let mut hostile =
        HarnessPeer::connect_sized(&h, network, net.addrs[0].clone(), 1 << 20).unwrap();
    hostile
        .wait_for("FRA subscribed", |v| v.subscribed >= 1)
        .await
        .unwrap();
    let mut rng_state = 7u64;
    for i in 0..200 {
        let len = 1 + (i * 37) % 2000;
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                rng_state = rng_state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (rng_state >> 56) as u8
            })
            .collect();
        hostile.publish(junk).await.unwrap();
    }
    hostile.publish(vec![1u8; 200 * 1024]).await.unwrap();
    let Body::Claim(mut huge) = claim("huge") else {
        unreachable!()
    };
    huge.incident.summary = "x".repeat(100 * 1024);
    hostile
        .publish(
            signed(&h, network, 1, None, Body::Claim(huge))
                .as_bytes()
                .to_vec(),
        )
        .await
        .unwrap();
    hostile
        .wait_for("FRA to cut the peer off", |v| v.closed >= 1)
        .await
        .unwrap();
    let honest = honest_still_flows(&net, "after the junk").await;
    for i in 0..2 {
        let status = net.node(i).status().await.unwrap();
        assert_eq!(status.counts.records, 1, "only the honest record is stored");
        assert_eq!(status.counts.pending, 0);
        assert!(net.node(i).get(&honest).unwrap().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_but_useless_floods_are_bounded() {
    // A member (whose records are validly signed) floods: 3,000 records at seq 10^6 and beyond
    // (a gap of a million), replays of an old record, and more messages than its rate allows.
    // Nothing beyond the chain is kept, pending stays empty, the excess is ignored unread, and
    // honest records still flow.
    let mut net = TestNet::start(2, &[(12, true)]).await.unwrap();
    // FRA runs with a low per-peer gossip rate so the flood exceeds it for sure.
    net.stop(0).await.unwrap();
    let deu = net.addrs[1].clone();
    net.restart_configured(0, vec![deu], |cfg| {
        cfg.limits.gossip_per_sec_per_peer = 50;
        cfg.limits.gossip_burst_per_peer = 100;
    })
    .await
    .unwrap();
    assert!(net.node(0).wait_for_gossip_peers(1, DEADLINE).await);
    let network = net.roster.network_id();
    let h = net.extra[0].0.clone();
    let mut hostile = HarnessPeer::connect(&h, network, net.addrs[0].clone()).unwrap();
    hostile
        .wait_for("FRA subscribed", |v| v.subscribed >= 1)
        .await
        .unwrap();
    let first = signed(&h, network, 1, None, claim("first"));
    hostile.publish(first.as_bytes().to_vec()).await.unwrap();
    assert!(net.node(0).wait_for_record(&first.id(), DEADLINE).await);
    let mut prev = Some(RecordId([9; 32]));
    for i in 0..3_000u64 {
        let r = signed(&h, network, 1_000_000 + i, prev, claim(&format!("far {i}")));
        prev = Some(r.id());
        hostile.publish(r.as_bytes().to_vec()).await.unwrap();
        if i % 100 == 0 {
            hostile.publish(first.as_bytes().to_vec()).await.unwrap();
        }
    }
    let fra = net.node(0);
    let mut stats = fra.sync_updates();
    tokio::time::timeout(DEADLINE, stats.wait_for(|s| s.gossip_rate_limited > 0))
        .await
        .expect("the flood never exceeded the peer's rate")
        .unwrap();
    let honest = honest_still_flows(&net, "during the flood").await;
    let status = fra.status().await.unwrap();
    assert_eq!(
        status.counts.records, 2,
        "only the first record and the honest one are stored"
    );
    assert_eq!(
        status.counts.pending, 0,
        "records a million ahead must not be kept"
    );
    assert!(fra.get(&honest).unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_requests_for_huge_ranges_are_answered_within_bounds() {
    // A roster peer asks for an author's chain from 1 to u64::MAX, for a reversed range, for
    // more ids than allowed, and floods requests. Answers stay within the record and byte bounds, oversized requests
    // are refused, the excess is answered empty, and the node keeps serving honest peers.
    let net = TestNet::start(2, &[(12, true)]).await.unwrap();
    let fra = net.node(0);
    let member = &net.members[1];
    let mut prev = None;
    let mut batch = Vec::new();
    for seq in 1..=(MAX_FETCH_RECORDS as u64 + 100) {
        let r = signed(
            member,
            net.roster.network_id(),
            seq,
            prev,
            claim(&format!("bulk {seq}")),
        );
        prev = Some(r.id());
        batch.push(r.as_bytes().to_vec());
    }
    fra.import(batch).await.unwrap();
    wait_for_count(&fra, MAX_FETCH_RECORDS + 100, "FRA to hold the bulk")
        .await
        .unwrap();
    let probe = FetchProbe::connect(&net.extra[0].0, net.addrs[0].clone()).unwrap();
    let author = member_key(&member.state_key);
    let all = probe
        .ask(FetchRequest::Chain {
            author,
            from: 1,
            to: u64::MAX,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        all.records.len(),
        MAX_FETCH_RECORDS,
        "a huge range is answered with one bounded batch"
    );
    // A reversed range is answered empty, and the node goes on answering.
    let reversed = probe
        .ask(FetchRequest::Chain {
            author,
            from: 10,
            to: 1,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(
        reversed.records.is_empty(),
        "a reversed range returned records"
    );
    // One id named many times is answered once: no response many times a record's size.
    let repeated = probe
        .ask(FetchRequest::Records(vec![
            RecordId::of_encoding(
                &all.records[0]
            );
            MAX_FETCH_IDS
        ]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(repeated.records, vec![all.records[0].clone()]);
    let too_many: Vec<RecordId> = (0..MAX_FETCH_IDS as u32 + 1)
        .map(|i| RecordId([i as u8; 32]))
        .collect();
    assert!(
        probe
            .ask(FetchRequest::Records(too_many))
            .await
            .unwrap()
            .is_err(),
        "over-long id list accepted"
    );
    // Over its rate a peer's requests are refused, not answered empty (an empty answer would
    // say the node holds none of the range).
    let mut refused = 0;
    for _ in 0..400 {
        match probe
            .ask(FetchRequest::Chain {
                author,
                from: 1,
                to: 10,
            })
            .await
            .unwrap()
        {
            Ok(r) => assert!(!r.records.is_empty(), "answered empty instead of refused"),
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 0, "a request flood was served in full");
    assert!(fra.status().await.unwrap().sync.fetch_rate_limited > 0);
    honest_still_flows(&net, "after the fetch flood").await;
}
