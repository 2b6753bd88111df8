"""The HDF5 feature store: schema, sharded writer, reader and query API.

``stores`` is the only package that opens an .h5 file. See ``stores/schema.py`` for the
layout and the README's design section for why it is written shard by shard.
"""
from stores.reader import COLUMN_SEP, FeatureStore, open_store
from stores.schema import SCHEMA_VERSION, StoreError
from stores.writer import add_features, merge_shards, write_store

__all__ = ["FeatureStore", "open_store", "COLUMN_SEP", "write_store", "merge_shards", "add_features",
           "SCHEMA_VERSION", "StoreError"]
