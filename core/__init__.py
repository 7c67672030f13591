"""The bottom layer: the conf schema and loader, errors, the table catalog, Delta I/O, storage
URIs, the session factory, and the content-keyed cache. It knows no stage and no filter."""
