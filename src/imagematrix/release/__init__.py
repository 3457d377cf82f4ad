"""imagematrix.release."""
