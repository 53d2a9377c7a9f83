"""The ``posture`` command line: the root group (:mod:`.main`), its frame, one module per
command."""
