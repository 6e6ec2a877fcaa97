"""Signing in to the portal: password, one-time link, invitation, expiry, throttling, apart from the staff login."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from accord.customers.models import Contact, ContactPoint
from accord.portal import auth
from accord.portal.models import PortalUser, SignInLink

from .conftest import PASSWORD, Org, signed_in

pytestmark = pytest.mark.django_db


def link_in(message: mail.EmailMessage) -> str:
    found = re.search(r"https?://[^/\s]+(/portal/login/link/[\w-]+/)", message.body)
    assert found, message.body
    return found.group(1)


def test_password_sign_in_shows_the_account_and_a_wrong_one_says_so(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    client = Client()
    assert client.get("/portal/").status_code == 302  # to the sign-in page
    wrong = client.post("/portal/login/", {"email": alpha.user.email, "password": "nope"})
    assert wrong.status_code == 400 and "do not match" in wrong.content.decode()
    page = signed_in(alpha.user).get("/portal/")
    assert page.status_code == 200 and "Alpha Travel" in page.content.decode()
    assert PortalUser.objects.get(pk=alpha.user.pk).last_login is not None


def test_failed_sign_ins_are_throttled_even_with_the_right_password_after(orgs: tuple[Org, Org], settings) -> None:
    alpha, _beta = orgs
    settings.ACCORD_SIGNIN_ACCOUNT_FAILURES = 3
    client = Client()
    for _ in range(3):
        assert client.post("/portal/login/", {"email": alpha.user.email, "password": "guess"}).status_code == 400
    blocked = client.post("/portal/login/", {"email": alpha.user.email, "password": PASSWORD})
    assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.content.decode()
    assert "portal.user" not in client.session


def test_a_link_signs_in_once_and_a_get_does_not_spend_it(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    client = Client()
    sent = client.post("/portal/login/link/", {"email": alpha.user.email.upper()})
    assert sent.status_code == 200 and len(mail.outbox) == 1 and mail.outbox[0].to == [alpha.user.email]
    path = link_in(mail.outbox[0])
    assert SignInLink.objects.get().digest not in mail.outbox[0].body  # only the digest is stored
    assert client.get(path).status_code == 200  # a mail scanner's fetch: nothing spent
    assert client.post(path).status_code == 302
    assert client.get("/portal/").status_code == 200
    again = Client().post(path)
    assert again.status_code == 410 and "no longer works" in again.content.decode()


def test_an_unknown_address_gets_the_same_answer_and_no_mail(orgs: tuple[Org, Org]) -> None:
    known = Client().post("/portal/login/link/", {"email": orgs[0].user.email})
    unknown = Client().post("/portal/login/link/", {"email": "nobody@nowhere.example"})
    assert unknown.status_code == known.status_code == 200
    assert known.content.decode().replace(orgs[0].user.email, "X") == \
        unknown.content.decode().replace("nobody@nowhere.example", "X")
    assert len(mail.outbox) == 1


def test_an_expired_link_and_a_deactivated_user_do_not_sign_in(orgs: tuple[Org, Org]) -> None:
    alpha, beta = orgs
    token = auth.issue_link(alpha.user)
    SignInLink.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert Client().post(f"/portal/login/link/{token}/").status_code == 410
    token = auth.issue_link(beta.user)
    PortalUser.objects.filter(pk=beta.user.pk).update(active=False)
    assert Client().post(f"/portal/login/link/{token}/").status_code == 410
    assert Client().post("/portal/login/", {"email": beta.user.email, "password": PASSWORD}).status_code == 400


def test_a_session_ends_when_idle_and_when_old_and_when_the_user_is_deactivated(orgs: tuple[Org, Org],
                                                                              settings) -> None:
    alpha, _beta = orgs
    client = signed_in(alpha.user)
    session = client.session
    session["portal.seen"] = time.time() - 3 * 3600  # idle past the 2 h default
    session.save()
    assert client.get("/portal/").status_code == 302
    client = signed_in(alpha.user)
    settings.ACCORD_PORTAL_MAX_AGE = 60
    session = client.session
    session["portal.since"] = time.time() - 61
    session.save()
    assert client.get("/portal/tickets/").status_code == 302
    client = signed_in(alpha.user)
    PortalUser.objects.filter(pk=alpha.user.pk).update(active=False)
    assert client.get("/portal/").status_code == 302


def test_the_portal_and_the_staff_logins_are_apart(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    portal = signed_in(alpha.user)
    assert portal.get("/accounts/").status_code == 302  # the staff UI wants its own login
    assert portal.get("/admin/").status_code == 302
    assert "/admin/" not in portal.get("/portal/").content.decode()  # and the portal links to none of it
    staff = Client()
    staff.force_login(User.objects.create_superuser("root", "root@accord.example", "pw"))
    assert staff.get("/portal/").status_code == 302


def test_sign_in_keeps_a_next_path_inside_the_portal_only(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    inside = Client().post("/portal/login/?next=/portal/tickets/", {"email": alpha.user.email, "password": PASSWORD})
    assert inside["Location"] == "/portal/tickets/"
    outside = Client().post("/portal/login/?next=https://evil.example/", {"email": alpha.user.email,
                                                                         "password": PASSWORD})
    assert outside["Location"] == "/portal/"


def test_staff_invite_a_contact_from_the_command_line_and_the_link_signs_in(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    call_command("portal", "invite", "New.Person@alpha.example", "--account", "ALPHA", "--name", "New Person")
    user = PortalUser.objects.get(email="new.person@alpha.example")
    assert user.contact.account == alpha.account and not user.is_admin and not user.password
    assert "invited" in mail.outbox[0].subject and "7 days" in mail.outbox[0].body
    client = Client()
    assert client.post(link_in(mail.outbox[0])).status_code == 302
    assert "Alpha Travel" in client.get("/portal/").content.decode()
    with pytest.raises(CommandError, match="already has a portal sign-in"):
        call_command("portal", "invite", "new.person@alpha.example", "--account", "ALPHA")
    ContactPoint.objects.create(contact=Contact.objects.create(account=_beta.account, name="Ops"), kind="email",
                                value="ops@beta.example")
    with pytest.raises(CommandError, match="another account"):
        call_command("portal", "invite", "ops@beta.example", "--account", "ALPHA", "--name", "X")
    with pytest.raises(CommandError, match="not an e-mail address"):
        call_command("portal", "invite", "not-an-address", "--account", "ALPHA", "--name", "X")
    with pytest.raises(CommandError, match="no account"):
        call_command("portal", "invite", "x@y.example", "--account", "NOPE", "--name", "X")


def test_a_portal_admin_invites_a_colleague_and_a_plain_user_cannot(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    admin = signed_in(alpha.admin)
    sent = admin.post("/portal/team/", {"name": "Colleague", "email": "colleague@alpha.example"})
    assert sent.status_code == 302 and mail.outbox[-1].to == ["colleague@alpha.example"]
    assert PortalUser.objects.get(email="colleague@alpha.example").contact.account == alpha.account
    again = admin.post("/portal/team/", {"name": "Colleague", "email": "colleague@alpha.example"})
    assert again.status_code == 400 and "already has a portal sign-in" in again.content.decode()
    plain = signed_in(alpha.user)
    assert plain.post("/portal/team/", {"name": "Eve", "email": "eve@alpha.example"}).status_code == 403
    assert not PortalUser.objects.filter(email="eve@alpha.example").exists()


def test_a_user_sets_a_password_that_the_validators_accept(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    client = signed_in(alpha.user)
    client.post("/portal/team/password/", {"password": "123"})
    assert PortalUser.objects.get(pk=alpha.user.pk).check_password(PASSWORD)  # refused: too short and numeric
    client.post("/portal/team/password/", {"password": "another long pass phrase"})
    assert PortalUser.objects.get(pk=alpha.user.pk).check_password("another long pass phrase")


def test_staff_invite_a_contact_from_the_account_page(orgs: tuple[Org, Org]) -> None:
    from accord.access.models import AuditEntry
    from accord.access.roles import grant

    alpha, _beta = orgs
    contact = Contact.objects.create(account=alpha.account, name="Dora Dispatcher")
    ContactPoint.objects.create(contact=contact, kind="email", value="dora@alpha.example", primary=True)
    bare = Contact.objects.create(account=alpha.account, name="No Mail")
    manager = User.objects.create_user("mgr", "mgr@accord.example", "pw", is_staff=True)
    grant(manager, "manager")
    staff = Client()
    staff.force_login(manager)
    page = staff.get(f"/accounts/{alpha.account.pk}/").content.decode()
    assert "Invite Dora Dispatcher to the customer portal" in page and "Invite No Mail" not in page
    done = staff.post(f"/accounts/{alpha.account.pk}/contacts/{contact.pk}/portal-invite/", follow=True)
    assert "is invited to the portal" in done.content.decode() and mail.outbox[-1].to == ["dora@alpha.example"]
    assert PortalUser.objects.get(contact=contact).invited_by == "mgr"
    assert AuditEntry.objects.filter(action="portal-invite", object_id=str(contact.pk)).exists()
    again = staff.post(f"/accounts/{alpha.account.pk}/contacts/{contact.pk}/portal-invite/", follow=True)
    assert "already has a portal sign-in" in again.content.decode()
    none = staff.post(f"/accounts/{alpha.account.pk}/contacts/{bare.pk}/portal-invite/", follow=True)
    assert "has no e-mail address" in none.content.decode() and not PortalUser.objects.filter(contact=bare).exists()
    other = staff.post(f"/accounts/{orgs[1].account.pk}/contacts/{contact.pk}/portal-invite/")
    assert other.status_code == 404  # the contact is not of that account
