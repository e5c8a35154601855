"""Turning a test's `slash("name", {"opt": value})` into the `data` Discord would send, using the
command schema the bot synced, and finding the components a user can click or fill in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fakediscord.payloads import JSON, FakeChannel, FakeGuild, FakeMember, FakeRole, FakeUser
from fakediscord.state import Attachment, MessageRecord

if TYPE_CHECKING:
    from fakediscord.server import FakeDiscord

__all__ = ["build_command_data", "find_component", "modal_submission", "plain_submission"]

SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11
ADMINISTRATOR = 0x8


def _error(message: str) -> Exception:
    from fakediscord.server import FakeDiscordError

    return FakeDiscordError(message)


def _find_command(fake: FakeDiscord, name: str, guild: FakeGuild) -> JSON:
    for command in (*fake.state.guild_commands.get(guild.id, []), *fake.state.global_commands):
        if command["name"] == name and command.get("type", 1) == 1:
            return command
    synced = sorted(
        {c["name"] for c in fake.state.global_commands}
        | {c["name"] for c in fake.state.guild_commands.get(guild.id, [])}
    )
    raise _error(
        f"no slash command /{name} was synced to Discord (synced: {synced}); did the bot call tree.sync()?"
    )


def build_command_data(
    fake: FakeDiscord,
    path: str,
    values: dict[str, Any],
    *,
    guild: FakeGuild,
    channel: FakeChannel,
    permissions: int,
    focused: str | None = None,
) -> JSON:
    """`data` of an application-command (or autocomplete) interaction for "name [group] [sub]"."""
    names = path.split()
    command = _find_command(fake, names[0], guild)
    needed = command.get("default_member_permissions")
    if needed is not None and not permissions & ADMINISTRATOR and int(needed) & permissions != int(needed):
        raise _error(
            f"/{names[0]} needs permissions {needed}; this user has {permissions} so Discord hides it"
        )
    if command.get("nsfw") and not channel.nsfw:
        raise _error(
            f"/{names[0]} is age-restricted (nsfw=True); Discord offers it only in age-restricted "
            f"channels, and #{channel.name} is not one"
        )
    data: JSON = {"id": command["id"], "name": command["name"], "type": 1}
    if "guild_id" in command:
        data["guild_id"] = command["guild_id"]
    resolved: dict[str, dict[str, JSON]] = {}
    schema = list(command.get("options") or [])
    holder = data
    for sub in names[1:]:
        option = next(
            (o for o in schema if o["name"] == sub and o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)), None
        )
        if option is None:
            raise _error(f"/{path}: no subcommand {sub!r}; have {[o['name'] for o in schema]}")
        nested: JSON = {"name": sub, "type": option["type"], "options": []}
        holder.setdefault("options", []).append(nested)
        holder, schema = nested, list(option.get("options") or [])
    if any(o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in schema):
        raise _error(f"/{path} is a group; name a subcommand: {[o['name'] for o in schema]}")
    holder["options"] = _options(fake, path, schema, values, guild, resolved, focused)
    if resolved:
        data["resolved"] = resolved
    return data


def _options(
    fake: FakeDiscord,
    path: str,
    schema: list[JSON],
    values: dict[str, Any],
    guild: FakeGuild,
    resolved: dict[str, dict[str, JSON]],
    focused: str | None,
) -> list[JSON]:
    known = {o["name"]: o for o in schema}
    unknown = set(values) - set(known)
    if unknown:
        raise _error(f"/{path} has no option(s) {sorted(unknown)}; it has {sorted(known)}")
    missing = [
        o["name"] for o in schema if o.get("required") and o["name"] not in values and o["name"] != focused
    ]
    if missing and focused is None:
        raise _error(f"/{path} requires {missing}; Discord will not send it without them")
    out: list[JSON] = []
    for name, value in values.items():
        option = known[name]
        entry: JSON = {"name": name, "type": option["type"]}
        if name == focused:
            entry |= {"value": str(value), "focused": True}
        else:
            entry["value"] = _convert(fake, path, option, value, guild, resolved)
        out.append(entry)
    return out


def _convert(
    fake: FakeDiscord,
    path: str,
    option: JSON,
    value: Any,
    guild: FakeGuild,
    resolved: dict[str, dict[str, JSON]],
) -> Any:
    kind = option["type"]
    if kind == STRING:
        value = str(value)
    elif kind == INTEGER:
        value = int(value)
    elif kind == NUMBER:
        value = float(value)
    elif kind == BOOLEAN:
        value = bool(value)
    elif kind in (USER, ROLE, CHANNEL, MENTIONABLE):
        return _resolve(fake, path, option, value, guild, resolved)
    elif kind == ATTACHMENT:
        return _resolve_attachment(fake, path, option, value, resolved)
    else:
        raise _error(f"/{path}: option type {kind} is not supported by the fake")
    choices = option.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise _error(
            f"/{path} {option['name']}: {value!r} is not one of the choices {[c['value'] for c in choices]}"
        )
    return value


def _resolve(
    fake: FakeDiscord,
    path: str,
    option: JSON,
    value: Any,
    guild: FakeGuild,
    resolved: dict[str, dict[str, JSON]],
) -> str:
    kind = option["type"]
    if isinstance(value, FakeRole) or (kind == ROLE and isinstance(value, int)):
        role = value if isinstance(value, FakeRole) else next((r for r in guild.roles if r.id == value), None)
        if role is None:
            raise _error(f"/{path} {option['name']}: no role {value} in {guild.name!r}")
        resolved.setdefault("roles", {})[str(role.id)] = role.to_payload()
        return str(role.id)
    if isinstance(value, FakeChannel) or (kind == CHANNEL and isinstance(value, int | str)):
        channel = value if isinstance(value, FakeChannel) else guild.channel(value)
        entry = channel.to_payload() | {"permissions": str((1 << 41) - 1)}
        resolved.setdefault("channels", {})[str(channel.id)] = entry
        return str(channel.id)
    member: FakeMember | None
    if isinstance(value, FakeMember):
        member, user = value, value.user
    else:
        user_id = value.id if isinstance(value, FakeUser) else int(value)
        member = guild.member(user_id)
        found = fake.world.user(user_id) if not isinstance(value, FakeUser) else value
        if found is None:
            raise _error(f"/{path} {option['name']}: no user {value}")
        user = found
    resolved.setdefault("users", {})[str(user.id)] = user.to_payload()
    if member is not None:
        member_payload = member.to_payload(with_permissions=True)
        del member_payload["user"]
        resolved.setdefault("members", {})[str(user.id)] = member_payload
    return str(user.id)


def _resolve_attachment(
    fake: FakeDiscord, path: str, option: JSON, value: Any, resolved: dict[str, dict[str, JSON]]
) -> str:
    """The option's value is the attachment id; the file itself goes in `resolved.attachments`."""
    upload = value if isinstance(value, Attachment) else None
    if upload is None and isinstance(value, int):
        upload = fake.cdn.uploads.get(value)
    if upload is None:
        raise _error(
            f"/{path} {option['name']}: an attachment option takes a file from "
            f"fake.upload(data, filename), not {value!r}"
        )
    resolved.setdefault("attachments", {})[str(upload.id)] = upload.to_payload(fake.url)
    return str(upload.id)


def find_component(message: MessageRecord, custom_id: str) -> JSON:
    """The enabled interactive component with this custom_id (the Discord client shows no other)."""
    stack = list(message.components)
    while stack:
        component = stack.pop()
        if component.get("custom_id") == custom_id:
            if component.get("disabled"):
                raise _error(f"component {custom_id!r} on message {message.id} is disabled")
            return component
        stack.extend(component.get("components", []))
        if "accessory" in component:
            stack.append(component["accessory"])
    raise _error(f"message {message.id} has no component {custom_id!r}; it has {message.custom_ids()}")


def _filled(component: JSON, fields: dict[str, Any], used: set[str]) -> JSON:
    custom_id = component.get("custom_id")
    entry: JSON = {"type": component["type"], "custom_id": custom_id}
    if "id" in component:
        entry["id"] = component["id"]
    value = fields.get(custom_id) if custom_id is not None else None
    if custom_id in fields:
        used.add(str(custom_id))
    if component["type"] == 4:
        entry["value"] = "" if value is None else str(value)
    else:
        entry["values"] = [] if value is None else ([value] if isinstance(value, str) else list(value))
    return entry


def modal_submission(modal: JSON, fields: dict[str, Any]) -> list[JSON]:
    """Submitted components mirroring the modal's layout (action rows or labels)."""
    used: set[str] = set()
    out: list[JSON] = []
    for top in modal.get("components", []):
        if top["type"] == 1:
            out.append(
                {"type": 1, "components": [_filled(c, fields, used) for c in top.get("components", [])]}
            )
        elif top["type"] == 18:
            out.append({"type": 18, "component": _filled(top["component"], fields, used)})
        elif "custom_id" in top:
            out.append(_filled(top, fields, used))
    unknown = set(fields) - used
    if unknown:
        raise _error(f"modal {modal.get('custom_id')!r} has no field(s) {sorted(unknown)}")
    return out


def plain_submission(fields: dict[str, Any]) -> list[JSON]:
    """Text inputs in action rows, for submitting a modal the fake did not see opened."""
    return [
        {"type": 1, "components": [{"type": 4, "custom_id": k, "value": str(v)}]} for k, v in fields.items()
    ]
