"""The demo phone page (``/phone``): a browser stand-in for the app, built only on the public app API."""
