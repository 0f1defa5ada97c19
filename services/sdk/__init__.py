"""The app developer's API: App, Session, Message and friends (what `import turnlog` gives)."""
