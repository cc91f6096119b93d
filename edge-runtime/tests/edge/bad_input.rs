//! The table of refusals: every bad request gets a 4xx whose message says what is wrong, the
//! active model keeps answering correctly, and every predict call (refused or not) has its
//! telemetry record.

use super::*;

struct Case {
    name: &'static str,
    request: reqwest::RequestBuilder,
    status: u16,
    /// A piece of the error message that says what is wrong.
    says: &'static str,
}

fn module_with_card(good: &[u8], edit: impl FnOnce(&mut ModelCard)) -> Vec<u8> {
    let mut card = ModuleInfo::parse(good).unwrap().card.into_inner();
    edit(&mut card);
    with_section(good, abi::SECTION_CARD, &serde_json::to_vec(&card).unwrap())
}

#[tokio::test]
async fn bad_inputs_get_4xx_with_a_reason_and_the_device_keeps_serving() {
    let dir = temp_dir("bad-input");
    let dev = TestDevice::start(&dir).await;
    let p = iris_like();
    let good = build(&p, &[5.1, 3.5, 1.4, 0.2]);
    let hash = dev.upload(&good).await;
    dev.activate(&hash).await;
    let probe = vec![vec![5.9, 3.0, 4.2, 1.5]];
    let probe_bits = bits(&reference::predict(&p, &probe.concat()));

    let json = |body: &str| {
        dev.post("/v1/predict")
            .header("Content-Type", "application/json")
            .body(body.to_string())
    };
    let csv = |body: &[u8]| {
        dev.post("/v1/predict")
            .header("Content-Type", "text/csv")
            .body(body.to_vec())
    };
    let upload = |bytes: Vec<u8>| {
        dev.post("/v1/modules")
            .header("Content-Type", "application/wasm")
            .body(bytes)
    };
    let mut tampered_conformance = ModuleInfo::parse(&good).unwrap().conformance.into_inner();
    tampered_conformance.expected[2].0 ^= 1;
    let oversize = vec![b'1'; 2 << 20];

    let cases = vec![
        Case {
            name: "malformed JSON",
            request: json(r#"{"rows": [[1, 2, 3, 4]"#),
            status: 400,
            says: "malformed JSON",
        },
        Case {
            name: "JSON that is not an object",
            request: json("[1, 2]"),
            status: 400,
            says: "malformed JSON",
        },
        Case {
            name: "JSON without rows",
            request: json("{}"),
            status: 400,
            says: "missing field `rows`",
        },
        Case {
            name: "too few features",
            request: json("{\"rows\": [[1, 2, 3]]}"),
            status: 400,
            says: "row 0 has 3 values; the active model takes 4 features (f0, f1, f2, f3)",
        },
        Case {
            name: "second row too long",
            request: json("{\"rows\": [[1, 2, 3, 4], [1, 2, 3, 4, 5]]}"),
            status: 400,
            says: "row 1 has 5 values",
        },
        Case {
            name: "string value",
            request: json(r#"{"rows": [[1, "x", 3, 4]]}"#),
            status: 400,
            says: "invalid type: string \"x\"",
        },
        Case {
            name: "null value",
            request: json(r#"{"rows": [[1, null, 3, 4]]}"#),
            status: 400,
            says: "invalid type: null",
        },
        Case {
            name: "number out of f64 range",
            request: json(r#"{"rows": [[1, 1e999, 3, 4]]}"#),
            status: 400,
            says: "out of range",
        },
        Case {
            name: "no rows",
            request: json(r#"{"rows": []}"#),
            status: 400,
            says: "no rows to predict",
        },
        Case {
            name: "CSV non-numeric cell",
            request: csv(b"1,2,abc,4\n"),
            status: 400,
            says: "row 0, column 2 (`f2`): `abc` is not a number",
        },
        Case {
            name: "CSV NaN",
            request: csv(b"f0,f1,f2,f3\n1,2,3,4\nNaN,2,3,4\n"),
            status: 400,
            says: "row 1, column 0 (`f0`): NaN is not a finite number",
        },
        Case {
            name: "CSV infinity",
            request: csv(b"1,2,3,-inf\n"),
            status: 400,
            says: "row 0, column 3 (`f3`): -inf is not a finite number",
        },
        Case {
            name: "CSV wrong width",
            request: csv(b"1,2,3\n"),
            status: 400,
            says: "row 0 has 3 values",
        },
        Case {
            name: "CSV unknown header column",
            request: csv(b"f0,f1,petal,f3\n1,2,3,4\n"),
            status: 400,
            says: "CSV header names `petal`",
        },
        Case {
            name: "CSV not UTF-8",
            request: csv(&[0xff, 0xfe, b',', b'1']),
            status: 400,
            says: "not UTF-8",
        },
        Case {
            name: "wrong content type",
            request: dev
                .post("/v1/predict")
                .header("Content-Type", "text/plain")
                .body("1,2,3,4"),
            status: 415,
            says: "not `text/plain`",
        },
        Case {
            name: "no content type",
            request: dev.post("/v1/predict").body("{\"rows\": [[1, 2, 3, 4]]}"),
            status: 415,
            says: "without Content-Type",
        },
        Case {
            name: "oversize predict body",
            request: csv(&oversize),
            status: 413,
            says: "exceeds the device's limit of 1048576 bytes",
        },
        Case {
            name: "predict without token",
            request: dev.http.post(format!("{}/v1/predict", dev.base)).json(
                &wire::PredictRequest {
                    rows: probe.clone(),
                },
            ),
            status: 401,
            says: "missing or wrong access token",
        },
        Case {
            name: "predict with wrong token",
            request: dev
                .http
                .post(format!("{}/v1/predict", dev.base))
                .bearer_auth("s3cret-tokem")
                .json(&wire::PredictRequest {
                    rows: probe.clone(),
                }),
            status: 401,
            says: "missing or wrong access token",
        },
        Case {
            name: "corrupt wasm",
            request: upload(b"\0asm\x01\0\0\0\x01\xffgarbage".to_vec()),
            status: 422,
            says: "not a valid WebAssembly module",
        },
        Case {
            name: "truncated module",
            request: upload(good[..good.len() / 2].to_vec()),
            status: 422,
            says: "not a valid WebAssembly module",
        },
        Case {
            name: "module with imports",
            request: upload(hostile(&[wasm_encoder::Instruction::I32Const(0)], 1, true)),
            status: 422,
            says: "imports env::clock; model modules must import nothing",
        },
        Case {
            name: "endless-loop module",
            request: upload(hostile(&endless_loop(), 1, false)),
            status: 422,
            says: "ran out of its compute budget",
        },
        Case {
            name: "memory-bomb module",
            request: upload(hostile(
                &[wasm_encoder::Instruction::I32Const(0)],
                30_000,
                false,
            )),
            status: 422,
            says: "memory",
        },
        Case {
            name: "wrong ABI version",
            request: upload(module_with_card(&good, |c| c.abi_version = 99)),
            status: 422,
            says: "ABI version 99",
        },
        Case {
            name: "card disagrees with the code",
            request: upload(module_with_card(&good, |c| {
                c.feature_names.push("extra".into())
            })),
            status: 422,
            says: "disagrees",
        },
        Case {
            name: "failing conformance vectors",
            request: upload(with_section(
                &good,
                abi::SECTION_CONFORMANCE,
                &serde_json::to_vec(&tampered_conformance).unwrap(),
            )),
            status: 422,
            says: "conformance vectors do not reproduce: row 0, output 2",
        },
        Case {
            name: "corrupt profile section",
            request: upload(with_section(&good, abi::SECTION_PROFILE, b"{ not json")),
            status: 422,
            says: "custom section `wasmops.profile` is corrupt",
        },
        Case {
            name: "empty upload",
            request: upload(Vec::new()),
            status: 400,
            says: "empty body",
        },
        Case {
            name: "upload as JSON",
            request: dev
                .post("/v1/modules")
                .header("Content-Type", "application/json")
                .body(good.clone()),
            status: 415,
            says: "`application/wasm`, not `application/json`",
        },
        Case {
            name: "oversize upload",
            request: upload(oversize.clone()),
            status: 413,
            says: "exceeds",
        },
        Case {
            name: "upload without token",
            request: dev
                .http
                .post(format!("{}/v1/modules", dev.base))
                .body(good.clone()),
            status: 401,
            says: "access token",
        },
        Case {
            name: "unknown version",
            request: dev.post(&wire::paths::activate(&"a".repeat(64))),
            status: 404,
            says: "no module with hash aaaa",
        },
        Case {
            name: "path traversal in hash",
            request: dev.post("/v1/modules/..%2F..%2Fetc%2Fpasswd/activate"),
            status: 400,
            says: "is not a module hash",
        },
        Case {
            name: "uppercase hash",
            request: dev.post(&wire::paths::activate(&hash.to_uppercase())),
            status: 400,
            says: "is not a module hash",
        },
        Case {
            name: "rollback without history",
            request: dev.post("/v1/rollback"),
            status: 409,
            says: "no earlier version to roll back to",
        },
        Case {
            name: "feedback for unknown id",
            request: dev.post("/v1/feedback").json(&wire::FeedbackRequest {
                labels: vec![wire::Label {
                    id: 999_999,
                    label: 1.0,
                }],
            }),
            status: 404,
            says: "prediction id 999999 is unknown",
        },
        Case {
            name: "malformed feedback",
            request: dev
                .post("/v1/feedback")
                .header("Content-Type", "application/json")
                .body("{\"labels\": [{\"id\": -1}]}"),
            status: 400,
            says: "malformed feedback",
        },
        Case {
            name: "empty feedback",
            request: dev
                .post("/v1/feedback")
                .json(&wire::FeedbackRequest { labels: vec![] }),
            status: 400,
            says: "between 1 and",
        },
        Case {
            name: "records limit 0",
            request: dev.get("/v1/telemetry/records?limit=0"),
            status: 400,
            says: "limit must be between 1 and 10000",
        },
        Case {
            name: "records cursor not a number",
            request: dev.get("/v1/telemetry/records?after=abc"),
            status: 400,
            says: "bad query",
        },
        Case {
            name: "label records limit 0",
            request: dev.get("/v1/feedback/records?after=0&limit=0"),
            status: 400,
            says: "limit must be between 1 and 10000, not 0",
        },
        Case {
            name: "label records limit too large",
            request: dev.get("/v1/feedback/records?limit=10001"),
            status: 400,
            says: "limit must be between 1 and 10000, not 10001",
        },
        Case {
            name: "label records cursor not a number",
            request: dev.get("/v1/feedback/records?after=abc"),
            status: 400,
            says: "bad query: Failed to deserialize query string: after: invalid digit",
        },
        Case {
            name: "label records negative cursor",
            request: dev.get("/v1/feedback/records?after=-1"),
            status: 400,
            says: "bad query",
        },
        Case {
            name: "label records without token",
            request: dev.http.get(format!("{}/v1/feedback/records", dev.base)),
            status: 401,
            says: "access token",
        },
        Case {
            name: "zero-length window",
            request: dev.get("/v1/telemetry/windows?window_s=0"),
            status: 400,
            says: "window_s must be",
        },
        Case {
            name: "telemetry without token",
            request: dev.http.get(format!("{}/v1/telemetry", dev.base)),
            status: 401,
            says: "access token",
        },
        Case {
            name: "metrics without token",
            request: dev.http.get(format!("{}/metrics", dev.base)),
            status: 401,
            says: "access token",
        },
        Case {
            name: "unknown endpoint",
            request: dev.get("/v1/../etc/passwd"),
            status: 404,
            says: "no such endpoint",
        },
    ];
    assert!(cases.len() >= 25);

    let mut predict_calls = 0u64;
    let mut refused_predicts = 0u64;
    let mut failures = Vec::new();
    for case in cases {
        let is_predict = case
            .request
            .try_clone()
            .and_then(|r| r.build().ok())
            .is_some_and(|r| r.url().path() == "/v1/predict");
        let r = case.request.send().await.expect("device answers");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body: Result<wire::ApiError, _> = serde_json::from_str(&text);
        match body {
            Ok(b) if status == case.status && b.error.contains(case.says) => {}
            _ => failures.push(format!(
                "{}: expected {} saying {:?}, got {status} {text}",
                case.name, case.status, case.says
            )),
        }
        // Refused for the token: counted in /metrics, never written to the database.
        if is_predict && status != 401 {
            predict_calls += 1;
            refused_predicts += 1;
        }
        // The active model keeps answering, bit for bit.
        let answer = dev.predict(&probe).await;
        predict_calls += 1;
        assert_eq!(answer.model, hash, "after {}", case.name);
        assert_eq!(
            bits(&answer.outputs.concat()),
            probe_bits,
            "after {}",
            case.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // No telemetry lost: one record per authenticated predict call, refusals included.
    let t = dev.counters().await;
    assert_eq!((t.requests, t.errors), (predict_calls, refused_predicts));
    let records = dev.all_records(500).await;
    assert_eq!(records.len() as u64, predict_calls);
    let refused = records.iter().filter(|r| r.status != "ok").count() as u64;
    assert_eq!(refused, refused_predicts);
    assert!(records.iter().all(|r| r.status != "unauthorized"));
    assert!(records.iter().any(|r| r.status == "payload_too_large"));
    let info: wire::DeviceInfo = ok_json(dev.get("/v1/info")).await;
    assert_eq!(
        info.modules,
        vec![hash.clone()],
        "no refused module was stored"
    );
    dev.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
