"""The server API views: JSON in, ``ChatState`` call, JSON out.

Every view is signed (``auth="api"``, see :mod:`channelstream.security.gate`).
Bodies are parsed and validated here; a body that is not JSON is a 400, a
field that does not validate a 422 naming the field.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from .. import strict_json
from ..chat import CHAT_KEY, ChatState
from ..chat.state import Info
from ..errors import BadRequest, Unprocessable
from ..web.responses import json_response
from . import schemas

M = TypeVar("M", bound=BaseModel)

def get_chat(request: Request) -> ChatState:
    return request.registry[CHAT_KEY]


class InvalidFields(Unprocessable):
    """422 with every invalid field: ``{"error", "code", "field", "errors": [...]}``."""

    def __init__(self, error: ValidationError) -> None:
        details = []
        for item in error.errors(include_url=False):
            field = ".".join(str(part) for part in item["loc"]) or "body"
            details.append({"field": field, "message": item["msg"]})
        first = details[0] if details else {"field": "body", "message": "invalid"}
        super().__init__(f"{first['field']}: {first['message']}", field=first["field"])
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        body = super().as_dict()
        body["errors"] = self.details
        return body


def read_json(request: Request, *, allow_empty: bool = False) -> Any:
    """The body as JSON, read strictly (:mod:`channelstream.strict_json`:
    no NaN or Infinity, UTF-8 encodable, nested at most ``MAX_DEPTH`` deep);
    else 400."""
    raw = request.body
    if not raw.strip():
        if allow_empty:
            return None
        raise BadRequest("the request body is empty; send a JSON document", field="body")
    try:
        return strict_json.loads(raw)
    except ValueError as err:
        raise BadRequest(f"the request body is not valid JSON: {err}", field="body") from None


def parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise InvalidFields(err) from None


def connect(request: Request) -> Response:
    body = parse(schemas.ConnectBody, read_json(request))
    result = get_chat(request).connect(
        body.username,
        conn_id=str(body.conn_id) if body.conn_id else None,
        channels=body.channels,
        fresh_user_state=body.fresh_user_state,
        user_state=body.user_state,
        state_public_keys=body.state_public_keys,
        channel_configs=schemas.channel_settings(body.channel_configs),
        info=body.info.info() if body.info else None,
    )
    return json_response(result)


def subscribe(request: Request) -> Response:
    body = parse(schemas.SubscribeBody, read_json(request))
    result = get_chat(request).subscribe(
        str(body.conn_id),
        body.channels,
        channel_configs=schemas.channel_settings(body.channel_configs),
        info=body.info.info() if body.info else None,
    )
    return json_response(result)


def unsubscribe(request: Request) -> Response:
    body = parse(schemas.SubscribeBody, read_json(request))
    result = get_chat(request).unsubscribe(
        str(body.conn_id), body.channels, info=body.info.info() if body.info else None
    )
    return json_response(result)


def user_state(request: Request) -> Response:
    body = parse(schemas.UserStateBody, read_json(request))
    result = get_chat(request).set_user_state(body.user, body.user_state, body.state_public_keys)
    return json_response(result)


def user_status(request: Request) -> Response:
    """The seed's ``/user_status``: the status code becomes state key ``status``."""
    body = parse(schemas.UserStatusBody, read_json(request))
    name = schemas.USER_STATUSES[body.status]
    result = get_chat(request).set_user_state(body.user, {"status": name})
    return json_response({"user": body.user, "status": body.status, **result})


def post_messages(request: Request) -> Response:
    items = parse(schemas.MessageList, read_json(request)).root
    return json_response(get_chat(request).post_messages(item.item() for item in items))


def edit_messages(request: Request) -> Response:
    items = parse(schemas.MessageEditList, read_json(request)).root
    return json_response(get_chat(request).edit_messages(item.item() for item in items))


def delete_messages(request: Request) -> Response:
    items = parse(schemas.MessageDeleteList, read_json(request)).root
    return json_response(get_chat(request).delete_messages(item.item() for item in items))


def channel_config(request: Request) -> Response:
    configs = parse(schemas.ChannelConfigRequest, read_json(request)).root
    return json_response(get_chat(request).channel_config(schemas.channel_settings(configs)))


def info(request: Request) -> Response:
    data = read_json(request, allow_empty=True)
    chat = get_chat(request)
    if data is None:
        return json_response(chat.channels_info(Info()))
    return json_response(chat.channels_info(parse(schemas.InfoRequest, data).info.info()))


def disconnect(request: Request) -> Response:
    body = parse(schemas.DisconnectBody, read_json(request))
    return json_response(get_chat(request).disconnect(str(body.conn_id)))


ROUTES = (
    ("connect", "/connect", connect, ("POST",)),
    ("subscribe", "/subscribe", subscribe, ("POST",)),
    ("unsubscribe", "/unsubscribe", unsubscribe, ("POST",)),
    ("user_state", "/user_state", user_state, ("POST",)),
    ("user_status", "/user_status", user_status, ("POST",)),
    ("channel_config", "/channel_config", channel_config, ("POST",)),
    ("info", "/info", info, ("GET", "POST")),
    ("disconnect", "/disconnect", disconnect, ("POST",)),
)


def includeme(config: Configurator) -> None:
    """Add the server API routes, each signed with ``secret``."""
    for name, path, view, methods in ROUTES:
        config.add_route(name, path)
        config.add_view(view, route_name=name, request_method=methods, auth="api")
    config.add_route("message", "/message")
    config.add_view(post_messages, route_name="message", request_method="POST", auth="api")
    config.add_view(edit_messages, route_name="message", request_method="PATCH", auth="api")
    config.add_view(delete_messages, route_name="message", request_method="DELETE", auth="api")
