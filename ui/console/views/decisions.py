"""Decisions page of the operator console: the decision log with its explanations, filtered by actor, node, service,
action, status and time; one decision opens to show the weights in force, the telemetry that drove it, for the
manager its diagnosis and approvals, and on a row the twin verified (the incident's ``verify`` row, a proposal) the
candidates against the status quo (table and plot) and, once the horizon has passed, predicted against realized."""

from __future__ import annotations

import streamlit as st

from ui.console import data, widgets
from ui.console.context import console_context

context = console_context()
log = context.log
st.header("Decisions")
run = context.require_run()

rows = log.decisions(run_id=run.id, limit=5000)
if not rows:
    st.info("No decisions in this run yet.")
    st.stop()


def options(field: str) -> list[str]:
    return sorted({str(getattr(r, field)) for r in rows if getattr(r, field) is not None})


cols = st.columns(5)
actor = cols[0].multiselect("Actor", options("actor"), key="f_actor")
node = cols[1].multiselect("Node", options("node"), key="f_node")
service = cols[2].multiselect("Service", options("service"), key="f_service")
action = cols[3].multiselect("Action", options("action"), key="f_action")
status = cols[4].multiselect("Status", options("status"), key="f_status")
low, high = min(r.time_s for r in rows), max(r.time_s for r in rows)
window = st.slider("Simulated time (s)", float(low), float(max(high, low + 1.0)), (float(low), float(max(high, low + 1.0))), key="f_time")
text = st.text_input("Explanation contains", key="f_text")

chosen = [
    r
    for r in rows
    if (not actor or r.actor in actor)
    and (not node or r.node in node)
    and (not service or r.service in service)
    and (not action or r.action in action)
    and (not status or r.status in status)
    and window[0] <= r.time_s <= window[1]
    and (not text or text.lower() in r.explanation.lower())
]
st.caption(f"{len(chosen)} of {len(rows)} decisions (newest first)")
st.dataframe(
    {
        "id": [r.id for r in chosen],
        "time s": [round(r.time_s) for r in chosen],
        "actor": [r.actor for r in chosen],
        "action": [r.action for r in chosen],
        "node": [r.node or "" for r in chosen],
        "service": [r.service or "" for r in chosen],
        "status": [r.status for r in chosen],
        "risk": [r.risk for r in chosen],
        "explanation": [r.explanation for r in chosen],
    },
    hide_index=True,
    use_container_width=True,
)
if chosen:
    picked = st.selectbox("Open a decision", [r.id for r in chosen[:500]], key="f_open")
    decision = next(r for r in chosen if r.id == picked)
    details = data.decision_details(log, decision)
    verification = details["verification"]
    st.subheader(f"{decision.actor}: {decision.action} ({decision.status})")
    st.write(decision.explanation)
    if decision.approved_by:
        st.write(f"Approved by **{decision.approved_by}**")
    left, right = st.columns(2)
    with left:
        st.markdown("**Weights in force**")
        st.json(details["weights_in_force"] or {})
        st.markdown("**Arguments**")
        st.json(details["arguments"])
        if "diagnosis" in details:
            st.markdown("**Diagnosis**")
            st.write(details["diagnosis"])
            if details["approvals"]:
                st.markdown("**Approvals**")
                st.dataframe(details["approvals"], hide_index=True)
    with right:
        st.markdown("**Telemetry at that tick**")
        st.json(details["telemetry"])
        if details["result"]:
            st.markdown("**Result**")
            st.json(details["result"], expanded=verification is None)
    if verification:
        widgets.candidates(verification)
        compared = data.predicted_vs_realized(verification)
        if compared is not None:
            plan, measures = compared
            realized = verification["realized"]
            st.markdown(f"**Predicted vs realized** ({plan}, over the {verification.get('horizon_s', 0):.0f} s horizon)")
            st.caption(f"realized at t={realized.get('at_s', 0):.0f}s; {realized.get('other_changes', 0)} other weight change(s) meanwhile")
            st.dataframe(measures, hide_index=True)
