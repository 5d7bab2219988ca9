"""tensorc's CPU benchmark harness: `python3 -m bench` (see bench/run.py)."""
