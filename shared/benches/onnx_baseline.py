# The onnxruntime baseline of `benches/modules.rs` (run by it in a venv under the target dir).
#
# argv: a directory holding cases.json and, per case i, i.x (f64 rows) and i.y (f64 labels).
# Per case: fits the scikit-learn model of that shape on those rows, exports it with skl2onnx
# (float32 inputs, the converters' default; classifiers without ZipMap), times onnxruntime with
# one thread on the same rows (whole batch and one row per call), writes i.onnx and prints one
# JSON line with the fitted parameters (so the module is built from the same model) and times.
import json, sys, time

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.cluster import KMeans
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

d_ir = sys.argv[1]
cases = json.load(open(f"{d_ir}/cases.json"))


def tree_params(t):
    t = t.tree_
    value = t.value[:, 0, :]
    value = value / value.sum(axis=1, keepdims=True)
    return {
        "feature": t.feature.tolist(),
        "threshold": t.threshold.tolist(),
        "left": t.children_left.tolist(),
        "right": t.children_right.tolist(),
        "value": value.tolist(),
    }


for i, case in enumerate(cases):
    d, kind = case["d"], case["kind"]
    X = np.fromfile(f"{d_ir}/{i}.x", dtype="<f8").reshape(-1, d)
    y = np.fromfile(f"{d_ir}/{i}.y", dtype="<f8")
    if kind == "linear":
        est = LinearRegression()
    elif kind == "logistic":
        est = LogisticRegression(max_iter=300)
        y = y.astype(np.int64)
    elif kind == "gaussian_nb":
        est = GaussianNB()
        y = y.astype(np.int64)
    elif kind == "kmeans":
        est = KMeans(n_clusters=case["k"], n_init=1, random_state=0)
    elif kind == "decision_tree":
        est = DecisionTreeClassifier(max_depth=case["depth"], random_state=0)
        y = y.astype(np.int64)
    elif kind == "random_forest":
        est = RandomForestClassifier(
            n_estimators=case["trees"], max_depth=case["depth"], random_state=0, n_jobs=1
        )
        y = y.astype(np.int64)
    else:
        raise SystemExit(f"unknown kind {kind}")
    model = make_pipeline(StandardScaler(), est) if case["scaled"] else est
    model.fit(X, y)

    params = {}
    if case["scaled"]:
        sc = model.steps[0][1]
        params["mean"] = sc.mean_.tolist()
        params["scale"] = sc.scale_.tolist()
    if kind in ("linear", "logistic"):
        params["coef"] = np.atleast_2d(est.coef_).tolist()
        params["intercept"] = np.atleast_1d(est.intercept_).tolist()
    elif kind == "gaussian_nb":
        params["theta"] = est.theta_.tolist()
        params["var"] = est.var_.tolist()
        params["prior"] = est.class_prior_.tolist()
    elif kind == "kmeans":
        params["centers"] = est.cluster_centers_.tolist()
    elif kind == "decision_tree":
        params["trees"] = [tree_params(est)]
    elif kind == "random_forest":
        params["trees"] = [tree_params(t) for t in est.estimators_]

    Xf = X.astype(np.float32)
    options = {id(est): {"zipmap": False}} if hasattr(est, "predict_proba") else None
    onx = to_onnx(model, Xf[:1], options=options)
    raw = onx.SerializeToString()
    with open(f"{d_ir}/{i}.onnx", "wb") as f:
        f.write(raw)

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(raw, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: Xf})
    times = []
    for _ in range(case["repeats"]):
        t = time.perf_counter()
        sess.run(None, {name: Xf})
        times.append(time.perf_counter() - t)
    batch_s = sorted(times)[len(times) // 2]
    singles = [Xf[j : j + 1] for j in range(2000)]
    for r in singles[:200]:
        sess.run(None, {name: r})
    times = []
    for r in singles:
        t = time.perf_counter()
        sess.run(None, {name: r})
        times.append(time.perf_counter() - t)
    single_s = sorted(times)[len(times) // 2]
    print(json.dumps({"params": params, "onnx_bytes": len(raw), "batch_s": batch_s, "single_s": single_s}), flush=True)
