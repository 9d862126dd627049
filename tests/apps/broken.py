"""A module that fails at import, as an application with a missing dependency does."""

import portshare_tests_no_such_dependency  # type: ignore[import-not-found]  # noqa: F401

app = None
