"""imagematrix.testing."""
