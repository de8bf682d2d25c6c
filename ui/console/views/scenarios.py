"""Scenarios page of the operator console: start a scripted anomaly replay (``ama eval`` in the background, the
console itself never steps a simulator) and open the reports of finished ones. Replays go under
``AMA_REPLAYS_DIR`` (default ``out/console-replays``), one folder each, named by time and operator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import streamlit as st

from local_agents.registry import controller_names
from simulators.scenarios import SCENARIO_DIR
from ui.console.context import console_context


@st.cache_resource
def _running() -> dict[str, subprocess.Popen]:
    """Replays this console started, by folder, until they finish (kept so their exit is collected)."""
    return {}


running = _running()
for key, process in list(running.items()):
    if process.poll() is not None:
        del running[key]

context = console_context()
access = context.access
folder = Path(os.environ.get("AMA_REPLAYS_DIR", "out/console-replays"))
st.header("Scenario replays")

files = sorted(SCENARIO_DIR.glob("*.yaml"))
with st.form("replay"):
    chosen = st.multiselect("Scenarios", [f.name for f in files], default=[files[0].name] if files else [], key="r_files")
    names = controller_names() + [f"{n}+rule" for n in ("hpa", "kpa", "marl")]
    controllers = st.multiselect("Controllers", names, default=["hpa", "kpa+rule"], key="r_controllers")
    cols = st.columns(2)
    seeds = cols[0].number_input("Seeds", min_value=1, max_value=10, value=1, key="r_seeds")
    duration = cols[1].number_input("Cut each scenario to (s, 0 = whole)", min_value=0, value=300, step=60, key="r_duration")
    start = st.form_submit_button("Start replay", disabled=not access.can_write)
if not access.can_write:
    st.info(f"Read-only: {access.why}")
if start and chosen and controllers:
    out = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{re.sub(r'[^A-Za-z0-9_-]', '_', access.operator or 'operator')}"
    out.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ui.cli", "eval", "--controllers", ",".join(controllers), "--seeds", str(int(seeds)), "--out", str(out)]
    for name in chosen:
        argv += ["--scenario", str(SCENARIO_DIR / name)]
    if duration:
        argv += ["--duration-s", str(int(duration))]
    with (out / "console.log").open("w") as handle:
        running[str(out)] = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    (out / "command.txt").write_text(" ".join(argv[2:]) + f"\nstarted by {access.operator}\n")
    st.success(f"Replay started: {out}")

st.subheader("Replays")
replays = sorted((p for p in folder.glob("*") if p.is_dir()), reverse=True) if folder.exists() else []
if not replays:
    st.write("No replays yet.")
else:
    labels = {f"{p.name} · {'finished' if (p / 'report.md').exists() else 'running'}": p for p in replays}
    picked = labels[st.selectbox("Open a replay", list(labels), key="r_open")]
    report = picked / "report.md"
    if not report.exists():
        st.info("Still running; its log so far:")
        st.code((picked / "console.log").read_text()[-3000:] if (picked / "console.log").exists() else "")
    else:
        for chunk in re.split(r"(!\[[^\]]*\]\([^)]+\))", report.read_text()):
            image = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", chunk)
            if image and (picked / image.group(2)).exists():
                st.image(str(picked / image.group(2)), caption=image.group(1))
            elif chunk.strip():
                st.markdown(chunk)
