"""A pytest plugin that collects sparkpipe test files (``*_test.yaml``, ``test_*.yaml``) beside a project's tests."""
