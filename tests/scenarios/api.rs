//! The local HTTP API: auth, clear 4xx errors for bad input (nothing stored), feed paging and
//! SSE resume.

use attrib_tests::{DEADLINE, TestNet};
use futures::StreamExt;
use serde_json::{Value, json};

fn claim_json() -> Value {
    json!({
        "incident": {
            "title": "Ransomware at port authority",
            "summary": "Encrypted logistics systems",
            "observed_from": 1_700_000_000_000u64,
            "observed_to": 1_700_000_100_000u64
        },
        "attributed_to": { "state": "RUS", "actor": "APT-EXAMPLE" },
        "confidence": 60,
        "tlp": "AMBER"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_refuses_bad_requests_clearly_and_stores_nothing() {
    let net = TestNet::start(1, &[]).await.unwrap();
    let base = net.api(0);
    let http = reqwest::Client::new();
    let reader = attrib_tests::reader();
    let post = |path: &str, token: Option<&str>, body: String| {
        let mut req = http
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
        ("/v1/claims", None, claim_json().to_string(), 401, "Bearer"),
        (
            "/v1/claims",
            Some("wrong"),
            claim_json().to_string(),
            401,
            "wrong API token",
        ),
        (
            "/v1/claims",
            Some("test-token"),
            "{not json".into(),
            400,
            "not a valid Claim",
        ),
        (
            "/v1/claims",
            Some("test-token"),
            {
                let mut c = claim_json();
                c["colour"] = json!("red");
                c.to_string()
            },
            400,
            "unknown field",
        ),
        (
            "/v1/claims",
            Some("test-token"),
            {
                let mut c = claim_json();
                c["confidence"] = json!("high");
                c.to_string()
            },
            400,
            "invalid type",
        ),
        (
            "/v1/claims",
            Some("test-token"),
            {
                let mut c = claim_json();
                c["confidence"] = json!(101);
                c.to_string()
            },
            422,
            "confidence",
        ),
        (
            "/v1/claims",
            Some("test-token"),
            {
                let mut c = claim_json();
                c["incident"]["title"] = json!("Ok\u{1b}[2J\n3  claim  forged line");
                c.to_string()
            },
            422,
            "one line without control characters",
        ),
        (
            "/v1/claims",
            Some("test-token"),
            "x".repeat(300 * 1024),
            413,
            "api_max_body_bytes",
        ),
        (
            "/v1/rebuttals",
            Some("test-token"),
            json!({
                "target": "00".repeat(32), "stance": "deny", "statement": "no"
            })
            .to_string(),
            404,
            "no claim",
        ),
    ];
    for (path, token, body, status, message) in cases {
        let resp = post(path, token, body).await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            status,
            "{path} with token {token:?}"
        );
        let text = resp.text().await.unwrap();
        assert!(
            text.contains(message),
            "error for status {status} should mention {message:?}: {text}"
        );
        let error: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("error for status {status} is not JSON: {text}"));
        assert!(error["error"].is_string(), "{text}");
    }
    let status = attrib_tests::get_json(&reader, format!("{base}/v1/status")).await;
    assert_eq!(
        status["counts"]["records"], 0,
        "a refused request stored something"
    );

    let resp = post("/v1/claims", Some("test-token"), claim_json().to_string())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let made: Value = resp.json().await.unwrap();
    let id = made["id"].as_str().unwrap().to_string();
    let resp = reader
        .get(format!("{base}/v1/records/{}", "ab".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let resp = reader
        .get(format!("{base}/v1/records/nothex"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let thread: Value = reader
        .get(format!("{base}/v1/threads/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(thread["status"]["accused_state"], "RUS");

    // Mistakes in a query string or the method get JSON that says what was wrong.
    for (req, status, message) in [
        (
            reader.get(format!("{base}/v1/feed?limit=abc")),
            400,
            "limit",
        ),
        (
            reader.get(format!("{base}/v1/feed?colour=red")),
            400,
            "colour",
        ),
        (
            reader.get(format!("{base}/v1/claims")),
            405,
            "records are submitted with POST",
        ),
        (
            reader.get(format!("{base}/v1/feed?author=ZZZ")),
            400,
            "not a member state",
        ),
        (
            reader.get(format!("{base}/v1/feed?about=XYZ")),
            400,
            "neither a member state nor an ISO 3166-1",
        ),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let error: Value = resp.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(message),
            "{error}"
        );
    }
    // An unescaped + in a query string reads as a space: AMBER+STRICT still works.
    let page = reader
        .get(format!("{base}/v1/feed?tlp=AMBER+STRICT"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    // A response's id asked as a thread names the claim it responds to.
    let resp = post(
        "/v1/retractions",
        Some("test-token"),
        json!({"target": id, "reason": "mistaken"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let made: Value = resp.json().await.unwrap();
    let resp = reader
        .get(format!(
            "{base}/v1/threads/{}",
            made["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let error: Value = resp.json().await.unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains(&format!("a retraction of claim {id}")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_pages_filter_and_the_stream_resumes_from_a_cursor() {
    let net = TestNet::start(1, &[]).await.unwrap();
    let base = net.api(0);
    let http = reqwest::Client::new();
    let reader = attrib_tests::reader();
    let mut ids = Vec::new();
    for (i, accused) in ["RUS", "CHN", "RUS"].iter().enumerate() {
        let mut c = claim_json();
        c["attributed_to"]["state"] = json!(accused);
        c["incident"]["title"] = json!(format!("incident {i}"));
        let made: Value = http
            .post(format!("{base}/v1/claims"))
            .bearer_auth("test-token")
            .json(&c)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(made["id"].as_str().unwrap().to_string());
    }
    let page: Value = reader
        .get(format!("{base}/v1/feed?about=RUS"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["record"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[0].as_str(), ids[2].as_str()]);
    // State codes in queries are read as the CLI reads them, whatever their case.
    let lower = attrib_tests::get_json(&reader, format!("{base}/v1/feed?about=rus")).await;
    assert_eq!(lower["entries"], page["entries"]);
    let page: Value = reader
        .get(format!("{base}/v1/feed?since=1&limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["entries"][0]["cursor"], 2);
    assert_eq!(page["next"], 2);
    assert_eq!(page["more"], true, "cursor 3 lies beyond");
    let bad = reader
        .get(format!("{base}/v1/feed?kind=opinion"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    // A cursor this node never gave out (another node's, or from before a rebuild) is refused
    // rather than answered with silence; so is a Last-Event-ID that is no cursor.
    for req in [
        reader.get(format!("{base}/v1/feed?since=999")),
        reader.get(format!("{base}/v1/feed/stream?since=999")),
        reader
            .get(format!("{base}/v1/feed/stream"))
            .header("last-event-id", "abc"),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let err: Value = resp.json().await.unwrap();
        let text = err["error"].as_str().unwrap();
        assert!(
            text.contains("beyond this node's last cursor") || text.contains("Last-Event-ID"),
            "{text}"
        );
    }
    // A page of nothing is refused rather than answered empty forever.
    for path in ["feed", "stix"] {
        let bad = reader
            .get(format!("{base}/v1/{path}?limit=0"))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status().as_u16(), 400, "/v1/{path}?limit=0");
        let err: Value = bad.json().await.unwrap();
        assert!(
            err["error"].as_str().unwrap().contains("give 1 to"),
            "{err}"
        );
    }

    // Resume with Last-Event-ID = 1: the stream starts at cursor 2, then delivers a new record live.
    let resp = reader
        .get(format!("{base}/v1/feed/stream"))
        .header("last-event-id", "1")
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut seen = Vec::new();
    let mut posted = false;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while seen.len() < 3 {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("timed out waiting for SSE events")
            .expect("stream ended")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(id) = event.lines().find_map(|l| l.strip_prefix("id:")) {
                seen.push(id.trim().parse::<u64>().unwrap());
            }
        }
        if seen.len() == 2 && !posted {
            posted = true;
            http.post(format!("{base}/v1/claims"))
                .bearer_auth("test-token")
                .json(&claim_json())
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(seen, vec![2, 3, 4]);

    // A follower still connected does not keep the node from stopping: its stream ends.
    let mut net = net;
    tokio::time::timeout(DEADLINE, net.stop(0))
        .await
        .expect("node did not stop while a feed stream was open")
        .unwrap();
    loop {
        match tokio::time::timeout(DEADLINE, body.next())
            .await
            .expect("stream still open after the node stopped")
        {
            None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_signed_records_publish_once_and_a_conflicting_one_is_reported_as_equivocation() {
    use attrib_protocol::{Record, RecordContent, member_key};
    // Node 0 (FRA) publishes records another member signed offline.
    let net = TestNet::start(1, &[(5, true)]).await.unwrap();
    let base = net.api(0);
    let http = reqwest::Client::new();
    let offline = &net.extra[0].0;
    let sign = |title: &str| {
        let content = RecordContent {
            author: member_key(&offline.state_key),
            seq: 1,
            prev: None,
            created_at: attrib_node::now_ms(),
            body: attrib_tests::claim(title),
        };
        Record::sign(content, &offline.state_key, net.roster.network_id())
    };
    let (first, other) = (sign("first"), sign("other"));
    let publish = |r: &Record| {
        http.post(format!("{base}/v1/records"))
            .bearer_auth("test-token")
            .body(r.as_bytes().to_vec())
            .send()
    };
    let mut cursors = Vec::new();
    for _ in 0..2 {
        let resp = publish(&first).await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            201,
            "publishing again is idempotent"
        );
        let made: Value = resp.json().await.unwrap();
        assert_eq!(made["id"], first.id().to_hex());
        cursors.push(made["cursor"].clone());
    }
    assert_eq!(cursors[0], cursors[1]);
    // A follower of the feed sees the conflicting record (it is kept, beside the chain, as
    // half of the proof), though its publication is refused.
    let stream = attrib_tests::reader()
        .get(format!("{base}/v1/feed/stream"))
        .header("last-event-id", cursors[0].to_string())
        .send()
        .await
        .unwrap();
    let mut events = stream.bytes_stream();
    for attempt in 0..2 {
        let resp = publish(&other).await.unwrap();
        assert_eq!(resp.status().as_u16(), 409, "attempt {attempt}");
        let error: Value = resp.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("equivocated"),
            "attempt {attempt}: {error}"
        );
    }
    let mut seen = String::new();
    while !seen.contains(&other.id().to_hex()) {
        let chunk = tokio::time::timeout(DEADLINE, events.next())
            .await
            .expect("the conflicting record never reached the feed stream")
            .expect("stream ended")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let forks = attrib_tests::get_json(&attrib_tests::reader(), format!("{base}/v1/forks")).await;
    assert_eq!(forks.as_array().unwrap().len(), 1, "{forks}");
    assert_eq!(forks[0]["seqs"], json!([1, 1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_form_one_line_retractions_are_final_and_no_state_accuses_itself() {
    use attrib_node::SubmitError;
    use attrib_protocol::{Body, Retraction};
    let net = TestNet::start(1, &[]).await.unwrap();
    let node = net.node(0);
    let revise = |title: &str, of: attrib_protocol::RecordId| {
        let Body::Claim(mut c) = attrib_tests::claim(title) else {
            unreachable!()
        };
        c.supersedes = Some(of);
        Body::Claim(c)
    };
    let first = node.submit(attrib_tests::claim("first")).await.unwrap();
    let second = node.submit(revise("second", first.id)).await.unwrap();
    match node.submit(revise("again", first.id)).await {
        Err(SubmitError::AlreadyRevised { claim, by }) => {
            assert_eq!((claim, by), (first.id, second.id));
        }
        other => panic!("a second revision of the same claim: {other:?}"),
    }
    // Nor is an earlier version retracted: the latest one is.
    match node
        .submit(Body::Retraction(Retraction {
            target: first.id,
            reason: "old".into(),
        }))
        .await
    {
        Err(SubmitError::AlreadyRevised { claim, by }) => {
            assert_eq!((claim, by), (first.id, second.id));
        }
        other => panic!("a retraction of a revised claim: {other:?}"),
    }
    let third = node.submit(revise("third", second.id)).await.unwrap();
    let retract = |target| {
        Body::Retraction(Retraction {
            target,
            reason: "wrong".into(),
        })
    };
    node.submit(retract(third.id)).await.unwrap();
    // The line has ended: an earlier version says so, not "retract the revision instead".
    match node.submit(retract(first.id)).await {
        Err(SubmitError::LineRetracted { claim, latest }) => {
            assert_eq!((claim, latest), (first.id, third.id));
        }
        other => panic!("a retraction of a retracted line: {other:?}"),
    }
    let thread = node
        .thread(&first.id, attrib_protocol::Tlp::Red)
        .unwrap()
        .unwrap();
    assert_eq!(thread.line_retracted_at, Some(third.id));

    let withdrawn = node.submit(attrib_tests::claim("withdrawn")).await.unwrap();
    node.submit(Body::Retraction(Retraction {
        target: withdrawn.id,
        reason: "wrong".into(),
    }))
    .await
    .unwrap();
    assert!(matches!(
        node.submit(revise("revived", withdrawn.id)).await,
        Err(SubmitError::Retracted(id)) if id == withdrawn.id
    ));

    let Body::Claim(mut own) = attrib_tests::claim("ourselves") else {
        unreachable!()
    };
    own.attributed_to.state = Some(net.members[0].code);
    assert!(matches!(
        node.submit(Body::Claim(own)).await,
        Err(SubmitError::SelfAttribution)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_what_an_operator_alerts_on() {
    // Two running nodes of a three-member roster: in Prometheus form, the third state is
    // unreachable and the other reachable, the claim is stored on both, the author's chain has
    // one record, the store is healthy; without the token there is nothing to read.
    let net = TestNet::start(2, &[(5, true)]).await.unwrap();
    let reader = attrib_tests::reader();
    let submitted: Value = reader
        .post(format!("{}/v1/claims", net.api(0)))
        .json(&claim_json())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = submitted["id"].as_str().unwrap().parse().unwrap();
    assert!(net.node(1).wait_for_record(&id, DEADLINE).await);
    let refused = reqwest::Client::new()
        .get(format!("{}/metrics", net.api(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let said = refused.text().await.unwrap();
    assert!(said.contains("metrics.token"), "{said}");
    // The metrics token opens /metrics and nothing else.
    let monitor = reqwest::Client::new();
    let metrics_token = "test-token-metrics";
    for (path, code) in [("/metrics", 200), ("/v1/status", 401), ("/v1/feed", 401)] {
        let resp = monitor
            .get(format!("{}{path}", net.api(1)))
            .bearer_auth(metrics_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), code, "{path}");
    }
    let scrape = |i: usize| {
        let (reader, url) = (reader.clone(), format!("{}/metrics", net.api(i)));
        async move {
            let resp = reader.get(url).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            assert_eq!(
                resp.headers()["content-type"],
                attrib_node::metrics::CONTENT_TYPE
            );
            resp.text().await.unwrap()
        }
    };
    let value = |text: &str, series: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.strip_prefix(series).is_some_and(|v| v.starts_with(' ')))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (author, other) = (scrape(0).await, scrape(1).await);
    for text in [&author, &other] {
        assert_eq!(value(text, "attrib_records_stored"), 1.0);
        assert_eq!(value(text, "attrib_store_failing"), 0.0);
        assert_eq!(value(text, "attrib_signing_blocked"), 0.0);
        assert_eq!(value(text, "attrib_peers_subscribed"), 1.0);
        let absent = net.extra[0].0.code;
        assert_eq!(
            value(
                text,
                &format!("attrib_state_unreachable{{state=\"{absent}\"}}")
            ),
            1.0
        );
    }
    let (fra, deu) = (net.node(0).state().unwrap(), net.node(1).state().unwrap());
    assert_eq!(
        value(
            &other,
            &format!("attrib_state_unreachable{{state=\"{fra}\"}}")
        ),
        0.0
    );
    assert_eq!(value(&author, "attrib_own_chain_seq"), 1.0);
    assert_eq!(value(&other, "attrib_own_chain_seq"), 0.0);
    assert!(other.contains(&format!("state=\"{deu}\"}} 1")), "{other}");
    assert!(other.contains("# TYPE attrib_gossip_invalid_records_total counter"));
}
