//! Issue 15's wrong answers to bad input, each checked over real sockets: modules that pass
//! every check and then panic every predict (also when restored at startup), impossible
//! labels, cursors past 2^63, unbounded echoes, CSV the dashboard accepts, media type case,
//! 405 and chunked-body errors, and JSON type errors by row and column.

use super::*;

/// The JSON of one custom section (read from the bytes, so any loader version can be tested).
fn section_json(bytes: &[u8], name: &str) -> serde_json::Value {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let Ok(wasmparser::Payload::CustomSection(r)) = payload {
            if r.name() == name {
                return serde_json::from_slice(r.data()).expect("section is JSON");
            }
        }
    }
    panic!("no section {name}");
}

fn with_json_section(
    bytes: &[u8],
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Vec<u8> {
    let mut value = section_json(bytes, name);
    edit(&mut value);
    with_section(bytes, name, &serde_json::to_vec(&value).unwrap())
}

/// A module with the given sections whose ABI exports return `consts` (ABI version,
/// features, outputs, heap base) and whose predict returns 0 (ok) without writing anything.
fn fixed_module(consts: [i32; 4], sections: &[(&str, Vec<u8>)]) -> Vec<u8> {
    raw_module(
        consts,
        &[wasm_encoder::Instruction::I32Const(0)],
        1,
        false,
        sections,
    )
}

/// A consistent module that writes no outputs: card `"outputs": []`, conformance vectors
/// with 0 outputs per row, `n_outputs` export 0.
fn module_without_outputs(good: &[u8]) -> Vec<u8> {
    let mut card = section_json(good, abi::SECTION_CARD);
    card["outputs"] = serde_json::json!([]);
    let mut conformance = section_json(good, abi::SECTION_CONFORMANCE);
    let inputs = conformance["inputs"].as_array().unwrap()[..4].to_vec();
    conformance["n_rows"] = 1.into();
    conformance["n_outputs"] = 0.into();
    conformance["inputs"] = inputs.into();
    conformance["expected"] = serde_json::json!([]);
    let profile = section_json(good, abi::SECTION_PROFILE);
    fixed_module(
        [abi::ABI_VERSION as i32, 4, 0, 0],
        &[
            (abi::SECTION_CARD, serde_json::to_vec(&card).unwrap()),
            (abi::SECTION_PROFILE, serde_json::to_vec(&profile).unwrap()),
            (
                abi::SECTION_CONFORMANCE,
                serde_json::to_vec(&conformance).unwrap(),
            ),
        ],
    )
}

fn with_profile_feature(good: &[u8], key: &str, value: serde_json::Value) -> Vec<u8> {
    with_json_section(good, abi::SECTION_PROFILE, |p| {
        p["features"][0][key] = value;
    })
}

/// Modules that used to load and then panic every predict call: each is refused at upload
/// with what is wrong and where; the active model keeps answering.
#[tokio::test]
async fn modules_that_would_break_every_predict_are_refused_at_upload() {
    let dir = temp_dir("hostile-modules");
    let dev = TestDevice::start(&dir).await;
    let good = build(&iris_like(), &[5.1, 3.5, 1.4, 0.2]);
    let hash = dev.upload(&good).await;
    dev.activate(&hash).await;

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "profile without edges",
            with_profile_feature(&good, "edges", serde_json::json!([])),
            "custom section `wasmops.profile` is corrupt: feature 0 (`f0`) has 0 edges; a profile has 11",
        ),
        (
            "profile with a single edge",
            with_profile_feature(&good, "edges", serde_json::json!([1.0])),
            "feature 0 (`f0`) has 1 edges",
        ),
        (
            "profile with 3 bin counts",
            with_profile_feature(&good, "counts", serde_json::json!([1, 2, 3])),
            "feature 0 (`f0`) has 3 bin counts; a profile has 12",
        ),
        (
            "profile whose counts overflow",
            with_profile_feature(
                &good,
                "counts",
                serde_json::json!([u64::MAX, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            ),
            "bin counts sum to more than 2^64",
        ),
        (
            "profile naming another feature",
            with_json_section(&good, abi::SECTION_PROFILE, |p| {
                p["features"][2]["name"] = "petal".into();
            }),
            "profile feature 2 is named `petal`; the card's feature 2 is `f2`",
        ),
        (
            "consistent module without outputs",
            module_without_outputs(&good),
            "custom section `wasmops.card` is corrupt: the card lists no outputs",
        ),
        (
            "card without features",
            with_json_section(&good, abi::SECTION_CARD, |c| {
                c["feature_names"] = serde_json::json!([]);
            }),
            "the card lists no features",
        ),
        (
            "conformance without rows",
            with_json_section(&good, abi::SECTION_CONFORMANCE, |c| {
                c["n_rows"] = 0.into();
                c["inputs"] = serde_json::json!([]);
                c["expected"] = serde_json::json!([]);
            }),
            "no conformance rows",
        ),
    ];
    let mut failures = Vec::new();
    for (name, module, says) in cases {
        let r = dev
            .post("/v1/modules")
            .header("Content-Type", "application/wasm")
            .body(module)
            .send()
            .await
            .expect("device answers");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        if status != 422 || !text.contains(says) {
            failures.push(format!(
                "{name}: expected 422 saying {says:?}, got {status} {text}"
            ));
        }
        let answer = dev.predict(&[vec![5.9, 3.0, 4.2, 1.5]]).await;
        assert_eq!(answer.model, hash, "after {name}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    dev.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// An activation of such a module persisted by an older build must not brick the device:
/// the restore checks the module again, the device starts with no active model, says why in
/// its answers (409) and records every call; a good module can then be activated.
#[tokio::test]
async fn a_stored_activation_that_no_longer_loads_leaves_the_device_serving() {
    let dir = temp_dir("hostile-restore");
    let good = build(&iris_like(), &[5.1, 3.5, 1.4, 0.2]);
    let bad = with_profile_feature(&good, "edges", serde_json::json!([]));
    let bad_hash = wasmops_shared::digest::content_hash(&bad);
    std::fs::create_dir_all(dir.join("modules")).unwrap();
    std::fs::write(dir.join("modules").join(format!("{bad_hash}.wasm")), &bad).unwrap();
    std::fs::write(dir.join("active"), format!("{bad_hash}\n")).unwrap();

    let dev = TestDevice::start(&dir).await;
    let info: wire::DeviceInfo = ok_json(dev.get("/v1/info")).await;
    assert!(info.active.is_none(), "{:?}", info.active);
    let r = dev
        .post("/v1/predict")
        .json(&wire::PredictRequest {
            rows: vec![vec![5.9, 3.0, 4.2, 1.5]],
        })
        .send()
        .await
        .expect("predict is answered, not dropped");
    let (status, e) = error_of(r).await;
    assert_eq!((status, e.kind.as_str()), (409, "conflict"), "{}", e.error);
    assert_eq!(
        dev.counters().await.requests,
        1,
        "the refused call has its record"
    );

    let hash = dev.upload(&good).await;
    dev.activate(&hash).await;
    let answer = dev.predict(&[vec![5.9, 3.0, 4.2, 1.5]]).await;
    assert_eq!(answer.model, hash);
    dev.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same for an activation history whose last line names a module that is gone, or is
/// not a hash at all: the device starts with no active model instead of refusing to start.
#[tokio::test]
async fn a_stored_activation_of_a_missing_or_garbled_module_leaves_the_device_serving() {
    for (tag, last_line) in [
        ("missing", "a".repeat(64)),
        ("garbled", "../etc/passwd".into()),
    ] {
        let dir = temp_dir(&format!("hostile-restore-{tag}"));
        std::fs::write(dir.join("active"), format!("{last_line}\n")).unwrap();
        let dev = TestDevice::start(&dir).await;
        let info: wire::DeviceInfo = ok_json(dev.get("/v1/info")).await;
        assert!(info.active.is_none(), "{tag}: {:?}", info.active);
        let hash = dev.upload(&build(&iris_like(), &[])).await;
        dev.activate(&hash).await;
        assert_eq!(dev.predict(&[vec![5.9, 3.0, 4.2, 1.5]]).await.model, hash);
        dev.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

async fn feedback(dev: &TestDevice, labels: &[(u64, f64)]) -> (u16, String) {
    let r = dev
        .post("/v1/feedback")
        .json(&wire::FeedbackRequest {
            labels: labels
                .iter()
                .map(|&(id, label)| wire::Label { id, label })
                .collect(),
        })
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A classifier's label is one of its class indices; anything else is refused, naming the
/// label's position in the request, and nothing of that call is stored. A regression takes
/// any finite label.
#[tokio::test]
async fn impossible_labels_are_refused_with_their_position() {
    let dir = temp_dir("hostile-labels");
    let dev = TestDevice::start(&dir).await;
    let classifier = dev.upload(&build(&iris_like(), &[])).await;
    dev.activate(&classifier).await;
    let rows = vec![vec![5.1, 3.5, 1.4, 0.2], vec![6.7, 3.0, 5.2, 2.3]];
    let first = dev.predict(&rows).await.first_id;

    for (labels, says) in [
        (
            vec![(first, 99.0)],
            format!("label 0 (prediction id {first}): 99 is not a class index (the model has 3 classes, 0 to 2)"),
        ),
        (
            vec![(first, 0.0), (first + 1, -1.0)],
            format!("label 1 (prediction id {}): -1 is not a class index", first + 1),
        ),
        (
            vec![(first + 1, 2.0), (first, 1.5)],
            format!("label 1 (prediction id {first}): 1.5 is not a class index (a whole number"),
        ),
    ] {
        let (status, text) = feedback(&dev, &labels).await;
        assert!(status == 400 && text.contains(&says), "{labels:?}: {status} {text}");
    }
    let page: wire::LabelPage = ok_json(dev.get("/v1/feedback/records")).await;
    assert!(
        page.labels.is_empty(),
        "refused calls store nothing: {page:?}"
    );
    assert_eq!(
        feedback(&dev, &[(first, 0.0), (first + 1, 2.0)]).await.0,
        200
    );

    let hash = dev.upload(&build(&linear_4(), &[])).await;
    dev.activate(&hash).await;
    let id = dev.predict(&rows).await.first_id;
    // Labels are checked against the model that made each prediction, not the active one.
    assert_eq!(feedback(&dev, &[(id, 1.5), (id + 1, -1e6)]).await.0, 200);
    assert_eq!(feedback(&dev, &[(first, 1.5)]).await.0, 400);
    dev.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cursor past 2^63 is past every seq: an empty page that keeps the cursor.
#[tokio::test]
async fn cursors_past_two_to_the_63_give_an_empty_page() {
    let dir = temp_dir("hostile-cursor");
    let dev = TestDevice::start(&dir).await;
    let hash = dev.upload(&build(&iris_like(), &[])).await;
    dev.activate(&hash).await;
    let first = dev.predict(&[vec![5.1, 3.5, 1.4, 0.2]]).await.first_id;
    assert_eq!(feedback(&dev, &[(first, 0.0)]).await.0, 200);
    for after in [1u64 << 63, u64::MAX] {
        let page: wire::TelemetryPage =
            ok_json(dev.get(&format!("/v1/telemetry/records?after={after}"))).await;
        assert!(page.records.is_empty(), "after={after}: {page:?}");
        assert_eq!(page.next, after);
        let labels: wire::LabelPage =
            ok_json(dev.get(&format!("/v1/feedback/records?after={after}"))).await;
        assert!(labels.labels.is_empty(), "after={after}: {labels:?}");
        assert_eq!(labels.next, after);
    }
    dev.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the device does with request bodies: CSV as the dashboard reads it, media types in
/// any case, JSON type errors by row and column, a bounded echo of an unknown header name,
/// 405 with a JSON body, and a broken chunked body as a bad request.
#[tokio::test]
async fn request_bodies_are_read_as_documented() {
    let dir = temp_dir("hostile-bodies");
    let dev = TestDevice::start(&dir).await;
    let p = iris_like();
    let hash = dev.upload(&build(&p, &[])).await;
    dev.activate(&hash).await;
    let probe = [5.9, 3.0, 4.2, 1.5];
    let probe_bits = bits(&reference::predict(&p, &probe));

    let send = |content_type: &'static str, body: Vec<u8>| {
        dev.post("/v1/predict")
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let mut failures = Vec::new();
    // Accepted, each answering the probe row bit for bit.
    for (name, content_type, body) in [
        (
            "CSV with a byte-order mark",
            "text/csv",
            b"\xEF\xBB\xBFf0,f1,f2,f3\n5.9,3.0,4.2,1.5\n".to_vec(),
        ),
        (
            "CSV with quoted numbers",
            "text/csv",
            b"\"5.9\",\"3.0\", 4.2 ,\"1.5\"\r\n".to_vec(),
        ),
        (
            "CSV with quoted header names, reordered",
            "text/csv",
            b"\"f3\",\"f0\",f1,f2\n1.5,5.9,3.0,4.2\n".to_vec(),
        ),
        (
            "media type in mixed case",
            "Application/JSON",
            br#"{"rows": [[5.9, 3.0, 4.2, 1.5]]}"#.to_vec(),
        ),
        (
            "media type with a charset",
            "application/json; charset=UTF-8",
            br#"{"rows": [[5.9, 3.0, 4.2, 1.5]]}"#.to_vec(),
        ),
        (
            "CSV media type in capitals",
            "TEXT/CSV",
            b"5.9,3.0,4.2,1.5\n".to_vec(),
        ),
    ] {
        let r = send(content_type, body).await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        match serde_json::from_str::<wire::PredictResponse>(&text) {
            Ok(a) if status == 200 && bits(&a.outputs.concat()) == probe_bits => {}
            _ => failures.push(format!(
                "{name}: expected 200 with the probe's outputs, got {status} {text}"
            )),
        }
    }
    // Refused, each saying what and where.
    let long_name = "x".repeat(200_000);
    for (name, content_type, body, says) in [
        (
            "quoted header name holding a comma",
            "text/csv",
            b"\"f0,f1\",f2,f3\n1,2,3,4\n".to_vec(),
            "CSV header lists 3 columns".to_string(),
        ),
        (
            "duplicated header name",
            "text/csv",
            b"f0,f0,f2,f3\n1,2,3,4\n".to_vec(),
            "CSV header names `f0` twice (columns 0 and 1)".to_string(),
        ),
        (
            "JSON value of the wrong type",
            "application/json",
            br#"{"rows": [[1, 2, 3, 4], [1, "x", 3, 4]]}"#.to_vec(),
            "row 1, column 1 (`f1`): invalid type: string \"x\", expected a number".to_string(),
        ),
        (
            "JSON row that is not an array",
            "application/json",
            br#"{"rows": [[1, 2, 3, 4], 5]}"#.to_vec(),
            "row 1: invalid type: integer `5`".to_string(),
        ),
        (
            "JSON string value of 200,000 bytes",
            "application/json",
            format!(r#"{{"rows": [[1, 2, 3, "{long_name}"]]}}"#).into_bytes(),
            "row 0, column 3 (`f3`): invalid type: string \"xxxx".to_string(),
        ),
        (
            "unknown header name of 200,000 bytes",
            "text/csv",
            format!("f0,f1,f2,{long_name}\n1,2,3,4\n").into_bytes(),
            "CSV header names `xxxx".to_string(),
        ),
    ] {
        let r = send(content_type, body).await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let said =
            serde_json::from_str::<wire::ApiError>(&text).is_ok_and(|e| e.error.contains(&says));
        if status != 400 || !said || text.len() > 1_000 {
            let shown: String = text.chars().take(300).collect();
            failures.push(format!(
                "{name}: expected 400 saying {says:?} in under 1,000 bytes, got {status} ({} bytes) {shown}",
                text.len()
            ));
        }
    }
    // Upload and feedback read media types without regard to case too.
    let up = dev
        .post("/v1/modules")
        .header("Content-Type", "Application/Wasm")
        .body(build(&iris_like_v2(), &[]))
        .send()
        .await
        .unwrap();
    if up.status() != 200 {
        failures.push(format!(
            "upload as Application/Wasm: {}",
            up.text().await.unwrap()
        ));
    }
    let id = dev.predict(&[probe.to_vec()]).await.first_id;
    let fb = dev
        .post("/v1/feedback")
        .header("Content-Type", "Application/JSON")
        .body(format!(r#"{{"labels": [{{"id": {id}, "label": 1}}]}}"#))
        .send()
        .await
        .unwrap();
    if fb.status() != 200 {
        failures.push(format!(
            "feedback as Application/JSON: {}",
            fb.text().await.unwrap()
        ));
    }
    // A refused label of 200,000 bytes is not repeated in full either.
    let fb = dev
        .post("/v1/feedback")
        .header("Content-Type", "application/json")
        .body(format!(
            r#"{{"labels": [{{"id": {id}, "label": "{long_name}"}}]}}"#
        ))
        .send()
        .await
        .unwrap();
    let status = fb.status().as_u16();
    let text = fb.text().await.unwrap();
    if status != 400 || text.len() > 1_000 || !text.contains("invalid type: string") {
        let shown: String = text.chars().take(300).collect();
        failures.push(format!(
            "feedback with a long string label: expected a short 400, got {status} ({} bytes) {shown}",
            text.len()
        ));
    }

    // A method an endpoint does not take: 405 with the usual JSON error.
    let r = dev.get("/v1/predict").send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    match serde_json::from_str::<wire::ApiError>(&text) {
        Ok(e)
            if status == 405
                && e.kind == "method_not_allowed"
                && e.error.contains("GET is not allowed on `/v1/predict`") => {}
        _ => failures.push(format!(
            "GET /v1/predict: expected 405 with a JSON error, got {status} {text:?}"
        )),
    }

    // A chunked feedback body with a malformed chunk: 400, not 413.
    let (status, text) = raw_request(
        &dev.base,
        &format!(
            "POST /v1/feedback HTTP/1.1\r\nHost: device\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5\r\n{{\"lab\r\nzz\r\nels\r\n0\r\n\r\n"
        ),
    )
    .await;
    if status != 400 || !text.contains("could not read the request body") {
        failures.push(format!(
            "malformed chunked feedback: expected 400, got {status} {text:?}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    dev.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends raw bytes on one connection; returns the status and the rest of the answer.
async fn raw_request(base: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}
