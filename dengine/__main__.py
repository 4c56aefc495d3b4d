"""``python -m dengine`` is the ``dengine`` command."""

from dengine.cli import main

raise SystemExit(main())
