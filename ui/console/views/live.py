"""Live page of the operator console: the cluster map, the time series with incident and decision markers, and the
reward weights in force and their history. Refreshes itself every 2 s while the run is still running."""

from __future__ import annotations

import matplotlib.pyplot as plt
import streamlit as st

from ui.console import data, plots
from ui.console.context import console_context

context = console_context()
log = context.log
st.header("Live")
run = context.require_run()


@st.fragment(run_every=2.0 if run.status == "running" else None)
def live() -> None:
    samples = log.samples(run.id)
    manager = log.decisions(run_id=run.id, actor="manager", limit=5000)
    snapshot = data.latest_snapshot(samples)
    if snapshot is None:
        st.info("No metric samples for this run yet (runs record a sample every few ticks with --db).")
        return
    status = next((r.status for r in log.runs(limit=50) if r.id == run.id), run.status)
    cols = st.columns(6)
    cols[0].metric("time", f"{snapshot['time_s']:.0f} s", help=f"run {status}")
    cols[1].metric("load", f"{snapshot['arrivals_rps']:.0f} req/s")
    cols[2].metric("SLA violations", f"{snapshot['violation_rate']:.1%}")
    cols[3].metric("cost", f"{snapshot['cost_per_h']:.2f} $/h")
    cols[4].metric("power", f"{snapshot['power_w'] / 1000:.1f} kW")
    cols[5].metric("nodes on / failed", f"{snapshot['nodes_on']} / {snapshot['nodes_failed']}")
    st.subheader("Cluster")
    figure = plots.cluster_map(snapshot)
    st.pyplot(figure)
    plt.close(figure)
    table = data.samples_table(samples)
    incidents = data.incidents(manager)
    history = data.weights_history(manager)
    st.subheader("Time series")
    st.caption("red dashed: incidents the manager opened; green dotted: weight changes it applied")
    figure = plots.timeseries(table, incidents, [h[0] for h in history[1:]])
    st.pyplot(figure)
    plt.close(figure)
    left, right = st.columns([1, 2])
    with left:
        st.subheader("Weights in force")
        st.dataframe({"component": list(history[-1][1]), "weight": list(history[-1][1].values())}, hide_index=True)
        if len(history) > 1:
            st.caption(history[-1][2][:300])
    with right:
        figure = plots.weights_over_time(history, snapshot["time_s"])
        st.pyplot(figure)
        plt.close(figure)
    if incidents:
        st.subheader("Incidents")
        rows = {"time s": [round(t) for t, _, _ in incidents], "incident": [i for _, i, _ in incidents]}
        st.dataframe({**rows, "diagnosis": [d for _, _, d in incidents]}, hide_index=True)


live()
