"""Raft scenario tests drive cores over dengine.testing.raft_network.Network (shipped, so the
simulator and other suites can use it too); there are no shared fixtures beyond it."""
