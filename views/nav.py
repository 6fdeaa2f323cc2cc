"""Moving between pages from a widget callback: `go` asks for a page, app.py follows it at the start of the next run
(a callback cannot switch pages itself). Not a page."""

from __future__ import annotations

import streamlit as st

from views import common


@common.callback
def go(page: str, **changes) -> None:
    """Callback: change the view, then switch to `page` (app.py does the switch at the start of the next run)."""
    common.set_view(**changes)
    st.session_state["goto"] = page


def follow_goto() -> None:
    """Called by app.py after routing: switch page if a callback asked for it; show a callback's error."""
    goto = st.session_state.pop("goto", None)
    if goto:
        st.switch_page(goto)
    if common.FLASH_ERROR in st.session_state:
        common.show_error(st.session_state.pop(common.FLASH_ERROR))
