"""The clickable completion: a Streamlit component (st.components.v2, inline JS, no build step) around the
escaped token HTML of views/ui/html.py. Click a token to select it, drag across tokens (or shift-click a second
one) to select a span, click the only selected token again to go back to the whole completion.

The HTML it shows is built by `tokens_html`, which escapes every token (training and query text are untrusted);
this module adds no text of its own. The selection comes back as a trigger value [first, last] (loss positions,
inclusive) or None.
"""

from __future__ import annotations

import streamlit as st

from views.ui.html import TOKEN_CSS

JS = """
export default function(component) {
  const { data, setTriggerValue, parentElement } = component;
  let box = parentElement.querySelector('.bif-pick');
  if (!box) { box = document.createElement('div'); box.className = 'bif-pick'; parentElement.appendChild(box); }
  box.innerHTML = data.html;
  const toks = Array.from(box.querySelectorAll('[data-p]'));
  const pos = (el) => parseInt(el.getAttribute('data-p'), 10);
  let anchor = null, dragging = false;
  const mark = (a, b) => toks.forEach((t) => {
    const p = pos(t); t.classList.toggle('drag', a !== null && p >= Math.min(a, b) && p <= Math.max(a, b)); });
  const send = (a, b) => {
    const lo = Math.min(a, b), hi = Math.max(a, b);
    const sel = data.selected;
    if (sel && lo === hi && sel[0] === lo && sel[1] === hi) { setTriggerValue('pick', null); return; }
    setTriggerValue('pick', [lo, hi]);
  };
  toks.forEach((t) => {
    t.addEventListener('mousedown', (e) => {
      e.preventDefault();
      if (e.shiftKey && data.selected) { send(data.selected[0], pos(t)); return; }
      anchor = pos(t); dragging = true; mark(anchor, anchor);
    });
    t.addEventListener('mouseenter', () => { if (dragging) mark(anchor, pos(t)); });
    t.addEventListener('mouseup', () => { if (dragging) { dragging = false; send(anchor, pos(t)); } });
  });
  const stop = () => { if (dragging) { dragging = false; mark(null, null); } };
  document.addEventListener('mouseup', stop);
  return () => document.removeEventListener('mouseup', stop);
}
"""

CSS = "/* bif */\n" + TOKEN_CSS + (".bif-tok[data-p]{cursor:pointer}.bif-tok[data-p]:hover{outline:1px dashed #d62728}"
                   ".bif-tok.drag{outline:2px dashed #d62728;outline-offset:1px}")

_component = st.components.v2.component("bif_completion", css=CSS, js=JS)


def completion(html: str, selected: tuple[int, int] | None, key: str, on_pick) -> None:
    """Show `html` (from tokens_html(..., clickable=True)); on a click or drag, call on_pick(None | (a, b)).

    The callback runs before the next script run (like a widget's on_change), so a click is never lost.
    """
    def changed() -> None:
        value = (st.session_state.get(key) or {}).get("pick")
        on_pick(tuple(int(v) for v in value) if value else None)

    _component(data={"html": html, "selected": list(selected) if selected else None}, key=key,
               on_pick_change=changed, height="content")
