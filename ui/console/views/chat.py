"""Chat page of the operator console: ask the manager why something happened or ask it to change priorities.
Answers are grounded in the decision log (manager.chat reads its decisions and metric samples; the LLM when
AMA_LLM_BASE_URL is set, a rule-based answer from the log otherwise). Change requests become proposals that wait on
the Approvals page like any other high-impact action. Every message records the operator."""

from __future__ import annotations

import os

import streamlit as st

from manager.chat import ManagerChat
from manager.llm import LLMSettings
from ui.console.context import console_context

context = console_context()
log, access, run = context.log, context.access, context.run
st.header("Chat with the manager")
st.caption('Ask "why did cloud-7 scale api at t=642s?" or "prioritize cost for the next hour" (a proposal for approval).')
if not access.can_write:
    st.info(f"Read-only: {access.why}")
    st.stop()

thread = f"console-{access.operator}"
llm = LLMSettings.from_env() if os.environ.get("AMA_LLM_BASE_URL") else None
for message in log.chat(thread):
    with st.chat_message("user" if message.role == "operator" else "assistant"):
        st.write(message.content)
question = st.chat_input("Ask the manager")
if question:
    with st.chat_message("user"):
        st.write(question)
    answer = ManagerChat(log, llm).ask(question, access.operator, run_id=run.id if run else None, thread_id=thread)
    with st.chat_message("assistant"):
        st.write(answer.text)
        if answer.sources:
            st.caption("from decisions " + ", ".join(answer.sources[:10]))
        if answer.proposal_id:
            st.caption(f"proposal {answer.proposal_id} is on the Approvals page")
