"""BIF Explorer: which training samples made a language model produce a completion, token by token.

Start with `streamlit run app.py`. The entry point routes between the pages and draws the shared sidebar;
the pages live in views/ (not pages/: that name switches on Streamlit's legacy multipage mode), the logic in bif/. BIF_CACHE (default ./cache) is where runs and jobs are kept.
"""

import os

for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
                      ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
    os.environ.setdefault(_name, _value)

import streamlit as st  # noqa: E402

from views import common, nav, sidebar  # noqa: E402

st.set_page_config(page_title="BIF Explorer", page_icon=":material/search:", layout="wide")

# Pages in menu order.
PAGES = [
    st.Page("views/run.py", title="Run", icon=":material/play_circle:", default=True),
    st.Page("views/influence.py", title="Influence", icon=":material/target:"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("views/diagnostics.py", title="Diagnostics", icon=":material/monitor_heart:"),
    st.Page("views/runs.py", title="Runs", icon=":material/folder_open:"),
    st.Page("views/evidence.py", title="Evidence", icon=":material/science:"),
]

common.view()  # read the URL into the view on the session's first run
page = st.navigation(PAGES)
nav.follow_goto()
common.guarded(page.run)()
common.guarded(sidebar.sidebar)()
