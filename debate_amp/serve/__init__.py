"""``debate-amp serve``: the local web app where real people act as H (DESIGN.md section 3, ``docs/humans.md``).

- :mod:`debate_amp.serve.app`: the FastAPI app. People answer the questions a trainer posted to the label store
  (``human.kind: web``), or, in judge mode, judge saved debates.
- :mod:`debate_amp.serve.judgments`: the SQLite store of human judgments of saved debates, and the debates a judge
  session offers.

Nothing here is imported by the trainer; the app's modules import FastAPI only when the app is built.
"""
