"""Store backends: one small interface (``fhs.store.base.Store``), SQLite (embedded default) and Redis."""
