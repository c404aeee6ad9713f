"""The trainer process, the model store, publication and hot swap (issue 5)."""
