"""The ``callerid`` command."""
