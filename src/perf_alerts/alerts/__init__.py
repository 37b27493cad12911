"""Alert state: the state machine (state.py) and its history (history.py)."""
