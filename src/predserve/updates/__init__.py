"""The two ways updates come in between exports: ``predserve push`` (JSON lines from a file
or standard input, push.py) and ``predserve stream`` (a streaming Beam job reading Pub/Sub,
stream.py). Both validate and apply through apply.py; the rules themselves (sequences,
tombstones, the log replayed at publish) are the store's, in store/updates.py."""
