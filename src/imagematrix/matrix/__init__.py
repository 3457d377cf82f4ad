"""imagematrix.matrix."""
