"""Mix two policies by interpolating their weights (a "model soup"): ``python -m local_agents.soup A B --alpha X
--out FILE``. Run by hand to make a candidate policy, which is then chosen on validation seeds
(``ama eval --first-seed 500``) and, if shipped, recorded in ``policies/default.json``; writes a policy file that
local_agents.act loads like any other.

Two policies fine-tuned from the same parent (``ama train`` with ``init_policy``) usually sit in one basin of the
loss, so the straight line between their weights passes through policies that trade their behaviours smoothly:
here, the shipped policy (fewer SLA violations) and its re-clone on the degraded scenarios (lower cost). Every array
is mixed, ``(1 - alpha) * A + alpha * B``; the two must have the same shapes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from local_agents.act import ARRAYS, PolicyError, file_digest, load_policy, require_current_format, save_policy


def mix(first: Path, second: Path, alpha: float, out: Path) -> None:
    """Write ``(1 - alpha) * first + alpha * second`` to ``out``, with both parents' provenance in its header."""
    if not 0.0 <= alpha <= 1.0:
        raise PolicyError(f"alpha {alpha} is outside [0, 1]")
    a, b = load_policy(first), load_policy(second)
    for path, policy in ((first, a), (second, b)):
        require_current_format(policy, path, "mix")
    for name in ARRAYS:
        if getattr(a, name).shape != getattr(b, name).shape:
            raise PolicyError(f"{second}: {name} has shape {getattr(b, name).shape}, {first} has {getattr(a, name).shape}")
    arrays = {name: (1.0 - alpha) * getattr(a, name) + alpha * getattr(b, name) for name in ARRAYS}
    parents = [{"file": str(p), "sha256_16": file_digest(p), "provenance": q.provenance} for p, q in ((first, a), (second, b))]
    save_policy(out, arrays, {"soup": {"alpha": alpha, "parents": parents}})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Mix two policies' weights: (1 - alpha) * A + alpha * B.")
    parser.add_argument("first", type=Path, help="policy A (.npz)")
    parser.add_argument("second", type=Path, help="policy B (.npz), same shapes as A")
    parser.add_argument("--alpha", type=float, required=True, help="B's share, in [0, 1]")
    parser.add_argument("--out", type=Path, required=True, help="the mixed policy (.npz) to write")
    args = parser.parse_args(argv)
    try:
        mix(args.first, args.second, args.alpha, args.out)
    except PolicyError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {args.out} ({1 - args.alpha:g} x {args.first} + {args.alpha:g} x {args.second})")


if __name__ == "__main__":
    main()
