"""Sing's executor: what runs on the agent side for each task (see host.py), in-process in the
embedded cluster's agents or as ``sing executor`` under a Mesos agent (see main.py)."""
