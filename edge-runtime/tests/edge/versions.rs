//! Versions: listing, activation under sustained load, rollback, and restart.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn activation_during_sustained_load_fails_no_request() {
    let dir = temp_dir("swap-under-load");
    let dev = Arc::new(TestDevice::start(&dir).await);
    let (pa, pb) = (iris_like(), iris_like_v2());
    let a = dev.upload(&build(&pa, &[5.1, 3.5, 1.4, 0.2])).await;
    let b = dev.upload(&build(&pb, &[5.1, 3.5, 1.4, 0.2])).await;
    dev.activate(&a).await;
    let rows = vec![vec![5.1, 3.5, 1.4, 0.2], vec![5.0, 3.4, 1.5, 0.2]];
    let want_a = bits(&reference::predict(&pa, &rows.concat()));
    let want_b = bits(&reference::predict(&pb, &rows.concat()));
    assert_ne!(want_a, want_b, "the two versions must answer differently");

    const CLIENTS: usize = 6;
    const PER_CLIENT: usize = 150;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let dev = dev.clone();
        let rows = rows.clone();
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::with_capacity(PER_CLIENT);
            for _ in 0..PER_CLIENT {
                let r = dev
                    .post("/v1/predict")
                    .json(&wire::PredictRequest { rows: rows.clone() })
                    .send()
                    .await
                    .expect("device answers");
                assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
                let p: wire::PredictResponse = r.json().await.unwrap();
                seen.push((p.model, bits(&p.outputs.concat())));
            }
            seen
        }));
    }
    // Swap versions back and forth while the clients run (bounded: 20 activations).
    for i in 0..20 {
        let target = if i % 2 == 0 { &b } else { &a };
        dev.activate(target).await;
    }
    let mut answered = 0;
    for c in clients {
        for (model, out) in c.await.expect("client task") {
            answered += 1;
            // Every answer is complete and consistent with the version that gave it.
            if model == a {
                assert_eq!(out, want_a);
            } else {
                assert_eq!(model, b);
                assert_eq!(out, want_b);
            }
        }
    }
    assert_eq!(answered, CLIENTS * PER_CLIENT);
    let t = dev.counters().await;
    assert_eq!((t.requests, t.errors), ((CLIENTS * PER_CLIENT) as u64, 0));
    Arc::try_unwrap(dev)
        .ok()
        .expect("clients done")
        .stop()
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn rollback_is_one_call_and_survives_restart() {
    let dir = temp_dir("rollback");
    let dev = TestDevice::start(&dir).await;
    let a = dev
        .upload(&build(&iris_like(), &[1.0, 2.0, 3.0, 4.0]))
        .await;
    let b = dev
        .upload(&build(&iris_like_v2(), &[1.0, 2.0, 3.0, 4.0]))
        .await;
    assert_eq!(dev.activate(&a).await.previous, None);
    assert_eq!(dev.activate(&b).await.previous, Some(a.clone()));

    let list: wire::ModuleList = ok_json(dev.get("/v1/modules")).await;
    assert_eq!(list.active, Some(b.clone()));
    assert_eq!(list.modules.len(), 2);
    for m in &list.modules {
        assert_eq!(m.active, m.hash == b);
        assert_eq!(m.kind, "logistic_regression");
        assert_eq!(m.feature_names, vec!["f0", "f1", "f2", "f3"]);
        assert!(m.size > 1000 && m.uploaded_ms > 1_600_000_000_000, "{m:?}");
    }

    let rb: wire::RollbackResponse = ok_json(dev.post("/v1/rollback")).await;
    assert_eq!(
        (rb.active.as_str(), rb.rolled_back.as_str()),
        (a.as_str(), b.as_str())
    );
    assert_eq!(dev.predict(&[vec![1.0; 4]]).await.model, a);
    dev.stop().await;

    // After a restart the rolled-back state holds, and there is nothing further back.
    let dev = TestDevice::start(&dir).await;
    let info: wire::DeviceInfo = ok_json(dev.get("/v1/info")).await;
    assert_eq!(info.active.map(|m| m.hash), Some(a.clone()));
    assert_eq!(dev.predict(&[vec![1.0; 4]]).await.model, a);
    let r = dev.post("/v1/rollback").send().await.unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!(status, 409);
    assert!(body.error.contains(&a), "{}", body.error);
    // Prediction ids keep growing across the restart.
    let first_after_restart = dev.predict(&[vec![1.0; 4]]).await.first_id;
    assert_eq!(first_after_restart, 2);
    dev.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
