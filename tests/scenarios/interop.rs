//! The feed as tools and people outside the member network see it: STIX 2.1 (validated by the
//! OASIS validator, parsed by `stix2`), TAXII 2.1 (polled by `taxii2-client`), the TLP ceiling,
//! webhooks, resuming a stream across a restart, and a slow subscriber.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use attrib_protocol::*;
use attrib_tests::{DEADLINE, TestNet, get_json, get_text, python, wait_for_count};
use futures::StreamExt;
use serde_json::{Value, json};

fn claim(title: &str, accused: &str, tlp: Tlp) -> Body {
    Body::Claim(Claim {
        incident: Incident {
            title: title.into(),
            summary: "Spear-phishing then wiper on the grid operator's SCADA network".into(),
            observed_from: 1_763_000_000_000,
            observed_to: 1_763_100_000_000,
            sectors: vec!["energy".into()],
            tags: vec!["wiper".into()],
        },
        attributed_to: Attribution {
            state: Some(accused.parse().unwrap()),
            actor: Some("APT-EXAMPLE".into()),
        },
        confidence: 75,
        evidence: vec![Evidence {
            kind: "malware-sample".into(),
            sha256: Sha256Digest::of(title.as_bytes()),
            description: "loader".into(),
            locator: Some("case-2026-114".into()),
        }],
        tlp,
        supersedes: None,
    })
}

/// An endorsement of `target`, without evidence.
fn endorsement(target: RecordId, agreement: Opinion, statement: &str) -> Body {
    Body::Endorsement(Endorsement {
        target,
        agreement,
        statement: statement.into(),
        evidence: vec![],
    })
}

/// A thread with every kind: claim, rebuttal by the accused, endorsement, a revision and a
/// retraction. Returns the ids.
async fn publish_thread(net: &TestNet) -> Vec<RecordId> {
    let (fra, deu, rus) = (net.node(0), net.node(1), net.node(2));
    let c = fra
        .submit(claim("Grid outage", "RUS", Tlp::Green))
        .await
        .unwrap();
    assert!(
        rus.wait_for_record(&c.id, DEADLINE).await && deu.wait_for_record(&c.id, DEADLINE).await
    );
    let r = rus
        .submit(Body::Rebuttal(Rebuttal {
            target: c.id,
            stance: Stance::Deny,
            statement: "Not us.".into(),
            evidence: vec![],
        }))
        .await
        .unwrap();
    let e = deu
        .submit(endorsement(c.id, Opinion::Agree, "Matches our data."))
        .await
        .unwrap();
    let Body::Claim(mut revised) = claim("Grid outage (revised)", "RUS", Tlp::Green) else {
        unreachable!()
    };
    revised.supersedes = Some(c.id);
    let v = fra.submit(Body::Claim(revised)).await.unwrap();
    let x = fra
        .submit(claim("Port ransomware", "CHN", Tlp::Clear))
        .await
        .unwrap();
    let y = fra
        .submit(Body::Retraction(Retraction {
            target: x.id,
            reason: "Misread the logs.".into(),
        }))
        .await
        .unwrap();
    let ids = vec![c.id, r.id, e.id, v.id, x.id, y.id];
    for n in [&fra, &deu, &rus] {
        for id in &ids {
            assert!(n.wait_for_record(id, DEADLINE).await);
        }
    }
    ids
}

const VALIDATE: &str = r#"
import json, sys
import stix2, stix2validator
path = sys.argv[1]
results = stix2validator.validate_file(path, stix2validator.ValidationOptions(strict=False))
if not results.is_valid:
    stix2validator.print_results(results)
    sys.exit(1)
warnings = [str(w) for o in results.object_results for w in o.warnings]
bundle = stix2.parse(open(path).read(), allow_custom=True)
print(json.dumps({"objects": len(bundle.objects), "types": sorted({o.type for o in bundle.objects}), "warnings": warnings}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stix_export_is_valid_stix_and_verifies_offline() {
    // A thread with every kind of record is exported as a STIX 2.1 bundle: the OASIS validator
    // accepts it, the stix2 library parses it, the export is deterministic, and every signed
    // record in it verifies against the roster; a tampered bundle does not.
    let net = TestNet::start(3, &[]).await.unwrap();
    let ids = publish_thread(&net).await;
    // DEU changes its mind (its later endorsement replaces the earlier one). FRA cannot also
    // retract the claim it had already revised (only the latest version is retracted; that
    // retraction would have no form in STIX, the old version being revoked already).
    let again = net
        .node(1)
        .submit(endorsement(ids[0], Opinion::Disagree, "New data."))
        .await
        .unwrap();
    assert!(matches!(
        net.node(0)
            .submit(Body::Retraction(Retraction {
                target: ids[0],
                reason: "Superseded anyway.".into(),
            }))
            .await,
        Err(attrib_node::SubmitError::AlreadyRevised { .. })
    ));
    assert!(net.node(0).wait_for_record(&again.id, DEADLINE).await);
    let reader = attrib_tests::reader();
    let get = || reader.get(format!("{}/v1/stix", net.api(0))).send();
    let resp = get().await.unwrap();
    assert_eq!(resp.headers()["x-attrib-tlp-ceiling"], "AMBER");
    let text = resp.text().await.unwrap();
    assert_eq!(
        text,
        get().await.unwrap().text().await.unwrap(),
        "export is not deterministic"
    );
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, &text).unwrap();
    let out: Value =
        serde_json::from_str(&python(VALIDATE, &[path.to_str().unwrap()]).unwrap()).unwrap();
    assert_eq!(out["warnings"], json!([]), "the validator warns");
    let types: Vec<&str> = out["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in [
        "campaign",
        "identity",
        "opinion",
        "relationship",
        "threat-actor",
    ] {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
    let report = attrib_node::stix::verify_bundle(&bundle, &net.roster);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // Under another network's roster nothing verifies, and the first problem says why.
    let other = attrib_node::localnet::local_roster(
        &net.members,
        &[(attrib_node::localnet::LocalMember::new(7, 9), false)],
    );
    let wrong = attrib_node::stix::verify_bundle(&bundle, &other);
    assert_eq!(wrong.verified, 0);
    assert!(
        wrong.problems[0].contains("is it the roster of the network that exported the bundle"),
        "{:?}",
        wrong.problems
    );
    // Every record that STIX carries is verified, and counted once although some travel twice
    // (an opinion and its revoked version, a revision and the revocation of the claim it
    // supersedes): the thread's records and DEU's second endorsement.
    assert_eq!(report.verified, ids.len() + 1, "{report:?}");
    let revoked = bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["revoked"] == true)
        .count();
    assert_eq!(
        revoked, 3,
        "the superseded claim and the retracted claim are revoked, once each, and DEU's \
         replaced endorsement"
    );
    let first_opinion = attrib_node::stix::opinion_id(&ids[2]);
    let versions: Vec<&Value> = bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["id"] == first_opinion.as_str())
        .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(versions[1]["revoked"], true);
    assert_eq!(
        attrib_node::stix::carried_record(versions[1]),
        Some(
            hex::encode(
                net.node(0)
                    .get(&again.id)
                    .unwrap()
                    .unwrap()
                    .record
                    .as_bytes()
            )
            .as_str()
        ),
        "the replacing endorsement carries the revocation"
    );

    // A property edited beside an intact signed record is caught too.
    let edited: Value =
        serde_json::from_str(&text.replacen("\"confidence\":75", "\"confidence\":5", 1)).unwrap();
    let problems = attrib_node::stix::verify_bundle(&edited, &net.roster).problems;
    assert!(
        problems.len() == 1 && problems[0].contains("`confidence` differ"),
        "{problems:?}"
    );
    // So is one in an object made from a record without carrying it (each claim's confidence
    // is also on its actor-to-state relationship).
    assert!(text.matches("\"confidence\":75").count() >= 2);
    let edited: Value =
        serde_json::from_str(&text.replace("\"confidence\":75", "\"confidence\":5")).unwrap();
    let problems = attrib_node::stix::verify_bundle(&edited, &net.roster).problems;
    assert!(
        problems.len() >= 2 && problems.iter().all(|p| p.contains("`confidence` differ")),
        "{problems:?}"
    );

    let tampered = text.replacen("\"confidence\":75", "\"confidence\":99", 1);
    let mut t: Value = serde_json::from_str(&tampered).unwrap();
    let ext = attrib_node::stix::EXTENSION_ID;
    let rel = t["objects"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|o| attrib_node::stix::carried_record(o).is_some())
        .unwrap();
    let mut hex_record = attrib_node::stix::carried_record(rel).unwrap().to_string();
    // Flip a bit of the last byte (the top of the signature's S scalar, which is 0x00 about one
    // time in sixteen, so overwriting it with a constant would sometimes change nothing).
    let last = u8::from_str_radix(&hex_record[hex_record.len() - 2..], 16).unwrap();
    hex_record.replace_range(hex_record.len() - 2.., &format!("{:02x}", last ^ 0x01));
    rel["extensions"][ext]["record"] = Value::String(hex_record);
    assert!(
        !attrib_node::stix::verify_bundle(&t, &net.roster)
            .problems
            .is_empty()
    );

    // Objects made from no signed record are problems: every record stripped from the bundle,
    // an attribution added in FRA's name, an empty bundle.
    let mut stripped = bundle.clone();
    for o in stripped["objects"].as_array_mut().unwrap() {
        o.as_object_mut().unwrap().remove("extensions");
    }
    let problems = attrib_node::stix::verify_bundle(&stripped, &net.roster).problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("no signed record in this bundle"))
            && problems
                .iter()
                .any(|p| p.contains("made from no verified record")),
        "{problems:?}"
    );
    let mut added = bundle.clone();
    let mut forged = added["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "relationship" && o.get("extensions").is_some())
        .unwrap()
        .clone();
    forged.as_object_mut().unwrap().remove("extensions");
    forged["id"] = json!("relationship--00000000-0000-4000-8000-000000000001");
    forged["confidence"] = json!(99);
    added["objects"].as_array_mut().unwrap().push(forged);
    let problems = attrib_node::stix::verify_bundle(&added, &net.roster).problems;
    assert!(
        problems.len() == 1
            && problems[0].starts_with(
                "relationship--00000000-0000-4000-8000-000000000001: made from no verified record"
            ),
        "{problems:?}"
    );
    let empty = json!({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000002", "objects": []});
    assert!(
        !attrib_node::stix::verify_bundle(&empty, &net.roster)
            .problems
            .is_empty()
    );

    // And back: a bundle's standing claim becomes a draft, word for word (its accused state
    // included). Here that is the revision: the first claim was revised, the other retracted.
    let draft = attrib_node::stix::claim_from_stix(&bundle, None).unwrap();
    assert_eq!(draft.incident.title, "Grid outage (revised)");
    assert_eq!(
        draft.attributed_to.state.map(|s| s.to_string()).as_deref(),
        Some("RUS")
    );
    assert_eq!(
        draft.supersedes, None,
        "a draft revises nothing of its own author's"
    );
    // A claim that stands can be picked by its id (a prefix will do); a revised or retracted
    // one is refused.
    let picked = attrib_node::stix::claim_from_stix(&bundle, Some(&ids[3].to_hex()[..10])).unwrap();
    assert_eq!(picked.incident.title, "Grid outage (revised)");
    let revised = attrib_node::stix::claim_from_stix(&bundle, Some(&ids[0].to_hex())).unwrap_err();
    assert!(revised.contains("was retracted or revised"), "{revised}");
    let retracted =
        attrib_node::stix::claim_from_stix(&bundle, Some(&ids[4].to_hex())).unwrap_err();
    assert!(
        retracted.contains("was retracted or revised"),
        "{retracted}"
    );
    let none = attrib_node::stix::claim_from_stix(&bundle, Some("ffffffffff")).unwrap_err();
    assert!(
        none.contains("no attrib claim in the bundle has an id starting with"),
        "{none}"
    );
    // Without the revocations three claims stand: the draft asks which, naming them.
    let mut unrevoked = bundle.clone();
    unrevoked["objects"]
        .as_array_mut()
        .unwrap()
        .retain(|o| o["revoked"] != true);
    let many = attrib_node::stix::claim_from_stix(&unrevoked, None).unwrap_err();
    assert!(
        many.contains("choose one with --id") && many.contains(&ids[4].to_hex()),
        "{many}"
    );
    let one = attrib_tests::get_json(&reader, format!("{}/v1/stix?limit=1", net.api(0))).await;
    let report = attrib_node::stix::verify_bundle(&one, &net.roster);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // A later page, without the claim its responses answer, verifies too: what depends on
    // the claim is left unchecked, and said so.
    let rest = attrib_tests::get_json(&reader, format!("{}/v1/stix?since=1", net.api(0))).await;
    let report = attrib_node::stix::verify_bundle(&rest, &net.roster);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.properties_unchecked > 0, "{report:?}");
    let draft = attrib_node::stix::claim_from_stix(&one, None).unwrap();
    let Body::Claim(original) = claim("Grid outage", "RUS", Tlp::Green) else {
        unreachable!()
    };
    assert_eq!(draft, original);
}

const TAXII_POLL: &str = r#"
import json, sys
from taxii2client.v21 import Server, as_pages
server = Server(sys.argv[1], user="analyst", password=sys.argv[2])
root = server.api_roots[0]
collection = root.collections[0]
pages = []
ids = []
for envelope in as_pages(collection.get_objects, per_request=int(sys.argv[3])):
    pages.append([o.get("extensions", {}).get(sys.argv[4], {}).get("record") for o in envelope.get("objects", [])])
    ids.extend(o["id"] for o in envelope.get("objects", []))
manifest = collection.get_manifest()
one = collection.get_object(ids[-1])
versions = collection.object_versions(ids[-1])
print(json.dumps({"title": server.title, "collection": collection.id, "can_write": collection.can_write, "pages": pages, "manifest": len(manifest.get("objects", [])), "last_id": ids[-1], "got": [o["id"] for o in one.get("objects", [])], "versions": len(versions.get("versions", []))}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taxii_client_pages_through_exactly_the_nodes_record() {
    // The OASIS TAXII 2.1 client polls the node page by page; the signed records it collects are
    // exactly the node's feed (up to the TLP ceiling), in order, each once. The server answers
    // with the TAXII media type and date headers, and refuses readers without the token.
    let net = TestNet::start(3, &[]).await.unwrap();
    let thread = publish_thread(&net).await;
    // DEU replaces its endorsement: the first one's opinion gets a revoked version.
    let replacing = net
        .node(1)
        .submit(endorsement(thread[0], Opinion::Disagree, "New data."))
        .await
        .unwrap();
    assert!(net.node(0).wait_for_record(&replacing.id, DEADLINE).await);
    let fra = net.node(0);
    let mut red = Vec::new();
    for i in 0..20 {
        let submitted = fra
            .submit(claim(
                &format!("incident {i}"),
                "RUS",
                if i % 5 == 0 { Tlp::Red } else { Tlp::Amber },
            ))
            .await
            .unwrap();
        if i % 5 == 0 {
            red.push(submitted.id);
        }
    }
    let url = format!("{}/taxii2/", net.api(0));
    let out: Value = serde_json::from_str(
        &python(
            TAXII_POLL,
            &[&url, "test-token", "7", attrib_node::stix::EXTENSION_ID],
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(out["can_write"], false);
    // The client's get_object and object_versions reach the object's own endpoints.
    assert_eq!(out["got"], json!([out["last_id"]]), "{out}");
    assert_eq!(out["versions"], 1, "{out}");
    let pages = out["pages"].as_array().unwrap();
    assert!(
        pages.len() > 3,
        "expected several pages, got {}",
        pages.len()
    );
    let collected: Vec<String> = pages
        .iter()
        .flat_map(|p| {
            p.as_array()
                .unwrap()
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
        })
        .collect();
    let feed = fra
        .feed(
            0,
            1000,
            &attrib_node::FeedFilter {
                max_tlp: Some(Tlp::Amber),
                ..Default::default()
            },
        )
        .unwrap();
    let mut expected: Vec<String> = Vec::new();
    for e in &feed.entries {
        let hex_record = hex::encode(e.record.as_bytes());
        expected.push(hex_record);
    }
    // Retractions and revisions also carry their record (on the revoked relationship version).
    let collected_set: BTreeSet<&String> = collected.iter().collect();
    let expected_set: BTreeSet<&String> = expected.iter().collect();
    assert_eq!(
        collected_set, expected_set,
        "TAXII served a different set of records than the feed"
    );
    assert_eq!(expected.len(), 7 + 16, "RED records are withheld");
    assert!(out["manifest"].as_u64().unwrap() > 0);

    let http = reqwest::Client::new();
    let coll = out["collection"].as_str().unwrap();
    let objects_url = format!(
        "{}/taxii2/attrib/collections/{coll}/objects/?limit=5",
        net.api(0)
    );
    let resp = http.get(&objects_url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Read-only: adding objects is refused the TAXII way (405, a TAXII error body).
    let resp = http
        .post(&objects_url)
        .basic_auth("attrib", Some("test-token"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["http_status"], "405", "{err}");
    let resp = http
        .get(&objects_url)
        .basic_auth("analyst", Some("test-token"))
        .header("accept", "application/taxii+json;version=2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/taxii+json;version=2.1"
    );
    assert!(resp.headers().contains_key("x-taxii-date-added-first"));
    assert!(resp.headers().contains_key("x-taxii-date-added-last"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["more"], true);
    assert!(body["objects"].as_array().unwrap().len() <= 5);
    let only: Value = http
        .get(format!(
            "{}/taxii2/attrib/collections/{coll}/objects/?match[type]=opinion",
            net.api(0)
        ))
        .bearer_auth("test-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let objs = only["objects"].as_array().unwrap();
    // RUS's rebuttal, DEU's two endorsements, and the first one's revoked version.
    assert_eq!(objs.len(), 4);
    assert!(objs.iter().all(|o| o["type"] == "opinion"));
    // match[id]: that object only (RUS's rebuttal has one version); an unsupported
    // match[...] is refused, not ignored.
    let rebuttal = attrib_node::stix::opinion_id(&thread[1]);
    let id = rebuttal.as_str();
    let reader = attrib_tests::reader();
    let one = get_json(
        &reader,
        format!(
            "{}/taxii2/attrib/collections/{coll}/objects/?match[id]={id}",
            net.api(0)
        ),
    )
    .await;
    assert_eq!(one["objects"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["objects"][0]["id"], id);
    // The object's own endpoint serves the same; an object it does not hold, or holds only
    // in a record above the TLP ceiling, is a 404.
    let objects_base = format!("{}/taxii2/attrib/collections/{coll}/objects", net.api(0));
    let own = get_json(&reader, format!("{objects_base}/{id}/")).await;
    assert_eq!(own["objects"], one["objects"], "{own}");
    let versions = get_json(&reader, format!("{objects_base}/{id}/versions/")).await;
    assert_eq!(versions["versions"], json!([one["objects"][0]["modified"]]));
    // A retracted claim's relationship has two versions: by default the last (revoked) one,
    // with match[version] the first or all, and versions/ lists each once, oldest first.
    let retracted = attrib_node::stix::claim_relationship_id(&thread[4]);
    let last = get_json(&reader, format!("{objects_base}/{retracted}/")).await;
    let last = last["objects"].as_array().unwrap();
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0]["revoked"], true);
    let all = get_json(
        &reader,
        format!("{objects_base}/{retracted}/?match[version]=all"),
    )
    .await;
    let all = all["objects"].as_array().unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[0].get("revoked").is_none() && all[1]["revoked"] == true);
    let first = get_json(
        &reader,
        format!("{objects_base}/{retracted}/?match[version]=first"),
    )
    .await;
    assert_eq!(first["objects"], json!([all[0]]));
    let listed = get_json(&reader, format!("{objects_base}/{retracted}/versions/")).await;
    assert_eq!(
        listed["versions"],
        json!([all[0]["modified"], all[1]["modified"]])
    );
    let paged = get_json(
        &reader,
        format!("{objects_base}/{retracted}/?match[version]=all&limit=1"),
    )
    .await;
    assert_eq!(paged["objects"], json!([all[0]]));
    assert_eq!(paged["more"], true);
    let rest = get_json(
        &reader,
        format!(
            "{objects_base}/{retracted}/?match[version]=all&limit=1&next={}",
            paged["next"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(rest["objects"], json!([all[1]]));
    assert_eq!(rest["more"], false);
    let replaced = attrib_node::stix::opinion_id(&thread[2]);
    let replaced_versions = get_json(&reader, format!("{objects_base}/{replaced}/versions/")).await;
    assert_eq!(
        replaced_versions["versions"].as_array().unwrap().len(),
        2,
        "{replaced_versions}"
    );
    let last = get_json(&reader, format!("{objects_base}/{replaced}/")).await;
    assert_eq!(last["objects"][0]["revoked"], true, "{last}");
    // The identity every object's created_by_ref names is found too, once.
    let fra_identity = all[0]["created_by_ref"].as_str().unwrap();
    let identity = get_json(&reader, format!("{objects_base}/{fra_identity}/")).await;
    assert_eq!(identity["objects"].as_array().unwrap().len(), 1);
    assert_eq!(identity["objects"][0]["type"], "identity");
    // Not held, held only above the TLP ceiling, two ids at once: 404. A filter the endpoint
    // does not take: 400.
    let red_relationship = attrib_node::stix::claim_relationship_id(&red[0]);
    for missing in [
        "opinion--00000000-0000-4000-8000-000000000000".to_string(),
        red_relationship,
        format!("{id},{retracted}"),
    ] {
        let resp = reader
            .get(format!("{objects_base}/{missing}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{missing}");
    }
    let refused = reader
        .get(format!(
            "{objects_base}/{retracted}/?match[type]=relationship"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    // One page holds each object version once (a state's identity comes with each of its
    // records), and says which TLP ceiling applied.
    let resp = reader
        .get(format!("{objects_base}/?limit=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-attrib-tlp-ceiling"], "AMBER");
    let whole: Value = resp.json().await.unwrap();
    let versions: Vec<(String, String)> = whole["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].to_string(), o["modified"].to_string()))
        .collect();
    let distinct: BTreeSet<&(String, String)> = versions.iter().collect();
    assert_eq!(
        distinct.len(),
        versions.len(),
        "a version twice in one page"
    );
    assert!(versions.iter().any(|(id, _)| id.contains("identity--")));
    let zero = reader
        .get(format!("{objects_base}/?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(zero.status().as_u16(), 400);
    let old_version = reader
        .get(format!("{objects_base}/"))
        .header("accept", "application/taxii+json;version=2.0")
        .send()
        .await
        .unwrap();
    assert_eq!(old_version.status().as_u16(), 406);
    let unsupported = reader
        .get(format!(
            "{}/taxii2/attrib/collections/{coll}/objects/?match[version]=all",
            net.api(0)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unsupported.status().as_u16(), 400);
    // added_after the last object's date: nothing new.
    let last = body["objects"].as_array().unwrap().len();
    assert!(last > 0);
    let wrong = http
        .get(&objects_url)
        .bearer_auth("test-token")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 406);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_never_leaves_the_node_except_to_an_authorised_local_reader() {
    // Records at CLEAR, AMBER+STRICT and RED. Feed, record, thread and STIX reads get at most
    // AMBER (the node's ceiling) and say so; a token holder asking include_red gets RED too.
    let net = TestNet::start(1, &[]).await.unwrap();
    let fra = net.node(0);
    let clear = fra.submit(claim("clear", "RUS", Tlp::Clear)).await.unwrap();
    let strict = fra
        .submit(claim("strict", "RUS", Tlp::AmberStrict))
        .await
        .unwrap();
    let red = fra.submit(claim("red", "RUS", Tlp::Red)).await.unwrap();
    let red_reply = fra
        .submit(Body::Retraction(Retraction {
            target: red.id,
            reason: "withdrawn".into(),
        }))
        .await
        .unwrap();
    let base = net.api(0);
    let http = reqwest::Client::new();
    let reader = attrib_tests::reader();
    let page: Value = reader
        .get(format!("{base}/v1/feed"))
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
    assert_eq!(got, vec![clear.id.to_hex().as_str()]);
    assert_eq!(page["tlp_ceiling"], "AMBER");
    let resp = reader
        .get(format!("{base}/v1/records/{}", red.id))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.text().await.unwrap().contains("TLP:RED"));
    assert_eq!(
        reader
            .get(format!("{base}/v1/threads/{}", strict.id))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    let stix = get_text(&reader, format!("{base}/v1/stix")).await;
    assert!(!stix.contains(&hex::encode(&red.id.as_bytes()[..4])) || !stix.contains("\"red\""));
    assert!(!stix.contains("\"name\":\"red\""));
    // Without the token nothing is served; include_red needs the token; with it, everything.
    assert_eq!(
        http.get(format!("{base}/v1/feed"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        http.get(format!("{base}/v1/feed?include_red=true"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let all: Value = reader
        .get(format!("{base}/v1/feed?include_red=true"))
        .bearer_auth("test-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["entries"].as_array().unwrap().len(), 4);
    assert_eq!(all["tlp_ceiling"], "RED");
    assert_eq!(
        all["entries"][3]["tlp"], "RED",
        "a response inherits its claim's TLP"
    );
    assert_eq!(all["entries"][3]["record"]["id"], red_reply.id.to_hex());

    // Revisions can be marked differently from the claim they revise. A RED revision of the
    // CLEAR claim stays out of the CLEAR claim's thread; a CLEAR revision of the AMBER+STRICT
    // claim (a declassification) does not carry that claim out in STIX.
    let revise = |title: &str, tlp: Tlp, of: RecordId| {
        let Body::Claim(mut c) = claim(title, "RUS", tlp) else {
            unreachable!()
        };
        c.supersedes = Some(of);
        Body::Claim(c)
    };
    let secret = fra
        .submit(revise("secret revision", Tlp::Red, clear.id))
        .await
        .unwrap();
    fra.submit(revise("declassified", Tlp::Clear, strict.id))
        .await
        .unwrap();
    let thread = get_json(&reader, format!("{base}/v1/threads/{}", clear.id)).await;
    assert!(
        !thread.to_string().contains(&secret.id.to_hex()),
        "{thread}"
    );
    assert_eq!(thread["status"]["superseded_by"], serde_json::json!([]));
    let stix = get_text(&reader, format!("{base}/v1/stix")).await;
    assert!(
        stix.contains("declassified"),
        "the CLEAR revision is exported"
    );
    assert!(
        !stix.contains("attributes \\\"strict\\\""),
        "the AMBER+STRICT claim it revises is not: {stix}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivers_every_record_at_least_once_despite_failures() {
    // A webhook endpoint fails its first three calls; the node retries with backoff and
    // delivers every record at or below the ceiling, in order, with the record id as
    // Idempotency-Key; RED is not sent. A record the endpoint refuses for good (a 400) is
    // skipped, not retried forever in front of the rest. Each delivery is signed with the
    // shared secret over its timestamp and body, as a receiver checks it (README).
    const SECRET: &str = "0123456789abcdef-hook-secret";
    let received: Arc<Mutex<Vec<(String, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(3u32));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let received = received.clone();
                let failures = failures.clone();
                let tx = tx.clone();
                async move {
                    let mut f = failures.lock().unwrap();
                    if *f > 0 {
                        *f -= 1;
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    if body.contains("hooked 5") {
                        return axum::http::StatusCode::BAD_REQUEST;
                    }
                    let header = |n: &str| headers[n].to_str().unwrap().to_string();
                    let timestamp = header("x-attrib-timestamp");
                    let sent_at: u64 = timestamp.parse().unwrap();
                    assert!(sent_at.abs_diff(attrib_node::now_ms() / 1000) < 60);
                    use hmac::Mac;
                    let mut mac =
                        hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                    mac.update(format!("{timestamp}.{body}").as_bytes());
                    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                    assert_eq!(header("x-attrib-signature"), expected);
                    let entry: Value = serde_json::from_str(&body).unwrap();
                    let key = headers["idempotency-key"].to_str().unwrap().to_string();
                    assert_eq!(entry["record"]["id"], key.as_str());
                    received
                        .lock()
                        .unwrap()
                        .push((key, entry["cursor"].as_u64().unwrap()));
                    let _ = tx.send(());
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut net = TestNet::start(1, &[]).await.unwrap();
    net.stop(0).await.unwrap();
    net.restart_configured(0, vec![], |cfg| {
        cfg.webhooks.push(attrib_node::webhook::WebhookConfig {
            name: "siem".into(),
            url: format!("http://{hook_addr}/hook"),
            kind: None,
            about: None,
            max_tlp: None,
            from_start: true,
            secret_file: None,
            secret: Some(attrib_node::webhook::WebhookSecret(SECRET.into())),
        });
    })
    .await
    .unwrap();
    let fra = net.node(0);
    let mut expected = Vec::new();
    for i in 0..8 {
        let tlp = if i == 3 { Tlp::Red } else { Tlp::Green };
        let s = fra
            .submit(claim(&format!("hooked {i}"), "RUS", tlp))
            .await
            .unwrap();
        if tlp != Tlp::Red && i != 5 {
            expected.push(s.id.to_hex());
        }
    }
    for _ in 0..expected.len() {
        tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("webhook deliveries stalled");
    }
    let got = received.lock().unwrap().clone();
    let ids: Vec<String> = got.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(ids, expected);
    assert!(
        got.windows(2).all(|w| w[0].1 < w[1].1),
        "deliveries out of feed order"
    );
}

async fn read_sse_ids(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes_crate::Bytes>> + Unpin),
    buf: &mut String,
    n: usize,
) -> Vec<u64> {
    let mut ids = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while ids.len() < n {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(id) = event.lines().find_map(|l| l.strip_prefix("id:")) {
                ids.push(id.trim().parse::<u64>().unwrap());
            }
            if ids.len() == n {
                return ids;
            }
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("timed out reading SSE")
            .expect("stream ended")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_across_a_node_restart_without_gap_or_duplicate() {
    let mut net = TestNet::start(1, &[]).await.unwrap();
    for i in 0..10 {
        net.node(0)
            .submit(claim(&format!("before {i}"), "RUS", Tlp::Green))
            .await
            .unwrap();
    }
    let reader = attrib_tests::reader();
    let resp = reader
        .get(format!("{}/v1/feed/stream", net.api(0)))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let first = read_sse_ids(&mut body, &mut buf, 6).await;
    assert_eq!(first, (1..=6).collect::<Vec<_>>());
    drop(body);
    net.stop(0).await.unwrap();
    net.restart_with(0, vec![]).await.unwrap();
    for i in 0..5 {
        net.node(0)
            .submit(claim(&format!("after {i}"), "RUS", Tlp::Green))
            .await
            .unwrap();
    }
    let resp = reader
        .get(format!("{}/v1/feed/stream", net.api(0)))
        .header("last-event-id", first.last().unwrap().to_string())
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let rest = read_sse_ids(&mut body, &mut buf, 9).await;
    assert_eq!(rest, (7..=15).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_slows_neither_the_node_nor_other_subscribers() {
    // One subscriber connects and reads nothing while 2,000 records arrive; another reads all
    // of them live; then the slow one reads and gets all 2,000 in order, no gap: it simply
    // resumes from its cursor in the store, and the node holds at most one page for it.
    let net = TestNet::start(2, &[]).await.unwrap();
    let fra = net.node(0);
    let reader = attrib_tests::reader();
    let slow = reader
        .get(format!("{}/v1/feed/stream", net.api(0)))
        .send()
        .await
        .unwrap();
    let fast = reader
        .get(format!("{}/v1/feed/stream", net.api(0)))
        .send()
        .await
        .unwrap();
    let member = &net.members[1];
    let mut prev = None;
    let mut batch = Vec::new();
    for seq in 1..=2000u64 {
        let content = RecordContent {
            author: member_key(&member.state_key),
            seq,
            prev,
            created_at: attrib_node::now_ms(),
            body: claim(&format!("bulk {seq}"), "RUS", Tlp::Green),
        };
        let r = Record::sign(content, &member.state_key, net.roster.network_id());
        prev = Some(r.id());
        batch.push(r.as_bytes().to_vec());
    }
    for chunk in batch.chunks(500) {
        fra.import(chunk.to_vec()).await.unwrap();
    }
    wait_for_count(&fra, 2000, "FRA to store the burst")
        .await
        .unwrap();
    let mut fast_body = fast.bytes_stream();
    let mut buf = String::new();
    let ids = read_sse_ids(&mut fast_body, &mut buf, 2000).await;
    assert_eq!(ids, (1..=2000).collect::<Vec<_>>());
    let mut slow_body = slow.bytes_stream();
    let mut buf = String::new();
    let ids = read_sse_ids(&mut slow_body, &mut buf, 2000).await;
    assert_eq!(ids, (1..=2000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_withdraws_its_position_and_the_thread_and_stix_say_so() {
    // DEU endorses FRA's claim, then withdraws: every node's thread stops counting the
    // endorsement and names DEU as withdrawn, and the STIX export revokes DEU's opinion with the
    // withdrawal's signed record, which verifies offline. A withdrawal with nothing to withdraw,
    // or by the claim's own author, is refused before signing; a later endorsement counts again.
    use attrib_node::SubmitError;
    let net = TestNet::start(3, &[]).await.unwrap();
    let (fra, deu, rus) = (net.node(0), net.node(1), net.node(2));
    let c = fra
        .submit(claim("Grid outage", "RUS", Tlp::Green))
        .await
        .unwrap();
    assert!(deu.wait_for_record(&c.id, DEADLINE).await);
    let withdrawal = || {
        Body::Withdrawal(Withdrawal {
            target: c.id,
            reason: "Our own analysis no longer supports it.".into(),
        })
    };
    match deu.submit(withdrawal()).await {
        Err(SubmitError::NothingToWithdraw(id)) if id == c.id => {}
        other => panic!("withdrawal without a position: {other:?}"),
    }
    match fra.submit(withdrawal()).await {
        Err(SubmitError::Invalid(RecordError::WithdrawalByAuthor { target })) if target == c.id => {
        }
        other => panic!("withdrawal by the claim's author: {other:?}"),
    }
    let e = deu
        .submit(endorsement(c.id, Opinion::Agree, "Matches our data."))
        .await
        .unwrap();
    let w = deu.submit(withdrawal()).await.unwrap();
    for n in [&fra, &rus] {
        assert!(n.wait_for_record(&w.id, DEADLINE).await);
        let thread = n.thread(&c.id, Tlp::Amber).unwrap().expect("thread");
        assert!(thread.status.endorsements.is_empty(), "{:?}", thread.status);
        assert_eq!(thread.status.withdrawals.len(), 1);
        assert_eq!(thread.status.withdrawals[0].record, w.id);
        assert!(
            thread
                .status
                .headline()
                .contains("DEU withdrew its endorsement"),
            "{}",
            thread.status.headline()
        );
    }

    let reader = attrib_tests::reader();
    let stix_since =
        |cursor: u64| get_json(&reader, format!("{}/v1/stix?since={cursor}", net.api(0)));
    let bundle: Value = stix_since(0).await;
    let opinion = attrib_node::stix::opinion_id(&e.id);
    let versions: Vec<&Value> = bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["id"] == opinion.as_str())
        .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(versions[1]["revoked"], true);
    let w_bytes = hex::encode(fra.get(&w.id).unwrap().unwrap().record.as_bytes());
    assert_eq!(
        attrib_node::stix::carried_record(versions[1]),
        Some(w_bytes.as_str()),
        "the withdrawal carries the revocation"
    );
    let report = attrib_node::stix::verify_bundle(&bundle, &net.roster);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        report.verified, 3,
        "claim, endorsement, withdrawal: {report:?}"
    );
    // A page that starts after the endorsement verifies too: the withdrawn opinion's record
    // is not in it, so that object is checked for its shape and counted unchecked...
    let page: Value = stix_since(fra.get(&e.id).unwrap().unwrap().cursor).await;
    let report = attrib_node::stix::verify_bundle(&page, &net.roster);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.verified, 1, "{report:?}");
    assert!(report.properties_unchecked > 0, "{report:?}");
    // So does one that holds the endorsement and the withdrawal but not the claim (the
    // withdrawn opinion's marking, the claim's, is left unchecked).
    let page_ew: Value = stix_since(fra.get(&c.id).unwrap().unwrap().cursor).await;
    let report_ew = attrib_node::stix::verify_bundle(&page_ew, &net.roster);
    assert!(report_ew.problems.is_empty(), "{:?}", report_ew.problems);
    assert_eq!(report_ew.verified, 2, "{report_ew:?}");
    // ...and one made to say something else than a revocation of DEU's opinion is caught.
    for (field, forged) in [
        ("revoked", json!(false)),
        ("object_refs", json!(["relationship--0"])),
        (
            "created_by_ref",
            json!(attrib_node::stix::state_identity_id(fra.state().unwrap())),
        ),
    ] {
        let mut forged_page = page.clone();
        for o in forged_page["objects"].as_array_mut().unwrap() {
            if o["id"] == opinion.as_str() {
                o[field] = forged.clone();
            }
        }
        let problems = attrib_node::stix::verify_bundle(&forged_page, &net.roster).problems;
        assert!(
            problems.iter().any(|p| p.contains("does not correspond")),
            "{field}: {problems:?}"
        );
    }

    // Speaking again counts again.
    let again = deu
        .submit(endorsement(c.id, Opinion::Disagree, "New data."))
        .await
        .unwrap();
    assert!(fra.wait_for_record(&again.id, DEADLINE).await);
    let thread = fra.thread(&c.id, Tlp::Amber).unwrap().expect("thread");
    assert_eq!(thread.status.endorsements.len(), 1);
    assert_eq!(thread.status.endorsements[0].record, again.id);
    assert!(thread.status.withdrawals.is_empty());
}
