"""`python -m deploy.devstack ...`: see the package's docstring."""

from deploy.devstack.cli import main

raise SystemExit(main())
