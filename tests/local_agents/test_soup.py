"""local_agents.soup: mixing two policies' weights, through the files and the command a user runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from local_agents.act import ARRAYS, DEFAULT_POLICY, OBS_FEATURES, PolicyError, load_policy, save_policy
from local_agents.soup import mix

REPO = Path(__file__).resolve().parents[2]


def perturbed(path: Path, seed: int) -> Path:
    base = load_policy(DEFAULT_POLICY)
    rng = np.random.default_rng(seed)
    arrays = {k: getattr(base, k) + rng.normal(0, 0.05, getattr(base, k).shape).astype(np.float32) for k in ARRAYS}
    save_policy(path, arrays, {"note": f"test parent {seed}"})
    return path


def test_a_mix_is_the_weighted_mean_of_its_parents_and_acts_between_them(tmp_path: Path) -> None:
    a, b = perturbed(tmp_path / "a.npz", 1), perturbed(tmp_path / "b.npz", 2)
    obs = np.random.default_rng(3).random((5, 2, load_policy(a).w1.shape[0]), dtype=np.float32)
    logits = {}
    for alpha in (0.0, 0.25, 1.0):
        mix(a, b, alpha, tmp_path / f"m{alpha}.npz")
        mixed, pa, pb = load_policy(tmp_path / f"m{alpha}.npz"), load_policy(a), load_policy(b)
        for name in ARRAYS:
            np.testing.assert_allclose(getattr(mixed, name), (1 - alpha) * getattr(pa, name) + alpha * getattr(pb, name), atol=1e-6)
        logits[alpha] = mixed.logits(obs)
        header = mixed.provenance["soup"]
        assert header["alpha"] == alpha and [p["provenance"]["note"] for p in header["parents"]] == ["test parent 1", "test parent 2"]
    np.testing.assert_allclose(logits[0.0], load_policy(a).logits(obs), atol=1e-5)
    np.testing.assert_allclose(logits[1.0], load_policy(b).logits(obs), atol=1e-5)
    assert not np.allclose(logits[0.25], logits[0.0]) and not np.allclose(logits[0.25], logits[1.0])


def test_bad_mixes_are_refused_with_the_reason(tmp_path: Path) -> None:
    a = perturbed(tmp_path / "a.npz", 1)
    with pytest.raises(PolicyError, match=r"alpha 1.5 is outside \[0, 1\]"):
        mix(a, a, 1.5, tmp_path / "m.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(PolicyError, match=r"broken\.npz: corrupted policy file"):
        mix(a, tmp_path / "broken.npz", 0.5, tmp_path / "m.npz")
    narrow = {k: np.zeros_like(getattr(load_policy(a), k)) for k in ARRAYS}  # a policy half as wide
    f, width = narrow["w1"].shape[0], load_policy(a).hidden
    h = width // 2
    narrow.update(w1=np.zeros((f, h)), b1=np.zeros(h), w2=np.zeros((h, h)), b2=np.zeros(h), w_scale=np.zeros((3 * h, 4)),
                  w_offload=np.zeros((2 * h, 4)))  # fmt: skip
    save_policy(tmp_path / "narrow.npz", narrow, {})
    with pytest.raises(PolicyError, match=rf"narrow\.npz: w1 has shape \(\d+, {h}\), .*a\.npz has \(\d+, {width}\)"):
        mix(a, tmp_path / "narrow.npz", 0.5, tmp_path / "m.npz")
    old = {k: getattr(load_policy(a), k) for k in ARRAYS if "power" not in k}
    with (tmp_path / "format1.npz").open("wb") as handle:
        np.savez_compressed(handle, header=np.array(json.dumps({"format": "ama-marl-policy/1", "features": list(OBS_FEATURES)})), **old)
    with pytest.raises(PolicyError, match=r"format1\.npz: policy format 'ama-marl-policy/1'"):
        mix(a, tmp_path / "format1.npz", 0.5, tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_the_command_writes_a_loadable_policy_and_explains_itself(tmp_path: Path) -> None:
    a, b = perturbed(tmp_path / "a.npz", 1), perturbed(tmp_path / "b.npz", 2)
    run = subprocess.run([sys.executable, "-m", "local_agents.soup", str(a), str(b), "--alpha", "0.5", "--out", str(tmp_path / "m.npz")],
                         capture_output=True, text=True, cwd=REPO, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(json.dumps(load_policy(tmp_path / "m.npz").provenance))["soup"]["alpha"] == 0.5
    bad = subprocess.run([sys.executable, "-m", "local_agents.soup", str(a), str(tmp_path / "none.npz"), "--alpha", "0.5", "--out",
                          str(tmp_path / "x.npz")], capture_output=True, text=True, cwd=REPO, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "none.npz: no such policy file" in bad.stderr
    assert (
        "B's share"
        in subprocess.run([sys.executable, "-m", "local_agents.soup", "--help"], capture_output=True, text=True, cwd=REPO).stdout
    )
