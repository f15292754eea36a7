"""`python -m concierge.domains.retail.backend --db URL --port N`."""

from .app import main

main()
