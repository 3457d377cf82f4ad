"""imagematrix.reports."""
