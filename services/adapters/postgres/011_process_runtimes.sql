-- What each serving process's runtimes are doing, beside its parts: per app, whether it
-- is the app's active runtime (it holds the app's claim) or a standby, its turns in
-- flight and its turns per second, for `turnlog runtimes`.
ALTER TABLE turnlog_processes ADD COLUMN runtimes jsonb NOT NULL DEFAULT '[]';
