"""Sessions at run time: turns, live sessions, prompts, what goes out."""
