"""``edgebot eval``: metrics equal a hand computation, the JSON keys, the text report, and refusals."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner


from edgebot import datasets
from edgebot.cli import main
from edgebot.errors import DataError
from edgebot.evaluate import RESULT_KEYS, binary_rates, evaluate_bundle, evaluate_scores, format_evaluation

IOT23_44 = datasets.iot23("44-1")
IOT23_4 = datasets.iot23("4-1")


# ------------------------------------------------------------------------- arithmetic (no models)


def test_metrics_of_a_tiny_case_by_hand():
    y = np.array([1, 1, 0, 0, 1, 0])
    s = np.array([0.9, 0.2, 0.7, 0.1, 0.6, 0.5])
    fam = ["Mirai", "Mirai", "", "", "Hakai", ""]
    hosts = ["a", "a", "b", "c", "d", "c"]
    r = evaluate_scores(y, s, 0.6, fam, hosts)
    # flagged: 0.9, 0.7, 0.6 -> tp = 2 (0.9, 0.6), fp = 1 (0.7), fn = 1 (0.2), tn = 2 (0.1, 0.5)
    assert r["confusion"] == [[2, 1], [1, 2]]
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert r["fpr"] == pytest.approx(1 / 3)
    assert r["families"] == {"Hakai": {"flows": 1, "detected": 1, "recall": 1.0},
                             "Mirai": {"flows": 2, "detected": 1, "recall": 0.5}}
    assert r["hosts"]["a"]["outcome"] == "TP" and r["hosts"]["a"]["alerts"] == 1
    assert r["hosts"]["b"]["outcome"] == "FP"
    assert r["hosts"]["c"]["outcome"] == "TN" and r["hosts"]["c"]["flows"] == 2
    assert r["hosts"]["d"]["outcome"] == "TP"
    assert r["flows"] == {"labeled": 6, "benign": 3, "malicious": 3, "flagged": 3}


def test_threshold_is_compared_in_float64():
    """A threshold one float64 ulp above a float32 score must not flag that score."""
    s = np.array([0.25], dtype=np.float32)
    th = float(np.nextafter(np.float64(s[0]), np.inf))
    assert evaluate_scores(np.array([0]), s, th, [""], ["h"])["fpr"] == 0.0


def test_zero_denominators_are_zero():
    r = binary_rates(np.array([0, 0]), np.array([0, 0]))
    assert r["precision"] == 0.0 and r["recall"] == 0.0 and r["f1"] == 0.0 and r["accuracy"] == 1.0


# --------------------------------------------------------------------------- with a real bundle


def _by_hand(bundle_dir: Path, path: Path) -> dict:
    """The gateway's online path, written out: ring buffers fed in time order, then plain counting."""
    from edgebot.bundle import load_bundle
    from edgebot.features import featurize
    from edgebot.readers import read_flows
    from edgebot.windows import HostWindows

    b = load_bundle(bundle_dir)
    records, _ = read_flows([path])
    X = b.scale(featurize(records))
    ring = HostWindows(b.window, b.n_features)
    W = np.empty((len(records), b.window, b.n_features), np.float32)
    for i in sorted(range(len(records)), key=lambda i: (records[i].ts, i)):
        W[i] = ring.push(f"{records[i].scenario}|{records[i].orig_h}", X[i])
    flagged = [float(s) >= b.threshold for s in b.score(W)]
    tp = fp = fn = tn = 0
    for r, f in zip(records, flagged):
        if r.label == "malicious":
            tp, fn = tp + f, fn + (not f)
        elif r.label == "benign":
            fp, tn = fp + f, tn + (not f)
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "n_mal": tp + fn,
            "families": {fam: sum(1 for r, f in zip(records, flagged) if r.label == "malicious" and r.family == fam and f)
                         for fam in {r.family for r in records if r.label == "malicious"}}}


@pytest.mark.tf
def test_eval_json_equals_the_hand_computation(int8_bundle):
    res = CliRunner().invoke(main, ["eval", str(int8_bundle), str(IOT23_44), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert set(got) == set(RESULT_KEYS)
    h = _by_hand(int8_bundle, IOT23_44)
    tp, fp, fn, tn = h["tp"], h["fp"], h["fn"], h["tn"]
    assert got["confusion"] == [[tn, fp], [fn, tp]]
    assert got["accuracy"] == pytest.approx((tp + tn) / (tp + tn + fp + fn))
    assert got["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
    assert got["recall"] == pytest.approx(tp / (tp + fn))
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert got["fpr"] == pytest.approx(fp / (fp + tn))
    assert {k: v["detected"] for k, v in got["families"].items()} == h["families"]
    assert got["flows"]["labeled"] == 237 and got["flows"]["malicious"] == 26
    hosts = got["hosts"]
    assert set(hosts) == {"44-1|192.168.1.199", "44-1|192.168.1.1"}
    assert hosts["44-1|192.168.1.199"]["truth"] == "malicious"
    assert sum(v["alerts"] for v in hosts.values()) == tp + fp


@pytest.mark.tf
def test_eval_of_several_files_and_the_text_report(int8_bundle):
    result = evaluate_bundle(int8_bundle, [IOT23_44, IOT23_4])
    assert result["flows"]["labeled"] == 237 + 452
    assert "4-1|192.168.1.132" in result["hosts"]
    assert result["hosts"]["4-1|192.168.1.132"]["truth"] == "benign"
    assert [f["labeled"] for f in result["files"]] == [237, 452]
    text = format_evaluation(result)
    for word in ("accuracy", "precision", "recall", "F1", "FPR", "per-family recall", "Mirai", "hosts:",
                 "44-1|192.168.1.199"):
        assert word in text, text
    json.dumps(result)  # plain JSON types only


@pytest.mark.tf
def test_eval_refuses_unlabeled_data(int8_bundle, tmp_path):
    lines = lzma.open(IOT23_4, "rt").read().splitlines()
    unlabeled = [line.replace("benign", "background") if not line.startswith("#") else line for line in lines]
    path = tmp_path / "bg.conn.log"
    path.write_text("\n".join(unlabeled) + "\n")
    with pytest.raises(DataError, match="no flow is labeled benign or malicious"):
        evaluate_bundle(int8_bundle, [path])


@pytest.mark.tf
def test_eval_of_a_tampered_bundle_exits_2(bundle_copy):
    with open(bundle_copy / "autoencoder.tflite", "ab") as fh:
        fh.write(b"\0")
    res = CliRunner().invoke(main, ["eval", str(bundle_copy), str(IOT23_44)])
    assert res.exit_code == 2
    assert res.output.strip() == ("Error: bundle file autoencoder.tflite does not match its sha256 in the manifest "
                                  "(tampered or corrupted): copy the bundle again from where it was converted")


def test_eval_of_a_directory_that_is_no_bundle_exits_2(tmp_path):
    res = CliRunner().invoke(main, ["eval", str(tmp_path), str(IOT23_44)])
    assert res.exit_code == 2 and "no manifest.json" in res.output


def test_eval_refuses_cicflowmeter_files():
    cic = datasets.path(datasets.CICIDS2017[0])
    with pytest.raises(DataError, match="cicflowmeter profile.*zeek profile"):  # a zeek bundle
        evaluate_bundle("unused", [cic], bundle=object())
