"""What the end-to-end tests use besides their fixtures (tests/e2e/conftest.py):

- `stack`: the `Stack` under test, started natively (`launch`) or already up,
- `api`: the cookie-keeping client `Api`, the contract's error shape, users, the admin's
  upload -> transcoded -> published steps,
- `mail`: the dev mail sink (`Mailbox`) and the links in its emails,
- `media`: generated clips,
- `browser`: the test page's origin and screenshots,
- `steps`: timed journey steps.

Everything here speaks HTTP to the gateway (and the mail sink's listing), never to a
service's port or database, so the suite sees the product the way a client does.
"""

from tests.e2e.helpers.api import (
    ADMIN_UPLOAD,
    ADMIN_VIDEOS,
    READY_TIMEOUT,
    Api,
    PublishedVideo,
    User,
    assert_error_body,
    cookie_deleted,
    new_email,
    publish_clip,
    set_cookies,
    strong_password,
    upload,
    wait_for_status,
    wait_until_playable,
)
from tests.e2e.helpers.browser import screenshot
from tests.e2e.helpers.mail import Mailbox, link_params
from tests.e2e.helpers.media import Clip, generate_clip
from tests.e2e.helpers.stack import REFRESH_GRACE_SECONDS, Stack
from tests.e2e.helpers.steps import step

__all__ = [
    "ADMIN_UPLOAD",
    "ADMIN_VIDEOS",
    "READY_TIMEOUT",
    "REFRESH_GRACE_SECONDS",
    "Api",
    "Clip",
    "Mailbox",
    "PublishedVideo",
    "Stack",
    "User",
    "assert_error_body",
    "cookie_deleted",
    "generate_clip",
    "link_params",
    "new_email",
    "publish_clip",
    "screenshot",
    "set_cookies",
    "step",
    "strong_password",
    "upload",
    "wait_for_status",
    "wait_until_playable",
]
