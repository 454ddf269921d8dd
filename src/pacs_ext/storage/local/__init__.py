"""The local (embedded) object store: the store, its factory and its signed-URL routes."""
