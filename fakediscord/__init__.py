"""A loopback fake Discord: REST + gateway on 127.0.0.1 that drives the real, unmodified discord.py client.

Fixtures (`fakediscord.fixtures`, offered by tests/bot/conftest.py and tests/fakediscord/conftest.py):
    fake_discord          a started `FakeDiscord`; discord.py's `Route.BASE` and
                          `DiscordWebSocket.DEFAULT_GATEWAY` point at it until the test ends.
    fake_discord_config   the `FakeConfig` it is built with; override the fixture to change
                          `ack_deadline_s`, `token_lifetime_s`, `attachment_size_limit`,
                          `heartbeat_interval_ms`, `max_content_length`, `bot_token`,
                          `recommended_shards`, `max_guilds_per_session`.

Running a bot:
    async with run_bot(bot, fake_discord) as running:   # reconnect=False, waits for READY + command sync
        ...                                              # running.bot, running.fake, running.errors
    On exit the bot is closed and the test FAILS if any exception reached Client.on_error,
    CommandTree.on_error, View.on_error or Modal.on_error (or was logged by discord.py with a
    traceback), or if it called a REST route the fake does not know (`allow_unknown_routes=True`
    to permit). `await running.wait_for_error()` / `running.take_errors()` for expected ones.
    Options: token=, timeout=, require_sync= (default True: wait for a PUT of the command list),
    fast_ready= (default True: 0.05 s instead of discord.py's 2 s wait for more GUILD_CREATEs, and
    no 5 s pause between shards' IDENTIFYs).

Acting as users (each returns an `InteractionRecord`):
    await fake.slash("imagine", {"prompt": "a cat"}, user=fake.member, channel="general", permissions=0x20)
    await fake.slash("settings quota", {"user": fake.other_member, "role": role, "channel": ch})
    await fake.click(message, "custom_id", user=...)            # buttons; values=[...] for selects
    await fake.submit_modal(interaction, "modal_id", {"field_id": "value"})
    await fake.autocomplete("imagine", {"prompt": "a c"}, focused="prompt")
    await fake.post_as_user("!help", user=fake.member)        # a MessageRecord; bot gets MESSAGE_CREATE
    Option types come from the synced command schema; users/roles/channels get `resolved` data.
    A command whose `default_member_permissions` the user lacks raises `FakeDiscordError`, as
    Discord would not offer it. `fake.member` / `fake.other_member` are plain members,
    `fake.admin` has every permission; `fake.guild`, `fake.channel` (#general), `fake.bot_user`.
    `fake.add_guild(shard=(1, 2))` adds a guild (its id on that shard) before or while a bot runs;
    act in it with `guild=`. `fake.add_channel("adults-only", nsfw=True, guild=None)` adds a text
    channel (`"nsfw": true`, age-restricted: `channel.is_nsfw()` in discord.py) before (GUILD_CREATE)
    or while (CHANNEL_CREATE) a bot runs; act in it with `channel=`. A command synced with
    `nsfw=True` is only offered in such channels (elsewhere `slash` raises `FakeDiscordError`).

Files users attach (slash-command attachment options, type 11), on the fake's CDN:
    upload = fake.upload(png_bytes, "cat.png", content_type=None)   # an `Attachment`
    await fake.slash("imagine", {"prompt": "a cat", "image": upload})   # or the upload's id
    The option's value is the attachment id and the file sits in `data.resolved.attachments`, as
    Discord sends it, so the command gets a real `discord.Attachment` (id, filename, size, url,
    proxy_url, content_type guessed from the filename when None, width/height for images,
    ephemeral=True). `upload.url(fake.url)` is a fresh link; `fake.cdn_remove(upload | url | id)`
    deletes a file (uploaded or posted by the bot) so its links answer 404 (`discord.NotFound` from
    `attachment.read()`). Files of deleted messages answer 404 too. Links are signed like Discord's
    (`?ex=&is=&hm=`, 24 h): a link with its query stripped or its path altered answers 404.
    `fake.cdn.requests` records each CDN GET (path, status, at).

Sharding, as on Discord: `GET /gateway/bot` recommends `FakeConfig.recommended_shards` (default 1);
each IDENTIFY's `shard: [id, count]` (none = [0, 1]) makes that session serve the guilds with
`(guild_id >> 22) % count == id` (READY, GUILD_CREATE, message events, interactions) and, on shard
0, DMs. A shard out of range is closed with 4010, a session over `max_guilds_per_session` guilds
with 4011 (`fake.state.gateway_refusals`). `interaction.shard` is the `(id, count)` it went to;
each of `fake.sessions` has `.shard` and `.dispatched` ((event, guild id) sent); `await
fake.session_for(guild_id)` waits for the session serving a guild.

Reading what happened (`fake.state`, a `FakeState`):
    record = await interaction.response(timeout=3)     # first CallbackRecord (type, data, at, files)
    message = await interaction.wait_original()       # @original once it is no longer "thinking"
    interaction.followups(), interaction.ack_latency, interaction.modal, interaction.autocomplete_choices
    await fake.wait_for_message(lambda m: "done" in m.content, channel=fake.channel, timeout=5)
    await fake.wait_for(lambda state: ..., timeout=5)   # raises WaitTimeout (an AssertionError)
    fake.messages_in(channel) -> [MessageRecord]        # live messages, oldest first
    MessageRecord: id, channel_id, content, author, attachments (Attachment.data = the bytes,
        .filename, .content_type, .width/.height for images, .spoiler for a `SPOILER_` filename, as
        discord.py's `File(spoiler=True)` sends), components, embeds, flags, .ephemeral, .loading,
        interaction_id, history (Revision per create/edit, with monotonic `at`), button_labels(),
        custom_ids(), attachment(filename).
    fake.state.violations   rule breaks (late/double ack, expired token, limits), each answered
                            with Discord's error; fake.state.unknown_routes (404ed, recorded);
    fake.state.requests, command_syncs, heartbeats (monotonic arrival times), max_heartbeat_gap().
    The bot's own non-ephemeral messages come back as MESSAGE_CREATE/UPDATE/DELETE when its intents
    ask for them; without the message content intent a user's text arrives blank unless it
    mentions the bot, as on Discord.

Rules enforced because Discord enforces them: acknowledge within 3 s (else 404 code 10062), once
(else 400 code 40060); a token expires after 15 minutes or on `fake.expire_token(token)` (webhooks
then answer 401 code 50027; channel messages still work); custom_id <= 100 chars, <= 5 rows of <= 5
components, unique custom ids, content <= 2000 chars, no empty messages (400 code 50035 with nested
errors); attachments above the size limit answer 413 code 40005; ephemeral messages are invisible
to channel routes. A command sync (PUT or POST of commands) Discord would refuse answers 400 code
50035 (violation "invalid_command"): names lower-case 1-32, descriptions 1-100, at most 25 options
with required ones first, unique names, choices only on string/integer/number options (at most 25),
subcommands nested at most group > subcommand, 4000 characters in all.
`fake.fail_next("POST /channels/*/messages", status=503, times=1)` injects failures.

Subprocess: `PYTHONPATH=fakediscord/sitecustomize FAKE_DISCORD_URL=<fake.url> imaginebot run`,
then `await fake.wait_until_synced(timeout=30)` before driving it; a killed client is dropped cleanly
(`fake.state.gateway_closed` counts closed connections) and a restarted one can IDENTIFY again.
"""

from fakediscord.harness import HandlerError, RunningBot, redirect_discord, run_bot
from fakediscord.payloads import FakeChannel, FakeGuild, FakeMember, FakeRole, FakeUser, World
from fakediscord.server import FakeConfig, FakeDiscord, FakeDiscordError
from fakediscord.state import Attachment, FakeState, InteractionRecord, MessageRecord, WaitTimeout

__all__ = [
    "Attachment",
    "FakeChannel",
    "FakeConfig",
    "FakeDiscord",
    "FakeDiscordError",
    "FakeGuild",
    "FakeMember",
    "FakeRole",
    "FakeState",
    "FakeUser",
    "HandlerError",
    "InteractionRecord",
    "MessageRecord",
    "RunningBot",
    "WaitTimeout",
    "World",
    "redirect_discord",
    "run_bot",
]
