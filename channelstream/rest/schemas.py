"""Request bodies of the server API (channelstream 0.7.1 shapes), as pydantic models.

Validation happens here, once, at the door; ``ChatState`` gets clean values.
Unknown fields are ignored, as 0.7.1 ignored them. Limits: user names
1..512 characters, channel names and public state keys 1..256, state values
scalars (string, number, boolean, null).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
)

from ..chat.channels import MAX_HISTORY, ChannelSettings
from ..chat.state import Info

UserName = Annotated[str, StringConstraints(min_length=1, max_length=512)]
ChannelName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
StateKey = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr | None
State = dict[str, Scalar]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ChannelConfigBody(Body):
    notify_presence: bool = False
    store_history: bool = False
    history_size: int = Field(10, ge=0, le=MAX_HISTORY)
    broadcast_presence_with_user_lists: bool = False
    notify_state: bool = False
    store_frames: bool = True
    joinable: bool = False

    def settings(self) -> ChannelSettings:
        return ChannelSettings(**self.model_dump())


def channel_settings(configs: dict[str, ChannelConfigBody]) -> dict[str, ChannelSettings]:
    return {name: config.settings() for name, config in configs.items()}


class InfoBody(Body):
    channels: list[ChannelName] | None = None
    include_history: bool = True
    include_users: bool = True
    exclude_channels: list[ChannelName] = []
    include_connections: bool = False
    return_public_state: bool = False

    def info(self) -> Info:
        return Info(
            channels=tuple(self.channels) if self.channels is not None else None,
            include_history=self.include_history,
            include_users=self.include_users,
            exclude_channels=tuple(self.exclude_channels),
            include_connections=self.include_connections,
            return_public_state=self.return_public_state,
        )


class ConnectBody(Body):
    # The seed's /connect names the user "user"; 0.7.1 names it "username".
    username: UserName = Field(validation_alias=AliasChoices("username", "user"))
    conn_id: UUID | None = None
    channels: list[ChannelName] = []
    fresh_user_state: State = {}
    user_state: State = {}
    state_public_keys: list[StateKey] | None = []
    channel_configs: dict[ChannelName, ChannelConfigBody] = {}
    info: InfoBody | None = None


class SubscribeBody(Body):
    conn_id: UUID
    channels: list[ChannelName] = Field(min_length=1)
    channel_configs: dict[ChannelName, ChannelConfigBody] = {}
    info: InfoBody | None = None


class UserStateBody(Body):
    user: UserName
    user_state: State = {}
    state_public_keys: list[StateKey] | None = None


#: The seed's /user_status codes.
USER_STATUSES = {0: "offline", 1: "online", 2: "away", 3: "hidden", 4: "busy"}


class UserStatusBody(Body):
    user: UserName
    status: StrictInt = Field(ge=0, le=4)


class Delivery(Body):
    channel: ChannelName | None = None
    pm_users: list[UserName] = []
    exclude_users: list[UserName] = []
    no_history: bool = False


class MessageItem(Delivery):
    uuid: UUID | None = None
    timestamp: datetime | None = None
    user: UserName
    message: dict[str, Any] | None = None

    def item(self) -> dict[str, Any]:
        data = self.model_dump(exclude_unset=True, exclude={"uuid", "timestamp"})
        data["uuid"] = str(self.uuid) if self.uuid else None
        data["timestamp"] = self.timestamp.isoformat() if self.timestamp else None
        if "message" in self.model_fields_set and self.message is None:
            data.pop("message")
        return data


class MessageEditItem(Delivery):
    uuid: UUID
    timestamp: datetime | None = None
    user: UserName | None = None
    message: dict[str, Any] | None = None
    edited: datetime | None = None

    def item(self) -> dict[str, Any]:
        data = self.model_dump(exclude_unset=True, exclude={"uuid", "timestamp", "edited"})
        data["uuid"] = str(self.uuid)
        if self.timestamp is not None:
            data["timestamp"] = self.timestamp.isoformat()
        if self.edited is not None:
            data["edited"] = self.edited.isoformat()
        return {k: v for k, v in data.items() if v is not None or k == "channel"}


class MessageDeleteItem(Delivery):
    uuid: UUID

    def item(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"uuid"})
        data["uuid"] = str(self.uuid)
        return data


class MessageList(RootModel[list[MessageItem]]):
    pass


class MessageEditList(RootModel[list[MessageEditItem]]):
    pass


class MessageDeleteList(RootModel[list[MessageDeleteItem]]):
    pass


class ChannelConfigRequest(RootModel[dict[ChannelName, ChannelConfigBody]]):
    pass


class InfoRequest(Body):
    info: InfoBody


class DisconnectBody(Body):
    conn_id: UUID
