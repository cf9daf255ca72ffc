"""Score plug-ins: every module here registers its scores when `vepcli.scoring` is imported.

A new score is one new module in this folder (and its entry in docs/scores.md); see plugins/embedding.py
for the shape of one.
"""
