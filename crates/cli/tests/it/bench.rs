//! `twinledger bench --smoke`: the benchmark runs end to end (CI runs only this short form; the
//! full run and its figures are in docs/performance.md).

use serde_json::Value;

use crate::support::*;

#[test]
fn the_benchmark_smoke_run_reports_every_measure() {
    let out = run(&["bench", "--smoke", "--rounds", "2", "--json"]);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let num = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    for path in [
        "/http_ceiling_per_s",
        "/log/acked_per_s",
        "/log/anchored_per_s",
        "/log/gas_per_record",
        "/log/verify_per_s",
        "/log/bundle_verify_us",
        "/log/peak_rss_mib",
        "/legacy_per_s",
        "/legacy_gas_per_record",
        "/batched/gas_per_record",
        "/log_over_legacy",
        "/log_over_ceiling",
        "/verify_over_ceiling_median",
        "/proof_over_ceiling_median",
    ] {
        assert!(
            num(&r.pointer(path).expect(path).clone()) > 0.0,
            "{path}: {r}"
        );
    }
    for lat in [
        "/log/post",
        "/log/post_at_half_rate",
        "/log/post_wait_anchored",
    ] {
        let l = r.pointer(lat).expect(lat);
        assert!(
            num(&l["p50_ms"]) <= num(&l["p99_ms"]) && num(&l["p99_ms"]) <= num(&l["max_ms"]),
            "{lat}: {l}"
        );
    }
    assert!(
        num(&r["batched"]["records_per_anchor"]) > 1.0,
        "spaced anchors gather records: {r}"
    );
    let rounds = r["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2, "{r}");
    assert_eq!(rounds[0]["log_over_ceiling"], r["log_over_ceiling"], "{r}");
    let ratios: Vec<f64> = rounds.iter().map(|x| num(&x["log_over_ceiling"])).collect();
    let median = num(&r["log_over_ceiling_median"]);
    assert!(
        (median - (ratios[0] + ratios[1]) / 2.0).abs() < 1e-9 && median > 0.0,
        "median of {ratios:?}: {median}"
    );
    let scale = r["scale"].as_array().expect("scale curve");
    assert_eq!(scale.len(), 2, "{r}");
    assert!(scale[0]["log_size"].as_u64() < scale[1]["log_size"].as_u64());
    assert!(scale.iter().all(|p| num(&p["rss_mib"]) > 0.0
        && num(&p["audit_s_per_million"]) > 0.0
        && num(&p["disk_bytes_per_record"]) > 0.0));
}

/// `bench --block-time 1 --fee-spike --smoke`: anchoring on a timed chain is measured end to
/// end, with the lag, records per anchor, gas and fees per record, before and after the spike.
#[test]
fn the_timed_chain_benchmark_smoke_run_reports_lag_gas_and_fees() {
    let out = run(&[
        "bench",
        "--smoke",
        "--block-time",
        "1",
        "--fee-spike",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let chain = &r["chains"][0];
    assert_eq!(chain["block_time_s"], 1.0, "{r}");
    for field in [
        "one_caller_records",
        "full_rate_records",
        "anchors",
        "blocks",
        "records_per_anchor",
        "gas_per_record",
        "fee_per_record_wei",
        "spike_fee_per_record_wei",
    ] {
        assert!(
            chain[field].as_f64().is_some_and(|v| v > 0.0),
            "{field}: {r}"
        );
    }
    assert!(
        chain["one_caller"]["p50_ms"]
            .as_f64()
            .is_some_and(|v| v > 0.0),
        "{r}"
    );
    let spike = &chain["spike_base_fee_wei"];
    assert!(spike[1].as_u64() > spike[0].as_u64(), "{r}");
}

#[test]
fn the_database_benchmark_smoke_run_compares_postgres_with_sqlite() {
    let out = run(&["bench", "--smoke", "--database", "postgres", "--json"]);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let round = &r["rounds"][0];
    for setup in ["sqlite", "postgres", "three_nodes", "with_standby"] {
        let l = &round[setup];
        for key in ["acked_per_s", "batch_records", "lock_held_ms"] {
            assert!(
                l[key].as_f64().is_some_and(|v| v > 0.0),
                "{setup}.{key}: {r}"
            );
        }
        assert!(
            l["post"]["p99_ms"].as_f64().is_some_and(|v| v > 0.0),
            "{setup}: {r}"
        );
    }
    let ratio = round["postgres"]["acked_per_s"].as_f64().unwrap_or(0.0)
        / round["sqlite"]["acked_per_s"].as_f64().unwrap_or(1.0);
    assert!(
        (r["postgres_over_sqlite_median"].as_f64().unwrap_or(0.0) - ratio).abs() < 1e-9,
        "{r}"
    );
    // The read path and the scale curve on both backends.
    for backend in ["sqlite", "postgres"] {
        let reads = &r[format!("reads_{backend}")];
        for key in ["verify_over_ceiling_median", "proof_over_ceiling_median"] {
            assert!(
                reads[key].as_f64().is_some_and(|v| v > 0.0),
                "{backend}.{key}: {r}"
            );
        }
        let curve = r[format!("scale_{backend}")]
            .as_array()
            .expect("scale curve");
        assert_eq!(curve.len(), 2, "{backend}: {r}");
        for p in curve {
            for key in [
                "append_per_s",
                "audit_s_per_million",
                "disk_bytes_per_record",
            ] {
                assert!(
                    p[key].as_f64().is_some_and(|v| v > 0.0),
                    "{backend}.{key}: {r}"
                );
            }
        }
    }
    let refused = run(&["bench", "--smoke", "--database", "postgres://db/x"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("bench starts its own PostgreSQL"));
}
