from tests.oauth.conftest import clinic  # noqa: F401 - shared fixtures
from tests.oauth.conftest import make_clinic  # noqa: F401
