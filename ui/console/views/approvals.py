"""Approvals page of the operator console: every proposal waiting at the manager's approval gate, with the manager's
explanation and what the twin predicted: the candidates it verified against the status quo (a table with the chosen
one marked, the reason and a plot of each one's objective gain), or on rows from before verification the what-if
preview (predicted SLA, cost and energy deltas and a small plot); a signed-in operator approves or rejects it with a
reason, and the decision log records who did (DecisionLog.decide_approval). The runtime picks the answer up and
applies an approved action once."""

from __future__ import annotations

import matplotlib.pyplot as plt
import streamlit as st

from simulators.errors import InputError
from ui.console import data, plots, widgets
from ui.console.context import console_context

context = console_context()
log, access = context.log, context.access
st.header("Approvals")
if not access.can_write:
    st.info(f"Read-only: {access.why}")

for message in st.session_state.pop("approval_messages", []):
    st.success(message)

pending = log.pending_approvals()
if not pending:
    st.write("Nothing waits for an operator.")
for decision in pending:
    with st.container(border=True):
        st.subheader(f"{decision.action} · {decision.id}")
        st.caption(f"run {decision.run_id} · t={decision.time_s:.0f}s · incident {decision.incident_id} · risk {decision.risk}")
        st.write(decision.explanation)
        st.json(data.decision_details(log, decision)["arguments"], expanded=False)
        verification = data.verification_of(decision)
        preview = None if verification else data.preview_of(decision)
        if verification:
            widgets.candidates(verification)
        elif preview:
            delta, after = preview["delta"], preview["with_proposal"]
            cols = st.columns(3)
            for col, (key, label, fmt) in zip(cols, (("sla_violation_rate", "SLA violations", "{:.1%}"), ("cost", "cost $", "{:.3f}"),
                                                      ("energy_kwh", "energy kWh", "{:.3f}")), strict=True):  # fmt: skip
                value, change = after.get(key) or 0.0, delta.get(key) or 0.0
                col.metric(label, fmt.format(value), ("+" if change >= 0 else "") + fmt.format(change), delta_color="inverse")
            figure = plots.preview_bars(preview)
            st.pyplot(figure)
            plt.close(figure)
        reason = st.text_input("Reason", key=f"reason-{decision.id}", disabled=not access.can_write)
        approve, reject = st.columns(2)
        verdict = None
        if approve.button("Approve", key=f"approve-{decision.id}", disabled=not access.can_write, type="primary"):
            verdict = True
        if reject.button("Reject", key=f"reject-{decision.id}", disabled=not access.can_write):
            verdict = False
        if verdict is not None:
            try:
                log.decide_approval(decision.id, access.operator, approve=verdict, reason=reason)
            except InputError as exc:  # answered meanwhile (another operator, or expired)
                st.error(str(exc))
            else:
                st.session_state["approval_messages"] = [f"{decision.id} {'approved' if verdict else 'rejected'} by {access.operator}"]
                st.rerun()
