"""The AMA operator console (Streamlit). Started by ``ama console`` (``streamlit run ui/console/app.py``); reads the
decision log named by ``AMA_DATABASE_URL`` and writes only operators' approvals and chat messages. Pages: Live,
Decisions, Approvals, Chat, Scenarios (ui/console/pages); each sets up the shared sidebar (ui/console/context):
sign-in with a name and the shared console token (without it every page is read-only) and the run to look at.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="AMA console", page_icon="🛰️", layout="wide")
pages = [
    st.Page("pages/live.py", title="Live", icon="📈", default=True),
    st.Page("pages/decisions.py", title="Decisions", icon="🧾"),
    st.Page("pages/approvals.py", title="Approvals", icon="✅"),
    st.Page("pages/chat.py", title="Chat", icon="💬"),
    st.Page("pages/scenarios.py", title="Scenarios", icon="🎬"),
]
st.navigation(pages).run()
