"""Page parts more than one console page shows. Called by the Approvals and Decisions pages (ui/console/views);
feeds Streamlit with what ui.console.data and ui.console.plots make of a decision's record."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import streamlit as st

from ui.console import data, plots


def candidates(verification: dict[str, Any]) -> None:
    """The twin's verification of an incident: why, every candidate against the status quo, and their gains."""
    st.markdown("**Candidates the twin verified**")
    st.write(verification.get("reason", ""))
    st.dataframe(data.candidates_table(verification), hide_index=True, width="stretch")
    figure = plots.candidate_bars(verification)
    st.pyplot(figure)
    plt.close(figure)
