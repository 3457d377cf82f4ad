"""imagematrix.cli."""
