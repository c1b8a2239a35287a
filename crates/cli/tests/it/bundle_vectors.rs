//! The proof-bundle conformance vectors in `verifier/vectors`: valid bundles served by a real
//! service, and bundles broken in each way `docs/proof-format.md` names, each with the outcome a
//! verifier must give. Every verifier in the repository runs them here, against an Anvil loaded
//! with the chain the bundles were anchored on: `twinledger verify-proof`, the JavaScript module
//! (`verifier/cli.mjs`) and `docs/verify_bundle.py` (hash math only: the `offline` outcome).
//!
//! Made again (new bundles on a new chain) by
//! `TWINLEDGER_WRITE_VECTORS=1 cargo test -p twinledger --test it -- bundle_vectors`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use twinledger_chain::{ChainClient, LogContract, NodeKind, SignerConfig};
use twinledger_core::{BundleError, DeviceSigner, Limits, ProofBundle, TreeHead, parse};

use crate::support::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vectors() -> PathBuf {
    root().join("verifier/vectors")
}

#[tokio::test]
async fn every_verifier_gives_each_conformance_vector_its_expected_outcome() {
    if std::env::var_os("TWINLEDGER_WRITE_VECTORS").is_some() {
        write_vectors(&vectors()).await;
    }
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(vectors().join("manifest.json")).expect("verifier/vectors/manifest.json"),
    )
    .expect("manifest");
    // A copy: Anvil may write to its state file.
    let chain_dir = data_dir();
    let state = chain_dir.path().join("anvil-state.json");
    std::fs::copy(vectors().join("anvil-state.json"), &state).expect("copy the chain");
    let node = start_node(NodeKind::Anvil, 0, Some(state)).await;
    let rpc = node.url().to_owned();
    let trusted = manifest["chain"]["contract"].as_str().expect("contract");

    let cases = manifest["cases"].as_array().expect("cases");
    let mut seen = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let file = vectors().join(case["file"].as_str().expect("file"));
        let file = file.to_str().expect("path");
        let contract = case["trust"]["contract"].as_str().unwrap_or(trusted);
        let mut args = vec!["--rpc", rpc.as_str(), "--contract", contract];
        let chain_id = case["trust"]["chain_id"].as_u64().map(|c| c.to_string());
        if let Some(id) = &chain_id {
            args.extend(["--chain-id", id.as_str()]);
        }
        let expect = case["expect"].as_str().expect("expect");
        seen.insert((expect, case["step"].as_str().unwrap_or("-")));

        let mut rust = vec!["verify-proof", file];
        rust.extend(&args);
        let out = run(&rust);
        assert_eq!(
            outcome(out.status.code()),
            expect,
            "{name}: twinledger verify-proof said {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let js = javascript(file, &args);
        assert_eq!(
            js["status"], expect,
            "{name}: the JavaScript module said {js}"
        );
        assert_eq!(
            js["step"], case["step"],
            "{name}: the JavaScript module failed another step: {js}"
        );

        let out = Command::new("python3")
            .arg(root().join("docs/verify_bundle.py"))
            .arg(file)
            .output()
            .expect("python3 runs");
        assert_eq!(
            outcome(out.status.code()),
            case["offline"].as_str().expect("offline"),
            "{name}: verify_bundle.py said {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The suite holds valid bundles and a failure of every step a verifier takes.
    for step in [
        "format",
        "state_hash",
        "leaf",
        "inclusion",
        "signature",
        "chain_id",
        "contract",
        "anchor",
    ] {
        assert!(
            seen.contains(&("not_proven", step)),
            "no vector fails {step}"
        );
    }
    assert!(seen.contains(&("valid", "-")), "no valid vector");

    // A chain that cannot be reached is an error, never a pass (the negative control of the
    // chain checks: a verifier that skipped them would pass here).
    let valid = vectors().join("valid-reported.json");
    let valid = valid.to_str().expect("path");
    let down = ["--rpc", "http://127.0.0.1:1", "--contract", trusted];
    let mut rust = vec!["verify-proof", valid];
    rust.extend(down);
    assert_eq!(outcome(run(&rust).status.code()), "error");
    assert_eq!(javascript(valid, &down)["status"], "error");
    node.stop(Duration::from_secs(10)).await.expect("stop");
}

/// What an exit code means: 0 proven, 1 not proven, 2 could not check.
fn outcome(code: Option<i32>) -> &'static str {
    match code {
        Some(0) => "valid",
        Some(1) => "not_proven",
        Some(2) => "error",
        other => panic!("unexpected exit {other:?}"),
    }
}

/// `node verifier/cli.mjs FILE --json ARGS`, its one-line JSON answer.
fn javascript(file: &str, args: &[&str]) -> Value {
    let out = Command::new("node")
        .arg(root().join("verifier/cli.mjs"))
        .arg(file)
        .arg("--json")
        .args(args)
        .output()
        .expect("node runs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verifier/cli.mjs {file}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Makes the vectors: a service on a fresh Anvil records a few twins of every kind, its
/// bundles are fetched, broken copies are derived from them, and the chain is saved.
async fn write_vectors(out: &Path) {
    std::fs::create_dir_all(out).expect("vectors dir");
    let node = start_node(NodeKind::Anvil, 0, None).await;
    let rpc = node.url().to_owned();
    let dir = data_dir();
    let contract = deploy_in(dir.path(), &rpc, "log");
    let app = external_app(dir.path(), &["--rpc", &rpc]);

    // Leaf 0 may be anchored alone, with an empty audit path: the vectors start at leaf 1.
    let (status, body) = post_state(&app, "meter-1", "", json!({"kwh": 1})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_state(&app, "boiler-1", "", json!({"pressure_bar": 2.6})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_state(
        &app,
        "boiler-1",
        "?scheme=seed-sha256",
        json!({"pressure_bar": 2.7, "burner": "on"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put_json(
        &app,
        "/v1/twins/pump-1/desired",
        json!({"state": {"rpm": 1500, "mode": "auto"}, "tolerances": {"/rpm": {"absolute": 50}}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        post_state(&app, "pump-1", "", json!({"rpm": 1530, "mode": "manual"})).await;
    assert_eq!(status, 201, "{body}");
    let signer = DeviceSigner::from_seed(&[11; 32]);
    let (status, body) = put_json(
        &app,
        "/v1/twins/valve-7/device-key",
        json!({"public_key": signer.public_key().to_hex(), "require_signature": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let signed = json!({"open": true, "pos": 0.25});
    let signature = signer.sign(&core_json(&signed)).expect("sign");
    let r = http()
        .post(app.url("/v1/twins/valve-7/states"))
        .header("twinledger-signature", signature)
        .json(&signed)
        .send()
        .await
        .expect("signed report");
    assert_eq!(r.status().as_u16(), 201);

    let bundle = |twin: &'static str, v: u64| {
        let app = &app;
        async move {
            let (bytes, _) = anchored_bundle(app, twin, v).await;
            String::from_utf8(bytes).expect("utf-8")
        }
    };
    let reported = bundle("boiler-1", 1).await;
    let seed = bundle("boiler-1", 2).await;
    let desired = bundle("pump-1", 1).await;
    let scored = bundle("pump-1", 2).await;
    let signed = bundle("valve-7", 1).await;
    drop(app);

    // A second contract on the same chain, whose first head is a tree made here around the
    // signed record with its signature swapped for one of another state: everything but the
    // signature holds, on chain too.
    let client = ChainClient::connect(&rpc, SignerConfig::Unlocked(None))
        .await
        .expect("client");
    let from = client.from();
    let other = LogContract::deploy(&client, from, from)
        .await
        .expect("second contract");
    let other_contract = other.to_checksum(None);
    let swapped = {
        let wrong = signer
            .sign(&core_json(&json!({"open": false})))
            .expect("sign");
        let v: Value = serde_json::from_str(&signed).expect("json");
        let right = v["record"]["annex"]["signature"]["value"]
            .as_str()
            .expect("signature value")
            .to_owned();
        recomputed(&signed.replace(&right, &wrong))
    };
    let head = head_of(&swapped);
    let on_other = LogContract::at(client.clone(), other).await.expect("bind");
    let nonce = client.nonce(true).await.expect("nonce");
    let sent = on_other
        .send_anchor(&head, None, nonce, false, None)
        .await
        .expect("anchor");
    let receipt = on_other
        .wait_anchor(sent.tx_hash(), Duration::from_secs(30))
        .await
        .expect("mined");
    let mut bad_signature: Value = serde_json::from_str(&swapped).expect("json");
    bad_signature["anchor"] = json!({
        "chain_id": client.chain_id(),
        "contract": other_contract,
        "tx_hash": format!("{:#x}", receipt.tx_hash),
        "block_number": receipt.block_number,
        "block_timestamp": receipt.block_timestamp,
    });
    let bad_signature = bad_signature.to_string();

    let v: Value = serde_json::from_str(&reported).expect("json");
    let path: Vec<String> = v["inclusion_proof"]["path"]
        .as_array()
        .expect("path")
        .iter()
        .map(|p| p.as_str().expect("hex").to_owned())
        .collect();
    assert!(
        !path.is_empty(),
        "leaf 1 has a sibling in any tree that holds it"
    );
    let size = v["tree_head"]["size"].as_u64().expect("size");
    let index = v["record"]["index"].as_u64().expect("index");
    // A transaction that anchored another head (on this contract if one did, else on the other).
    let tx_of = |text: &str| {
        serde_json::from_str::<Value>(text).expect("json")["anchor"]["tx_hash"].clone()
    };
    let other_tx = [&seed, &desired, &scored, &signed]
        .into_iter()
        .map(|t| tx_of(t))
        .find(|tx| *tx != v["anchor"]["tx_hash"])
        .unwrap_or_else(|| json!(format!("{:#x}", receipt.tx_hash)));

    let mut cases = Cases {
        dir: out,
        list: Vec::new(),
    };
    let hash_math = "valid";
    let fails = "not_proven";
    cases.valid(
        "valid-reported",
        &reported,
        "a reported state, jcs-sha256, leaf format v1",
    );
    cases.valid(
        "valid-seed-scheme",
        &seed,
        "a state hashed under seed-sha256",
    );
    cases.valid(
        "valid-desired-tolerances",
        &desired,
        "a desired state with tolerances: an annex, leaf format v2",
    );
    cases.valid(
        "valid-scored-report",
        &scored,
        "a report scored against the desired state (annex with congruence)",
    );
    cases.valid(
        "valid-signed-report",
        &signed,
        "a report with the device's Ed25519 signature in its annex",
    );
    let fix = |text: &str, f: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_str(text).expect("json");
        f(&mut v);
        v.to_string()
    };
    let salt = v["record"]["salt"].as_str().expect("salt").to_owned();
    let leaf_hash = v["leaf_hash"].as_str().expect("leaf hash").to_owned();
    let extra = path[0].clone();
    let broken: Vec<(&str, String, &str, &str, &str)> = vec![
        (
            "format-unknown",
            reported.replace("twinledger-proof-v1", "twinledger-proof-v9"),
            "format",
            fails,
            "an unknown format",
        ),
        (
            "format-unknown-field",
            fix(&reported, &|v| v["tree_head"]["note"] = json!("trust me")),
            "format",
            fails,
            "a field the format does not have",
        ),
        (
            "format-duplicate-key",
            reported.replacen("{\"format\":", "{\"format\":\"x\",\"format\":", 1),
            "format",
            fails,
            "a duplicate key, which parsers resolve differently",
        ),
        (
            "edited-state",
            reported.replace("\"pressure_bar\":2.6", "\"pressure_bar\":2.7"),
            "state_hash",
            fails,
            "one byte of the state changed",
        ),
        (
            "edited-salt",
            reported.replace(&salt, &flip_first(&salt)),
            "leaf",
            fails,
            "the record's salt changed: another leaf",
        ),
        (
            "edited-leaf-hash",
            reported.replace(
                &format!("\"leaf_hash\":\"{leaf_hash}\""),
                &format!("\"leaf_hash\":\"{}\"", flip_first(&leaf_hash)),
            ),
            "leaf",
            fails,
            "a stated leaf hash the record does not give",
        ),
        (
            "path-short",
            fix(&reported, &|v| {
                v["inclusion_proof"]["path"]
                    .as_array_mut()
                    .expect("path")
                    .pop();
            }),
            "inclusion",
            fails,
            "the audit path's last hash removed",
        ),
        (
            "path-long",
            fix(&reported, &|v| {
                v["inclusion_proof"]["path"]
                    .as_array_mut()
                    .expect("path")
                    .push(json!(extra))
            }),
            "inclusion",
            fails,
            "a hash added to the audit path",
        ),
        (
            "wrong-size",
            fix(&reported, &|v| {
                v["tree_head"]["size"] = json!(size * 2 + 1);
                v["inclusion_proof"]["tree_size"] = json!(size * 2 + 1);
            }),
            "inclusion",
            fails,
            "the tree's size changed, in the head and the proof",
        ),
        (
            "proof-for-another-leaf",
            fix(&reported, &|v| {
                v["inclusion_proof"]["leaf_index"] = json!(index + 1)
            }),
            "inclusion",
            fails,
            "an inclusion proof for another leaf",
        ),
        (
            "root-not-anchored",
            recomputed(&reported.replace("\"pressure_bar\":2.6", "\"pressure_bar\":9.9")),
            "anchor",
            hash_math,
            "the state edited and every hash recomputed: sound hash math around a root no contract holds",
        ),
        (
            "bundle-claims-other-chain",
            fix(&reported, &|v| v["anchor"]["chain_id"] = json!(1)),
            "chain_id",
            hash_math,
            "the bundle names chain 1; the node is on another",
        ),
        (
            "bundle-names-other-contract",
            fix(&reported, &|v| {
                v["anchor"]["contract"] = json!(other_contract)
            }),
            "contract",
            hash_math,
            "the bundle names a contract the verifier does not trust",
        ),
        (
            "wrong-anchor-block",
            fix(&reported, &|v| {
                let b = v["anchor"]["block_number"].as_u64().expect("block");
                v["anchor"]["block_number"] = json!(b + 1);
            }),
            "anchor",
            hash_math,
            "the anchor's block changed",
        ),
        (
            "wrong-anchor-transaction",
            fix(&reported, &|v| v["anchor"]["tx_hash"] = other_tx.clone()),
            "anchor",
            hash_math,
            "another anchor's transaction",
        ),
    ];
    for (name, text, step, offline, why) in broken {
        cases.broken(name, Some(&text), step, offline, Value::Null, why);
    }
    cases.broken(
        "verifier-expects-other-chain",
        None,
        "chain_id",
        hash_math,
        json!({"chain_id": 1}),
        "the verifier expects chain 1",
    );
    cases.broken(
        "verifier-trusts-other-contract",
        None,
        "contract",
        hash_math,
        json!({"contract": other_contract}),
        "the verifier trusts another contract than the bundle's",
    );
    cases.broken(
        "bad-device-signature",
        Some(&bad_signature),
        "signature",
        hash_math,
        json!({"contract": other_contract}),
        "a signature of another state, in a tree anchored on a contract of its own: only the \
         signature check fails",
    );
    let cases = cases.list;
    let manifest = json!({
        "about": "Conformance vectors for twinledger proof bundles (docs/proof-format.md). \
                  Load anvil-state.json into Anvil (anvil --load-state), then verify each case's \
                  file with --rpc <that Anvil> --contract <trust.contract, else chain.contract> \
                  [--chain-id <trust.chain_id>]. expect: the outcome of a full verifier (steps \
                  1 to 5 and the device signature); step: the check that fails; offline: the \
                  outcome of the hash math alone (steps 1 to 4, no signature). Made by \
                  TWINLEDGER_WRITE_VECTORS=1 cargo test -p twinledger --test it -- bundle_vectors",
        "chain": {"anvil_state": "anvil-state.json", "chain_id": client.chain_id(), "contract": contract},
        "cases": cases,
    });
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).expect("json") + "\n",
    )
    .expect("manifest");
    // Saved as the plain JSON `anvil --load-state` reads.
    let snapshot = dir.path().join("anvil-state.json.gz");
    node.snapshot(&snapshot).await.expect("save the chain");
    let state = twinledger_chain::read_state_file(&snapshot).expect("read the chain");
    std::fs::write(out.join("anvil-state.json"), state).expect("write the chain");
    node.stop(Duration::from_secs(10)).await.expect("stop");
}

/// `text` with its state hash, leaf, leaf hash and root made to fit its record again (the
/// audit path kept): a bundle whose hash math holds.
fn recomputed(text: &str) -> String {
    let b = ProofBundle::from_json(text.as_bytes()).expect("bundle");
    let r = &b.record;
    let state_hash = twinledger_core::Hash(r.scheme.hash(&r.state).expect("hash"));
    let mut v: Value = serde_json::from_str(text).expect("json");
    v["record"]["state_hash"] = json!(hex(&state_hash.0));
    let again = ProofBundle::from_json(v.to_string().as_bytes()).expect("bundle");
    let leaf_hash = again.record.leaf_hash();
    v["leaf"] = json!(hex(&again.record.leaf()));
    v["leaf_hash"] = json!(hex(&leaf_hash.0));
    let root = again.inclusion_proof.root(&leaf_hash).expect("root");
    v["tree_head"]["root"] = json!(hex(&root.0));
    let text = v.to_string();
    ProofBundle::from_json(text.as_bytes())
        .expect("bundle")
        .verify()
        .map(|_| ())
        .or_else(|e| match e {
            BundleError::Signature(_) => Ok(()),
            e => Err(e),
        })
        .expect("the hash math holds");
    text
}

fn head_of(text: &str) -> TreeHead {
    ProofBundle::from_json(text.as_bytes())
        .expect("bundle")
        .tree_head
}

fn core_json(v: &Value) -> twinledger_core::json::Value {
    parse(v.to_string().as_bytes(), &Limits::default()).expect("json")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `hex` with its first digit changed.
fn flip_first(hex: &str) -> String {
    let first = if hex.starts_with('0') { '1' } else { '0' };
    format!("{first}{}", &hex[1..])
}

/// The cases of the manifest, each written to its file as it is added.
struct Cases<'a> {
    dir: &'a Path,
    list: Vec<Value>,
}

impl Cases<'_> {
    fn valid(&mut self, name: &str, text: &str, why: &str) {
        self.add(name, Some(text), "valid", None, "valid", Value::Null, why);
    }

    /// A case that fails `step`; without a text of its own it checks `valid-reported.json`
    /// under another `trust`.
    fn broken(
        &mut self,
        name: &str,
        text: Option<&str>,
        step: &str,
        offline: &str,
        trust: Value,
        why: &str,
    ) {
        self.add(name, text, "not_proven", Some(step), offline, trust, why);
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        name: &str,
        text: Option<&str>,
        expect: &str,
        step: Option<&str>,
        offline: &str,
        trust: Value,
        why: &str,
    ) {
        let file = match text {
            Some(text) => {
                let file = format!("{name}.json");
                std::fs::write(self.dir.join(&file), text).expect("write vector");
                file
            }
            None => "valid-reported.json".to_owned(),
        };
        let mut case = json!({
            "name": name, "file": file, "expect": expect, "step": step, "offline": offline,
            "why": why,
        });
        if !trust.is_null() {
            case["trust"] = trust;
        }
        self.list.push(case);
    }
}
