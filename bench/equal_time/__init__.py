"""The equal-time quality benchmark (issue 16): run.py drives tf_contestant.py and
torch_contestant.py, which share protocol.py."""
