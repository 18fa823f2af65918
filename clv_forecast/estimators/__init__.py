"""The model classes: purchase models in ``purchases/``, spend models in ``spend/``, one module each.

(Fitted model *files* live in the top-level ``models/`` folder; see ``models/README.md``.)
"""
