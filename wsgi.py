"""The production WSGI entry point: ``granian --interface wsgi --workers 2 wsgi:app``.

Settings come from the ``AUTHSERVER_*`` environment (see ``authserver/config.py``).
"""

from authserver import create_app

app = create_app()
