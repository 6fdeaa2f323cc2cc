"""Runs on disk: compute or open a cached run, add queries, find, list and delete runs."""
