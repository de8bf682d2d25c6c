"""Figures of the operator console: the cluster map, the time series with incident and decision markers, the reward
weights over time, a what-if preview, and the twin's verdict on an incident's candidates. Called by the console's
pages (ui/console/views); each returns a matplotlib Figure built from plain data (ui/console/data), so the pages stay
thin and the figures are testable."""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

STATE_EDGE = {"on": "#333333", "booting": "#1f77b4", "off": "#bbbbbb", "asleep": "#2ca02c", "failed": "#d62728"}


def cluster_map(snapshot: dict[str, Any]) -> Figure:
    """One square per node, a row of squares per tier: filled by utilization (white to dark red), edged by state
    (red cross for failed, grey for off, green for asleep: off by its own agent's choice, blue for booting);
    stragglers and slow networks get a dot."""
    nodes = snapshot.get("nodes", [])
    tiers = sorted({n["tier"] for n in nodes}) or ["cloud"]
    columns = max(8, min(40, math.ceil(math.sqrt(max(len(nodes), 1)) * 1.6)))
    rows_per_tier = {t: max(1, math.ceil(sum(n["tier"] == t for n in nodes) / columns)) for t in tiers}
    height = sum(rows_per_tier.values()) + len(tiers)
    fig, ax = plt.subplots(figsize=(10, max(1.6, 0.28 * height + 0.8)))
    cmap = plt.get_cmap("Reds")
    y = 0.0
    for tier in tiers:
        members = [n for n in nodes if n["tier"] == tier]
        ax.text(-0.5, y + 0.5, f"{tier} ({len(members)})", ha="right", va="center", fontsize=8)
        for k, node in enumerate(members):
            cx, cy = k % columns, y + k // columns
            util = float(node.get("utilization", 0.0))
            state = "asleep" if node.get("asleep") else node.get("state", "on")
            fill, edge = cmap(0.1 + 0.85 * min(util, 1.0)), STATE_EDGE.get(state, "#333333")
            ax.add_patch(Rectangle((cx, cy), 0.9, 0.9, facecolor=fill, edgecolor=edge, lw=1.2))
            if state == "failed":
                ax.plot([cx, cx + 0.9], [cy, cy + 0.9], color="#d62728", lw=1.2)
                ax.plot([cx, cx + 0.9], [cy + 0.9, cy], color="#d62728", lw=1.2)
            if float(node.get("slowness", 1.0)) > 1.5 or float(node.get("net_extra_ms", 0.0)) > 50:
                ax.plot(cx + 0.45, cy + 0.45, "o", color="#ff7f0e", ms=3)
        y += rows_per_tier[tier] + 1
    ax.set_xlim(-6, columns)
    ax.set_ylim(y, -0.5)
    ax.axis("off")
    legend = "fill = utilization, red cross = failed, grey = off, green = asleep, blue = booting, dot = slow"
    ax.set_title(f"t={snapshot.get('time_s', 0):.0f}s: {legend}", fontsize=9)
    fig.tight_layout()
    return fig


def timeseries(table: dict[str, list[float]], incidents: list[tuple[float, str, str]], changes: list[float]) -> Figure:
    """Load, replicas, p95 latency over SLO, SLA violations, cost rate and power, with incidents (red dashed lines)
    and the manager's weight changes (green dotted lines)."""
    panels = (
        ("arrivals_rps", "load (req/s)"), ("replicas", "replicas"), ("p95_over_slo", "worst p95 / SLO"),
        ("violation_rate", "SLA violations"), ("cost_per_h", "cost ($/h)"), ("power_w", "power (W)"),
    )  # fmt: skip
    fig, axes = plt.subplots(2, 3, figsize=(14, 5.5), sharex=True)
    t = table.get("time_s", [])
    for ax, (key, label) in zip(axes.flat, panels, strict=True):
        ax.plot(t, table.get(key, []), lw=1.2)
        if key == "p95_over_slo":
            ax.axhline(1.0, color="black", lw=0.8, ls="--")
        for at, _, _ in incidents:
            ax.axvline(at, color="#d62728", ls="--", lw=0.8)
        for at in changes:
            ax.axvline(at, color="#2ca02c", ls=":", lw=0.8)
        ax.set_title(label, fontsize=9)
    for ax in axes[1]:
        ax.set_xlabel("simulated seconds")
    fig.tight_layout()
    return fig


def weights_over_time(history: list[tuple[float, dict[str, float], str]], until_s: float) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 2.8))
    if history:
        names = list(history[0][1])
        times = [h[0] for h in history] + [max(until_s, history[-1][0])]
        for name in names:
            values = [h[1][name] for h in history]
            ax.step(times, [*values, values[-1]], where="post", label=name)
    ax.set(xlabel="simulated seconds", ylabel="weight", title="Reward weights in force")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return fig


def preview_bars(preview: dict[str, Any]) -> Figure:
    """Status quo vs the proposal over the preview's horizon: SLA violations, cost and energy side by side."""
    keys = (("sla_violation_rate", "SLA violations %", 100.0), ("cost", "cost $", 1.0), ("energy_kwh", "energy kWh", 1.0))
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.3))
    for ax, (key, label, scale) in zip(axes, keys, strict=True):
        before = (preview["status_quo"].get(key) or 0.0) * scale
        after = (preview["with_proposal"].get(key) or 0.0) * scale
        ax.bar(["status quo", "proposal"], [before, after], color=["#999999", "#1f77b4"])
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"What-if over the next {preview.get('horizon_s', 0):.0f} s", fontsize=9)
    fig.tight_layout()
    return fig


def candidate_bars(verification: dict[str, Any]) -> Figure:
    """Each candidate's objective gain over the status quo (the line at 0), mean over the twin's futures with their
    spread as the error bar; the chosen one in blue. A bar whose error bar crosses 0 was within the noise."""
    candidates = verification.get("candidates") or []
    names = [str(c.get("name", "")) for c in candidates]
    gains = [float((c.get("delta") or {}).get("objective") or 0.0) for c in candidates]
    spreads = [float((c.get("spread") or {}).get("objective") or 0.0) for c in candidates]
    colors = ["#1f77b4" if name == verification.get("chosen") else "#999999" for name in names]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.2))
    ax.barh(names, gains, xerr=spreads, color=colors, capsize=3)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.tick_params(labelsize=7)
    ax.set_xlabel("objective gain over the status quo (higher is better)", fontsize=8)
    horizon, futures = verification.get("horizon_s") or 0.0, verification.get("futures") or 0
    ax.set_title(f"Candidates in the twin over {horizon:.0f} s, {futures} futures (blue = chosen)", fontsize=9)
    fig.tight_layout()
    return fig
