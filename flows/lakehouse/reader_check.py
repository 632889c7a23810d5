"""Part of the delete guard: a reconcile or full refresh must read with a credential that sees
the whole collection.

Payload answers a non-admin with 200 and only the documents its access rules allow (the
ecommerce template: a customer's own orders, carts and user; published products only), so a
deleting load would take everything else for deleted. One request, `GET /api/<auth>/me`, tells
who we are: a user whose `roles` lack `admin`, or no user at all, is refused before reading.
A Payload whose users have no `roles` field, or without a `me` route, cannot be judged this
way: the delete-share guard (LOAD_MAX_DELETE_SHARE) still applies there.
"""

from __future__ import annotations

from typing import Any

from flows.lakehouse.errors import DeleteGuardError
from flows.source.errors import PayloadAuthError, PayloadResponseError
from flows.source.payload import PayloadClient

ADMIN_ROLE = "admin"


def current_user(client: PayloadClient, auth_collection: str) -> Any:
    """The `user` of `/api/<auth_collection>/me` with the load's credential (None: anonymous);
    raises LookupError when the route gives no answer we can read."""
    try:
        url = f"{client.base_url}/{auth_collection}/me"
        body = client.session.get(url, auth=client.auth).json()
    except (PayloadResponseError, PayloadAuthError, ValueError) as error:
        raise LookupError("no readable `me` answer") from error
    if not isinstance(body, dict) or "user" not in body:
        raise LookupError("no `user` in the `me` answer")
    return body["user"]


def check_full_reader(
    client: PayloadClient, auth_collection: str, collection: str, mode: str
) -> None:
    """Refuse a deleting load whose credential Payload shows only part of the collection."""
    try:
        user = current_user(client, auth_collection)
    except LookupError:
        return
    if isinstance(user, dict):
        roles = user.get("roles")
        if not isinstance(roles, list) or ADMIN_ROLE in roles:
            return
        who = f"user {user.get('id')!r} with roles {roles}, not an admin"
    else:
        who = "anonymous (Payload knows no user for it)"
    raise DeleteGuardError(
        f"{collection}: a {mode} deletes every row its read does not see, but the credential "
        f"is {who}: Payload answers it with only the documents its access rules allow (e.g. "
        "a customer's own orders), so the others would be deleted. Nothing was read or "
        "committed. Use an admin's credentials (PAYLOAD_EMAIL + PAYLOAD_PASSWORD, "
        "PAYLOAD_API_KEY or PAYLOAD_CMS_TOKEN) for reconcile and full refresh."
    )
