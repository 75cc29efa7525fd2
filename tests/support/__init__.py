"""What the tests are built from, written once: processes and ports, the emulators, the API server,
snapshots published straight through the store, exports, the in-process app, OCI images.
conftest.py turns the long-lived ones into fixtures; tests import the rest from here."""
