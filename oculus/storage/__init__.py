"""DuckDB storage: opening the file, migrations, the single writer and read queries."""

from oculus.storage.database import Database, DatabaseLockedError, DatabaseOpenError, utc_now

__all__ = ["Database", "DatabaseLockedError", "DatabaseOpenError", "utc_now"]
