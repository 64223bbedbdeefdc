"""The login page in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import pytest


@pytest.fixture
def clinics(make_tenant, make_user):
    from authserver.extensions import db
    from authserver.tenancy import service as tenants

    riverside = make_tenant("riverside", "Riverside Family Clinic")
    tenants.brand(riverside, primary_color="#116611", support_contact="help@riverside.test")
    db.session.commit()
    make_tenant("hillcrest", "Hillcrest Hospital")
    make_user(riverside, "dr.smith", password="riverside-password", roles=["physician"])
    return riverside


def test_staff_member_signs_in_at_one_clinic_only(browser, site, clinics):
    page = browser.new_page()
    page.goto(f"{site.url}/t/riverside/login")
    assert page.title() == "Sign in · Riverside Family Clinic"
    assert page.locator("header h1").inner_text() == "Riverside Family Clinic"
    assert "help@riverside.test" in page.locator("footer").inner_text()
    assert "Hillcrest" not in page.content()

    page.get_by_label("Username").fill("dr.smith")
    page.get_by_label("Password").fill("riverside-password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{site.url}/t/riverside/")
    assert "signed in to Riverside Family Clinic as dr.smith" in page.locator("main").inner_text()

    # The same browser is not signed in at another clinic.
    page.goto(f"{site.url}/t/hillcrest/")
    page.wait_for_url(f"{site.url}/t/hillcrest/login")
    assert page.locator("header h1").inner_text() == "Hillcrest Hospital"

    page.goto(f"{site.url}/t/riverside/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{site.url}/t/riverside/login")
    page.goto(f"{site.url}/t/riverside/")
    page.wait_for_url(f"{site.url}/t/riverside/login")


def test_wrong_password_shows_one_generic_message(browser, site, clinics):
    page = browser.new_page()
    for username in ("dr.smith", "nobody-here"):
        page.goto(f"{site.url}/t/riverside/login")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill("not-the-password")
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("alert").inner_text() == "Incorrect username or password."
