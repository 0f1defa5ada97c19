"""Wire schemas of turnlog: msgspec Structs shared by every layer and every language."""
