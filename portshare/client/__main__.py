"""C{python -m portshare.client}: the C{portshare-cli} console script."""

from portshare.client.cli import main

main()
