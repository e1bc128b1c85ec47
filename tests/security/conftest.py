"""The corpus holds small projects with their own tests (some failing on purpose): never collect them here."""

collect_ignore_glob = ["corpus/*"]
