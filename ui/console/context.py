"""The console's shared context, set up at the top of every page (ui/console/views): the decision log (one per
database URL for the server process), the sidebar where the operator signs in with a name and the shared token, and
the run being looked at. Pages call ``console_context()`` first, so each renders the same sidebar whether it is
reached through the app's navigation or opened on its own (as Streamlit's AppTest does)."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from tools.decision_log import DecisionLog, Run, database_url
from ui.console.data import Access, check_access, open_log, run_label


@dataclass
class Context:
    log: DecisionLog
    access: Access
    run: Run | None

    def require_run(self) -> Run:
        """The selected run; a page that needs one says so and stops when there is none."""
        if self.run is None:
            st.info("No run selected.")
            st.stop()
        assert self.run is not None
        return self.run


@st.cache_resource
def _log(url: str) -> DecisionLog:
    return open_log(url)


def console_context() -> Context:
    log = _log(database_url())
    with st.sidebar:
        st.title("AMA console")
        name = st.text_input("Operator name", key="operator_name")
        token = st.text_input("Console token", type="password", key="operator_token")
        access = check_access(name, token)
        (st.success if access.can_write else st.info)(access.why)
        try:
            runs = log.runs(limit=50)
        except Exception as exc:  # a database that went away: say so, keep the console up
            st.error(f"decision log unavailable: {str(exc).splitlines()[0][:200]}")
            runs = []
        run = None
        if runs:
            labels = {run_label(r): r for r in runs}
            run = labels[st.selectbox("Run", list(labels), key="run_label")]
        else:
            st.warning("No runs in the decision log yet: start one with `ama run --scenario FILE --db URL`.")
    return Context(log, access, run)
