"""Distillation (``ama distill``): a short run brings a narrow student's choices close to the shipped policy's on
ticks it has not trained on; the student is a policy file like any other, naming its teacher; a teacher that is
missing or of the old format is a one-line error naming the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from local_agents.act import DEFAULT_POLICY, WEIGHT_COLUMNS, PolicyError, file_digest, load_policy
from local_agents.distill import Distiller, DistillSettings, masked_kl
from simulators.env import N_FEATURES
from simulators.rewards import REWARD_COMPONENTS, RewardWeights
from tests.local_agents.test_marl import toy, write_policy_like


def test_a_short_distillation_brings_the_student_close_to_its_teacher(tmp_path: Path) -> None:
    settings = DistillSettings(DEFAULT_POLICY, tmp_path / "run", hidden=16, total_agent_steps=12_000, envs=2, rollout_ticks=120)
    settings.minibatches, settings.learning_rate = 2, 1e-2
    settings.scenarios = (str(toy(tmp_path)),)
    distiller = Distiller(settings)
    held_out = Distiller(DistillSettings(**{**vars(settings), "seed": 99, "student_share": 0.0}))  # other seeds, teacher-driven
    held_out.student = distiller.student  # the same module: it learns as the distiller trains it
    labelled = held_out.label(held_out.collect())
    before = held_out.agreement(labelled)["kl_per_agent"]
    summary = distiller.run()
    after = held_out.agreement(labelled)["kl_per_agent"]
    assert after < 0.4 * before, (before, after)
    student = load_policy(tmp_path / "run" / "policy.npz")
    assert student.hidden == 16 and summary["agent_steps"] >= 12_000
    teacher = student.provenance["distilled"]["teacher"]
    assert teacher["file"] == str(DEFAULT_POLICY) and teacher["provenance"] == load_policy().provenance
    assert teacher["sha256_16"] == file_digest(DEFAULT_POLICY) and student.provenance["commit"] == distiller.commit
    np.testing.assert_array_equal(student.reference, load_policy().reference)
    assert (tmp_path / "run" / "curves.csv").exists() and (tmp_path / "run" / "curves.png").exists()
    driven = [row["student_driven"] for row in distiller.curves]  # DAgger: the teacher drives first, then the student too
    assert driven[0] == 0.0 and max(driven[len(driven) // 2 :]) > 0.3


def test_the_kl_ignores_masked_choices_and_is_zero_for_the_same_logits() -> None:
    teacher = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    allowed = torch.tensor([[True, True, True, False]])
    assert float(masked_kl(teacher.clone(), teacher, allowed)) == pytest.approx(0.0, abs=1e-7)
    differs_where_masked = torch.tensor([[0.0, 1.0, 2.0, -50.0]])
    assert float(masked_kl(differs_where_masked, teacher, allowed)) == pytest.approx(0.0, abs=1e-7)
    assert float(masked_kl(torch.zeros(1, 4), teacher, allowed)) > 0.1


def test_ama_distill_runs_and_refuses_a_teacher_it_cannot_use(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "ui.cli", "distill"]
    given = ["--out", str(tmp_path / "run"), "--agent-steps", "100", "--hidden", "8", "--scenario", str(toy(tmp_path)), "--no-rewrites"]
    run = subprocess.run([*base, str(DEFAULT_POLICY), *given], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    student = load_policy(Path(json.loads(run.stdout)["policy"]))
    assert student.hidden == 8 and student.provenance["distilled"]["settings"]["rewrites"] is False
    write_policy_like(old := tmp_path / "old.npz", format="ama-marl-policy/1")
    for teacher, words in ((tmp_path / "missing.npz", "no such policy file"), (old, "only 'ama-marl-policy/2' policies distil")):
        bad = subprocess.run([*base, str(teacher), "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and f"{teacher}: " in bad.stderr and words in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    with pytest.raises(PolicyError, match=r"missing\.npz: no such policy file"):
        Distiller(DistillSettings(teacher=tmp_path / "missing.npz"))


def test_rewritten_batches_change_one_weight_everywhere_by_at_most_4x(tmp_path: Path) -> None:
    distiller = Distiller(DistillSettings(DEFAULT_POLICY, scenarios=(str(toy(tmp_path)),)))
    rng = np.random.default_rng(0)
    obs = rng.uniform(0.05, 1.0, size=(7, 4, 3, N_FEATURES)).astype(np.float32)
    obs[..., WEIGHT_COLUMNS] = RewardWeights().as_array()
    masks = np.ones((7, 4, 20), np.int8)
    changed_columns = set()
    before = obs.copy()
    rewritten = distiller.rewritten([(obs, masks)] * 40)
    assert (obs == before).all()  # the original batch is left as it was
    for other, other_masks in rewritten:
        assert other_masks is masks
        differs = np.flatnonzero((other != obs).any(axis=(0, 1, 2)))
        assert len(differs) == 1 and WEIGHT_COLUMNS.start <= differs[0] < WEIGHT_COLUMNS.stop
        column = differs[0]
        ratio = other[..., column] / obs[..., column]
        assert np.allclose(ratio, ratio.flat[0]) and 0.25 - 1e-6 <= ratio.flat[0] <= 4.0 + 1e-6
        changed_columns.add(column)
    assert len(changed_columns) == len(REWARD_COMPONENTS)
