"""The AMA operator console (Streamlit). Started by ``ama console`` (``streamlit run ui/console/app.py``); reads the
decision log named by ``AMA_DATABASE_URL`` and writes only operators' approvals and chat messages. Pages: Live,
Decisions, Approvals, Chat, Scenarios (ui/console/views); each sets up the shared sidebar (ui/console/context):
sign-in with a name and the shared console token (without it every page is read-only) and the run to look at.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="AMA console", page_icon=":material/hub:", layout="wide")
pages = [
    st.Page("views/live.py", title="Live", icon=":material/monitoring:", default=True),
    st.Page("views/decisions.py", title="Decisions", icon=":material/receipt_long:"),
    st.Page("views/approvals.py", title="Approvals", icon=":material/task_alt:"),
    st.Page("views/chat.py", title="Chat", icon=":material/chat:"),
    st.Page("views/scenarios.py", title="Scenarios", icon=":material/movie:"),
]
st.navigation(pages).run()
