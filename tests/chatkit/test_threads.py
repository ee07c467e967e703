"""Threads and items over `POST /chatkit`: list, load, rename, delete, pagination, who may see
them, and ChatKit's thumbs stored as feedback.

Driven with the protocol's own requests on SQLite and PostgreSQL, with the real `openai` SDK
against the fake model server; every event and body is read back through the SDK's types."""

from __future__ import annotations

from chatkit.types import (
    AssistantMessageItem,
    UserMessageItem,
)

from bookchat.chat.models import ChatSession, Message, MessageFeedback
from tests.accounts.conftest import (
    AUDIENCE,
    ISSUER,
    SECRET,
    JWKSServer,
    SigningKey,
    claims,
)
from tests.chatkit.protocol import (
    ITEMS,
    THREAD,
    THREADS,
    add,
    answer_item,
    create,
    delete,
    feedback,
    fetch,
    get_thread,
    list_items,
    list_threads,
    rename,
    send,
    stream,
    thread_of,
)
from tests.conftest import AppFactory, make_settings, openai_settings
from tests.factories import QUESTION, bearer, book_settings, sign_up, stored
from tests.fakes.openai_server import FakeOpenAIServer


class TestThreads:
    async def test_list_load_rename_delete_with_pagination(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            reader = bearer((await sign_up(client, "reader@example.org"))["access_token"])
            ids = []
            for n in range(3):
                events = await stream(client, create(f"{QUESTION} {n}"), headers=reader)
                ids.append(thread_of(events).id)

            first = await fetch(client, list_threads(limit=2), THREADS, headers=reader)
            rest = await fetch(
                client, list_threads(limit=2, after=first.after), THREADS, headers=reader
            )
            oldest_first = await fetch(client, list_threads(order="asc"), THREADS, headers=reader)
            page = await fetch(client, list_items(ids[0], limit=1), ITEMS, headers=reader)
            next_page = await fetch(
                client, list_items(ids[0], limit=1, after=page.after), ITEMS, headers=reader
            )
            newest_item = await fetch(
                client, list_items(ids[0], limit=1, order="desc"), ITEMS, headers=reader
            )
            renamed = await fetch(client, rename(ids[1], "Messaging"), THREAD, headers=reader)
            loaded = await fetch(client, get_thread(ids[1]), THREAD, headers=reader)
            deleted = await send(client, delete(ids[2]), headers=reader)
            gone = await send(client, get_thread(ids[2]), headers=reader)
            after_delete = await fetch(client, list_threads(), THREADS, headers=reader)

        assert [t.id for t in first.data] == [ids[2], ids[1]]
        assert first.has_more
        assert first.after == ids[1]
        assert [t.id for t in rest.data] == [ids[0]]
        assert not rest.has_more
        assert rest.after is None
        assert [t.id for t in oldest_first.data] == ids
        assert [t.title for t in oldest_first.data] == [f"{QUESTION} {n}" for n in range(3)]
        assert isinstance(page.data[0], UserMessageItem)
        assert page.has_more
        assert isinstance(next_page.data[0], AssistantMessageItem)
        assert not next_page.has_more
        assert newest_item.data[0].id == next_page.data[0].id
        assert renamed.title == loaded.title == "Messaging"
        assert [type(i) for i in loaded.items.data] == [UserMessageItem, AssistantMessageItem]
        assert deleted.status_code == 200
        assert deleted.json() == {}
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "not_found"
        assert [t.id for t in after_delete.data] == [ids[1], ids[0]]
        titles = {s.title for s in await stored(database_url, ChatSession)}
        assert titles == {f"{QUESTION} 0", "Messaging"}
        assert len(await stored(database_url, Message)) == 4  # the deleted thread's went with it

    async def test_another_readers_thread_is_not_found(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            owner = bearer((await sign_up(client, "owner@example.org"))["access_token"])
            other = bearer((await sign_up(client, "other@example.org"))["access_token"])
            events = await stream(client, create(QUESTION), headers=owner)
            thread, answer = thread_of(events), answer_item(events)
            attempts = [
                await send(client, request, headers=other)
                for request in (
                    get_thread(thread.id),
                    list_items(thread.id),
                    rename(thread.id, "Mine now"),
                    delete(thread.id),
                    feedback(thread.id, [answer.id], "negative"),
                    add(thread.id, "And subscribers?"),
                )
            ]
            others_list = await fetch(client, list_threads(), THREADS, headers=other)
            anonymous_list = await fetch(client, list_threads(), THREADS)
            owners = await fetch(client, get_thread(thread.id), THREAD, headers=owner)

        assert [r.status_code for r in attempts] == [404] * 6
        assert {r.json()["error"]["code"] for r in attempts} == {"not_found"}
        assert others_list.data == anonymous_list.data == []
        assert owners.title == QUESTION
        assert len(owners.items.data) == 2
        assert await stored(database_url, MessageFeedback) == []

    async def test_a_better_auth_reader_is_scoped_like_any_other(
        self,
        sqlite_url: str,
        app_factory: AppFactory,
        jwks_server: JWKSServer,
        signing_keys: dict[str, SigningKey],
    ) -> None:
        settings = await book_settings(
            sqlite_url,
            jwt_secret=SECRET,
            better_auth_jwks_url=jwks_server.url,
            better_auth_issuer=ISSUER,
            better_auth_audience=AUDIENCE,
        )
        ada = bearer(signing_keys["EdDSA"].sign(claims("ba-ada", email="ada@example.org")))
        bob = bearer(signing_keys["ES256"].sign(claims("ba-bob", email="bob@example.org")))
        async with app_factory(settings) as client:
            thread = thread_of(await stream(client, create(QUESTION), headers=ada))
            adas = await fetch(client, list_threads(), THREADS, headers=ada)
            bobs = await fetch(client, list_threads(), THREADS, headers=bob)
            stranger = await send(client, get_thread(thread.id), headers=bob)

        assert [t.id for t in adas.data] == [thread.id]
        assert bobs.data == []
        assert stranger.status_code == 404
        [session] = await stored(sqlite_url, ChatSession)
        assert session.user_id is not None

    async def test_unknown_and_malformed_ids_are_not_found(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            responses = [
                await send(client, get_thread(thread_id))
                for thread_id in ("thr_" + "0" * 32, "thr_nothex", "no-prefix", "msg_" + "1" * 32)
            ]
        assert [r.status_code for r in responses] == [404] * 4


class TestFeedback:
    async def test_thumbs_are_stored_as_feedback(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            account = await sign_up(client, "reader@example.org")
            reader = bearer(account["access_token"])
            events = await stream(client, create(QUESTION), headers=reader)
            thread, answer = thread_of(events), answer_item(events)
            up = await send(client, feedback(thread.id, [answer.id], "positive"), headers=reader)
            down = await send(client, feedback(thread.id, [answer.id], "negative"), headers=reader)

        assert (up.status_code, up.json(), down.status_code) == (200, {}, 200)
        [row] = await stored(database_url, MessageFeedback)
        assert row.rating == -1  # the second thumb replaced the first
        assert f"msg_{row.message_id.hex}" == answer.id
        assert str(row.user_id) == account["user"]["id"]
