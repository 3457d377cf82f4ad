"""`python -m imagematrix.testing`: the GPU suite in every selected image, or on this host (--backend host)."""

from imagematrix.testing.run import main

raise SystemExit(main())
