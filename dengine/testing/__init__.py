"""Test tools shipped with dengine: a linearizability checker and a deterministic simulator."""
