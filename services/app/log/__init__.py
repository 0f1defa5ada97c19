"""The event log as the application sees it: records, payload codecs, the hash chain, its errors."""
