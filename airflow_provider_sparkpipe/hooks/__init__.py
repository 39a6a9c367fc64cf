"""Hooks that submit, poll, cancel and read the metrics of pipeline runs, one per runtime."""
