"""The shared featurizer: shapes, names, no identity leaks, determinism."""

from __future__ import annotations

import numpy as np

from edgebot.features import FEATURE_NAMES, FEATURIZER_HASH, N_FEATURES, MinMaxScaler, featurize, featurizer_info
from edgebot.flow import FlowRecord


def _flow(**kw):
    base = dict(ts=1.0, orig_h="10.0.0.1", orig_p=40000, resp_h="1.2.3.4", resp_p=80, proto="tcp",
                duration=1.5, orig_bytes=100, resp_bytes=2000, conn_state="SF", history="ShADadFf",
                orig_pkts=6, orig_ip_bytes=420, resp_pkts=5, resp_ip_bytes=2260)
    base.update(kw)
    return FlowRecord(**base)


def test_shape_names_and_hash():
    X = featurize([_flow(), _flow(proto="udp", conn_state="S0", history="D")])
    assert X.shape == (2, N_FEATURES) and X.dtype == np.float32
    assert len(FEATURE_NAMES) == N_FEATURES == len(set(FEATURE_NAMES))
    info = featurizer_info()
    assert info["hash"] == FEATURIZER_HASH and info["n_features"] == N_FEATURES


def test_values_of_one_flow():
    x = featurize([_flow()])[0]
    col = dict(zip(FEATURE_NAMES, x))
    assert np.isclose(col["log_duration"], np.log1p(1.5))
    assert np.isclose(col["log_resp_bytes"], np.log1p(2000))
    assert np.isclose(col["log_orig_mean_pkt_size"], np.log1p(70))
    assert np.isclose(col["orig_ip_byte_share"], 420 / (420 + 2260))
    assert col["proto_tcp"] == 1 and col["proto_udp"] == 0
    assert col["state_SF"] == 1 and col["state_S0"] == 0
    for c in "SADF":
        assert col[f"orig_hist_{c}"] == 1
    assert col["orig_hist_R"] == 0 and col["orig_hist_H"] == 0
    assert col["resp_hist_h"] == 1 and col["resp_hist_a"] == 1 and col["resp_hist_s"] == 0
    assert col["resp_port_well_known"] == 1 and col["orig_port_registered"] == 1


def test_identity_fields_do_not_change_features():
    a = featurize([_flow()])
    b = featurize([_flow(ts=99999.0, orig_h="192.168.1.195", resp_h="8.8.8.8", uid="Cxyz", service="http",
                         orig_p=41000, label="malicious")])
    np.testing.assert_array_equal(a, b)


def test_unknown_state_and_proto_are_safe():
    x = featurize([_flow(proto="sctp", conn_state="WEIRD", history="^?x", duration=None)])[0]
    col = dict(zip(FEATURE_NAMES, x))
    assert col["state_OTH"] == 1 and col["proto_tcp"] == 0 and col["log_duration"] == 0
    assert np.all(np.isfinite(x))


def test_real_flows_are_finite(iot23_flows):
    X = featurize(iot23_flows)
    assert X.shape == (len(iot23_flows), N_FEATURES)
    assert np.all(np.isfinite(X))
    s = MinMaxScaler().fit(X)
    Xs = s.transform(X)
    assert Xs.min() >= 0 and Xs.max() <= 1
    s2 = MinMaxScaler.from_dict(s.to_dict())
    np.testing.assert_array_equal(s2.transform(X), Xs)
