//! Telemetry over HTTP: the cursor under concurrent writes, feedback and accuracy, drift
//! windows, DDM, Prometheus text, and counters across a restart.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cursor_reader_never_misses_or_double_counts_during_writes() {
    let dir = temp_dir("cursor");
    let dev = Arc::new(TestDevice::start(&dir).await);
    // A regression, so any finite label is a possible one and every label sent is distinct.
    let hash = dev.upload(&build(&linear_4(), &[])).await;
    dev.activate(&hash).await;

    const WRITERS: usize = 4;
    const EACH: usize = 100;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let dev = dev.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let rows = vec![vec![w as f64, i as f64, 1.0, 2.0]; 1 + i % 3];
                let p = dev.predict(&rows).await;
                ids.extend((0..rows.len() as u64).map(|k| p.first_id + k));
            }
            ids
        }));
    }
    // Read with small pages while the writers run.
    let mut seen: Vec<wire::TelemetryRecord> = Vec::new();
    let mut after = 0;
    for _ in 0..10_000 {
        let page: wire::TelemetryPage =
            ok_json(dev.get(&format!("/v1/telemetry/records?after={after}&limit=7"))).await;
        after = page.next;
        seen.extend(page.records);
        if writers.iter().all(|w| w.is_finished()) {
            break;
        }
    }
    let mut ids = Vec::new();
    for w in writers {
        ids.extend(w.await.unwrap());
    }
    seen.extend(
        dev.all_records(1000)
            .await
            .into_iter()
            .filter(|r| r.seq > after),
    );
    assert_eq!(seen.len(), WRITERS * EACH, "every request exactly once");
    assert!(
        seen.windows(2).all(|w| w[0].seq < w[1].seq),
        "strictly increasing cursor"
    );
    // Prediction ids are unique and each record holds its rows' bins and predictions.
    ids.sort_unstable();
    ids.dedup();
    let total_rows: u64 = seen.iter().map(|r| r.rows).sum();
    assert_eq!(ids.len() as u64, total_rows);
    for r in &seen {
        assert_eq!(r.predictions.len() as u64, r.rows);
        assert_eq!(r.bins.len() as u64, r.rows);
        assert!(r
            .bins
            .iter()
            .all(|b| b.len() == 4 && b.iter().all(|x| *x <= 11)));
    }
    Arc::try_unwrap(dev)
        .ok()
        .expect("writers done")
        .stop()
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn feedback_drift_windows_and_metrics() {
    let dir = temp_dir("drift");
    let dev = TestDevice::start(&dir).await;
    let p = iris_like();
    let hash = dev.upload(&build(&p, &[])).await;
    dev.activate(&hash).await;

    // The training profile covers [-3, 3] in every feature; these rows are far outside it.
    let shifted: Vec<Vec<f64>> = (0..40).map(|i| vec![100.0 + i as f64; 4]).collect();
    let answer = dev.predict(&shifted).await;
    let csv_answer: wire::PredictResponse = ok_json(
        dev.post("/v1/predict")
            .header("Content-Type", "text/csv")
            .body("f3,f2,f1,f0\n0.5,0.5,0.5,0.5\n"),
    )
    .await;
    assert_eq!(csv_answer.first_id, 40);

    // Labels: 30 right, 10 wrong (first outputs are the predicted classes).
    let labels: Vec<wire::Label> = answer
        .outputs
        .iter()
        .enumerate()
        .map(|(i, out)| wire::Label {
            id: answer.first_id + i as u64,
            // A wrong label is still one of the model's 3 classes.
            label: if i < 30 { out[0] } else { (out[0] + 1.0) % 3.0 },
        })
        .collect();
    let fb: wire::FeedbackResponse = ok_json(
        dev.post("/v1/feedback")
            .json(&wire::FeedbackRequest { labels }),
    )
    .await;
    assert_eq!(fb.accepted, 40);

    let w: wire::WindowsResponse =
        ok_json(dev.get("/v1/telemetry/windows?window_s=3600&count=2")).await;
    assert_eq!(w.window_s, 3600);
    let win: Vec<&wire::Window> = w
        .windows
        .iter()
        .filter(|w| w.model.as_ref() == Some(&hash))
        .collect();
    let rows: u64 = win.iter().map(|w| w.rows).sum();
    assert_eq!(rows, 41);
    let labeled: u64 = win.iter().map(|w| w.labeled).sum();
    let correct: u64 = win.iter().map(|w| w.correct).sum();
    assert_eq!((labeled, correct), (40, 30));
    let last = win.last().unwrap();
    assert_eq!(last.drift.len(), 4);
    for f in &last.drift {
        assert_eq!(f.level, wire::DriftLevel::Alert, "{f:?}");
        assert!(f.psi > 0.25 && f.js > 0.5, "{f:?}");
        assert!(
            f.counts[11] >= 40,
            "shifted rows land in the overflow bin: {f:?}"
        );
    }
    assert!(last.dataset_drift);
    assert_eq!(last.predictions.values().sum::<u64>(), 41);
    let cd = w.concept_drift.iter().find(|c| c.model == hash).unwrap();
    assert_eq!(cd.samples, 40);
    assert!((cd.error_rate - 0.25).abs() < 1e-12);
    assert_ne!(cd.state, wasmops_shared::wire::ConceptState::WarmingUp);

    let metrics = dev.get("/metrics").send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    for line in [
        "wasmops_predict_requests_total 2",
        "wasmops_predictions_total 41",
        "wasmops_feedback_labels_total 40",
        "wasmops_feedback_correct_total 30",
        "wasmops_predict_latency_seconds_count 2",
        "wasmops_predict_latency_seconds_bucket{le=\"+Inf\"} 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let info = format!(
        "wasmops_active_module_info{{hash=\"{hash}\",kind=\"logistic_regression\",version=\"{}\"}} 1",
        &hash[..12]
    );
    assert!(text.lines().any(|l| l == info), "missing {info}\n{text}");
    // Drift per feature and live accuracy of the active module over the trailing window:
    // the same rows and labels as the window above.
    let gauge = |line: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
    };
    assert_eq!(gauge("wasmops_drift_window_rows"), 41.0);
    assert_eq!(gauge("wasmops_live_labeled"), 40.0);
    assert_eq!(gauge("wasmops_live_accuracy"), 0.75);
    for f in &last.drift {
        let psi = gauge(&format!(
            "wasmops_feature_drift_psi{{feature=\"{}\"}}",
            f.feature
        ));
        assert!(psi > 0.25, "{} psi {psi}", f.feature);
        let js = gauge(&format!(
            "wasmops_feature_drift_js{{feature=\"{}\"}}",
            f.feature
        ));
        assert!(js > 0.5, "{} js {js}", f.feature);
    }
    dev.stop().await;

    // Counters and labels come from the database: a restart keeps them.
    let dev = TestDevice::start(&dir).await;
    let t = dev.counters().await;
    assert_eq!((t.requests, t.predictions, t.errors), (2, 41, 0));
    let next = dev.predict(&[vec![0.0; 4]]).await;
    assert_eq!(next.first_id, 41);
    dev.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every label page by page through `GET /v1/feedback/records`.
async fn all_labels(dev: &TestDevice, page: usize) -> Vec<wire::LabelRecord> {
    let mut out: Vec<wire::LabelRecord> = Vec::new();
    let mut after = 0;
    for _ in 0..100_000 {
        let p: wire::LabelPage =
            ok_json(dev.get(&format!("/v1/feedback/records?after={after}&limit={page}"))).await;
        if p.labels.is_empty() {
            assert_eq!(p.next, after, "an empty page keeps the cursor");
            return out;
        }
        assert!(p.labels.len() <= page);
        out.extend(p.labels);
        after = p.next;
    }
    panic!("labels never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn label_cursor_pages_every_accepted_label_once_across_restarts() {
    let dir = temp_dir("label-cursor");
    let dev = Arc::new(TestDevice::start(&dir).await);
    // A regression, so any finite label is a possible one and every label sent is distinct.
    let hash = dev.upload(&build(&linear_4(), &[])).await;
    dev.activate(&hash).await;
    let answer = dev.predict(&vec![vec![0.5, 1.0, 1.5, 2.0]; 200]).await;
    let first = answer.first_id;

    // Four writers label disjoint ids (several labels per call) while a reader pages with a
    // small limit; the last writer re-sends labels for ids that already have one.
    const WRITERS: u64 = 4;
    const CALLS: u64 = 25;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let dev = dev.clone();
        writers.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for c in 0..CALLS {
                let id = first + (w * CALLS + c) % 150;
                let labels = vec![
                    wire::Label {
                        id,
                        label: (w * 1000 + c) as f64,
                    },
                    wire::Label {
                        id: first + 150 + (c + w) % 50,
                        label: 0.25 + c as f64,
                    },
                ];
                let fb: wire::FeedbackResponse =
                    ok_json(dev.post("/v1/feedback").json(&wire::FeedbackRequest {
                        labels: labels.clone(),
                    }))
                    .await;
                assert_eq!(fb.accepted, 2);
                sent.extend(labels.into_iter().map(|l| (l.id, l.label.to_bits())));
            }
            sent
        }));
    }
    let mut seen: Vec<wire::LabelRecord> = Vec::new();
    let mut after = 0;
    for _ in 0..10_000 {
        let page: wire::LabelPage =
            ok_json(dev.get(&format!("/v1/feedback/records?after={after}&limit=3"))).await;
        assert!(page.labels.len() <= 3);
        after = page.next;
        seen.extend(page.labels);
        if writers.iter().all(|w| w.is_finished()) {
            break;
        }
    }
    let mut sent = Vec::new();
    for w in writers {
        sent.extend(w.await.unwrap());
    }
    let rest: wire::LabelPage =
        ok_json(dev.get(&format!("/v1/feedback/records?after={after}&limit=10000"))).await;
    seen.extend(rest.labels);

    // Exactly the labels sent, each once, with strictly increasing seq (re-sent ids included:
    // ids in first+150.. got several labels each, and every one of them is its own record).
    assert_eq!(
        seen.len() as u64,
        WRITERS * CALLS * 2,
        "every label exactly once"
    );
    assert!(
        seen.windows(2).all(|w| w[0].seq < w[1].seq),
        "strictly increasing seq"
    );
    let mut got: Vec<(u64, u64)> = seen.iter().map(|l| (l.id, l.label.to_bits())).collect();
    got.sort_unstable();
    sent.sort_unstable();
    assert_eq!(got, sent);
    let per_id = |id: u64| seen.iter().filter(|l| l.id == id).count();
    assert_eq!(
        per_id(first + 175),
        3,
        "a re-labelled id has a record per label"
    );
    assert!(seen.iter().all(|l| l.ts_ms > 0));

    // A label re-sent for the same prediction is a new record at the end of the log.
    let again: wire::FeedbackResponse =
        ok_json(dev.post("/v1/feedback").json(&wire::FeedbackRequest {
            labels: vec![wire::Label {
                id: first,
                label: 2.0,
            }],
        }))
        .await;
    assert_eq!(again.accepted, 1);
    let tail: wire::LabelPage = ok_json(dev.get(&format!(
        "/v1/feedback/records?after={}",
        seen.last().unwrap().seq
    )))
    .await;
    assert_eq!(tail.labels.len(), 1);
    assert_eq!((tail.labels[0].id, tail.labels[0].label), (first, 2.0));
    assert_eq!(tail.next, tail.labels[0].seq);
    let before_restart = all_labels(&dev, 1000).await;
    assert_eq!(before_restart.len(), seen.len() + 1);
    Arc::try_unwrap(dev)
        .ok()
        .expect("writers done")
        .stop()
        .await;

    // After a restart the log is the same, and new labels continue the sequence.
    let dev = TestDevice::start(&dir).await;
    assert_eq!(all_labels(&dev, 7).await, before_restart);
    let _: wire::FeedbackResponse =
        ok_json(dev.post("/v1/feedback").json(&wire::FeedbackRequest {
            labels: vec![wire::Label {
                id: first + 1,
                label: 1.0,
            }],
        }))
        .await;
    let after_restart = all_labels(&dev, 1000).await;
    assert_eq!(after_restart.len(), before_restart.len() + 1);
    assert!(after_restart.last().unwrap().seq > before_restart.last().unwrap().seq);
    dev.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_data_dir_from_before_the_label_log_gets_it_filled_from_feedback() {
    let dir = temp_dir("label-backfill");
    let dev = TestDevice::start(&dir).await;
    let hash = dev.upload(&build(&iris_like(), &[])).await;
    dev.activate(&hash).await;
    let answer = dev.predict(&vec![vec![1.0, 1.0, 1.0, 1.0]; 3]).await;
    for (id, label) in [(0, 1.0), (1, 2.0), (0, 0.0)] {
        let _: wire::FeedbackResponse =
            ok_json(dev.post("/v1/feedback").json(&wire::FeedbackRequest {
                labels: vec![wire::Label {
                    id: answer.first_id + id,
                    label,
                }],
            }))
            .await;
    }
    dev.stop().await;

    // Make it a database as the device wrote it before the label log existed.
    let db = rusqlite::Connection::open(dir.join("telemetry.sqlite")).unwrap();
    db.execute_batch("DROP TABLE label_log;").unwrap();
    drop(db);

    // The log is rebuilt from `feedback`: the label each prediction holds now, in the order
    // the device received them.
    let dev = TestDevice::start(&dir).await;
    let labels = all_labels(&dev, 10).await;
    let mut got: Vec<(u64, f64)> = labels
        .iter()
        .map(|l| (l.id - answer.first_id, l.label))
        .collect();
    got.sort_by_key(|a| a.0);
    assert_eq!(got, vec![(0, 0.0), (1, 2.0)]);
    assert!(labels
        .windows(2)
        .all(|w| w[0].seq < w[1].seq && w[0].ts_ms <= w[1].ts_ms));
    // And it goes on from there.
    let _: wire::FeedbackResponse =
        ok_json(dev.post("/v1/feedback").json(&wire::FeedbackRequest {
            labels: vec![wire::Label {
                id: answer.first_id + 2,
                label: 1.0,
            }],
        }))
        .await;
    let labels = all_labels(&dev, 10).await;
    assert_eq!(labels.len(), 3);
    assert_eq!(labels[2].id, answer.first_id + 2);
    dev.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The dashboard's deployment check (marked with the purpose header) is stored like any call,
/// but is not traffic: the counters, windows, prediction distribution and drift leave it out.
#[tokio::test]
async fn verification_calls_are_not_counted_as_live_traffic() {
    let dir = temp_dir("verify-purpose");
    let dev = TestDevice::start(&dir).await;
    let hash = dev.upload(&build(&iris_like(), &[])).await;
    dev.activate(&hash).await;

    // Far outside the profile: counted as live, these rows would raise drift in every feature.
    let shifted: Vec<Vec<f64>> = (0..30).map(|i| vec![100.0 + i as f64; 4]).collect();
    let checked: wire::PredictResponse = ok_json(
        dev.post("/v1/predict")
            .header(
                wasmops_shared::wire::PURPOSE_HEADER,
                wasmops_shared::wire::PURPOSE_VERIFY,
            )
            .json(&wire::PredictRequest {
                rows: shifted.clone(),
            }),
    )
    .await;
    assert_eq!(checked.outputs.len(), 30);
    let live = dev.predict(&[vec![0.5; 4], vec![-0.5; 4]]).await;
    assert_eq!(live.first_id, 30, "ids stay unique across purposes");

    let c = dev.counters().await;
    assert_eq!((c.requests, c.predictions, c.errors), (1, 2, 0));
    let w: wire::WindowsResponse =
        ok_json(dev.get("/v1/telemetry/windows?window_s=3600&count=2")).await;
    let rows: u64 = w.windows.iter().map(|w| w.rows).sum();
    let requests: u64 = w.windows.iter().map(|w| w.requests).sum();
    assert_eq!((requests, rows), (1, 2));
    let last = w.windows.last().unwrap();
    assert_eq!(last.predictions.values().sum::<u64>(), 2);
    // Drift counts only the two live rows: none of the check's rows (all in the overflow bin).
    for f in &last.drift {
        assert_eq!(f.counts.iter().sum::<u64>(), 2, "{f:?}");
        assert_eq!(f.counts[11], 0, "{f:?}");
    }
    // Still exactly one stored record per call.
    assert_eq!(dev.all_records(100).await.len(), 2);
    dev.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
