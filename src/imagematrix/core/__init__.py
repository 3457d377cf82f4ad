"""imagematrix.core."""
