"""``tracebus watch``: a live web page of the runs under some output directories.

The files are the only source of truth: every page update is read from them, so the page
shows in-process, collector-written and NATS-collected runs alike and survives a restart of
the writer or of the watch.
"""
