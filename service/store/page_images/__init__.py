"""Page images: one small async interface (``base``), two backends: GridFS in the service's own
MongoDB (``gridfs_store``) or any S3-compatible store (``s3_store``), chosen by ``PAGE_STORE``."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from service.store.page_images.base import Backend, PageImage, PageStore, PageStoreConfig

__all__ = ["Backend", "PageImage", "PageStore", "PageStoreConfig", "create_page_store"]


def create_page_store(config: PageStoreConfig, db: AsyncDatabase[Any]) -> PageStore:
    """The backend ``config.page_store`` names: GridFS in ``db``, or an S3 bucket."""
    # Imported here: a GridFS deployment never loads obstore's native extension.
    if config.page_store == "s3":
        from service.store.page_images.s3_store import S3PageStore

        return S3PageStore.from_config(config)
    from service.store.page_images.gridfs_store import GridFSPageStore

    return GridFSPageStore(db)
