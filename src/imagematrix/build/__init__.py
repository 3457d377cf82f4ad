"""imagematrix.build."""
