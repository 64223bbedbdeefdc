"""Imports every domain's models, so the metadata (and autogenerate) sees every table."""

from authserver.accounts import models as accounts  # noqa: F401
from authserver.audit import models as audit  # noqa: F401
from authserver.clients import models as clients  # noqa: F401
from authserver.keys import models as keys  # noqa: F401
from authserver.launch import models as launch  # noqa: F401
from authserver.oauth import models as oauth  # noqa: F401
from authserver.tenancy import models as tenancy  # noqa: F401
from authserver.tokens import models as tokens  # noqa: F401
