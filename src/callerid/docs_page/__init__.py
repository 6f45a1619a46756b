"""The API reference pages (``/docs``: Swagger UI, ``/redoc``: ReDoc), served from vendored, pinned copies."""
