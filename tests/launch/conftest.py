from tests.oauth.conftest import clinic  # noqa: F401 - shared fixtures
from tests.oauth.conftest import make_clinic  # noqa: F401
from tests.oauth.conftest import other_clinic  # noqa: F401
